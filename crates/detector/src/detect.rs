//! Change detection: the last version at which each partition's data changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::{Future, IntoFuture};
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};
use crate::log::{Commit, Listing, LogReader, PartitionValues};
use crate::naming::{MetadataAction, PartitionNaming};
use latefill_core::storage::StorageOptions;
use latefill_core::{SourcePartition, TableVersion};

/// One partition's last data change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    /// The partition, `col=value[/col=value...]` over the table's partition columns.
    pub partition: SourcePartition,
    /// The last table version whose commit changed the partition's data.
    pub last_change_version: TableVersion,
    /// `false` when the log that would say exactly was cleaned up: the partition may
    /// have changed at any version up to `last_change_version`, and is reported at
    /// that version so that nothing is missed.
    pub exact: bool,
}

/// The detector's memory between runs: the last version scanned and what it knew.
/// Stored by the caller (latefill keeps it in the state table) and handed back with
/// [`DetectChanges::with_cursor`], so a detection reads only newer commits. Opaque:
/// what it holds is the detector's to read; it serialises with serde.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The table the cursor belongs to.
    pub(crate) table: Url,
    /// The last version scanned.
    pub(crate) version: u64,
    /// How partitions are named at that version.
    pub(crate) naming: PartitionNaming,
    /// Every partition seen, with its last change.
    pub(crate) partitions: BTreeMap<String, (u64, bool)>,
    /// The table's id (`metaData.id`) at `version`. A detection that finds another
    /// id never applies this cursor: the table was replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) table_id: Option<String>,
    /// A digest of commit `version`'s file. The next detection reads that commit
    /// again: a different file at the same version means the table was dropped and
    /// re-created, with a log that restarted at 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) commit_digest: Option<String>,
}

impl Cursor {
    /// The table the cursor belongs to.
    pub fn table(&self) -> &Url {
        &self.table
    }

    /// The last version it scanned.
    pub fn version(&self) -> TableVersion {
        self.version.into()
    }

    /// Whether this cursor is at another place of the log than `earlier` (none: a
    /// first detection): a later version, or another table's log.
    pub fn moved_from(&self, earlier: Option<&Cursor>) -> bool {
        let place = |c: &Cursor| (c.version, c.table_id.clone(), c.commit_digest.clone());
        earlier.map(place) != Some(place(self))
    }
}

/// The table the cursor was made on is gone: it was dropped and re-created, or
/// replaced (`CREATE OR REPLACE`). Its versions say nothing about the new table's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replacement {
    /// The table id the cursor held, if it held one.
    pub previous_table_id: Option<String>,
    /// The table id now.
    pub table_id: Option<String>,
    /// How the replacement was recognised.
    pub reason: String,
}

/// What a detection found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changes {
    /// The table's version the answer holds for.
    pub table_version: TableVersion,
    /// The partition columns, logical names, in order.
    pub partition_columns: Vec<String>,
    /// The partitions, sorted by name. With `since_version`, only those that changed
    /// after it; otherwise every partition whose data ever changed.
    pub partitions: Vec<PartitionChange>,
    /// `false` when commits the answer needs were removed by log cleanup.
    pub exact: bool,
    /// Why the answer is not exact, and how it was made conservative.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inexact_reason: Option<String>,
    /// How the log was read.
    pub scan: ScanStats,
    /// Set when the cursor handed in belongs to a table that was since replaced. The
    /// answer then describes the new table from its whole log, and its versions cannot
    /// be compared with versions recorded against the old one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Replacement>,
    #[serde(skip)]
    cursor: Option<Cursor>,
    /// The recorded time (ms since the epoch) of each commit this detection read.
    #[serde(skip)]
    commit_times: BTreeMap<u64, i64>,
}

/// How much of the log a detection read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanStats {
    /// `cursor` (only new commits), `since` or `full`.
    pub mode: &'static str,
    /// Commit files read.
    pub commits_read: usize,
    /// The checkpoint read, if any.
    pub checkpoint_read: Option<TableVersion>,
}

