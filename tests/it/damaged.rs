//! Damaged Delta logs in the source, the target and the state table: a data error
//! (exit 3) in one paragraph naming the table and the version, and no write.

use std::path::{Path, PathBuf};

use crate::common::*;

/// `_delta_log`'s file names and sizes: what a write would change.
fn log_files(table: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Writes `content` as the commit after the table's last one; returns its version.
fn damage(table: &Path, content: &str) -> u64 {
    let next = log_files(table)
        .iter()
        .filter_map(|(name, _)| name.strip_suffix(".json")?.parse::<u64>().ok())
        .max()
        .unwrap()
        + 1;
    let path = table.join(format!("_delta_log/{next:020}.json"));
    std::fs::write(path, content).unwrap();
    next
}

#[tokio::test]
async fn a_torn_or_garbage_commit_in_any_table_is_a_data_error_naming_it() {
    let torn = r#"{"add":{"path":"event_time=2024-01-02/part-0.parquet","partitionVal"#;
    let garbage = "this is not a Delta commit\n";
    for role in ["source", "target", "state"] {
        for (kind, content) in [("torn", torn), ("garbage", garbage)] {
            let ws = Workspace::new();
            ws.generate("2024-01-01", 100, 1).await;
            ws.generate("2024-01-02", 100, 2).await;
            let first = ws.run_cli(&["--date", "2024-01-01"]);
            assert!(first.status.success(), "{}", stderr(&first));
            let table: PathBuf = match role {
                "source" => ws.source_path(),
                "target" => ws.target_path(),
                _ => ws.dir.path().join("state"),
            };
            let version = damage(&table, content);
            let target_before = log_files(&ws.target_path());

            let out = ws.run_cli(&["--date", "2024-01-02"]);
            let err = stderr(&out);
            let case = format!("{kind} commit in the {role}");
            assert_eq!(out.status.code(), Some(3), "{case}: {err}");
            assert!(
                err.starts_with(&format!("error: {role} table file://"))
                    && err.contains(&format!("commit {version} is corrupt"))
                    && err.contains("Restore that file from a backup"),
                "{case}: {err}"
            );
            assert_eq!(
                err.trim_end().lines().count(),
                1,
                "{case}: one paragraph: {err}"
            );
            assert_eq!(
                log_files(&ws.target_path()),
                target_before,
                "{case}: the target was written"
            );
        }
    }
}
