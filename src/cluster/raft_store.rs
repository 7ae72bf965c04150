//! Durable storage for the cluster metadata log (`__cluster_metadata-0`), the
//! Raft log that raft-rs (`raft` 0.7) replicates between controllers.
//!
//! `RaftStore` owns one directory: an append-only `log` file of checksummed
//! records (appended entries, hard state changes, conf state changes, and a
//! compaction marker at the head of a rewritten log) and a `snapshot` file
//! (the snapshot's metadata and the caller's opaque state machine image).
//! Everything is also kept in memory, so `raft::Storage` is served from memory;
//! metadata is small.
//!
//! It runs on the controller shard, which drives the `RawNode`; the store is
//! single-threaded (`RefCell`, not `Send`). Its I/O is blocking `std::fs`:
//! writes are rare and small, and an fsync on the controller shard is
//! acceptable where a Raft acknowledgement has to wait for it anyway.
//!
//! It must not know what the entries or the snapshot data mean (Kafka
//! records, topic metadata): payloads are opaque bytes. It does not apply
//! committed entries, send messages or decide when to snapshot; the driver
//! does (see `raft_tests.rs` for the Ready loop it expects).
//!
//! Record layout in `log`: `len: u32 LE` (of the payload), `crc32c: u32 LE`
//! (over kind and payload), `kind: u8`, payload. A torn or corrupt tail is
//! cut off at the last good record when the store is opened; damage with
//! synced records after it is corruption of acknowledged data, and opening
//! fails rather than forget what this node promised its peers.

use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// The store's directory under the data dir, like Kafka KRaft's.
pub const DIR_NAME: &str = "__cluster_metadata-0";
const LOG_FILE: &str = "log";
const SNAPSHOT_FILE: &str = "snapshot";
const TMP_SUFFIX: &str = ".tmp";
const SNAPSHOT_MAGIC: &[u8; 8] = b"SLRSNAP1";

const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_CONF_STATE: u8 = 3;
const KIND_COMPACTED: u8 = 4;
const RECORD_HEADER: usize = 9;

/// The durable Raft log and snapshot of the cluster metadata partition.
pub struct RaftStore {
    inner: RefCell<Inner>,
}

struct Inner {
    dir: PathBuf,
    log: File,
    /// Bytes of whole records in `log`; a failed write is cut back to it.
    log_len: u64,
    hard_state: HardState,
    conf_state: ConfState,
    /// The latest snapshot, with its data. Index 0 before the first one.
    snapshot: Snapshot,
    /// The entries after the snapshot: `entries[0].index == snapshot index + 1`.
    entries: Vec<Entry>,
}

impl RaftStore {
    /// Where the store lives under `data_dir`.
    pub fn dir_in(data_dir: &Path) -> PathBuf {
        data_dir.join(DIR_NAME)
    }

    /// Opens (creating if absent) the store in `dir` and recovers its state:
    /// the snapshot, then the log replayed over it. A torn or corrupt tail of
    /// the log is truncated at the last good record, with a warning; a
    /// damaged record followed by synced ones is an `InvalidData` error.
    pub fn open(dir: &Path) -> io::Result<RaftStore> {
        if !dir.exists() {
            fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        for name in [LOG_FILE, SNAPSHOT_FILE] {
            let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
            if tmp.exists() {
                fs::remove_file(tmp)?;
            }
        }
        let (snapshot, received) = match fs::read(dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => decode_snapshot(&bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Snapshot::default(), false),
            Err(e) => return Err(e),
        };
        let new_log = !dir.join(LOG_FILE).exists();
        let mut log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(dir.join(LOG_FILE))?;
        if new_log {
            sync_dir(dir)?;
        }
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes)?;

        let mut inner = Inner {
            dir: dir.to_path_buf(),
            log,
            log_len: 0,
            hard_state: HardState::default(),
            conf_state: snapshot.get_metadata().get_conf_state().clone(),
            snapshot,
            entries: Vec::new(),
        };
        let good = inner.replay(&bytes, received)?;
        if synced_record_follows(&bytes, good) {
            return Err(invalid_data(format!(
                "raft log {} is corrupt at byte {good} with synced records after it; \
                 refusing to drop entries this node may have acknowledged",
                dir.join(LOG_FILE).display()
            )));
        }
        if good < bytes.len() {
            tracing::warn!(
                dir = %dir.display(),
                kept_bytes = good,
                dropped_bytes = bytes.len() - good,
                last_index = inner.last_index(),
                "raft log has a torn or corrupt tail; truncating at the last good record"
            );
            inner.log.set_len(good as u64)?;
            inner.log.sync_all()?;
        }
        inner.log_len = good as u64;
        inner.clamp_hard_state();
        Ok(RaftStore {
            inner: RefCell::new(inner),
        })
    }

