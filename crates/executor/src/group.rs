//! Runs that finish together commit together: the target commit of a process carries
//! every run that finished while its previous commit was being made.
//!
//! A process makes its commits to a target one at a time ([`Chain`]). Where a commit
//! waits on the store (10 to 50 ms on S3), runs side by side finish faster than their
//! commits can be made one by one: at `--concurrency 8`, 64 commits in a row were half
//! a backfill's time. So a run queues its change ([`Change`]) before it waits for the
//! chain, and the run that gets the chain takes every change queued and commits them
//! as one ([`commit_group`]): one version, every run's files, txn and commit info.
//!
//! The others find, when they get the chain in turn, that their change has landed
//! ([`Reply::Committed`]), or that they are to commit it alone ([`Reply::Alone`]).
//! Where nothing the runs read has changed since (every commit after it is this
//! process's own, for other partitions), the group is put straight at the next
//! version. Where another writer came in between (another worker of a fleet on the
//! same target), the group goes through delta-rs's commit loop, as of the oldest
//! version one of them read: every commit since is checked for conflicts with each of
//! them, and a version another writer took is backed off from ([`Contended`]). Only when
//! that check finds a conflict do the runs commit one by one, each through its own
//! check: the run whose partition changed under it is run again.
//!
//! Fewer, fuller commits matter more than a commit as soon as possible: the run that
//! gets the chain waits for the runs of this process still writing their files, up to
//! the last commit's time ([`Commits::linger`]). Where another writer commits to the
//! target too, each commit costs it a read of that commit (its conflict check, or its
//! next load): 16 workers on one target made 0.23 to 0.32 target commits a partition
//! instead of 0.43. Alone on the target, the runs a batch starts together finish
//! within a few milliseconds of each other: one commit carries them all, not the first
//! to finish alone and then the others (at `--concurrency 8` on S3 at 20 ms a request,
//! 11 target commits for 64 partitions instead of 18).
//!
//! The group's commit is made by a task of its own: a run whose caller stops polling
//! it (a stopped backfill, a dropped future) does not leave the changes of the others
//! half-committed.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deltalake::kernel::transaction::{
    CommitBuilder, CommitProperties, FinalizedCommit, TableReference, TransactionError,
};
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::logstore::CommitOrBytes;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::state::DeltaTableState;
use deltalake::{DeltaTable, DeltaTableError};
use tokio::sync::{OwnedMutexGuard, oneshot};

use crate::chain::Chain;
use crate::contended::Contended;

/// At most how many runs one commit carries.
pub(crate) const MAX_GROUP: usize = 64;

/// One run's change to a target, ready to commit: the files it wrote and those of its
/// partition it replaces, as of the version it read.
pub(crate) struct Change {
    /// The partition it replaces.
    pub(crate) partition: String,
    /// The target as the run read it.
    pub(crate) target: DeltaTable,
    /// The data files the run wrote.
    pub(crate) adds: Vec<Add>,
    /// The partition's files in the version read, removed.
    pub(crate) removes: Vec<Action>,
    /// The source version the partition now reflects.
    pub(crate) txn: Transaction,
    /// latefill's entry in the commit info (pipeline, partition, source version,
    /// transform): what `state rebuild` reads back.
    pub(crate) info: serde_json::Value,
    /// The rows the run wrote.
    pub(crate) rows: u64,
    /// The replace-where predicate, as SQL.
    pub(crate) predicate: String,
    /// The target's partition columns.
    pub(crate) partition_by: Vec<String>,
}

impl Change {
    /// The version of the target the run read.
    pub(crate) fn read(&self) -> u64 {
        self.target.version().unwrap_or(0)
    }

    /// The Delta metadata id of the table the run read.
    fn table_id(&self) -> Option<String> {
        let state = self.target.snapshot().ok()?;
        Some(state.metadata().id().to_owned())
    }
}

