//! Raft-layer tests: in-process `RawNode`s over `RaftStore`s in temp dirs,
//! joined by a deterministic router (one FIFO queue; messages to or from an
//! isolated or stopped node are dropped, and the sender is told, as a real
//! transport would). No network, no clock: time is `tick()`.
//!
//! The router is deterministic; raft-rs's own election jitter is not (it
//! draws the randomized election timeout from `thread_rng`, which cannot be
//! seeded), so the tests elect their first leader with `campaign()` and
//! otherwise wait for a condition within a bound of ticks, never for an
//! exact tick count. A timeout panics with the cluster's state.
//!
//! `Node::handle_ready` is the Ready loop a driver must follow.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use raft::prelude::*;
use raft::{GetEntriesContext, SnapshotStatus, StateRole, Storage};

use super::raft_store::tests::record_starts;
use super::raft_store::{raft_logger, RaftStore};

const VOTERS: [u64; 3] = [1, 2, 3];
const MAX_TICKS: u64 = 500;

fn config(id: u64, pre_vote: bool, applied: u64) -> Config {
    Config {
        id,
        election_tick: 10,
        heartbeat_tick: 1,
        pre_vote,
        check_quorum: true,
        applied,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        ..Default::default()
    }
}

/// One node: its `RawNode` and the test's state machine (the proposals it
/// applied, in order), whose image is the JSON of that list.
struct Node {
    raw: RawNode<RaftStore>,
    applied: Vec<String>,
    applied_index: u64,
}

impl Node {
    fn start(id: u64, dir: &Path, pre_vote: bool) -> Node {
        let store = RaftStore::open(dir).unwrap();
        store.initialize_voters(&VOTERS).unwrap();
        let (applied, applied_index) = match store.snapshot_data() {
            Some((meta, data)) => (serde_json::from_slice(&data).unwrap(), meta.index),
            None => (Vec::new(), 0),
        };
        let cfg = config(id, pre_vote, applied_index);
        let raw = RawNode::new(&cfg, store, &raft_logger()).unwrap();
        Node {
            raw,
            applied,
            applied_index,
        }
    }

    fn store(&self) -> &RaftStore {
        self.raw.store()
    }

    fn apply(&mut self, committed: Vec<Entry>) {
        for entry in committed {
            if entry.index <= self.applied_index {
                continue;
            }
            self.applied_index = entry.index;
            // Empty entries are the ones new leaders append; this test does
            // no conf changes (a driver would `apply_conf_change` and then
            // `store.set_conf_state`).
            if entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
                self.applied
                    .push(String::from_utf8(entry.data.to_vec()).unwrap());
            }
        }
    }

    /// The state machine's image at `applied_index`, into a snapshot.
    fn snapshot(&self) {
        let conf_state = self.raw.raft.prs().conf().to_conf_state();
        let data = serde_json::to_vec(&self.applied).unwrap();
        self.store()
            .create_snapshot(self.applied_index, conf_state, data)
            .unwrap();
    }

    /// The Ready loop, in the order raft-rs 0.7 requires.
    fn handle_ready(&mut self, out: &mut Vec<Message>) {
        if !self.raw.has_ready() {
            return;
        }
        let mut rd = self.raw.ready();
        // 1. A leader's messages may go before its own entries are persisted
        //    (Raft thesis 10.2.1); `messages` is empty on followers.
        out.extend(rd.take_messages());
        // 2. A snapshot from the leader: persist it, then load the state
        //    machine from its image.
        if !rd.snapshot().is_empty() {
            let snapshot = rd.snapshot().clone();
            self.store().apply_snapshot(snapshot.clone()).unwrap();
            self.applied = serde_json::from_slice(&snapshot.data).unwrap();
            self.applied_index = snapshot.get_metadata().index;
        }
        // 3. Committed entries of a Ready are already persisted: apply them.
        self.apply(rd.take_committed_entries());
        // 4. Persist new entries (fdatasync), then the hard state.
        self.store().append(rd.entries()).unwrap();
        if let Some(hs) = rd.hs() {
            self.store().set_hard_state(hs).unwrap();
        }
        // 5. Only now the messages that promise persistence (votes, append
        //    responses).
        out.extend(rd.take_persisted_messages());
        // 6. Advance; the LightReady has a commit index, more messages and
        //    more committed entries.
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.store().set_commit(commit).unwrap();
        }
        out.extend(light.take_messages());
        self.apply(light.take_committed_entries());
        self.raw.advance_apply();
    }
}

