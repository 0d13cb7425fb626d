//! A session's commits to one target, made one at a time: what lets a run commit
//! straight after them, and read the target as the session last wrote it.

use std::collections::BTreeMap;

/// How many of this process's commits to a target [`Chain`] remembers.
pub(crate) const CHAIN_MEMORY: usize = 1024;

/// At most how many of this process's own commits a run may read the target without
/// ([`may_read`](crate::replace::may_read)). It bounds the commits that delta-rs's commit loop replays when it
/// starts from the version the run read. The table kept is brought up to date at
/// checkpoints, every 10 commits for a target latefill created; twice that leaves
/// room for a checkpoint written in the background (see [`commit`](crate::replace::commit)) to land first.
pub(crate) const UNREAD_OWN_COMMITS: u64 = 20;

/// This process's commits to one target, made one at a time.
#[derive(Debug, Default)]
pub(crate) struct Chain {
    /// The Delta metadata id of the table the commits went to. A table deleted and
    /// created again at the same location has another: its chain starts afresh.
    table: Option<String>,
    /// The version of this process's last commit to the target.
    pub(crate) head: Option<u64>,
    /// The size in bytes of that commit's file, when known: how a run that reads the
    /// target as this process last loaded it tells that the commit is still there.
    pub(crate) head_size: Option<u64>,
    /// The partitions each of its recent commits replaced, by version: one, or
    /// several for a commit that carried the runs which finished together (see
    /// [`commit`](crate::replace::commit)).
    ours: BTreeMap<u64, Vec<String>>,
    /// The newest version another writer took when this process tried to commit there:
    /// this process's view of the target is behind it until a run reads it.
    taken: Option<u64>,
}

impl Chain {
    /// The version after `head` when every commit after `read` (the version a run
    /// read) is this process's own, each for a partition other than `partition`:
    /// then the run's removes are still exact and its commit conflicts with none of
    /// them. `None` when the chain knows no head yet, the run read a newer version
    /// than the head (another writer's commits), or one of the commits between is not
    /// this process's or replaced `partition`.
    pub(crate) fn next_after(&self, read: u64, partition: &str) -> Option<u64> {
        let head = self.head.filter(|&head| head >= read)?;
        (read + 1..=head)
            .all(|v| {
                self.ours
                    .get(&v)
                    .is_some_and(|replaced| replaced.iter().all(|p| p != partition))
            })
            .then_some(head + 1)
    }

    /// The version a run that read `read` commits at straight away: the one after this
    /// process's own commits ([`Chain::next_after`]), or `read + 1` when the process
    /// knows of no commit after `read` (it has made none since, and found no version
    /// after it taken). That commit is put-if-absent: when another writer took the
    /// version meanwhile, it fails, and the commit goes through the conflict check.
    pub(crate) fn commit_at(&self, read: u64, partition: &str) -> Option<u64> {
        let none_since = self.head.is_none_or(|head| head < read)
            && self.taken.is_none_or(|taken| taken <= read);
        self.next_after(read, partition)
            .or(none_since.then_some(read + 1))
    }

    /// Whether a run of `partition` may read the target at `read` as it is: the
    /// commits after it are this process's own, for other partitions (see
    /// [`Chain::next_after`]), there are at most [`UNREAD_OWN_COMMITS`], and no
    /// version after `read` was found taken by another writer.
    pub(crate) fn may_read(&self, read: u64, partition: &str) -> bool {
        self.taken.is_none_or(|taken| taken <= read)
            && self
                .head
                .is_some_and(|head| head <= read + UNREAD_OWN_COMMITS)
            && self.next_after(read, partition).is_some()
    }

    /// Another writer took `version`, which this process tried to commit at.
    pub(crate) fn found_taken(&mut self, version: u64) {
        self.taken = Some(self.taken.map_or(version, |t| t.max(version)));
    }

    /// Starts the chain afresh unless its commits went to the table with id `table`.
    pub(crate) fn of_table(&mut self, table: &str) {
        if self.table.as_deref() != Some(table) {
            *self = Chain {
                table: Some(table.to_owned()),
                ..Chain::default()
            };
        }
    }