/// The commit of `changes` (at least one), to be built as of a version of the
/// target: the builder (actions and properties) and the operation. One change makes
/// the commit a run makes alone: a replace-where write whose commit info holds
/// latefill's entry. Several make one whose predicate is the disjunction of theirs,
/// whose commit info holds a list of their entries, whose metrics add theirs up and
/// which carries every txn.
pub(crate) fn builder(changes: &[&Change]) -> (CommitBuilder, DeltaOperation) {
    let (mut added_files, mut added_rows, mut removed_files) = (0, 0, 0);
    let mut actions = Vec::new();
    for change in changes {
        added_files += change.adds.len();
        added_rows += change.rows;
        removed_files += change.removes.len();
        actions.extend(change.adds.iter().cloned().map(Action::Add));
        actions.extend(change.removes.iter().cloned());
    }
    let metrics = serde_json::json!({
        "num_added_files": added_files,
        "num_added_rows": added_rows,
        "num_removed_files": removed_files,
    });
    let (info, predicate) = match changes {
        [one] => (one.info.clone(), one.predicate.clone()),
        many => (
            serde_json::Value::Array(many.iter().map(|c| c.info.clone()).collect()),
            many.iter()
                .map(|c| format!("({})", c.predicate))
                .collect::<Vec<_>>()
                .join(" OR "),
        ),
    };
    let properties = CommitProperties::default()
        .with_cleanup_expired_logs(Some(false))
        // Checkpoints come after the chain is free, not in delta-rs's post-commit step.
        .with_create_checkpoint(false)
        .with_application_transactions(changes.iter().map(|c| c.txn.clone()).collect())
        .with_metadata([
            (crate::run::COMMIT_INFO_KEY.to_owned(), info),
            ("operationMetrics".to_owned(), metrics),
        ]);
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: Some(changes[0].partition_by.clone()),
        predicate: Some(predicate),
    };
    (
        CommitBuilder::from(properties).with_actions(actions),
        operation,
    )
}

/// The commit of `changes` ([`builder`]) made as of `target`'s state, ready to put.
pub(crate) struct Prepared {
    entry: CommitOrBytes,
    /// The commit file's size when it is bytes: the same whichever version they land
    /// at, what [`may_read`](crate::replace::may_read) tells this process's last
    /// commit by.
    pub(crate) size: Option<u64>,
    partitions: Vec<String>,
}

/// Prepares the commit of `changes` as of `target`'s state ([`builder`]).
pub(crate) async fn prepare(
    changes: &[&Change],
    target: &DeltaTable,
) -> Result<Prepared, DeltaTableError> {
    let state = target.snapshot()?;
    let (builder, operation) = builder(changes);
    let prepared = builder
        .build(
            Some(state as &dyn TableReference),
            target.log_store(),
            operation,
        )
        .into_prepared_commit_future()
        .await?;
    let entry = prepared.commit_or_bytes().clone();
    let size = match &entry {
        CommitOrBytes::LogBytes(bytes) => Some(bytes.len() as u64),
        CommitOrBytes::TmpCommit(_) => None,
    };
    Ok(Prepared {
        entry,
        size,
        partitions: changes.iter().map(|c| c.partition.clone()).collect(),
    })
}

/// Commits `changes` through delta-rs's commit loop as of `state`: a version each of
/// them read, or one older. The commits since are checked for conflicts with them,
/// and a put another writer won is backed off from ([`Contended`]). Returns the commit
/// and the size of its file as it landed.
pub(crate) async fn commit_checked(
    changes: &[&Change],
    state: &DeltaTableState,
) -> Result<(FinalizedCommit, Option<u64>), DeltaTableError> {
    let (builder, operation) = builder(changes);
    let log_store = Contended::wrap(changes[0].target.log_store());
    let finalized = builder
        .build(
            Some(state as &dyn TableReference),
            log_store.clone(),
            operation,
        )
        .await?;
    Ok((finalized, log_store.landed_size()))
}

/// What [`put_at`] did.
pub(crate) enum Put {
    /// The commit landed.
    Landed,
    /// Another writer had taken the version (the chain now knows).
    Taken,
}

/// Puts `prepared` at `version` of `target`, put-if-absent, holding the chain: the
/// commit a run makes alone or one carrying several, straight after this process's
/// last. A commit that lands is the chain's next; a version another writer took is
/// noted in it.
pub(crate) async fn put_at(
    chain: &mut Chain,
    version: u64,
    prepared: &Prepared,
    target: &DeltaTable,
) -> Result<Put, DeltaTableError> {
    match target
        .log_store()
        .write_commit_entry(version, prepared.entry.clone(), uuid::Uuid::new_v4())
        .await
    {
        Ok(()) => {
            let partitions: Vec<&str> = prepared.partitions.iter().map(String::as_str).collect();
            chain.committed(version, &partitions, prepared.size);
            Ok(Put::Landed)
        }
        Err(TransactionError::VersionAlreadyExists(_)) => {
            chain.found_taken(version);
            Ok(Put::Taken)
        }
        Err(e) => Err(e.into()),
    }
}

