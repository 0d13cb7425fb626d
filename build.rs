//! Records the commit and the build date for `latefill --version`
//! (`LATEFILL_COMMIT`, `LATEFILL_BUILD_DATE`), and links the `latefill` binary on
//! glibc Linux as a position-dependent executable (`-no-pie`).
//!
//! A position-independent build of this binary carries about 308,000 relocations that
//! the loader applies at every start, touching pages all over its 230 MB: 6.2 ms before
//! `main` against 1.5 ms without them (`latefill --version`, release, 2 cores). latefill
//! is started once per command, often many times a day by a scheduler, so that is a
//! third of a `detect` and a tenth of a day's `run`. The price is that the executable's
//! own code is not placed at a random address (ASLR still moves its libraries, stack
//! and heap). Set `LATEFILL_PIE=1` when building to keep a position-independent binary.

fn main() {
    version_info();
    println!("cargo:rerun-if-env-changed=LATEFILL_PIE");
    let cfg = |key: &str| std::env::var(key).unwrap_or_default();
    // glibc Linux only: musl targets link `-static-pie`, which `-no-pie` would fight.
    let linux_gnu = cfg("CARGO_CFG_TARGET_OS") == "linux" && cfg("CARGO_CFG_TARGET_ENV") == "gnu";
    let pie = std::env::var_os("LATEFILL_PIE").is_some_and(|v| !v.is_empty() && v != "0");
    if linux_gnu && !pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}

/// `LATEFILL_COMMIT` (the checkout's short commit hash, `unknown` outside a git
/// checkout) and `LATEFILL_BUILD_DATE` (YYYY-MM-DD, UTC), set again when the commit
/// changes.
fn version_info() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let commit = git(&["rev-parse", "--short=9", "HEAD"]).unwrap_or_else(|| "unknown".into());
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(head) = git(&["rev-parse", "--symbolic-full-name", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{head}");
        }
        println!("cargo:rerun-if-changed={dir}/packed-refs");
    }
    println!("cargo:rustc-env=LATEFILL_COMMIT={commit}");
    println!("cargo:rustc-env=LATEFILL_BUILD_DATE={}", today());
}

/// Today's date in UTC as YYYY-MM-DD (the civil-from-days algorithm: no dependency
/// for a build script).
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