impl Changes {
    /// The cursor to hand to the next detection; `None` after a `since_version`
    /// detection, which does not see every partition.
    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// The table's id (`metaData.id`) at `table_version`, if the log gives one.
    pub fn table_id(&self) -> Option<&str> {
        self.cursor.as_ref().and_then(|c| c.table_id.as_deref())
    }

    /// The values of a partition this detection named, column by column in
    /// partition-column order (`None` for null): the inverse of the naming, so that
    /// no caller splits names by hand. `None` when the name is not of this table.
    pub fn values_of<'a>(&self, name: &'a str) -> Option<Vec<(&str, Option<&'a str>)>> {
        crate::naming::split_name(&self.partition_columns, name)
    }

    /// When the commit of `version` was made, if this detection read it and its
    /// writer recorded a time (`commitInfo.inCommitTimestamp` or `.timestamp`).
    pub fn committed_at(&self, version: TableVersion) -> Option<chrono::DateTime<chrono::Utc>> {
        self.commit_times
            .get(&version.get())
            .and_then(|&ms| chrono::DateTime::from_timestamp_millis(ms))
    }

    /// The change of one partition.
    pub fn partition(&self, name: &str) -> Option<&PartitionChange> {
        self.partitions
            .binary_search_by(|p| p.partition.as_str().cmp(name))
            .ok()
            .map(|i| &self.partitions[i])
    }
}

/// A detection; build it with [`detect_changes`] and await it.
///
/// ```no_run
/// # async fn example() -> latefill_detector::Result<()> {
/// use latefill_detector::detect_changes;
///
/// let table = url::Url::parse("file:///data/devices/").unwrap();
/// let first = detect_changes(&table).await?;
/// // Later: only commits after the first detection are read.
/// let next = detect_changes(&table)
///     .with_cursor(first.cursor().cloned())
///     .await?;
/// for p in &next.partitions {
///     println!("{} last changed at {}", p.partition, p.last_change_version);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a DetectChanges does nothing until it is awaited"]
pub struct DetectChanges {
    table: Url,
    storage: StorageOptions,
    cursor: Option<Cursor>,
    since: Option<u64>,
    partition_column: Option<String>,
    latest: Option<u64>,
}

/// Starts building a detection over the table at `table`.
pub fn detect_changes(table: &Url) -> DetectChanges {
    DetectChanges {
        table: table.clone(),
        storage: StorageOptions::new(),
        cursor: None,
        since: None,
        partition_column: None,
        latest: None,
    }
}

impl DetectChanges {
    /// Opens the table with these options over the environment's
    /// ([`latefill_core::storage`]).
    pub fn with_storage_options(mut self, options: StorageOptions) -> Self {
        self.storage = options;
        self
    }

    /// Continues from an earlier detection: reads only commits after its version.
    /// A cursor of another table is ignored.
    pub fn with_cursor(mut self, cursor: Option<Cursor>) -> Self {
        self.cursor = cursor.filter(|c| c.table == self.table);
        self
    }

    /// Reports only changes in commits after `version`.
    pub fn with_since_version(mut self, version: Option<TableVersion>) -> Self {
        self.since = version.map(TableVersion::get);
        self
    }

    /// The table's log was listed at `version` moments ago (say, by a load of the
    /// table): a detection from a cursor reads the commits up to it without asking
    /// the store whether more exist, and leaves any later ones to the next detection.
    pub fn with_latest_known(mut self, version: Option<TableVersion>) -> Self {
        self.latest = version.map(TableVersion::get);
        self
    }

    /// Fails unless the table is partitioned by `column`.
    pub fn with_partition_column(mut self, column: impl Into<String>) -> Self {
        self.partition_column = Some(column.into());
        self
    }