/// What the run that committed a change says to the run that made it.
pub(crate) enum Reply {
    /// The change landed at this version.
    Committed(u64),
    /// The change is to be committed alone, by the run that made it.
    Alone(Box<Change>),
}

/// A change waiting for the chain.
struct Queued {
    id: u64,
    change: Box<Change>,
    reply: oneshot::Sender<Reply>,
}

/// A process's commits to one target: the chain, and the changes waiting for it.
#[derive(Default)]
pub(crate) struct Commits {
    pub(crate) chain: Arc<tokio::sync::Mutex<Chain>>,
    queue: Mutex<Vec<Queued>>,
    next_id: AtomicU64,
    /// Runs writing their files to the target, to queue their change next
    /// ([`Commits::writing`]), queued ones included.
    writing: AtomicUsize,
    /// Told when a change is queued or a writing run ends.
    moved: tokio::sync::Notify,
    /// How long the run that gets the chain waits for the runs still writing before
    /// it takes the queue: the last commit's time; before the first, [`FIRST_LINGER`]
    /// on an object store ([`Commits::for_target`]), or nothing.
    linger: Mutex<Option<Duration>>,
    /// The looks at the process's last commit under way ([`Commits::look`]), by
    /// version and size.
    looks: Mutex<HashMap<(u64, u64), (u64, Look)>>,
    /// Held by a test to keep the runs that queued a change from the chain until
    /// all of them have.
    #[cfg(test)]
    pub(crate) gate: tokio::sync::RwLock<()>,
}

/// A look at a commit file, which the runs that ask for it meanwhile share.
pub(crate) type Look = futures::future::Shared<futures::future::BoxFuture<'static, bool>>;

/// A change queued ([`Commits::queue`]), to be committed by whichever run gets the
/// chain first.
pub(crate) struct Ticket {
    id: u64,
    pub(crate) replied: oneshot::Receiver<Reply>,
}

impl Commits {
    /// The commits of a process to the target at `url`.
    pub(crate) fn for_target(url: &url::Url) -> Self {
        let first = (url.scheme() != "file").then_some(FIRST_LINGER);
        Commits {
            linger: Mutex::new(first),
            ..Commits::default()
        }
    }

    /// Whether the process's last commit, at `version` and of `size` bytes, is still
    /// the target's commit file there, as `ask` finds out. The look starts at once, in
    /// a task of its own: a run reads and writes its partition meanwhile, and awaits
    /// the answer before it commits (see [`may_read`](crate::replace::may_read)). The
    /// runs that ask the same while a look is under way share its answer, so that the
    /// runs a batch starts together make one request, not one each. A look asked after
    /// the last one ended asks the store again; another version is another look.
    pub(crate) fn look(
        self: &Arc<Self>,
        version: u64,
        size: u64,
        ask: impl FnOnce() -> futures::future::BoxFuture<'static, bool>,
    ) -> Look {
        use futures::FutureExt;
        let mut looks = self.looks.lock().expect("not poisoned");
        if let Some((_, look)) = looks.get(&(version, size)) {
            return look.clone();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let commits = Arc::downgrade(self);
        let asked = ask();
        let task = tokio::spawn(async move {
            let answer = asked.await;
            if let Some(commits) = commits.upgrade() {
                let mut looks = commits.looks.lock().expect("not poisoned");
                if looks.get(&(version, size)).is_some_and(|(of, _)| *of == id) {
                    looks.remove(&(version, size));
                }
            }
            answer
        });
        // A task that panicked or was cancelled said nothing: not ours.
        let look = async move { task.await.unwrap_or(false) }.boxed().shared();
        looks.insert((version, size), (id, look.clone()));
        look
    }

    /// Queues `change`: the next run to get the chain commits it.
    pub(crate) fn queue(&self, change: Change) -> Ticket {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, replied) = oneshot::channel();
        self.queue.lock().expect("not poisoned").push(Queued {
            id,
            change: Box::new(change),
            reply,
        });
        self.moved.notify_waiters();
        Ticket { id, replied }
    }

    /// Takes the changes queued, once the chain is held: only `ticket`'s, to be
    /// committed by its run alone, or a group.
    fn take(&self, ticket: &Ticket) -> Taken {
        let mut queued = std::mem::take(&mut *self.queue.lock().expect("not poisoned"));
        match queued.as_slice() {
            [only] if only.id == ticket.id => Taken::Alone(queued.pop().expect("one").change),
            _ => Taken::Group(queued),
        }
    }