/// The in-process cluster of nodes 1..=3 (slot `id - 1`).
struct Cluster {
    _tmp: tempfile::TempDir,
    dirs: Vec<PathBuf>,
    nodes: Vec<Option<Node>>,
    pre_vote: Vec<bool>,
    queue: VecDeque<Message>,
    isolated: HashSet<u64>,
    ticks: u64,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster::with_pre_vote([true; 3])
    }

    fn with_pre_vote(pre_vote: [bool; 3]) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = VOTERS
            .iter()
            .map(|id| RaftStore::dir_in(&tmp.path().join(format!("node{id}"))))
            .collect();
        let mut cluster = Cluster {
            _tmp: tmp,
            dirs,
            nodes: VOTERS.iter().map(|_| None).collect(),
            pre_vote: pre_vote.to_vec(),
            queue: VecDeque::new(),
            isolated: HashSet::new(),
            ticks: 0,
        };
        for id in VOTERS {
            cluster.start(id);
        }
        cluster
    }

    fn start(&mut self, id: u64) {
        let slot = (id - 1) as usize;
        assert!(self.nodes[slot].is_none());
        self.nodes[slot] = Some(Node::start(id, &self.dirs[slot], self.pre_vote[slot]));
    }

    /// Drops the node (and its store) as a crash would: what it has not
    /// written is gone.
    fn stop(&mut self, id: u64) {
        self.nodes[(id - 1) as usize] = None;
    }

    fn node(&self, id: u64) -> &Node {
        self.nodes[(id - 1) as usize].as_ref().unwrap()
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes[(id - 1) as usize].as_mut().unwrap()
    }

    fn log_file(&self, id: u64) -> PathBuf {
        self.dirs[(id - 1) as usize].join("log")
    }

    fn reachable(&self, id: u64) -> bool {
        self.nodes[(id - 1) as usize].is_some() && !self.isolated.contains(&id)
    }

    /// Handles every Ready and delivers every message until nothing moves.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut out = Vec::new();
            for node in self.nodes.iter_mut().flatten() {
                node.handle_ready(&mut out);
            }
            self.queue.extend(out);
            if self.queue.is_empty() {
                return;
            }
            while let Some(m) = self.queue.pop_front() {
                self.deliver(m);
            }
        }
        panic!("cluster does not settle: {}", self.describe());
    }

    fn deliver(&mut self, m: Message) {
        let (from, to) = (m.from, m.to);
        let snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
        let delivered = self.reachable(from) && self.reachable(to);
        if delivered {
            // Errors here are raft refusing a message (e.g. a stale
            // response), not failures of the test.
            let _ = self.node_mut(to).raw.step(m);
        }
        // Tell the sender what a transport would.
        if let Some(sender) = self.nodes[(from - 1) as usize].as_mut() {
            if !delivered {
                sender.raw.report_unreachable(to);
            }
            if snapshot {
                let status = if delivered {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                sender.raw.report_snapshot(to, status);
            }
        }
    }

    fn tick(&mut self) {
        for node in self.nodes.iter_mut().flatten() {
            node.raw.tick();
        }
        self.ticks += 1;
        self.settle();
    }

    fn ticks(&mut self, n: u64) {
        for _ in 0..n {
            self.tick();
        }
    }

    /// Ticks until `done` holds, at most `MAX_TICKS`.
    fn run_until(&mut self, what: &str, done: impl Fn(&Cluster) -> bool) {
        self.settle();
        for _ in 0..MAX_TICKS {
            if done(self) {
                return;
            }
            self.tick();
        }
        panic!("{what}: not reached: {}", self.describe());
    }

    /// The leader the reachable nodes follow: a reachable leader of the
    /// highest term.
    fn leader(&self) -> Option<u64> {
        VOTERS
            .iter()
            .copied()
            .filter(|&id| self.reachable(id))
            .filter(|&id| self.node(id).raw.raft.state == StateRole::Leader)
            .max_by_key(|&id| self.node(id).raw.raft.term)
    }

    fn campaign(&mut self, id: u64) {
        self.node_mut(id).raw.campaign().unwrap();
        self.settle();
        assert_eq!(self.leader(), Some(id), "{}", self.describe());
    }

    fn propose(&mut self, text: &str) {
        let leader = self.leader().expect("a leader");
        let node = self.node_mut(leader);
        node.raw.propose(vec![], text.as_bytes().to_vec()).unwrap();
        self.settle();
    }

    fn applied(&self, id: u64) -> &Vec<String> {
        &self.node(id).applied
    }

    fn term(&self, id: u64) -> u64 {
        self.node(id).raw.raft.term
    }

    /// Waits until every running node has applied exactly `expected`.
    fn await_applied(&mut self, expected: &[String]) {
        self.run_until("all nodes apply the proposals", |c| {
            c.nodes.iter().flatten().all(|n| n.applied == expected)
        });
    }

    fn describe(&self) -> String {
        let mut s = format!("after {} ticks;", self.ticks);
        for (slot, node) in self.nodes.iter().enumerate() {
            let id = slot + 1;
            match node {
                None => s += &format!(" node {id}: stopped;"),
                Some(n) => {
                    let r = &n.raw.raft;
                    s += &format!(
                        " node {id}: {:?} term {} commit {} last {} applied {} ({} items){};",
                        r.state,
                        r.term,
                        r.raft_log.committed,
                        r.raft_log.last_index(),
                        n.applied_index,
                        n.applied.len(),
                        if self.isolated.contains(&(id as u64)) {
                            " isolated"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        s
    }
}

fn proposals(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

/// A cluster with node 1 elected and `n` proposals applied everywhere.
fn cluster_with(n: usize) -> (Cluster, Vec<String>) {
    let mut c = Cluster::new();
    c.campaign(1);
    let expected = proposals("p", 0..n);
    for p in &expected {
        c.propose(p);
    }
    c.await_applied(&expected);
    (c, expected)
}

/// Restarts node 3 over a log damaged by `damage` and checks it recovers a
/// shorter log and catches up with the cluster.
fn rejoin_after_damage(damage: impl FnOnce(&Path)) {
    let (mut c, mut expected) = cluster_with(10);
    let last_before = c.node(3).store().last_index().unwrap();
    c.stop(3);
    let log = c.log_file(3);
    damage(&log);
    let damaged_len = fs::metadata(&log).unwrap().len();
    // The cluster goes on without node 3.
    for p in proposals("q", 0..10) {
        c.propose(&p);
        expected.push(p);
    }

    c.start(3);
    assert!(
        fs::metadata(&log).unwrap().len() < damaged_len,
        "the damaged tail is cut off"
    );
    assert!(c.node(3).store().last_index().unwrap() <= last_before);
    c.await_applied(&expected);
    c.propose("after");
    expected.push("after".into());
    c.await_applied(&expected);
}

#[test]
fn restart_with_a_torn_log_tail_rejoins() {
    rejoin_after_damage(|log| {
        let len = fs::metadata(log).unwrap().len();
        let file = OpenOptions::new().write(true).open(log).unwrap();
        file.set_len(len - 3).unwrap();
    });
}

/// The last record's CRC fails (its bytes reached the disk only in part).
/// Damage with synced records after it is refused by `RaftStore::open`: a
/// node that forgot entries it acknowledged trips raft-rs (`commit_to` out
/// of range) when the leader's heartbeat carries its old match index.
#[test]
fn restart_with_a_corrupt_last_record_rejoins() {
    rejoin_after_damage(|log| {
        let last = *record_starts(log).last().unwrap();
        let mut bytes = fs::read(log).unwrap();
        bytes[last + 9] ^= 0x5a; // a payload byte, after the 9-byte header
        fs::write(log, &bytes).unwrap();
    });
}

#[test]
fn lagging_voter_catches_up_by_snapshot() {
    let (mut c, mut expected) = cluster_with(3);
    c.isolated.insert(3);
    for p in proposals("s", 0..200) {
        c.propose(&p);
        expected.push(p);
    }
    c.run_until("nodes 1 and 2 apply", |c| {
        c.applied(1) == &expected && c.applied(2) == &expected
    });
    c.node(1).snapshot();
    let leader_first = c.node(1).store().first_index().unwrap();
    assert!(leader_first > c.node(3).store().last_index().unwrap() + 1);
    assert_eq!(c.node(3).store().snapshot_data(), None);

    c.isolated.clear();
    c.await_applied(&expected);
    let (meta, _) = c
        .node(3)
        .store()
        .snapshot_data()
        .expect("node 3 took a snapshot");
    assert!(meta.index > 0);
    assert_eq!(meta.get_conf_state().voters, VOTERS.to_vec());

    // It follows the log after the snapshot, and keeps all of it on restart.
    c.propose("after");
    expected.push("after".into());
    c.await_applied(&expected);
    c.stop(3);
    c.start(3);
    c.settle();
    assert_eq!(c.applied(3), &expected);
}

/// Isolates node 3 for `ticks`, with proposals committed meanwhile, then
/// heals and checks that nothing committed is lost. Returns the cluster,
/// the leader and its term before the heal, and node 3's term then.
fn isolate_and_heal(pre_vote_3: bool) -> (Cluster, u64, u64, u64) {
    let mut c = Cluster::with_pre_vote([true, true, pre_vote_3]);
    c.campaign(1);
    let mut expected = proposals("a", 0..5);
    for p in &expected {
        c.propose(p);
    }
    c.await_applied(&expected);

    c.isolated.insert(3);
    c.ticks(100);
    for p in proposals("b", 0..5) {
        c.propose(&p);
        expected.push(p);
    }
    c.run_until("nodes 1 and 2 apply", |c| {
        c.applied(1) == &expected && c.applied(2) == &expected
    });
    let (leader_term, term_3) = (c.term(1), c.term(3));
    assert_eq!(c.leader(), Some(1), "{}", c.describe());

    c.isolated.clear();
    c.await_applied(&expected);
    c.ticks(30);
    c.propose("healed");
    expected.push("healed".into());
    c.await_applied(&expected);
    (c, 1, leader_term, term_3)
}

#[test]
fn returning_voter_with_higher_term_loses_nothing() {
    let (c, _, leader_term, term_3) = isolate_and_heal(false);
    // Without pre-vote, node 3 campaigned alone and raised its term...
    assert!(term_3 > leader_term, "{}", c.describe());
    // ...which forced a new election on its return; the committed entries
    // survived it (checked by isolate_and_heal).
    let leader = c.leader().unwrap();
    assert!(c.term(leader) > term_3, "{}", c.describe());
}

#[test]
fn returning_voter_with_pre_vote_does_not_disrupt() {
    let (c, old_leader, leader_term, term_3) = isolate_and_heal(true);
    assert_eq!(term_3, leader_term, "pre-vote kept node 3's term");
    assert_eq!(c.leader(), Some(old_leader), "{}", c.describe());
    assert_eq!(c.term(old_leader), leader_term, "{}", c.describe());
}

#[test]
fn full_restart_recovers_everything() {
    let (mut c, mut expected) = cluster_with(30);
    c.node(1).snapshot();
    c.node(2).snapshot();
    for p in proposals("r", 0..20) {
        c.propose(&p);
        expected.push(p);
    }
    c.await_applied(&expected);
    let before: Vec<(HardState, u64)> = VOTERS
        .iter()
        .map(|&id| {
            let store = c.node(id).store();
            (store.hard_state(), store.last_index().unwrap())
        })
        .collect();

    for id in VOTERS {
        c.stop(id);
    }
    for id in VOTERS {
        c.start(id);
    }
    for (slot, id) in VOTERS.iter().enumerate() {
        let store = c.node(*id).store();
        assert_eq!(store.hard_state(), before[slot].0, "node {id}");
        assert_eq!(store.last_index().unwrap(), before[slot].1, "node {id}");
    }
    assert!(c.node(1).store().snapshot_data().is_some());
    // Each node rebuilds its state machine from its snapshot and log alone.
    c.settle();
    for id in VOTERS {
        assert_eq!(c.applied(id), &expected, "node {id}");
    }

    c.run_until("a leader is elected", |c| c.leader().is_some());
    c.propose("after restart");
    expected.push("after restart".into());
    c.await_applied(&expected);
}

#[test]
fn entries_and_hard_state_survive_reopen() {
    let (mut c, _) = cluster_with(5);
    let store = c.node(2).store();
    let (hs, last) = (store.hard_state(), store.last_index().unwrap());
    let entries = store
        .entries(1, last + 1, None, GetEntriesContext::empty(false))
        .unwrap();
    assert!(hs.term > 0 && hs.vote == 1);
    c.stop(2);
    let store = RaftStore::open(&c.dirs[1]).unwrap();
    let state = store.initial_state().unwrap();
    assert_eq!(
        (state.hard_state.term, state.hard_state.vote),
        (hs.term, hs.vote)
    );
    assert_eq!(
        store
            .entries(1, last + 1, None, GetEntriesContext::empty(false))
            .unwrap(),
        entries
    );
}
