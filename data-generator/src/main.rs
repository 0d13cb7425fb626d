//! `latefill-datagen`: the device data generator on its own (also `latefill generate`).

use clap::Parser;
use latefill_datagen::cli::GenerateArgs;

#[derive(Debug, Parser)]
#[command(name = "latefill-datagen", version, about)]
struct Cli {
    #[command(flatten)]
    args: GenerateArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.args.to_options() {
        Ok(options) => options.write().await,
        Err(e) => Err(e),
    };
    match result {
        Ok(report) => {
            println!(
                "appended {} rows to {} in {} as version {}",
                report.rows, report.partition, report.table, report.table_version
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(match e {
                latefill_datagen::Error::Delta { .. } => 1,
                _ => 2,
            })
        }
    }
}
