//! The `latefill` command. Everything it does is in the library's [`latefill::cli`]
//! module, which the Python package's `latefill` command runs too.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(latefill::cli::main(std::env::args_os()))
}