    /// Gives a brand-new store its first configuration: `voters`, as a
    /// snapshot at index 0 with no data. Every node of a new cluster calls it
    /// with the same voters. A no-op if the store already has any state.
    pub fn initialize_voters(&self, voters: &[u64]) -> io::Result<()> {
        let mut s = self.inner.borrow_mut();
        if s.has_state() {
            return Ok(());
        }
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().mut_conf_state().voters = voters.to_vec();
        write_snapshot_file(&s.dir, &snapshot, false)?;
        s.conf_state = snapshot.get_metadata().get_conf_state().clone();
        s.snapshot = snapshot;
        Ok(())
    }

    /// Appends `entries` (contiguous, ascending), first dropping any entries
    /// at or after the first one's index, as Raft requires. Durable
    /// (fdatasync) before it returns.
    pub fn append(&self, entries: &[Entry]) -> io::Result<()> {
        let mut s = self.inner.borrow_mut();
        let entries = s.uncovered(entries).map_err(invalid_input)?;
        if entries.is_empty() {
            return Ok(());
        }
        s.write_record(KIND_ENTRIES, &encode_entries(entries)?, true)?;
        s.splice(entries);
        Ok(())
    }

    /// Records the hard state. Durable before it returns when the term or
    /// the vote changed. A change of the commit index alone is written
    /// without fsync: a lost commit index is relearned from the leader (it
    /// only ever moves to entries a quorum holds), so it is not worth a sync.
    pub fn set_hard_state(&self, hs: &HardState) -> io::Result<()> {
        let mut s = self.inner.borrow_mut();
        if *hs == s.hard_state {
            return Ok(());
        }
        let durable = hs.term != s.hard_state.term || hs.vote != s.hard_state.vote;
        let payload = hs.write_to_bytes().map_err(invalid_data)?;
        s.write_record(KIND_HARD_STATE, &payload, durable)?;
        s.hard_state = hs.clone();
        Ok(())
    }

