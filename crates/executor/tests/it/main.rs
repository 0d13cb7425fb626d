//! The executor's integration tests: one binary, real Delta tables in temporary
//! directories, real DataFusion.

mod appended;
mod randomized;
mod run_partition;
