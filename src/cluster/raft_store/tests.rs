//! Unit tests of `RaftStore` on its own: what survives a reopen, and how a
//! damaged log is recovered.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, Storage};

use super::{
    encode_record, write_snapshot_file, RaftStore, KIND_HARD_STATE, LOG_FILE, RECORD_HEADER,
};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("e{index}t{term}").into_bytes().into(),
        ..Default::default()
    }
}

fn entries(store: &RaftStore, low: u64, high: u64) -> Vec<Entry> {
    store
        .entries(low, high, None, GetEntriesContext::empty(false))
        .unwrap()
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

fn new_store(dir: &Path) -> RaftStore {
    let store = RaftStore::open(dir).unwrap();
    store.initialize_voters(&[1, 2, 3]).unwrap();
    store
}

/// A new store with entries 1..=n of term 1, appended in one batch.
fn store_with(dir: &Path, n: u64) -> (RaftStore, Vec<Entry>) {
    let store = new_store(dir);
    let all: Vec<Entry> = (1..=n).map(|i| entry(i, 1)).collect();
    store.append(&all).unwrap();
    (store, all)
}

/// The byte offsets at which each record of the log file `log` starts.
pub(crate) fn record_starts(log: &Path) -> Vec<usize> {
    let bytes = fs::read(log).unwrap();
    let mut starts = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        starts.push(pos);
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += RECORD_HEADER + len;
    }
    starts
}

#[test]
fn appended_entries_and_hard_state_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = RaftStore::dir_in(tmp.path());
    let store = new_store(&dir);
    store
        .append(&[entry(1, 1), entry(2, 1), entry(3, 1)])
        .unwrap();
    store.set_hard_state(&hard_state(2, 3, 2)).unwrap();
    drop(store);

    let store = RaftStore::open(&dir).unwrap();
    assert_eq!(
        entries(&store, 1, 4),
        vec![entry(1, 1), entry(2, 1), entry(3, 1)]
    );
    let state = store.initial_state().unwrap();
    assert_eq!(state.hard_state, hard_state(2, 3, 2));
    assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
    // Already initialized: a second call changes nothing.
    store.initialize_voters(&[7]).unwrap();
    assert_eq!(store.conf_state().voters, vec![1, 2, 3]);
}

#[test]
fn append_truncates_later_entries_durably() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = store_with(tmp.path(), 5);
    store.append(&[entry(3, 2)]).unwrap();
    assert_eq!(store.last_index().unwrap(), 3);
    drop(store);

    let store = RaftStore::open(tmp.path()).unwrap();
    assert_eq!(store.last_index().unwrap(), 3);
    assert_eq!(store.term(3).unwrap(), 2);
    assert_eq!(store.term(2).unwrap(), 1);
    // A gap is refused.
    assert!(store.append(&[entry(9, 2)]).is_err());
}

#[test]
fn torn_tail_is_cut_at_the_last_good_record() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    for i in 1..=5 {
        store.append(&[entry(i, 1)]).unwrap();
    }
    drop(store);
    let log = tmp.path().join(LOG_FILE);
    let len = fs::metadata(&log).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(len - 4)
        .unwrap();

    let store = RaftStore::open(tmp.path()).unwrap();
    assert_eq!(store.last_index().unwrap(), 4);
    let starts = record_starts(&log);
    assert_eq!(starts.len(), 4, "the partial record is truncated away");
    // The store goes on: a new entry 5 survives another reopen.
    store.append(&[entry(5, 2)]).unwrap();
    drop(store);
    let store = RaftStore::open(tmp.path()).unwrap();
    assert_eq!(entries(&store, 4, 6), vec![entry(4, 1), entry(5, 2)]);
}

/// Five single-entry appends, a commit, and the log file's path.
fn five_entries(dir: &Path) -> std::path::PathBuf {
    let store = new_store(dir);
    for i in 1..=5 {
        store.append(&[entry(i, 1)]).unwrap();
    }
    store.set_hard_state(&hard_state(1, 1, 5)).unwrap();
    dir.join(LOG_FILE)
}

fn flip_payload_byte(log: &Path, record: usize) -> usize {
    let start = record_starts(log)[record];
    let mut bytes = fs::read(log).unwrap();
    bytes[start + RECORD_HEADER + 1] ^= 0xff;
    fs::write(log, &bytes).unwrap();
    start
}

#[test]
fn bad_crc_at_the_tail_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let log = five_entries(tmp.path());
    // The last entry record and the (unsynced) commit after it go.
    let fifth = flip_payload_byte(&log, 4);

    let store = RaftStore::open(tmp.path()).unwrap();
    assert_eq!(store.last_index().unwrap(), 4);
    assert_eq!(fs::metadata(&log).unwrap().len(), fifth as u64);
    assert_eq!(store.hard_state(), HardState::default());
}