    /// Records a new commit index (`LightReady::commit_index`), not synced
    /// (see `set_hard_state`).
    pub fn set_commit(&self, commit: u64) -> io::Result<()> {
        let mut hs = self.hard_state();
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    /// Records the configuration after an applied conf change. Durable.
    pub fn set_conf_state(&self, cs: ConfState) -> io::Result<()> {
        let mut s = self.inner.borrow_mut();
        let payload = cs.write_to_bytes().map_err(invalid_data)?;
        s.write_record(KIND_CONF_STATE, &payload, true)?;
        s.conf_state = cs;
        Ok(())
    }

    /// Installs a snapshot received from the leader (`Ready::snapshot`): it
    /// replaces the log, the configuration and the state machine image.
    pub fn apply_snapshot(&self, snapshot: Snapshot) -> io::Result<()> {
        let mut s = self.inner.borrow_mut();
        let meta = snapshot.get_metadata();
        if meta.index <= s.snap_index() {
            return Err(invalid_input(format!(
                "raft snapshot at {} is not newer than the stored one at {}",
                meta.index,
                s.snap_index()
            )));
        }
        // `received`: if we crash before the log is rewritten, the old log's
        // entries must not be replayed over this snapshot.
        write_snapshot_file(&s.dir, &snapshot, true)?;
        s.hard_state.term = s.hard_state.term.max(meta.term);
        s.hard_state.commit = s.hard_state.commit.max(meta.index);
        s.conf_state = meta.get_conf_state().clone();
        s.entries.clear();
        s.snapshot = snapshot;
        s.rewrite_log()
    }

    /// Saves the caller's state machine image as of `applied_index` (which
    /// must be committed) and compacts the log: entries up to
    /// `applied_index` are dropped and the log file is rewritten without
    /// them. A no-op if the stored snapshot is already that recent.
    pub fn create_snapshot(
        &self,
        applied_index: u64,
        conf_state: ConfState,
        data: Vec<u8>,
    ) -> io::Result<()> {
        let mut s = self.inner.borrow_mut();
        if applied_index <= s.snap_index() {
            return Ok(());
        }
        if applied_index > s.hard_state.commit || applied_index > s.last_index() {
            return Err(invalid_input(format!(
                "raft snapshot at {applied_index} is beyond commit {} or last index {}",
                s.hard_state.commit,
                s.last_index()
            )));
        }
        let term = s.entry(applied_index).term;
        let mut snapshot = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = applied_index;
        meta.term = term;
        meta.set_conf_state(conf_state);
        write_snapshot_file(&s.dir, &snapshot, false)?;
        let keep_from = (applied_index - s.snap_index()) as usize;
        s.entries.drain(..keep_from);
        s.snapshot = snapshot;
        s.rewrite_log()
    }

    /// The latest snapshot's metadata and state machine image, for the
    /// caller to load its state machine at start. `None` before the first
    /// real snapshot (the one `initialize_voters` writes has no image).
    pub fn snapshot_data(&self) -> Option<(SnapshotMetadata, Vec<u8>)> {
        let s = self.inner.borrow();
        (s.snap_index() > 0).then(|| {
            let snapshot = &s.snapshot;
            (snapshot.get_metadata().clone(), snapshot.data.to_vec())
        })
    }

    /// The hard state as last recorded.
    pub fn hard_state(&self) -> HardState {
        self.inner.borrow().hard_state.clone()
    }

    /// The configuration as last recorded.
    pub fn conf_state(&self) -> ConfState {
        self.inner.borrow().conf_state.clone()
    }
}

impl Inner {
    fn snap_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.snap_index(), |e| e.index)
    }

    /// The entry at `index`, which must be after the snapshot and present.
    fn entry(&self, index: u64) -> &Entry {
        &self.entries[(index - self.snap_index() - 1) as usize]
    }

    fn has_state(&self) -> bool {
        self.snap_index() > 0
            || !self.entries.is_empty()
            || self.hard_state != HardState::default()
            || self.conf_state != ConfState::default()
    }

    /// Raft refuses to start with a commit index outside the log (it can be
    /// beyond a truncated tail) or behind the snapshot.
    fn clamp_hard_state(&mut self) {
        let (low, high) = (self.snap_index(), self.last_index());
        let commit = self.hard_state.commit.clamp(low, high);
        if commit != self.hard_state.commit {
            tracing::warn!(
                recorded = self.hard_state.commit,
                commit,
                "raft commit index outside the recovered log; clamped"
            );
            self.hard_state.commit = commit;
        }
        self.hard_state.term = self.hard_state.term.max(self.snapshot.get_metadata().term);
    }

    /// Applies the records in `bytes` to the state read from the snapshot
    /// and returns the length of the good prefix. A record whose CRC holds
    /// but which does not decode is an error, not a torn write.
    fn replay(&mut self, bytes: &[u8], snapshot_received: bool) -> io::Result<usize> {
        // After a received snapshot, entries of the log as it was before are
        // stale until the compaction marker of the rewritten log.
        let mut stale = snapshot_received;
        let mut pos = 0;
        while let Some((kind, payload)) = next_record(&bytes[pos..]) {
            match kind {
                KIND_ENTRIES if stale => {}
                KIND_ENTRIES => self.replay_entries(payload)?,
                KIND_HARD_STATE => {
                    self.hard_state = HardState::parse_from_bytes(payload).map_err(invalid_data)?
                }
                KIND_CONF_STATE => {
                    self.conf_state = ConfState::parse_from_bytes(payload).map_err(invalid_data)?
                }
                KIND_COMPACTED if payload.len() == 16 => {
                    let index = u64::from_le_bytes(payload[..8].try_into().unwrap());
                    if index > self.snap_index() {
                        return Err(invalid_data(format!(
                            "raft log compacted at {index} but the snapshot is at {}: snapshot file lost",
                            self.snap_index()
                        )));
                    }
                    stale &= index < self.snap_index();
                }
                _ => {
                    return Err(invalid_data(format!(
                        "raft log record of kind {kind} at {pos}"
                    )))
                }
            }
            pos += RECORD_HEADER + payload.len();
        }
        Ok(pos)
    }

    fn replay_entries(&mut self, mut payload: &[u8]) -> io::Result<()> {
        let mut decoded = Vec::new();
        while !payload.is_empty() {
            let len = read_u32(payload).ok_or_else(|| invalid_data("raft entry length"))? as usize;
            let bytes = payload
                .get(4..4 + len)
                .ok_or_else(|| invalid_data("raft entry"))?;
            decoded.push(Entry::parse_from_bytes(bytes).map_err(invalid_data)?);
            payload = &payload[4 + len..];
        }
        let entries = self.uncovered(&decoded).map_err(invalid_data)?;
        self.splice(entries);
        Ok(())
    }

    /// The part of `entries` (ascending) after the snapshot, checked to
    /// follow the log without a gap.
    fn uncovered<'e>(&self, entries: &'e [Entry]) -> Result<&'e [Entry], String> {
        let covered = entries.iter().take_while(|e| e.index <= self.snap_index());
        let rest = &entries[covered.count()..];
        match rest.first() {
            Some(e) if e.index > self.last_index() + 1 => Err(format!(
                "raft entries at {} leave a gap after the last index {}",
                e.index,
                self.last_index()
            )),
            _ => Ok(rest),
        }
    }

    /// Puts `entries` (as `uncovered` returns them) in the log, replacing
    /// the entries at and after the first of them.
    fn splice(&mut self, entries: &[Entry]) {
        if let Some(first) = entries.first() {
            let keep = first.index - self.snap_index() - 1;
            self.entries.truncate(keep as usize);
            self.entries.extend_from_slice(entries);
        }
    }

    fn write_record(&mut self, kind: u8, payload: &[u8], sync: bool) -> io::Result<()> {
        let record = encode_record(kind, payload);
        let written =
            self.log.write_all(&record).and_then(
                |()| {
                    if sync {
                        self.log.sync_data()
                    } else {
                        Ok(())
                    }
                },
            );
        match written {
            Ok(()) => {
                self.log_len += record.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Leave no partial record for the next append to follow.
                let _ = self.log.set_len(self.log_len);
                Err(e)
            }
        }
    }

    /// Replaces the log file with one that holds only the current state:
    /// a compaction marker at the snapshot, the hard and conf state, and the
    /// entries after the snapshot. Written as tmp + fsync + rename.
    fn rewrite_log(&mut self) -> io::Result<()> {
        let meta = self.snapshot.get_metadata();
        let mut marker = meta.index.to_le_bytes().to_vec();
        marker.extend_from_slice(&meta.term.to_le_bytes());
        let mut out = encode_record(KIND_COMPACTED, &marker);
        let hs = self.hard_state.write_to_bytes().map_err(invalid_data)?;
        out.extend(encode_record(KIND_HARD_STATE, &hs));
        let cs = self.conf_state.write_to_bytes().map_err(invalid_data)?;
        out.extend(encode_record(KIND_CONF_STATE, &cs));
        if !self.entries.is_empty() {
            out.extend(encode_record(KIND_ENTRIES, &encode_entries(&self.entries)?));
        }
        write_file_atomically(&self.dir, LOG_FILE, &out)?;
        self.log = OpenOptions::new()
            .read(true)
            .append(true)
            .open(self.dir.join(LOG_FILE))?;
        self.log_len = out.len() as u64;
        Ok(())
    }
}

