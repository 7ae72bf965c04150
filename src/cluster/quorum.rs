//! The metadata quorum on this node: a raft-rs `RawNode` over the durable
//! [`RaftStore`], driven on shard 0 by ticks and `Ready`s, the way the
//! group coordinator's state machine is driven by its runtime.
//!
//! Owns: the Raft node, the outbound queues to the other voters, proposals
//! waiting for their entry to be applied, and the applied
//! [`MetadataImage`]. Each committed batch of records is applied to the
//! image and handed, with the delta it made, to `install` (which installs
//! it on every shard of this node) before any proposal it contains is
//! answered: a change is answered only once this node's shards see it.
//!
//! Must not: decide what to propose (the controller does) or speak any
//! Kafka API. Runs on shard 0 only; the store's writes block the shard for
//! an fsync, which happens only for metadata changes and elections, never
//! per client request.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, Message, MessageType};
use raft::{RawNode, SnapshotStatus, StateRole};

use super::metadata::{MetadataDelta, MetadataImage};
use super::raft_store::RaftStore;
use super::records::RecordBatch;
use super::rpc::{self, FrameKind, Hello};
use super::voters::VoterAddresses;

/// One Raft tick. Elections time out after `controller.quorum.election.timeout.ms`
/// worth of ticks; the leader heartbeats every tick.
pub const TICK_MS: u64 = 100;
/// Raft messages queued for one peer; beyond it they are dropped (Raft
/// resends what matters).
const PEER_QUEUE_MAX: usize = 1024;
const RECONNECT_BACKOFF_MS: u64 = 200;

/// Installs an applied image on every shard of this node.
pub type Install = Box<
    dyn Fn(Arc<MetadataImage>, MetadataDelta) -> Pin<Box<dyn Future<Output = Result<(), String>>>>,
>;

#[derive(Clone, Debug, PartialEq)]
pub enum ProposeError {
    /// Not the leader; the leader as known, if any.
    NotController(Option<i32>),
    Failed(String),
}

pub struct QuorumConfig {
    pub node_id: i32,
    /// Every voter's controller address, this node's included.
    pub voters: BTreeMap<i32, SocketAddr>,
    pub election_timeout_ms: u64,
    pub snapshot_bytes: u64,
    /// The cluster id this data dir belongs to, if it knows one.
    pub cluster_id: Option<String>,
}

struct Proposal {
    term: u64,
    reply: oneshot::Sender<Result<u64, ProposeError>>,
}

pub struct Quorum {
    node_id: i32,
    raw: RefCell<RawNode<RaftStore>>,
    conf_state: ConfState,
    peers: BTreeMap<u64, LocalSender<Message>>,
    kick: LocalSender<()>,
    kicks: RefCell<Option<LocalReceiver<()>>>,
    proposals: RefCell<BTreeMap<u64, Proposal>>,
    applied_waiters: RefCell<Vec<(u64, oneshot::Sender<()>)>>,
    image: RefCell<Arc<MetadataImage>>,
    leader: Cell<Option<i32>>,
    /// Bumped each time this node becomes leader.
    leader_terms: Cell<u64>,
    cluster_id: RefCell<Option<String>>,
    /// Voters that answered with another cluster's id.
    foreign_peers: RefCell<std::collections::BTreeSet<i32>>,
    bytes_since_snapshot: Cell<u64>,
    snapshot_bytes: u64,
    install: Install,
    /// Called with a reason when this node must stop (storage failure,
    /// another cluster's log).
    fatal: Box<dyn Fn(String)>,
}

