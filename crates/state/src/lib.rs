//! latefill's partition state table.
//!
//! A Delta table that records, per partition, whether it is being processed and the
//! source version it was last processed at. Claims, completions and failures are
//! compare-and-swap commits on that table, which makes them safe across processes and
//! hosts that share the storage.
//!
//! This crate is being built: see the project's issue "Partition state table and
//! late-data detector". Nothing here is used yet.