    async fn execute(self) -> Result<Changes> {
        let reader = LogReader::open(&self.table, &self.storage)?;
        let changes = match (&self.cursor, self.since) {
            (Some(cursor), None) => match incremental(&reader, cursor, self.latest).await? {
                Incremental::Done(changes) => *changes,
                // The cursor's own commit is gone: log cleanup removed it, or the table
                // was re-created with a shorter log. Resume from the oldest checkpoint,
                // with what the cursor knew, unless the table turns out to be another.
                Incremental::LogCleaned => {
                    let listing = reader.list().await?;
                    let latest = listing.latest().expect("a listing holds a version");
                    if latest < cursor.version {
                        let reason = format!(
                            "the log ends at version {latest}, before the cursor's version {}",
                            cursor.version
                        );
                        replaced(&reader, &listing, cursor, reason).await?
                    } else {
                        let changes = full(&reader, &listing, None, Some(cursor)).await?;
                        match other_table(cursor, changes.table_id()) {
                            Some(reason) => replaced(&reader, &listing, cursor, reason).await?,
                            None => changes,
                        }
                    }
                }
                // Partition naming changed: the cursor's names are stale.
                Incremental::NamingChanged => {
                    full(&reader, &reader.list().await?, None, None).await?
                }
                Incremental::Replaced(reason) => {
                    replaced(&reader, &reader.list().await?, cursor, reason).await?
                }
            },
            _ => full(&reader, &reader.list().await?, self.since, None).await?,
        };
        tracing::info!(
            table = %self.table,
            version = %changes.table_version,
            mode = changes.scan.mode,
            commits = changes.scan.commits_read,
            checkpoint = ?changes.scan.checkpoint_read,
            exact = changes.exact,
            "read the log"
        );
        if let Some(reason) = changes.replaced.as_ref().map(|r| &r.reason) {
            tracing::warn!(table = %self.table, %reason, "the table was replaced");
        }
        if let Some(column) = &self.partition_column
            && !changes.partition_columns.contains(column)
        {
            return Err(Error::NotPartitionedBy {
                table: self.table.clone(),
                column: column.clone(),
                actual: changes.partition_columns.clone(),
            });
        }
        Ok(changes)
    }
}

impl IntoFuture for DetectChanges {
    type Output = Result<Changes>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.execute())
    }
}

/// Accumulates last change versions over commits in version order.
struct Fold {
    table: Url,
    naming: Option<PartitionNaming>,
    /// Raw partition values of the live files this fold has seen added, by path.
    paths: HashMap<String, PartitionValues>,
    /// Last change per partition, keyed by raw values so that the final naming
    /// (the latest metadata's) applies to every version.
    changes: HashMap<RawKey, u64>,
    /// Commits whose removes lack partition values and whose adds are unknown.
    unresolved: Vec<(u64, String)>,
    version: Option<u64>,
    commits_read: usize,
    /// The latest `metaData.id` seen.
    table_id: Option<String>,
    /// The digest of the last commit applied.
    last_digest: Option<String>,
    /// Each commit's recorded time, where it has one.
    times: BTreeMap<u64, i64>,
}

/// Partition values as a sortable key, before naming.
pub(crate) type RawKey = Vec<(String, Option<String>)>;

pub(crate) fn raw_key(values: &PartitionValues) -> RawKey {
    let mut key: Vec<_> = values.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    key.sort();
    key
}

impl Fold {
    fn new(table: &Url, naming: Option<PartitionNaming>, table_id: Option<String>) -> Self {
        Fold {
            table: table.clone(),
            naming,
            paths: HashMap::new(),
            changes: HashMap::new(),
            unresolved: Vec::new(),
            version: None,
            commits_read: 0,
            table_id,
            last_digest: None,
            times: BTreeMap::new(),
        }
    }

    fn apply(&mut self, version: u64, commit: Commit) {
        self.commits_read += 1;
        self.version = Some(version);
        if let Some(time) = commit.timestamp {
            self.times.insert(version, time);
        }
        if !commit.digest.is_empty() {
            self.last_digest = Some(commit.digest);
        }
        if let Some(metadata) = &commit.metadata {
            self.naming = Some(PartitionNaming::from_metadata(metadata));
            if metadata.id.is_some() {
                self.table_id.clone_from(&metadata.id);
            }
        }
        for file in commit.files {
            let values = match (&file.partition_values, file.is_add) {
                (Some(v), _) => Some(v.clone()),
                (None, false) => self.paths.get(&file.path).cloned(),
                (None, true) => Some(PartitionValues::new()),
            };
            if file.is_add {
                if let Some(v) = &values {
                    self.paths.insert(file.path.clone(), v.clone());
                }
            } else {
                self.paths.remove(&file.path);
            }
            if !file.data_change {
                continue;
            }
            match values {
                Some(v) => {
                    self.changes.insert(raw_key(&v), version);
                }
                None => self.unresolved.push((version, file.path)),
            }
        }
    }