    /// How many changes are waiting.
    fn waiting(&self) -> usize {
        self.queue.lock().expect("not poisoned").len()
    }

    /// A run starts writing its files, to queue its change next: while it is, the run
    /// that gets the chain may wait for it ([`Commits::linger`]).
    pub(crate) fn writing(self: &Arc<Self>) -> Writing {
        self.writing.fetch_add(1, Ordering::SeqCst);
        Writing(self.clone())
    }

    /// Sets how long the run that gets the chain waits for the runs still writing: the
    /// time the last commit took, put straight at the next version or through the
    /// conflict check; `None` before the first.
    pub(crate) fn set_linger(&self, linger: Option<Duration>) {
        *self.linger.lock().expect("not poisoned") = linger.map(|l| l.min(MAX_LINGER));
    }

    /// Waits, up to the linger, until no run is writing that has not queued its change.
    async fn linger(&self) {
        let Some(linger) = *self.linger.lock().expect("not poisoned") else {
            return;
        };
        let deadline = tokio::time::Instant::now() + linger;
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if self.writing.load(Ordering::SeqCst) <= self.waiting() {
                return;
            }
            if tokio::time::timeout_at(deadline, moved).await.is_err() {
                return;
            }
        }
    }
}

/// The longest a run holding the chain lingers for others.
const MAX_LINGER: Duration = Duration::from_millis(500);

/// How long the run that gets the chain first lingers on an object store, where no
/// commit has told yet what one takes: about a commit's time on S3. The runs a batch
/// starts together finish within a few milliseconds of each other; without it the
/// first to finish committed alone, and the others in a commit after it (at
/// `--concurrency 8` on S3 at 20 ms a request, a round trip more for the first batch).
const FIRST_LINGER: Duration = Duration::from_millis(50);

/// A run writing its files ([`Commits::writing`]), until dropped.
pub(crate) struct Writing(Arc<Commits>);

impl Drop for Writing {
    fn drop(&mut self) {
        self.0.writing.fetch_sub(1, Ordering::SeqCst);
        self.0.moved.notify_waiters();
    }
}

enum Taken {
    Alone(Box<Change>),
    Group(Vec<Queued>),
}

/// Where [`commit_group`] writes: the target, and what its checkpoint needs.
#[derive(Clone)]
pub(crate) struct Place {
    pub(crate) session: crate::session::Session,
    pub(crate) url: url::Url,
    pub(crate) options: latefill_core::storage::StorageOptions,
    pub(crate) checkpoint_in_background: bool,
}

/// What a run that queued a change does once it holds the chain: commit its change
/// alone, or wait for the group that carries it.
pub(crate) enum Turn {
    /// Commit this change alone, holding the chain.
    Alone(Box<Change>, OwnedMutexGuard<Chain>),
    /// The change landed at this version.
    Committed(u64),
    /// The task committing the change's group ended without saying how it went.
    Lost,
}

/// Takes the turn of the run holding `ticket`, once it holds the chain (`chain`):
/// its change has been committed, is to be committed alone, or it commits every change
/// queued as one group ([`commit_group`]).
pub(crate) async fn turn(
    commits: &Commits,
    mut ticket: Ticket,
    chain: OwnedMutexGuard<Chain>,
    place: Place,
) -> Turn {
    // A change carried by another run's group has its reply by the time the chain is
    // free: the group replies before it lets the chain go.
    match ticket.replied.try_recv() {
        Ok(Reply::Committed(version)) => return Turn::Committed(version),
        Ok(Reply::Alone(change)) => return Turn::Alone(change, chain),
        Err(oneshot::error::TryRecvError::Closed) => return Turn::Lost,
        // Still queued.
        Err(oneshot::error::TryRecvError::Empty) => {}
    }
    commits.linger().await;
    let queued = match commits.take(&ticket) {
        Taken::Alone(change) => return Turn::Alone(change, chain),
        Taken::Group(queued) => queued,
    };
    tokio::spawn(commit_group(chain, queued, ticket.id, place));
    match ticket.replied.await {
        Ok(Reply::Committed(version)) => Turn::Committed(version),
        Ok(Reply::Alone(change)) => {
            // Committed alone, as the others are: the chain is taken again.
            let chain = commits.chain.clone().lock_owned().await;
            Turn::Alone(change, chain)
        }
        // The group's task ends by replying to every change, unless it panicked.
        Err(_) => Turn::Lost,
    }
}