#[test]
fn bad_crc_before_synced_records_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let log = five_entries(tmp.path());
    let len = fs::metadata(&log).unwrap().len();
    flip_payload_byte(&log, 2);

    let err = RaftStore::open(tmp.path()).err().expect("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(fs::metadata(&log).unwrap().len(), len, "nothing truncated");
}

#[test]
fn commit_beyond_the_log_is_clamped() {
    let tmp = tempfile::tempdir().unwrap();
    drop(store_with(tmp.path(), 2));
    // A commit index beyond the entries the log holds (raft-rs would
    // refuse to start with it).
    let payload = hard_state(1, 1, 5).write_to_bytes().unwrap();
    let mut log = OpenOptions::new()
        .append(true)
        .open(tmp.path().join(LOG_FILE))
        .unwrap();
    log.write_all(&encode_record(KIND_HARD_STATE, &payload))
        .unwrap();
    drop(log);

    let store = RaftStore::open(tmp.path()).unwrap();
    assert_eq!(store.hard_state(), hard_state(1, 1, 2));
}

#[test]
fn create_snapshot_compacts_the_log_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, all) = store_with(tmp.path(), 100);
    store.set_hard_state(&hard_state(1, 1, 100)).unwrap();
    let log = tmp.path().join(LOG_FILE);
    let before = fs::metadata(&log).unwrap().len();
    let cs = ConfState::from((vec![1, 2, 3], vec![]));
    store
        .create_snapshot(60, cs.clone(), b"image@60".to_vec())
        .unwrap();
    assert!(fs::metadata(&log).unwrap().len() < before);
    assert_eq!(store.first_index().unwrap(), 61);
    assert_eq!(store.term(60).unwrap(), 1);
    assert!(store.term(59).is_err());
    drop(store);

    let store = RaftStore::open(tmp.path()).unwrap();
    assert_eq!(store.first_index().unwrap(), 61);
    assert_eq!(store.last_index().unwrap(), 100);
    assert_eq!(entries(&store, 61, 101), all[60..].to_vec());
    let (meta, data) = store.snapshot_data().unwrap();
    assert_eq!((meta.index, meta.term), (60, 1));
    assert_eq!(meta.get_conf_state(), &cs);
    assert_eq!(data, b"image@60");
    let snap = store.snapshot(0, 2).unwrap();
    assert_eq!(snap.get_metadata().index, 60);
    assert_eq!(&snap.data[..], b"image@60");
    assert!(store.snapshot(61, 2).is_err());
    assert_eq!(store.hard_state(), hard_state(1, 1, 100));
}

fn leader_snapshot(index: u64, term: u64) -> Snapshot {
    let mut snap = Snapshot {
        data: b"leader image".to_vec().into(),
        ..Default::default()
    };
    let meta = snap.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
    snap
}

#[test]
fn apply_snapshot_replaces_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = store_with(tmp.path(), 10);
    store.set_hard_state(&hard_state(1, 0, 5)).unwrap();
    store.apply_snapshot(leader_snapshot(20, 3)).unwrap();
    assert_eq!(store.first_index().unwrap(), 21);
    assert_eq!(store.last_index().unwrap(), 20);
    assert_eq!(store.hard_state(), hard_state(3, 0, 20));
    drop(store);

    let store = RaftStore::open(tmp.path()).unwrap();
    assert_eq!(store.first_index().unwrap(), 21);
    assert_eq!(store.last_index().unwrap(), 20);
    assert_eq!(store.term(20).unwrap(), 3);
    assert_eq!(store.hard_state(), hard_state(3, 0, 20));
    assert_eq!(store.snapshot_data().unwrap().1, b"leader image");
    // An older snapshot is refused.
    assert!(store.apply_snapshot(leader_snapshot(15, 3)).is_err());
}

#[test]
fn crash_after_received_snapshot_before_log_rewrite() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = store_with(tmp.path(), 30);
    drop(store);
    // The snapshot file is in place but the old log (entries 1..=30, which
    // the leader's snapshot at 20 replaces) was not rewritten.
    write_snapshot_file(tmp.path(), &leader_snapshot(20, 3), true).unwrap();

    let store = RaftStore::open(tmp.path()).unwrap();
    assert_eq!(store.first_index().unwrap(), 21);
    assert_eq!(store.last_index().unwrap(), 20, "stale entries dropped");
    assert_eq!(store.hard_state().commit, 20);
    assert_eq!(store.hard_state().term, 3);
}
