//! The detector against Delta tables written by Spark (../shared/fixtures) and
//! against logs damaged or cleaned up on purpose.

mod fixtures;
mod incremental;