/// Commits `queued` (changes of several runs, `leader`'s among them) as one commit,
/// holding the chain: those of one table, each of another partition. Where each of
/// them can go straight after this process's last commit (nothing they read has
/// changed since), the commit is put there; otherwise, or when another writer took
/// that version, it goes through delta-rs's commit loop as of the oldest version one
/// of them read, which checks every commit since for conflicts with each of them.
/// Every run whose change is not carried, or all of them when the commit fails, is
/// told to commit alone before the chain is let go. The leader's reply comes last,
/// after the checkpoint the commit may be due.
async fn commit_group(
    mut chain: OwnedMutexGuard<Chain>,
    queued: Vec<Queued>,
    leader: u64,
    place: Place,
) {
    let mut members: Vec<Queued> = Vec::new();
    let mut alone: Vec<Queued> = Vec::new();
    let mut table = None;
    let mut partitions = BTreeSet::new();
    // The leader's change first: it decides the table.
    let mut queued = queued;
    queued.sort_by_key(|q| q.id != leader);
    for q in queued {
        let id = q.change.table_id();
        if table.is_none() {
            chain.of_table(id.as_deref().unwrap_or_default());
            table = Some(id.clone());
        }
        let fits = table.as_ref() == Some(&id)
            && members.len() < MAX_GROUP
            && !partitions.contains(&q.change.partition);
        if fits {
            partitions.insert(q.change.partition.clone());
            members.push(q);
        } else {
            alone.push(q);
        }
    }
    // Every reply but the leader's goes at once; the leader's is kept for the end.
    let mut leader_reply = None;
    let mut reply = |q: Queued, committed: Option<u64>| {
        let r = match committed {
            Some(version) => Reply::Committed(version),
            None => Reply::Alone(q.change),
        };
        if q.id == leader {
            leader_reply = Some((q.reply, r));
        } else {
            let _ = q.reply.send(r);
        }
    };
    for q in alone {
        reply(q, None);
    }
    let changes: Vec<&Change> = members.iter().map(|q| &*q.change).collect();
    let landed = match changes.as_slice() {
        [] => Ok(None),
        _ => commit_together(&mut chain, &changes, &place)
            .await
            .map(Some),
    };
    match landed {
        Ok(Some((version, table))) => {
            tracing::debug!(table = %place.url, version, runs = members.len(), "target: one commit for the runs that finished together");
            for q in members {
                reply(q, Some(version));
            }
            drop(chain);
            crate::replace::checkpoint(
                &place.session,
                &place.url,
                &place.options,
                &table,
                version,
                place.checkpoint_in_background,
            )
            .await;
        }
        Ok(None) => {}
        Err(error) => {
            tracing::debug!(table = %place.url, %error, "target: the runs that finished together commit one by one");
            for q in members {
                reply(q, None);
            }
        }
    }
    if let Some((sender, r)) = leader_reply {
        let _ = sender.send(r);
    }
}

