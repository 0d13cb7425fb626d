//! Fingerprints: what identifies a partition's data at a version, from the log alone.

use deltalake::kernel::LogicalFileView;

/// A fingerprint of a set of data files: FNV-1a over their sorted identities (see
/// [`file_identity`]) and the count. Delta never rewrites a data file in place, so a
/// partition whose file set is unchanged holds the same rows.
pub fn fingerprint<'a>(paths: impl IntoIterator<Item = &'a str>) -> String {
    let mut paths: Vec<&str> = paths.into_iter().collect();
    paths.sort_unstable();
    let hash = fnv1a(
        paths
            .iter()
            .flat_map(|p| p.bytes().chain(std::iter::once(b'\n'))),
    );
    format!("{}:{hash:016x}", paths.len())
}

/// FNV-1a, 64 bits: a stable hash for identities (not for security).
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What identifies a live file's rows: its path, and its deletion vector if it has
/// one. A DELETE under deletion vectors keeps the path and adds a vector, so a
/// fingerprint of paths alone would not see it.
pub fn file_identity(file: &LogicalFileView) -> String {
    let path = file.path();
    match file.deletion_vector_descriptor() {
        Some(dv) => format!(
            "{path}#dv={:?}:{}@{}:{}",
            dv.storage_type,
            dv.path_or_inline_dv,
            dv.offset.unwrap_or_default(),
            dv.cardinality
        ),
        None => path.into_owned(),
    }
}

pub(crate) fn files_fingerprint(files: &[LogicalFileView]) -> String {
    let ids: Vec<String> = files.iter().map(file_identity).collect();
    fingerprint(ids.iter().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn fingerprints_ignore_order_and_see_any_change() {
        let a = fingerprint(["x/1.parquet", "x/2.parquet"]);
        assert_eq!(a, fingerprint(["x/2.parquet", "x/1.parquet"]));
        assert_ne!(a, fingerprint(["x/1.parquet"]));
        assert_ne!(a, fingerprint(["x/1.parquet", "x/3.parquet"]));
        assert!(a.starts_with("2:"));
    }
}
