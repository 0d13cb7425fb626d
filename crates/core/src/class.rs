//! Whose fault an error is.

/// Whose fault an error is: what the user should do about it, and so the CLI's exit
/// code. Every latefill crate's error has a class; the binary maps classes to exit
/// codes in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Bad arguments or configuration: fix the command or the pipeline file.
    Usage,
    /// The data (tables, their logs, SQL against them) cannot be processed as asked.
    Data,
    /// Another run holds what was asked for, or kept winning the race for it: retry.
    Contention,
    /// Storage failed (unreachable, refused, I/O): retry, then check the storage.
    Storage,
    /// A broken invariant: a bug in latefill.
    Internal,
}
