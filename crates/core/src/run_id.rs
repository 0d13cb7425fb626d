//! Run ids: who holds a claim.

use std::fmt;

/// A run's id: claims in the state table belong to it. A fresh one ([`RunId::new`]) is
/// the time and 128 random bits; a scheduler that takes over a hand-out's claims gives
/// the hand-out's (`latefill run --run-id`). Never `host:pid`: two workers in
/// containers may share a hostname and both be PID 1 (the owner, `host:pid`, is
/// recorded beside it for people).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(String);

impl RunId {
    /// A fresh run id: `YYYYMMDDTHHMMSS-` and 32 hex digits.
    pub fn new() -> Self {
        use rand::RngExt;
        RunId(format!(
            "{}-{:032x}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            rand::rng().random::<u128>()
        ))
    }

    /// The id as the state table records it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<String> for RunId {
    fn from(id: String) -> Self {
        RunId(id)
    }
}

impl From<&str> for RunId {
    fn from(id: &str) -> Self {
        RunId(id.to_owned())
    }
}

impl AsRef<str> for RunId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for RunId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for RunId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_differ_and_start_with_the_time() {
        let (a, b) = (RunId::new(), RunId::new());
        assert_ne!(a, b);
        assert_eq!(a.len(), "20240103T050000-".len() + 32);
        assert!(a.as_str()[..8].bytes().all(|c| c.is_ascii_digit()), "{a}");
    }
}