    fn naming(&self, version: u64) -> Result<PartitionNaming> {
        self.naming.clone().ok_or_else(|| Error::NoMetadata {
            table: self.table.clone(),
            version,
        })
    }

    /// Named last changes; later versions win where names collide.
    fn named(&self, naming: &PartitionNaming) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (key, &version) in &self.changes {
            let values: PartitionValues = key.iter().cloned().collect();
            if let Some(name) = naming.name(&values) {
                let entry = out.entry(name).or_insert(version);
                *entry = (*entry).max(version);
            }
        }
        out
    }
}

/// Resolves removes without partition values from the table's snapshot just before
/// them; an old writer's habit, so rare, and costly only then.
async fn resolve_removes(reader: &LogReader, fold: &mut Fold) -> Result<()> {
    let unresolved = std::mem::take(&mut fold.unresolved);
    for (version, path) in unresolved {
        let delta = |source| Error::Delta {
            table: fold.table.clone(),
            source,
        };
        let table = latefill_core::storage::table_builder(&fold.table, reader.storage_options())
            .map_err(delta)?
            .with_version(version.saturating_sub(1))
            .load()
            .await
            .map_err(delta)?;
        let files: Vec<_> = latefill_core::storage::active_files(&table)
            .await
            .map_err(delta)?;
        let wanted = percent_decode(&path);
        let found = files
            .iter()
            .find(|f| f.path() == wanted.as_str())
            .map(|f| f.partition_values_map());
        match found {
            Some(values) => {
                fold.changes
                    .entry(raw_key(&values))
                    .and_modify(|v| *v = (*v).max(version))
                    .or_insert(version);
            }
            None => {
                return Err(Error::UnresolvedRemove {
                    table: fold.table.clone(),
                    version,
                    path,
                });
            }
        }
    }
    Ok(())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if bytes[i] == b'%'
            && let Some(b) = hex
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

enum Incremental {
    Done(Box<Changes>),
    LogCleaned,
    NamingChanged,
    Replaced(String),
}

/// Why a detection at `table_id` must not continue from `cursor`, if it must not.
fn other_table(cursor: &Cursor, table_id: Option<&str>) -> Option<String> {
    match (cursor.table_id.as_deref(), table_id) {
        (Some(old), Some(new)) if old != new => {
            Some(format!("the table id changed from {old} to {new}"))
        }
        _ => None,
    }
}

/// Reads the commits after the cursor, and (at the same time) the digest of the
/// cursor's own commit, to check that the table is still the one the cursor read.
async fn incremental(
    reader: &LogReader,
    cursor: &Cursor,
    latest: Option<u64>,
) -> Result<Incremental> {
    let (seen, commits) = futures::try_join!(
        reader.commit_digest(cursor.version),
        reader.read_commits_after(cursor.version, latest)
    )?;
    // Log cleanup removes the oldest commits only: while the cursor's commit exists,
    // every later one does too.
    let Some(seen) = seen else {
        return Ok(Incremental::LogCleaned);
    };
    if cursor.commit_digest.as_ref().is_some_and(|d| *d != seen) {
        return Ok(Incremental::Replaced(format!(
            "commit {} is not the commit the cursor read: the table was re-created",
            cursor.version
        )));
    }
    let mut fold = Fold::new(
        reader.table(),
        Some(cursor.naming.clone()),
        cursor.table_id.clone(),
    );
    for (version, commit) in commits {
        fold.apply(version, commit);
    }
    if let Some(reason) = other_table(cursor, fold.table_id.as_deref()) {
        return Ok(Incremental::Replaced(reason));
    }
    resolve_removes(reader, &mut fold).await?;
    let naming = fold.naming(cursor.version)?;
    if naming != cursor.naming {
        return Ok(Incremental::NamingChanged);
    }
    let mut partitions = cursor.partitions.clone();
    for (name, version) in fold.named(&naming) {
        partitions.insert(name, (version, true));
    }
    let position = Position {
        version: fold.version.unwrap_or(cursor.version),
        naming,
        table_id: fold.table_id.clone(),
        commit_digest: fold.last_digest.clone().or(Some(seen)),
    };
    let stats = ScanStats {
        mode: "cursor",
        commits_read: fold.commits_read,
        checkpoint_read: None,
    };
    let mut changes = finish(reader, position, partitions, None, stats, None);
    changes.commit_times = fold.times;
    Ok(Incremental::Done(Box::new(changes)))
}

/// A detection of a replaced table: its whole log, read as a new table's, with the
/// replacement recorded.
async fn replaced(
    reader: &LogReader,
    listing: &Listing,
    cursor: &Cursor,
    reason: String,
) -> Result<Changes> {
    let mut changes = full(reader, listing, None, None).await?;
    changes.replaced = Some(Replacement {
        previous_table_id: cursor.table_id.clone(),
        table_id: changes.table_id().map(str::to_owned),
        reason,
    });
    Ok(changes)
}

/// Reads the log from `since + 1` (or from the start), falling back to the oldest
/// usable checkpoint and a conservative answer where commits were cleaned up.
/// `resume` is a cursor whose next commits were cleaned up: its knowledge is kept.
async fn full(
    reader: &LogReader,
    listing: &Listing,
    since: Option<u64>,
    resume: Option<&Cursor>,
) -> Result<Changes> {
    let latest = listing.latest().expect("a listing holds a version");
    let start = since.or(resume.map(|c| c.version)).map_or(0, |s| s + 1);
    if since.is_some_and(|s| s > latest) {
        return Err(Error::VersionNotFound {
            table: reader.table().clone(),
            requested: since.unwrap_or_default(),
            latest,
        });
    }
    // The run of contiguous commits that ends at the latest version.
    let first = listing.contiguous_from();
    if let Some(&older) = listing.commits.range(..first).next_back()
        && start <= older
    {
        // Log cleanup removes the oldest commits only: a hole above an older commit
        // is damage, not cleanup.
        return Err(Error::MissingCommit {
            table: reader.table().clone(),
            version: older + 1,
            later: first,
        });
    }

    let mut stats = ScanStats {
        mode: if since.is_some() { "since" } else { "full" },
        ..ScanStats::default()
    };
    let mut base: Option<MetadataAction> = None;
    let mut checkpoint_partitions: Option<BTreeSet<RawKey>> = None;
    let mut seed_paths = HashMap::new();
    let read_from;
    if start >= first {
        // Every commit needed exists: an exact answer.
        read_from = start;
        if start > 0 {
            base = Some(metadata_before(reader, listing, start, &mut stats).await?);
        }
    } else {
        // Commits start..first-1 are gone. The oldest checkpoint at or after first-1
        // says which partitions existed; commits after it are exact.
        let Some((&cp, parts)) = listing.checkpoints.range(first - 1..).next() else {
            return Err(Error::MissingCommit {
                table: reader.table().clone(),
                version: first - 1,
                later: first,
            });
        };
        let checkpoint = reader.read_checkpoint(cp, parts).await?;
        stats.checkpoint_read = Some(cp.into());
        base = checkpoint.metadata;
        checkpoint_partitions = Some(checkpoint.files.iter().map(|(_, v)| raw_key(v)).collect());
        seed_paths = checkpoint.files.into_iter().collect();
        read_from = first;
    }

    let commits = reader.read_commits(read_from..=latest).await?;
    let mut fold = Fold::new(
        reader.table(),
        base.as_ref().map(PartitionNaming::from_metadata),
        base.and_then(|m| m.id),
    );
    fold.paths = seed_paths;
    for (version, commit) in commits {
        fold.apply(version, commit);
    }
    resolve_removes(reader, &mut fold).await?;
    stats.commits_read += fold.commits_read;
    let naming = fold.naming(latest)?;

    let mut partitions: BTreeMap<String, (u64, bool)> = fold
        .named(&naming)
        .into_iter()
        .map(|(n, v)| (n, (v, true)))
        .collect();
    let mut reason = None;
    if let (None, Some(cursor)) = (&checkpoint_partitions, resume) {
        // Nothing was lost after all: what the cursor knew still holds.
        for (name, &change) in &cursor.partitions {
            partitions.entry(name.clone()).or_insert(change);
        }
    }
    if let Some(existing) = checkpoint_partitions {
        let unknown_until = first - 1;
        for key in existing {
            let values: PartitionValues = key.into_iter().collect();
            if let Some(name) = naming.name(&values) {
                partitions.entry(name).or_insert((unknown_until, false));
            }
        }
        // Partitions a cursor knew that have no live file now lost them in the gap.
        if let Some(cursor) = resume {
            for name in cursor.partitions.keys() {
                partitions
                    .entry(name.clone())
                    .or_insert((unknown_until, false));
            }
        }
        reason = Some(format!(
            "commits {start}..={unknown_until} were removed by log cleanup (the oldest commit \
             kept is {first}); partitions that may have changed only in them are reported \
             at version {unknown_until} with exact=false, and a partition whose files were \
             all removed in them cannot be seen"
        ));
    }
    let position = Position {
        version: latest,
        naming,
        table_id: fold.table_id.clone(),
        commit_digest: fold.last_digest.clone(),
    };
    let mut changes = finish(reader, position, partitions, reason, stats, since);
    changes.commit_times = fold.times;
    if since.is_some() {
        // A detection of recent changes only does not know every partition.
        changes.cursor = None;
    }
    Ok(changes)
}

/// The metadata to start a replay from `start` with: the newest checkpoint before
/// `start` plus metadata in the commits between, or else any later checkpoint (whose
/// metadata is the latest as of it; the replay applies any newer one).
async fn metadata_before(
    reader: &LogReader,
    listing: &Listing,
    start: u64,
    stats: &mut ScanStats,
) -> Result<MetadataAction> {
    let mut metadata: Option<MetadataAction> = None;
    let mut from = 0;
    let checkpoint = listing
        .checkpoints
        .range(..start)
        .next_back()
        .or_else(|| listing.checkpoints.range(start..).next());
    if let Some((&cp, parts)) = checkpoint {
        metadata = reader.read_checkpoint(cp, parts).await?.metadata;
        stats.checkpoint_read = Some(cp.into());
        from = cp + 1;
    }
    if from < start {
        for (_, commit) in reader.read_commits(from..start).await? {
            stats.commits_read += 1;
            if commit.metadata.is_some() {
                metadata = commit.metadata;
            }
        }
    }
    metadata.ok_or_else(|| Error::NoMetadata {
        table: reader.table().clone(),
        version: start.saturating_sub(1),
    })
}

/// Where a detection ended: what its cursor records besides the partitions.
struct Position {
    version: u64,
    naming: PartitionNaming,
    table_id: Option<String>,
    commit_digest: Option<String>,
}

fn finish(
    reader: &LogReader,
    position: Position,
    partitions: BTreeMap<String, (u64, bool)>,
    inexact_reason: Option<String>,
    scan: ScanStats,
    since: Option<u64>,
) -> Changes {
    let listed = partitions
        .iter()
        .filter(|(_, (v, _))| since.is_none_or(|s| *v > s))
        .map(|(name, &(v, exact))| PartitionChange {
            partition: SourcePartition::new(name.clone()),
            last_change_version: v.into(),
            exact,
        })
        .collect();
    Changes {
        table_version: position.version.into(),
        partition_columns: position.naming.column_names(),
        partitions: listed,
        exact: inexact_reason.is_none(),
        inexact_reason,
        scan,
        replaced: None,
        commit_times: BTreeMap::new(),
        cursor: Some(Cursor {
            table: reader.table().clone(),
            version: position.version,
            naming: position.naming,
            partitions,
            table_id: position.table_id,
            commit_digest: position.commit_digest,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_matches_delta_paths() {
        assert_eq!(percent_decode("x=A%252FA/p.parquet"), "x=A%2FA/p.parquet");
        assert_eq!(percent_decode("x=B%20B/p"), "x=B B/p");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