/// Commits `changes` (of one table, each of another partition) as one commit; returns
/// its version and the table as of it (or as of a version before, which the
/// checkpoint is decided by). See [`commit_group`].
async fn commit_together(
    chain: &mut Chain,
    changes: &[&Change],
    place: &Place,
) -> Result<(u64, DeltaTable), DeltaTableError> {
    let newest = changes.iter().max_by_key(|c| c.read()).expect("a change");
    let oldest = changes.iter().min_by_key(|c| c.read()).expect("a change");
    let mut at = changes
        .iter()
        .map(|c| chain.commit_at(c.read(), &c.partition));
    let first = at.next().flatten();
    if let Some(version) = first
        && at.all(|a| a == Some(version))
    {
        // As of the newest version one of them read: the others read older versions
        // of the same table, with nothing of theirs changed since.
        let prepared = prepare(changes, &newest.target).await?;
        let started = std::time::Instant::now();
        if let Put::Landed = put_at(chain, version, &prepared, &newest.target).await? {
            place
                .session
                .commits(&place.url)
                .set_linger(Some(started.elapsed()));
            return Ok((version, newest.target.clone()));
        }
        tracing::debug!(table = %place.url, version, "target: another writer took the version; the runs that finished together commit through the conflict check");
    }
    let started = std::time::Instant::now();
    let (finalized, size) = commit_checked(changes, oldest.target.snapshot()?).await?;
    place
        .session
        .commits(&place.url)
        .set_linger(Some(started.elapsed()));
    let partitions: Vec<&str> = changes.iter().map(|c| c.partition.as_str()).collect();
    chain.committed(finalized.version, &partitions, size);
    let mut table = oldest.target.clone();
    table.state = Some(finalized.snapshot);
    place
        .session
        .tables()
        .remember(&place.url, &place.options, &table);
    Ok((finalized.version, table))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use latefill_core::{PartitionDate, TableVersion};
    use latefill_testkit::*;

    use crate::{Session, run_partition};

    /// The workspace's pipeline, as this crate's type (the test kit's is the
    /// crate's as its dependents see it).
    fn pipeline_of(ws: &Workspace) -> crate::Pipeline {
        crate::Pipeline::from_file(&ws.config).unwrap()
    }

    fn date(s: &str) -> PartitionDate {
        PartitionDate::parse(s).unwrap()
    }

    /// A look starts when it is asked, not when it is awaited; the runs that look at
    /// the same commit while a look is under way share it; a look asked after it
    /// ended, or at another commit, asks the store itself.
    #[tokio::test]
    async fn looks_at_one_commit_asked_together_ask_once() {
        use futures::FutureExt;
        let commits = Arc::new(super::Commits::default());
        let asked = Arc::new(AtomicUsize::new(0));
        let (open, gate) = tokio::sync::watch::channel(false);
        let ask = |answer: bool| {
            let (asked, mut gate) = (asked.clone(), gate.clone());
            move || {
                async move {
                    asked.fetch_add(1, Ordering::SeqCst);
                    let _ = gate.wait_for(|open| *open).await;
                    answer
                }
                .boxed()
            }
        };
        let first = commits.look(7, 100, ask(true));
        let second = commits.look(7, 100, ask(false));
        for _ in 0..100 {
            if asked.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "asked before it is awaited"
        );
        open.send(true).unwrap();
        assert_eq!(
            (first.await, second.await),
            (true, true),
            "the second shares the first"
        );
        assert_eq!(asked.load(Ordering::SeqCst), 1);

        assert!(!commits.look(7, 100, ask(false)).await, "asked afresh");
        assert!(commits.look(8, 100, ask(true)).await);
        assert!(!commits.look(7, 99, ask(false)).await);
        assert_eq!(asked.load(Ordering::SeqCst), 4);
    }

    /// The runs of `days` started side by side in `session`, kept from the chain of
    /// its commits to the target until all of them have queued their change (and
    /// `meanwhile` is done): the first to get it finds every change queued. Returns
    /// their reports, in order.
    async fn finish_together(
        ws: &Workspace,
        session: &Session,
        days: &[&str],
        meanwhile: impl std::future::Future<Output = ()>,
    ) -> Vec<crate::Result<crate::RunReport>> {
        let pipeline = pipeline_of(ws);
        let url = pipeline.target.clone();
        let commits = session.commits(&url);
        let held = commits.gate.write().await;
        let runs: Vec<_> = days
            .iter()
            .map(|d| {
                let run = run_partition(&pipeline, date(d)).with_session(session.clone());
                tokio::spawn(async move { run.await })
            })
            .collect();
        for _ in 0..600 {
            if commits.waiting() == days.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(commits.waiting(), days.len(), "every run queued its change");
        meanwhile.await;
        drop(held);
        let mut reports = Vec::new();
        for run in runs {
            reports.push(run.await.unwrap());
        }
        reports
    }

    /// The run that gets the chain waits for the runs still writing their files, up to
    /// the linger (the last commit's time): as long as one writes, and no longer.
    /// Before the first commit, it waits for none on local files, and up to
    /// [`super::FIRST_LINGER`] on an object store. (Time is the runtime's, paused: the
    /// waits are exact.)
    #[tokio::test(start_paused = true)]
    async fn the_run_that_gets_the_chain_lingers_for_those_still_writing_up_to_the_last_commits_time()
     {
        use std::sync::Arc;
        use tokio::time::Instant;

        let linger = |commits: Arc<super::Commits>| async move {
            let started = Instant::now();
            commits.linger().await;
            started.elapsed()
        };

        // No commit yet, on an object store: it waits for the run writing, up to about
        // a commit's time there.
        let url = |u: &str| url::Url::parse(u).unwrap();
        let on_s3 = Arc::new(super::Commits::for_target(&url("s3://bucket/target")));
        let writing = on_s3.writing();
        assert_eq!(linger(on_s3.clone()).await, super::FIRST_LINGER);
        drop(writing);
        assert_eq!(linger(on_s3).await, Duration::ZERO);

        // No commit yet, on local files: no wait, even with a run writing.
        let commits = Arc::new(super::Commits::for_target(&url("file:///tmp/target")));
        let writing = commits.writing();
        assert_eq!(linger(commits.clone()).await, Duration::ZERO);

        // The last commit took 300 ms: it waits until the run writing is done, 40 ms
        // later.
        commits.set_linger(Some(Duration::from_millis(300)));
        let (waited, ()) = tokio::join!(linger(commits.clone()), async {
            tokio::time::sleep(Duration::from_millis(40)).await;
            drop(writing);
        });
        assert_eq!(waited, Duration::from_millis(40));

        // A run that writes for longer than the linger is not waited for past it,
        // nor past half a second however long the last commit took.
        let _writing = commits.writing();
        assert_eq!(linger(commits.clone()).await, Duration::from_millis(300));
        commits.set_linger(Some(Duration::from_secs(5)));
        assert_eq!(linger(commits.clone()).await, super::MAX_LINGER);

        // Nobody writing: no wait.
        drop(_writing);
        assert_eq!(linger(commits.clone()).await, Duration::ZERO);
    }

    /// A workspace whose source has `days` (1,000 rows each, the i-th from seed i),
    /// and the first of them processed in a session: the target exists, and the
    /// session's chain knows its last commit.
    async fn first_processed(days: &[&str]) -> (Workspace, Session, crate::RunReport) {
        let ws = Workspace::new();
        for (i, d) in days.iter().enumerate() {
            ws.generate(d, 1_000, i as u64).await;
        }
        let session = Session::new();
        let first = run_partition(&pipeline_of(&ws), date(days[0]))
            .with_session(session.clone())
            .await
            .unwrap();
        (ws, session, first)
    }

    /// The JSON actions of the target's commit `version`.
    fn commit_actions(ws: &Workspace, version: u64) -> Vec<serde_json::Value> {
        let path = ws
            .target_path()
            .join(format!("_delta_log/{version:020}.json"));
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn txn_version(ws: &Workspace, day: &str) -> Option<i64> {
        let pipeline = pipeline_of(ws);
        let app_id = pipeline.app_id(&pipeline.partitioning.key(date(day)));
        let target = open(&ws.target_path()).await;
        target
            .snapshot()
            .unwrap()
            .transaction_version(target.log_store().as_ref(), &app_id)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_that_finish_together_land_in_one_commit() {
        let days = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"];
        let (ws, session, first) = first_processed(&days).await;
        let pipeline = pipeline_of(&ws);

        let reports = finish_together(&ws, &session, &days[1..], async {}).await;
        let reports: Vec<_> = reports.into_iter().map(Result::unwrap).collect();

        let version = first.target_version.get() + 1;
        for report in &reports {
            assert_eq!(report.target_version, TableVersion::new(version));
        }
        assert_eq!(table_version(&ws.target_path()).await, Some(version));
        for (i, d) in days.iter().enumerate() {
            assert_eq!(
                target_counts(&ws.target_path(), d).await,
                expected_counts(d, &[(1_000, i as u64)]),
                "{d}"
            );
        }
        // One commit: each run's txn, and latefill's entries for all three.
        let actions = commit_actions(&ws, version);
        let txns = actions.iter().filter(|a| a.get("txn").is_some()).count();
        assert_eq!(txns, 3);
        for (report, d) in reports.iter().zip(&days[1..]) {
            assert_eq!(
                txn_version(&ws, d).await,
                Some(report.source_version.get() as i64)
            );
        }
        let info = actions.iter().find_map(|a| a.get("commitInfo")).unwrap();
        let entries = info["latefill"].as_array().expect("a list of entries");
        assert_eq!(entries.len(), 3);
        assert_eq!(info["operationMetrics"]["num_added_files"], 3);

        // What `state rebuild` reads back: every partition with its transform.
        let processed = crate::processed_partitions(&pipeline).await.unwrap();
        assert_eq!(processed.len(), 4);
        for (key, (source_version, transform)) in &processed {
            assert_eq!(*source_version, TableVersion::new(3), "{key}");
            assert_eq!(
                transform.as_deref(),
                Some(first.transform.as_str()),
                "{key}"
            );
        }

        // A rerun of a partition the group replaced reads that commit: it replaces
        // the group's files of its partition, and only those.
        ws.generate(days[2], 500, 9).await;
        let rerun = run_partition(&pipeline, date(days[2]))
            .with_session(session.clone())
            .await
            .unwrap();
        assert_eq!(rerun.target_version, TableVersion::new(version + 1));
        assert_eq!(
            target_counts(&ws.target_path(), days[2]).await,
            expected_counts(days[2], &[(1_000, 2), (500, 9)])
        );
        for (i, d) in days.iter().enumerate().filter(|(i, _)| *i != 2) {
            assert_eq!(
                target_counts(&ws.target_path(), d).await,
                expected_counts(d, &[(1_000, i as u64)]),
                "{d}"
            );
        }
    }

    /// Another writer takes the version the group was to go at: the group then goes
    /// through delta-rs's conflict check, still as one commit (at the version after
    /// the other writer's), and nothing of the other writer's is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_whose_version_was_taken_commits_after_the_conflict_check() {
        let days = ["2024-01-01", "2024-01-02", "2024-01-03"];
        let (ws, session, first) = first_processed(&days).await;
        let pipeline = pipeline_of(&ws);
        // Another process: a session of its own, writing a partition of its own.
        let other = async {
            run_partition(&pipeline, date(days[0]))
                .with_session(Session::new())
                .await
                .unwrap();
        };

        let reports = finish_together(&ws, &session, &days[1..], other).await;
        let reports: Vec<_> = reports.into_iter().map(Result::unwrap).collect();

        let taken = first.target_version.get() + 1;
        for report in &reports {
            assert_eq!(report.target_version, TableVersion::new(taken + 1));
        }
        assert_eq!(table_version(&ws.target_path()).await, Some(taken + 1));
        let txns = commit_actions(&ws, taken + 1)
            .iter()
            .filter(|a| a.get("txn").is_some())
            .count();
        assert_eq!(txns, 2);
        for (i, d) in days.iter().enumerate() {
            assert_eq!(
                target_counts(&ws.target_path(), d).await,
                expected_counts(d, &[(1_000, i as u64)]),
                "{d}"
            );
        }
        for (report, d) in reports.iter().zip(&days[1..]) {
            assert_eq!(
                txn_version(&ws, d).await,
                Some(report.source_version.get() as i64)
            );
        }
    }

    /// Another writer replaces the partition of one of the group's runs meanwhile: the
    /// group's conflict check finds it, and the runs commit one by one. The run whose
    /// partition changed under it conflicts alone too, and is run again on what is
    /// there now; the other lands as it was; nothing of the other writer's is lost
    /// or doubled.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_one_of_whose_partitions_another_writer_replaced_commits_one_by_one() {
        let days = ["2024-01-01", "2024-01-02", "2024-01-03"];
        let (ws, session, first) = first_processed(&days).await;
        let pipeline = pipeline_of(&ws);
        // The group's runs read the source before this: 1,000 rows each.
        let other = async {
            ws.generate(days[1], 500, 9).await;
            run_partition(&pipeline, date(days[1]))
                .with_session(Session::new())
                .await
                .unwrap();
        };

        let reports = finish_together(&ws, &session, &days[1..], other).await;
        let reports: Vec<_> = reports.into_iter().map(Result::unwrap).collect();

        // Day 2 was run again, on the late rows too; day 3 as it was.
        assert_eq!(reports[0].rows_read, 1_500);
        assert_eq!(reports[1].rows_read, 1_000);
        // The other writer's commit, then each run's own.
        let other_version = first.target_version.get() + 1;
        let mut versions: Vec<u64> = reports.iter().map(|r| r.target_version.get()).collect();
        versions.sort();
        assert_eq!(versions, vec![other_version + 1, other_version + 2]);
        assert_eq!(
            target_counts(&ws.target_path(), days[1]).await,
            expected_counts(days[1], &[(1_000, 1), (500, 9)]),
        );
        for (i, d) in days.iter().enumerate().filter(|(i, _)| *i != 1) {
            assert_eq!(
                target_counts(&ws.target_path(), d).await,
                expected_counts(d, &[(1_000, i as u64)]),
                "{d}"
            );
        }
    }
}
