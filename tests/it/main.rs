//! latefill's integration tests: one binary, one module per area.
//!
//! Every test works on real Delta tables in temporary directories, runs real
//! DataFusion, and drives the real `latefill` binary where the CLI is the subject.

mod audits;
mod common;
mod concurrent;
mod conventions;
mod crash;
mod damaged;
mod edges;
mod generate;
mod incremental;
mod late;
mod lateness;
mod long_lived;
mod memory;
mod object_store;
mod partitions;
mod pipelines;
mod run_cli;
mod signals;
mod status;
mod status_page;
mod transforms;