impl Quorum {
    /// Opens the store under `dir`, loads the image from its snapshot, and
    /// builds the node. Blocking (start-up).
    pub fn open(
        dir: &std::path::Path,
        config: QuorumConfig,
        install: Install,
        fatal: Box<dyn Fn(String)>,
    ) -> Result<(Rc<Quorum>, Vec<LocalReceiver<Message>>), String> {
        let store = RaftStore::open(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        let voter_ids: Vec<u64> = config.voters.keys().map(|id| *id as u64).collect();
        store
            .initialize_voters(&voter_ids)
            .map_err(|error| format!("{}: {error}", dir.display()))?;
        let mut stored: Vec<u64> = store.conf_state().voters.clone();
        stored.sort_unstable();
        if stored != voter_ids {
            return Err(format!(
                "the metadata log in {} was formed with voters {stored:?}, but this node's quorum is {voter_ids:?} (key 'controller.quorum.voters'): a data dir of another cluster cannot join; give the broker an empty data dir",
                dir.display()
            ));
        }
        let (image, applied) = match store.snapshot_data() {
            Some((metadata, data)) => (MetadataImage::decode(&data)?, metadata.index),
            None => (MetadataImage::default(), 0),
        };
        let ticks = (config.election_timeout_ms / TICK_MS).max(3) as usize;
        let raft_config = raft::Config {
            id: config.node_id as u64,
            election_tick: ticks,
            heartbeat_tick: 1,
            applied,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            ..raft::Config::default()
        };
        raft_config.validate().map_err(|error| error.to_string())?;
        let raw = RawNode::new(&raft_config, store, &super::raft_store::raft_logger())
            .map_err(|error| error.to_string())?;
        let (kick, kicks) = local_channel::new_bounded(1);
        let mut peers = BTreeMap::new();
        let mut receivers = Vec::new();
        for id in config.voters.keys().filter(|id| **id != config.node_id) {
            let (sender, receiver) = local_channel::new_bounded(PEER_QUEUE_MAX);
            peers.insert(*id as u64, sender);
            receivers.push(receiver);
        }
        let cluster_id = config
            .cluster_id
            .or_else(|| (!image.cluster_id.is_empty()).then(|| image.cluster_id.clone()));
        let quorum = Rc::new(Quorum {
            node_id: config.node_id,
            raw: RefCell::new(raw),
            conf_state: ConfState::from((voter_ids, vec![])),
            peers,
            kick,
            kicks: RefCell::new(Some(kicks)),
            proposals: RefCell::new(BTreeMap::new()),
            applied_waiters: RefCell::new(Vec::new()),
            image: RefCell::new(Arc::new(image)),
            leader: Cell::new(None),
            leader_terms: Cell::new(0),
            cluster_id: RefCell::new(cluster_id),
            foreign_peers: RefCell::new(std::collections::BTreeSet::new()),
            bytes_since_snapshot: Cell::new(0),
            snapshot_bytes: config.snapshot_bytes,
            install,
            fatal,
        });
        Ok((quorum, receivers))
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The image as applied on this node.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    pub fn hello(&self) -> Hello {
        Hello {
            node_id: self.node_id,
            cluster_id: self.cluster_id.borrow().clone(),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.raw.borrow().raft.state == StateRole::Leader
    }

    /// The leader as this node knows it.
    pub fn leader(&self) -> Option<i32> {
        self.leader.get()
    }

    /// Changes each time this node becomes the leader.
    pub fn leadership(&self) -> u64 {
        self.leader_terms.get()
    }

    /// What `sluice cluster quorum` and DescribeQuorum show.
    pub fn status(&self) -> QuorumStatus {
        let raw = self.raw.borrow();
        let raft = &raw.raft;
        let last = raft.raft_log.last_index();
        let voters = self
            .conf_state
            .voters
            .iter()
            .map(|id| {
                let matched = if raft.state == StateRole::Leader {
                    raft.prs().get(*id).map(|progress| progress.matched)
                } else if *id == raft.id {
                    Some(last)
                } else {
                    None
                };
                (*id as i32, matched)
            })
            .collect();
        QuorumStatus {
            leader: self.leader.get(),
            term: raft.term,
            high_watermark: raft.raft_log.committed,
            last_index: last,
            voters,
        }
    }

    /// Feeds a message from another voter.
    pub fn step(&self, message: Message) {
        if let Err(error) = self.raw.borrow_mut().step(message) {
            tracing::debug!(%error, "raft message refused");
        }
        self.wake();
    }

    fn wake(&self) {
        let _ = self.kick.try_send(());
    }

    /// Proposes `batch`; resolves with its log index once it is applied on
    /// this node's shards, or fails if this node is not the leader or the
    /// entry was replaced by another leader's.
    pub async fn propose(&self, batch: RecordBatch) -> Result<u64, ProposeError> {
        let receiver = {
            let mut raw = self.raw.borrow_mut();
            if raw.raft.state != StateRole::Leader {
                return Err(ProposeError::NotController(self.leader.get()));
            }
            raw.propose(vec![], batch.encode())
                .map_err(|_| ProposeError::NotController(self.leader.get()))?;
            let index = raw.raft.raft_log.last_index();
            let term = raw.raft.term;
            let (reply, receiver) = oneshot::channel();
            self.proposals
                .borrow_mut()
                .insert(index, Proposal { term, reply });
            receiver
        };
        self.wake();
        receiver
            .await
            .unwrap_or_else(|_| Err(ProposeError::Failed("the quorum stopped".into())))
    }

    /// Waits until this node has applied (and installed) log index `index`.
    pub async fn wait_applied(&self, index: u64) {
        if self.image.borrow().epoch >= index {
            return;
        }
        let (sender, receiver) = oneshot::channel();
        self.applied_waiters.borrow_mut().push((index, sender));
        let _ = receiver.await;
    }

    /// Waits until this node has applied every entry its log holds (a new
    /// leader's own first entry included), so that decisions see them all.
    pub async fn wait_caught_up(&self) {
        let last = self.raw.borrow().raft.raft_log.last_index();
        self.wait_applied(last).await;
    }

    /// Drives the node until the process stops: ticks, steps, persists,
    /// sends, applies.
    pub async fn run(self: Rc<Self>) {
        let kicks = self.kicks.borrow_mut().take().expect("run once");
        // The image from the snapshot, on every shard, before the log's later
        // entries arrive as deltas.
        if let Err(error) = (self.install)(self.image(), MetadataDelta::full()).await {
            tracing::error!(%error, "opening this node's partitions failed");
        }
        if self.conf_state.voters.len() == 1 {
            // Alone: no need to wait an election timeout to lead.
            let _ = self.raw.borrow_mut().campaign();
        }
        let tick = Duration::from_millis(TICK_MS);
        let mut next_tick = Instant::now() + tick;
        loop {
            let now = Instant::now();
            if now >= next_tick {
                self.raw.borrow_mut().tick();
                next_tick = now + tick;
            } else {
                let wait = next_tick - now;
                futures_lite::future::or(
                    async {
                        kicks.recv().await;
                    },
                    glommio::timer::sleep(wait),
                )
                .await;
            }
            if let Err(error) = self.process_ready().await {
                (self.fatal)(format!("metadata log: {error}"));
                return;
            }
            self.observe_leader();
        }
    }

    fn observe_leader(&self) {
        let (leader_id, is_leader) = {
            let raw = self.raw.borrow();
            (raw.raft.leader_id, raw.raft.state == StateRole::Leader)
        };
        let leader = (leader_id != raft::INVALID_ID).then_some(leader_id as i32);
        if leader != self.leader.get() {
            self.leader.set(leader);
            if is_leader {
                self.leader_terms.set(self.leader_terms.get() + 1);
                tracing::info!(
                    node_id = self.node_id,
                    "this node is now the active controller"
                );
            } else {
                tracing::info!(controller = ?leader, "active controller changed");
            }
            let mut image = (**self.image.borrow()).clone();
            image.controller_id = leader;
            let image = Arc::new(image);
            *self.image.borrow_mut() = image.clone();
            let install = (self.install)(image, MetadataDelta::default());
            glommio::spawn_local(async move {
                if let Err(error) = install.await {
                    tracing::warn!(%error, "installing the controller change failed");
                }
            })
            .detach();
        }
    }

    async fn process_ready(&self) -> Result<(), String> {
        loop {
            let (committed, snapshot) = {
                let mut raw = self.raw.borrow_mut();
                if !raw.has_ready() {
                    return Ok(());
                }
                let mut ready = raw.ready();
                self.send(ready.take_messages());
                let mut snapshot = None;
                if !ready.snapshot().is_empty() {
                    let received = ready.snapshot().clone();
                    snapshot = Some(MetadataImage::decode(received.get_data())?);
                    raw.mut_store()
                        .apply_snapshot(received)
                        .map_err(|error| error.to_string())?;
                }
                let mut committed = ready.take_committed_entries();
                if !ready.entries().is_empty() {
                    raw.mut_store()
                        .append(ready.entries())
                        .map_err(|error| error.to_string())?;
                }
                if let Some(hard_state) = ready.hs() {
                    raw.mut_store()
                        .set_hard_state(hard_state)
                        .map_err(|error| error.to_string())?;
                }
                self.send(ready.take_persisted_messages());
                let mut light = raw.advance(ready);
                if let Some(commit) = light.commit_index() {
                    raw.mut_store()
                        .set_commit(commit)
                        .map_err(|error| error.to_string())?;
                }
                self.send(light.take_messages());
                committed.extend(light.take_committed_entries());
                raw.advance_apply();
                (committed, snapshot)
            };
            self.apply(committed, snapshot).await?;
        }
    }

    fn send(&self, messages: Vec<Message>) {
        for message in messages {
            if let Some(peer) = self.peers.get(&message.to) {
                if peer.try_send(message).is_err() {
                    tracing::debug!("raft peer queue full; message dropped");
                }
            }
        }
    }

    /// Applies committed entries (after a received snapshot, if any),
    /// installs the result on every shard, then answers what waited for it.
    async fn apply(
        &self,
        entries: Vec<Entry>,
        snapshot: Option<MetadataImage>,
    ) -> Result<(), String> {
        if entries.is_empty() && snapshot.is_none() {
            return Ok(());
        }
        let mut image = match snapshot {
            Some(image) => image,
            None => (**self.image.borrow()).clone(),
        };
        let mut delta = MetadataDelta::default();
        if image.epoch != self.image.borrow().epoch || entries.is_empty() {
            delta = MetadataDelta::full();
        }
        let mut outcomes = Vec::new();
        for entry in &entries {
            image.epoch = image.epoch.max(entry.index);
            outcomes.push((entry.index, entry.term));
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue;
            }
            self.bytes_since_snapshot
                .set(self.bytes_since_snapshot.get() + entry.data.len() as u64);
            match RecordBatch::decode(&entry.data) {
                Ok(batch) => delta.merge(image.apply_batch(entry.index, &batch.records)),
                Err(error) => {
                    tracing::error!(index = entry.index, %error, "metadata entry skipped")
                }
            }
        }
        self.check_cluster_id(&image)?;
        image.controller_id = self.leader.get();
        let image = Arc::new(image);
        *self.image.borrow_mut() = image.clone();
        // A partition that cannot open is this node's problem, not the
        // log's: the image stays applied and the failure is reported.
        if let Err(error) = (self.install)(image.clone(), delta).await {
            tracing::error!(%error, "installing metadata on this node's shards failed");
        }
        for (index, term) in outcomes {
            if let Some(proposal) = self.proposals.borrow_mut().remove(&index) {
                let outcome = if proposal.term == term {
                    Ok(index)
                } else {
                    Err(ProposeError::NotController(self.leader.get()))
                };
                let _ = proposal.reply.send(outcome);
            }
        }
        let applied = image.epoch;
        let ready: Vec<_> = {
            let mut waiters = self.applied_waiters.borrow_mut();
            let (done, waiting) = waiters.drain(..).partition(|(index, _)| *index <= applied);
            *waiters = waiting;
            done
        };
        for (_, sender) in ready {
            let _ = sender.send(());
        }
        self.maybe_snapshot(&image)
    }

    fn check_cluster_id(&self, image: &MetadataImage) -> Result<(), String> {
        if image.cluster_id.is_empty() {
            return Ok(());
        }
        let mut known = self.cluster_id.borrow_mut();
        match known.as_deref() {
            Some(id) if id != image.cluster_id => Err(format!(
                "this data dir belongs to cluster {id}, but the quorum's log is cluster {}: give the broker an empty data dir to join this cluster",
                image.cluster_id
            )),
            Some(_) => Ok(()),
            None => {
                *known = Some(image.cluster_id.clone());
                Ok(())
            }
        }
    }

    fn maybe_snapshot(&self, image: &MetadataImage) -> Result<(), String> {
        if self.bytes_since_snapshot.get() < self.snapshot_bytes {
            return Ok(());
        }
        self.bytes_since_snapshot.set(0);
        self.raw
            .borrow_mut()
            .mut_store()
            .create_snapshot(image.epoch, self.conf_state.clone(), image.encode())
            .map_err(|error| error.to_string())?;
        tracing::info!(index = image.epoch, "metadata snapshot written");
        Ok(())
    }

    /// A voter answered with another cluster's id (`why`). One such peer
    /// says nothing about who is wrong; once a majority of the voters say
    /// so, this node is the one with a foreign data dir, and it stops.
    pub fn foreign_peer(&self, peer: i32, why: &str) {
        let mut foreign = self.foreign_peers.borrow_mut();
        if !foreign.insert(peer) {
            return;
        }
        let majority = self.conf_state.voters.len() / 2 + 1;
        if foreign.len() >= majority {
            drop(foreign);
            (self.fatal)(format!("refusing to join: {why}"));
        } else {
            tracing::warn!("a voter of another cluster tried to talk to this one: {why}");
        }
    }

    /// The cluster id as this node knows it.
    pub fn cluster_id(&self) -> Option<String> {
        self.cluster_id.borrow().clone()
    }
}

/// Sends one voter's queued Raft messages over a connection of its own,
/// reconnecting after failures (looking the voter's name up again, see
/// `voters.rs`); what is queued while it cannot connect is dropped.
pub async fn peer_sender(
    quorum: Rc<Quorum>,
    peer: i32,
    voters: Rc<VoterAddresses>,
    transport: Rc<rpc::Transport>,
    queue: LocalReceiver<Message>,
) {
    loop {
        let Some(first) = queue.recv().await else {
            return;
        };
        let Some(address) = voters.get(peer) else {
            return;
        };
        match rpc::connect(address, &quorum.hello(), &transport).await {
            Ok(mut stream) => {
                let mut next = Some(first);
                while let Some(message) = next {
                    let bytes = match message.write_to_bytes() {
                        Ok(bytes) => bytes,
                        Err(error) => {
                            tracing::error!(%error, "cannot encode a raft message");
                            next = queue.recv().await;
                            continue;
                        }
                    };
                    let snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
                    let sent = rpc::write_frame(&mut stream, FrameKind::Raft, &bytes).await;
                    if snapshot {
                        // raft-rs waits for this before it sends the peer more.
                        let status = match sent {
                            Ok(()) => SnapshotStatus::Finish,
                            Err(_) => SnapshotStatus::Failure,
                        };
                        quorum.raw.borrow_mut().report_snapshot(peer as u64, status);
                    }
                    if let Err(error) = sent {
                        tracing::debug!(peer, %error, "raft connection lost");
                        quorum.raw.borrow_mut().report_unreachable(peer as u64);
                        voters.refresh(peer);
                        break;
                    }
                    next = queue.recv().await;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                quorum.foreign_peer(peer, &error.to_string());
            }
            Err(error) => {
                tracing::debug!(peer, %address, %error, "cannot reach controller");
                quorum.raw.borrow_mut().report_unreachable(peer as u64);
                // It may be back under its name with a new address.
                voters.refresh(peer);
            }
        }
        // What was queued meanwhile is sent late or dropped when the queue
        // is full; Raft ignores stale messages and resends what matters.
        glommio::timer::sleep(Duration::from_millis(RECONNECT_BACKOFF_MS)).await;
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuorumStatus {
    pub leader: Option<i32>,
    pub term: u64,
    pub high_watermark: u64,
    pub last_index: u64,
    /// Each voter and the last log index it is known to hold.
    pub voters: Vec<(i32, Option<u64>)>,
}
