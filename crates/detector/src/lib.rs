//! latefill's late-data detector.
//!
//! Reads a source table's Delta log and reports, per partition, the last table version
//! at which its data changed (`add`/`remove` actions with `dataChange = true`).
//!
//! This crate is being built: see the project's issue "Partition state table and
//! late-data detector". Nothing here is used yet.
