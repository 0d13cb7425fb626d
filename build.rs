//! Links the `latefill` binary on glibc Linux as a position-dependent executable
//! (`-no-pie`).
//!
//! A position-independent build of this binary carries about 308,000 relocations that
//! the loader applies at every start, touching pages all over its 230 MB: 6.2 ms before
//! `main` against 1.5 ms without them (`latefill --version`, release, 2 cores). latefill
//! is started once per command, often many times a day by a scheduler, so that is a
//! third of a `detect` and a tenth of a day's `run`. The price is that the executable's
//! own code is not placed at a random address (ASLR still moves its libraries, stack
//! and heap). Set `LATEFILL_PIE=1` when building to keep a position-independent binary.

fn main() {
    println!("cargo:rerun-if-env-changed=LATEFILL_PIE");
    let cfg = |key: &str| std::env::var(key).unwrap_or_default();
    // glibc Linux only: musl targets link `-static-pie`, which `-no-pie` would fight.
    let linux_gnu = cfg("CARGO_CFG_TARGET_OS") == "linux" && cfg("CARGO_CFG_TARGET_ENV") == "gnu";
    let pie = std::env::var_os("LATEFILL_PIE").is_some_and(|v| !v.is_empty() && v != "0");
    if linux_gnu && !pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