impl Storage for RaftStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let s = self.inner.borrow();
        Ok(RaftState::new(s.hard_state.clone(), s.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let s = self.inner.borrow();
        if low <= s.snap_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > s.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let offset = s.snap_index() + 1;
        let mut entries = s.entries[(low - offset) as usize..(high - offset) as usize].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let s = self.inner.borrow();
        let snapshot = s.snapshot.get_metadata();
        if index == snapshot.index {
            Ok(snapshot.term)
        } else if index < snapshot.index {
            Err(raft::Error::Store(StorageError::Compacted))
        } else if index > s.last_index() {
            Err(raft::Error::Store(StorageError::Unavailable))
        } else {
            Ok(s.entry(index).term)
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.inner.borrow().snap_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.inner.borrow().last_index())
    }

    /// The latest snapshot, with its data. A follower that asks for a newer
    /// one than exists waits until the driver creates one.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let s = self.inner.borrow();
        if s.snap_index() < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(s.snapshot.clone())
    }
}

/// An entries record's payload: each entry as `len: u32 LE` and protobuf.
fn encode_entries(entries: &[Entry]) -> io::Result<Vec<u8>> {
    let mut payload = Vec::new();
    for e in entries {
        let bytes = e.write_to_bytes().map_err(invalid_data)?;
        payload.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        payload.extend_from_slice(&bytes);
    }
    Ok(payload)
}