    /// This process committed `partitions` at `version`, a commit file of `size`
    /// bytes when known.
    pub(crate) fn committed(&mut self, version: u64, partitions: &[&str], size: Option<u64>) {
        if self.head.is_none_or(|head| version >= head) {
            self.head = Some(version);
            self.head_size = size;
        }
        self.ours
            .insert(version, partitions.iter().map(|&p| p.to_owned()).collect());
        while self.ours.len() > CHAIN_MEMORY {
            self.ours.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    fn chain(commits: &[(u64, &str)]) -> Chain {
        let mut chain = Chain::default();
        for (version, partition) in commits {
            chain.committed(*version, &[partition], None);
        }
        chain
    }

    #[test]
    fn a_run_commits_next_after_its_own_process_commits_of_other_partitions() {
        let chain = chain(&[(4, "d=1"), (5, "d=2"), (6, "d=3")]);
        assert_eq!(chain.next_after(6, "d=4"), Some(7));
        assert_eq!(chain.next_after(4, "d=4"), Some(7));
    }

    #[test]
    fn a_commit_that_carried_several_runs_counts_for_each_partition() {
        let mut chain = chain(&[(4, "d=1")]);
        chain.committed(5, &["d=2", "d=3"], None);
        assert_eq!(chain.next_after(4, "d=4"), Some(6));
        assert_eq!(chain.next_after(4, "d=2"), None);
        assert_eq!(chain.next_after(4, "d=3"), None);
        assert_eq!(chain.next_after(5, "d=3"), Some(6));
    }

    #[test]
    fn a_commit_of_its_own_partition_since_the_run_read_goes_through_the_check() {
        let chain = chain(&[(4, "d=1"), (5, "d=2")]);
        assert_eq!(chain.next_after(4, "d=2"), None);
        // Before the run read: not a change it missed.
        assert_eq!(chain.next_after(5, "d=2"), Some(6));
    }

    #[test]
    fn another_writers_commit_since_the_run_read_goes_through_the_check() {
        // Version 5 is not this process's.
        let chain = chain(&[(4, "d=1"), (6, "d=2")]);
        assert_eq!(chain.next_after(4, "d=3"), None);
        assert_eq!(chain.next_after(5, "d=3"), Some(7));
        // A run that read a version newer than this process's last commit.
        assert_eq!(chain.next_after(7, "d=3"), None);
        // Nothing committed yet by this process.
        assert_eq!(Chain::default().next_after(0, "d=1"), None);
    }

    #[test]
    fn a_run_after_no_commit_it_knows_of_commits_at_the_next_version() {
        // A process that has committed nothing, or nothing since the run read.
        assert_eq!(Chain::default().commit_at(0, "d=1"), Some(1));
        let chain = chain(&[(4, "d=1")]);
        assert_eq!(chain.commit_at(7, "d=3"), Some(8));
        // Its own commits since: after them, as `next_after` says.
        assert_eq!(chain.commit_at(3, "d=3"), Some(5));
        // Its own commit of the run's partition since: through the check.
        assert_eq!(chain.commit_at(3, "d=1"), None);
        // Another writer took a version after the one the run read.
        let mut chain = Chain::default();
        chain.found_taken(5);
        assert_eq!(chain.commit_at(4, "d=1"), None);
        assert_eq!(chain.commit_at(5, "d=1"), Some(6));
    }

    #[test]
    fn a_run_reads_a_version_a_few_own_commits_of_other_partitions_old() {
        let commits: Vec<(u64, String)> = (1..=super::UNREAD_OWN_COMMITS + 1)
            .map(|v| (v, format!("d={v}")))
            .collect();
        let commits: Vec<(u64, &str)> = commits.iter().map(|(v, p)| (*v, p.as_str())).collect();
        let chain = chain(&commits);
        let head = super::UNREAD_OWN_COMMITS + 1;
        assert!(chain.may_read(head, "d=new"));
        assert!(chain.may_read(1, "d=new"));
        // Too many commits unread: brought up to date.
        assert!(!chain.may_read(0, "d=new"));
        // A commit of the run's own partition unread.
        assert!(!chain.may_read(1, "d=3"));
        // Another writer's commit, or none by this process.
        assert!(!chain.may_read(head + 1, "d=new"));
        assert!(!Chain::default().may_read(0, "d=new"));
    }

    #[test]
    fn a_version_found_taken_by_another_writer_must_be_read() {
        let mut chain = chain(&[(4, "d=1"), (5, "d=2")]);
        assert!(chain.may_read(4, "d=3"));
        chain.found_taken(6);
        assert!(!chain.may_read(4, "d=3"));
        assert!(!chain.may_read(5, "d=3"));
        // The commit after it, made by delta-rs's commit loop, read it.
        chain.committed(7, &["d=3"], None);
        assert!(chain.may_read(7, "d=1"));
        assert!(!chain.may_read(5, "d=1"));
    }

    #[test]
    fn the_chain_of_another_table_at_the_location_starts_afresh() {
        let mut chain = chain(&[(4, "d=1"), (5, "d=2")]);
        chain.of_table("a");
        assert_eq!(
            chain.head, None,
            "the commits of an unknown table are forgotten"
        );
        chain.committed(6, &["d=1"], Some(100));
        chain.of_table("a");
        assert_eq!((chain.head, chain.head_size), (Some(6), Some(100)));
        chain.of_table("b");
        assert_eq!(chain.next_after(6, "d=2"), None);
        assert!(!chain.may_read(6, "d=2"));
    }

    #[test]
    fn the_chain_forgets_its_oldest_commits() {
        let mut chain = Chain::default();
        for v in 0..(super::CHAIN_MEMORY as u64 + 10) {
            chain.committed(v, &["d"], None);
        }
        assert_eq!(chain.ours.len(), super::CHAIN_MEMORY);
        // A run that read a version whose successors are forgotten is checked.
        assert_eq!(chain.next_after(0, "e"), None);
        assert_eq!(
            chain.next_after(20, "e"),
            Some(super::CHAIN_MEMORY as u64 + 10)
        );
    }
}
