//! One module a command: validate its arguments, call the library, render.

pub(crate) mod backfill;
pub(crate) mod changes;
pub(crate) mod demo;
pub(crate) mod detect;
pub(crate) mod init;
pub(crate) mod lateness;
pub(crate) mod run;
pub(crate) mod state;
pub(crate) mod status;
