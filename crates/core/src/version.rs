//! Table versions.

use std::fmt;

/// A version of a Delta table: its commit number. Prints and serialises as the
/// number; compares with a `u64` as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct TableVersion(u64);

impl TableVersion {
    /// The version `v`.
    pub const fn new(v: u64) -> Self {
        TableVersion(v)
    }

    /// The commit number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl From<u64> for TableVersion {
    fn from(v: u64) -> Self {
        TableVersion(v)
    }
}

impl From<TableVersion> for u64 {
    fn from(v: TableVersion) -> Self {
        v.0
    }
}

impl PartialEq<u64> for TableVersion {
    fn eq(&self, other: &u64) -> bool {
        self.0 == *other
    }
}

impl PartialOrd<u64> for TableVersion {
    fn partial_cmp(&self, other: &u64) -> Option<std::cmp::Ordering> {
        self.0.partial_cmp(other)
    }
}

impl fmt::Display for TableVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl serde::Serialize for TableVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}