fn encode_record(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, payload);
    let mut out = Vec::with_capacity(RECORD_HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    out
}

/// The first record of `bytes`, or `None` if it is short or fails its CRC.
fn next_record(bytes: &[u8]) -> Option<(u8, &[u8])> {
    let len = read_u32(bytes)? as usize;
    let crc = read_u32(bytes.get(4..)?)?;
    let kind = *bytes.get(8)?;
    let payload = bytes.get(RECORD_HEADER..RECORD_HEADER.checked_add(len)?)?;
    let actual = crc32c::crc32c_append(crc32c::crc32c(&[kind]), payload);
    (actual == crc).then_some((kind, payload))
}

/// Whether a record written only with a sync (anything but a hard state,
/// whose commit-only changes are not synced) follows the damaged record at
/// `pos`. Then the damage is not a torn write: data already synced is bad.
/// A damaged length field cannot be skipped, and is taken for a torn tail.
fn synced_record_follows(bytes: &[u8], pos: usize) -> bool {
    let Some(len) = bytes.get(pos..).and_then(read_u32) else {
        return false;
    };
    let mut next = pos + RECORD_HEADER + len as usize;
    while let Some((kind, payload)) = bytes.get(next..).and_then(next_record) {
        if kind != KIND_HARD_STATE {
            return true;
        }
        next += RECORD_HEADER + payload.len();
    }
    false
}

fn read_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?))
}

/// Snapshot file: magic, crc32c (of the rest), metadata length, metadata,
/// `received` flag, data.
fn write_snapshot_file(dir: &Path, snapshot: &Snapshot, received: bool) -> io::Result<()> {
    let meta = snapshot
        .get_metadata()
        .write_to_bytes()
        .map_err(invalid_data)?;
    let mut body = (meta.len() as u32).to_le_bytes().to_vec();
    body.extend_from_slice(&meta);
    body.push(received as u8);
    body.extend_from_slice(&snapshot.data);
    let mut out = SNAPSHOT_MAGIC.to_vec();
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend(body);
    write_file_atomically(dir, SNAPSHOT_FILE, &out)
}

fn decode_snapshot(bytes: &[u8]) -> io::Result<(Snapshot, bool)> {
    let corrupt = || invalid_data("raft snapshot file is corrupt");
    if bytes.get(..8) != Some(SNAPSHOT_MAGIC.as_slice()) {
        return Err(corrupt());
    }
    let crc = read_u32(&bytes[8..]).ok_or_else(corrupt)?;
    let body = &bytes[12..];
    if crc32c::crc32c(body) != crc {
        return Err(corrupt());
    }
    let meta_len = read_u32(body).ok_or_else(corrupt)? as usize;
    let meta = body.get(4..4 + meta_len).ok_or_else(corrupt)?;
    let received = *body.get(4 + meta_len).ok_or_else(corrupt)? != 0;
    let mut snapshot = Snapshot::default();
    snapshot.set_metadata(SnapshotMetadata::parse_from_bytes(meta).map_err(invalid_data)?);
    snapshot.data = body[5 + meta_len..].to_vec().into();
    Ok((snapshot, received))
}

/// Writes `dir/name` as tmp + fsync + rename + fsync of the directory.
fn write_file_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn invalid_data(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn invalid_input(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

/// A `slog::Logger` for raft-rs that forwards its records to `tracing` at
/// debug level (target `raft`), with their key-values in the message.
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}

struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        if tracing::enabled!(target: "raft", tracing::Level::DEBUG) {
            let mut kv = KvText(String::new());
            let _ = slog::KV::serialize(&record.kv(), record, &mut kv);
            let _ = slog::KV::serialize(values, record, &mut kv);
            tracing::debug!(target: "raft", level = record.level().as_str(), "{}{}", record.msg(), kv.0);
        }
        Ok(())
    }
}

struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
