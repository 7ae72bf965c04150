//! The sending half of a producer: finished batches in, Produce requests
//! out to each partition's current leader, answers in, and batches that
//! must go again (a leader moved, a connection was lost) sent again, in
//! order, to the new leader.
//!
//! The producer thread owns the [`Sender`]; each connection ("link") has a
//! reader thread that takes its responses in order. A reader hands a batch
//! that must be retried back through a channel; the producer thread then
//! holds that partition until none of its batches is in flight, refreshes
//! Metadata, and sends its queue again in sequence order. With idempotence
//! (a producer ID, per-partition sequence numbers, at most five batches in
//! flight per partition) the broker recognises a batch it already wrote,
//! so a retry cannot duplicate; without it, a retry may.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender as ChannelSender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use sluice_client::idempotence::{
    self, batch_outcome, BatchOutcome, ProducerIdentity, IN_FLIGHT_MAX,
};
use sluice_client::retry::{classify, Refresh, RetryPolicy};
use sluice_client::wire::{decode_response, Connection, FrameReader, FrameWriter};
use sluice_client::{topic_name, Cluster};

use crate::producer::ProducerConfig;
use crate::rate::latency_us;
use crate::stats::{Metrics, Recorder};
use crate::verify::AckLog;

/// A lost connection, as a "code" in the returns channel and error counts.
const CONNECTION_LOST: i16 = -1;
/// How long a new link may take to connect and answer ApiVersions.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A finished batch: its records' intended send times, its bytes (stamped
/// with the producer ID and base sequence when idempotent).
pub struct Batch {
    pub partition: i32,
    pub first_sequence: u64,
    pub intended: Vec<Instant>,
    pub bytes: Bytes,
    pub created: Instant,
}

/// A request in flight on a link.
struct InFlight {
    correlation_id: i32,
    batches: Vec<Batch>,
}

/// A batch handed back for a retry, with the code that said so.
struct Returned {
    batch: Batch,
    code: i16,
}

struct Link {
    writer: FrameWriter,
    version: i16,
    in_flight: Option<SyncSender<InFlight>>,
    reader: Option<JoinHandle<Result<AckLog>>>,
    dead: Arc<AtomicBool>,
}

/// What the reader threads share with the sending thread.
struct Shared {
    config: Arc<ProducerConfig>,
    producer: u32,
    metrics: Arc<Metrics>,
    idempotent: bool,
    /// Batches in flight per partition.
    in_flight: Vec<AtomicUsize>,
}

pub struct Sender {
    shared: Arc<Shared>,
    cluster: Cluster,
    identity: ProducerIdentity,
    /// Connections per broker id.
    links: BTreeMap<i32, Vec<Link>>,
    /// Readers of links that died, joined at the end.
    retired: Vec<JoinHandle<Result<AckLog>>>,
    /// Batches waiting to go, per partition, in sequence order.
    queues: Vec<VecDeque<Batch>>,
    /// Partitions waiting for their in-flight batches before a retry.
    held: Vec<bool>,
    returns: Receiver<Returned>,
    returns_sender: ChannelSender<Returned>,
    refresh_due: Option<Instant>,
    refresh_failures: u32,
    policy: RetryPolicy,
}

impl Sender {
    /// Connects to the cluster (and takes a producer ID when idempotent).
    pub fn new(
        config: Arc<ProducerConfig>,
        producer: u32,
        metrics: Arc<Metrics>,
    ) -> Result<Sender> {
        let client_id = format!("{}-p{producer}", config.client_id);
        let mut cluster = Cluster::connect(&config.bootstrap, &client_id, CONNECT_TIMEOUT)?;
        cluster.refresh(std::slice::from_ref(&config.layout.topic))?;
        let identity = if config.idempotence {
            idempotence::init_producer_id(&mut cluster)?
        } else {
            ProducerIdentity::NONE
        };
        let partitions = config.layout.partitions();
        let (returns_sender, returns) = channel();
        Ok(Sender {
            shared: Arc::new(Shared {
                idempotent: identity.is_idempotent(),
                in_flight: (0..partitions).map(|_| AtomicUsize::new(0)).collect(),
                config,
                producer,
                metrics,
            }),
            cluster,
            identity,
            links: BTreeMap::new(),
            retired: Vec::new(),
            queues: (0..partitions).map(|_| VecDeque::new()).collect(),
            held: vec![false; partitions],
            returns,
            returns_sender,
            refresh_due: None,
            refresh_failures: 0,
            policy: RetryPolicy::default(),
        })
    }

    pub fn identity(&self) -> ProducerIdentity {
        self.identity
    }

    pub fn enqueue(&mut self, batch: Batch) {
        self.queues[batch.partition as usize].push_back(batch);
    }

    /// Batches waiting to go.
    pub fn backlog(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// Nothing waits to go and nothing is in flight.
    pub fn idle(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty)
            && self
                .shared
                .in_flight
                .iter()
                .all(|count| count.load(Ordering::Acquire) == 0)
    }

    /// Takes back batches to retry, refreshes Metadata when due, and sends
    /// what may go.
    pub fn pump(&mut self) -> Result<()> {
        self.take_returns();
        if self.refresh_due.is_some_and(|due| Instant::now() >= due) {
            self.refresh();
        }
        self.send_queued()
    }

    fn take_returns(&mut self) {
        let delivery_timeout = self.shared.config.delivery_timeout;
        while let Ok(Returned { batch, code }) = self.returns.try_recv() {
            let records = batch.intended.len() as u64;
            let partition = batch.partition as usize;
            if batch.created.elapsed() > delivery_timeout {
                // Given up: not acknowledged (verify counts it neither way).
                Metrics::count_error(&self.shared.metrics.produce_errors, code, records);
                continue;
            }
            self.shared
                .metrics
                .produce_retries
                .fetch_add(records, Ordering::Relaxed);
            if code == CONNECTION_LOST || classify(code) == Some(Refresh::Metadata) {
                self.schedule_refresh();
            }
            // Back into the queue in sequence order, ahead of newer batches.
            let queue = &mut self.queues[partition];
            let at = queue
                .iter()
                .position(|queued| queued.first_sequence > batch.first_sequence)
                .unwrap_or(queue.len());
            queue.insert(at, batch);
            self.held[partition] = true;
        }
    }

    fn schedule_refresh(&mut self) {
        if self.refresh_due.is_none() {
            self.refresh_due = Some(Instant::now() + self.policy.backoff(0));
        }
    }

    fn refresh(&mut self) {
        let topic = self.shared.config.layout.topic.clone();
        match self.cluster.refresh(std::slice::from_ref(&topic)) {
            Ok(()) => {
                self.refresh_failures = 0;
                self.refresh_due = None;
                // A partition still without a leader asks again soon.
                let partitions = self.queues.len() as i32;
                if (0..partitions).any(|p| self.cluster.leader(&topic, p).is_none()) {
                    self.refresh_due = Some(Instant::now() + self.policy.backoff(1));
                }
            }
            Err(error) => {
                self.cluster.recover(&error, Refresh::Nothing);
                self.refresh_failures += 1;
                self.refresh_due =
                    Some(Instant::now() + self.policy.backoff(self.refresh_failures));
            }
        }
    }

    /// The most batches of one partition in flight at once.
    fn partition_window(&self) -> usize {
        let window = self.shared.config.max_in_flight.max(1);
        if self.shared.idempotent {
            window.min(IN_FLIGHT_MAX)
        } else {
            window
        }
    }

    fn send_queued(&mut self) -> Result<()> {
        let topic = self.shared.config.layout.topic.clone();
        let window = self.partition_window();
        // Requests per route (leader, link), one batch per partition each.
        let mut routes: BTreeMap<(i32, usize), Vec<Vec<Batch>>> = BTreeMap::new();
        for partition in 0..self.queues.len() {
            if self.queues[partition].is_empty() {
                continue;
            }
            let in_flight = self.shared.in_flight[partition].load(Ordering::Acquire);
            if self.held[partition] {
                if in_flight > 0 {
                    continue; // its retries go once nothing older is in flight
                }
                // Every batch handed back is in the channel by now.
                self.take_returns();
                self.held[partition] = false;
            }
            let Some(leader) = self.cluster.leader(&topic, partition as i32) else {
                self.schedule_refresh();
                continue;
            };
            let links = self.shared.config.connections_per_broker.max(1);
            let route = (leader, partition % links);
            let requests = routes.entry(route).or_default();
            for slot in 0..window.saturating_sub(in_flight) {
                let Some(batch) = self.queues[partition].pop_front() else {
                    break;
                };
                if requests.len() <= slot {
                    requests.push(Vec::new());
                }
                requests[slot].push(batch);
            }
        }
        for (route, requests) in routes {
            for batches in requests {
                self.send_request(route, batches)?;
            }
        }
        Ok(())
    }

    /// Puts batches back at the front of their queues (not sent).
    fn unsend(&mut self, batches: Vec<Batch>) {
        for batch in batches.into_iter().rev() {
            let partition = batch.partition as usize;
            self.queues[partition].push_front(batch);
        }
    }

    fn link(&mut self, leader: i32, index: usize) -> Result<Option<&mut Link>> {
        let dead = self
            .links
            .get(&leader)
            .and_then(|links| links.get(index))
            .is_some_and(|link| link.dead.load(Ordering::Acquire));
        if dead {
            self.retire(leader);
        }
        if !self.links.contains_key(&leader) {
            match self.connect(leader) {
                Ok(links) => {
                    self.links.insert(leader, links);
                }
                Err(_) => {
                    // Not reachable (yet): the queue waits for Metadata.
                    self.cluster.disconnect(leader);
                    self.schedule_refresh();
                    return Ok(None);
                }
            }
        }
        Ok(self
            .links
            .get_mut(&leader)
            .and_then(|links| links.get_mut(index)))
    }

    fn connect(&mut self, leader: i32) -> Result<Vec<Link>> {
        let config = &self.shared.config;
        let address = self
            .cluster
            .address(leader)
            .with_context(|| format!("broker {leader} is not in Metadata"))?
            .to_string();
        let mut links = Vec::new();
        for index in 0..config.connections_per_broker.max(1) {
            let client_id = format!("{}-p{}-c{index}", config.client_id, self.shared.producer);
            let connection = Connection::connect(&address, &client_id, CONNECT_TIMEOUT)?;
            let version = connection.version::<ProduceRequest>(12)?;
            let (writer, reader, _) = connection.split();
            reader.set_read_timeout(Some(config.request_timeout + Duration::from_secs(5)))?;
            let dead = Arc::new(AtomicBool::new(false));
            let (in_flight, reader) = if config.acks == 0 {
                (None, None)
            } else {
                let (sender, receiver) = sync_channel(config.max_in_flight.max(1) - 1);
                let handle = spawn_reader(
                    self.shared.clone(),
                    reader,
                    receiver,
                    version,
                    self.returns_sender.clone(),
                    dead.clone(),
                )?;
                (Some(sender), Some(handle))
            };
            links.push(Link {
                writer,
                version,
                in_flight,
                reader,
                dead,
            });
        }
        Ok(links)
    }

    /// Drops every link to `leader`; their readers finish returning what
    /// was in flight and are joined at the end.
    fn retire(&mut self, leader: i32) {
        if let Some(links) = self.links.remove(&leader) {
            for mut link in links {
                link.writer.abort();
                link.in_flight = None;
                self.retired.extend(link.reader.take());
            }
        }
    }

    fn send_request(&mut self, (leader, index): (i32, usize), batches: Vec<Batch>) -> Result<()> {
        if self.link(leader, index)?.is_none() {
            self.unsend(batches);
            return Ok(());
        }
        let shared = self.shared.clone();
        let config = &shared.config;
        let partition_data = batches
            .iter()
            .map(|batch| {
                PartitionProduceData::default()
                    .with_index(batch.partition)
                    .with_records(Some(batch.bytes.clone()))
            })
            .collect();
        let request = ProduceRequest::default()
            .with_acks(config.acks)
            .with_timeout_ms(config.request_timeout.as_millis() as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&config.layout.topic))
                .with_partition_data(partition_data)]);
        let records: u64 = batches.iter().map(|b| b.intended.len() as u64).sum();
        let metrics = &shared.metrics;
        metrics.produce_requests.fetch_add(1, Ordering::Relaxed);
        let link = &mut self.links.get_mut(&leader).expect("connected above")[index];
        let version = link.version;
        let Some(in_flight) = &link.in_flight else {
            // acks=0: the broker answers nothing; count what was sent.
            if link.writer.send(&request, version).is_err() {
                Metrics::count_error(&metrics.produce_errors, CONNECTION_LOST, records);
                self.retire(leader);
                self.schedule_refresh();
                return Ok(());
            }
            metrics
                .produced
                .add(records, records * config.record_bytes as u64);
            return Ok(());
        };
        for batch in &batches {
            shared.in_flight[batch.partition as usize].fetch_add(1, Ordering::AcqRel);
        }
        // Reserve the slot first: the reader must find it when the response
        // arrives. Blocks while the window is full.
        let correlation_id = link.writer.next_correlation_id();
        if let Err(error) = in_flight.send(InFlight {
            correlation_id,
            batches,
        }) {
            // The reader is gone (it only stops when we drop the sender).
            bail!("the response reader of broker {leader} stopped: {error}");
        }
        if link.writer.send(&request, version).is_err() {
            // The reader finds the connection broken and hands the batches
            // back for a retry.
            link.writer.abort();
            link.dead.store(true, Ordering::Release);
            self.schedule_refresh();
        }
        Ok(())
    }

    /// Closes the links, lets the readers drain, and merges their logs.
    pub fn close(mut self) -> Result<AckLog> {
        let mut acks = AckLog::default();
        let mut handles = std::mem::take(&mut self.retired);
        for links in std::mem::take(&mut self.links).into_values() {
            for mut link in links {
                link.in_flight = None;
                link.writer.shutdown();
                handles.extend(link.reader.take());
            }
        }
        let mut first_error = None;
        for handle in handles {
            match handle.join() {
                Ok(Ok(log)) => acks.merge(log),
                Ok(Err(error)) => {
                    first_error.get_or_insert(error);
                }
                Err(_) => bail!("a response reader panicked"),
            }
        }
        // Whatever is still queued was never acknowledged.
        self.take_returns();
        let unsent: u64 = self
            .queues
            .iter()
            .flatten()
            .map(|batch| batch.intended.len() as u64)
            .sum();
        if unsent > 0 {
            Metrics::count_error(&self.shared.metrics.produce_errors, CONNECTION_LOST, unsent);
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(acks),
        }
    }
}

fn spawn_reader(
    shared: Arc<Shared>,
    reader: FrameReader,
    in_flight: Receiver<InFlight>,
    version: i16,
    returns: ChannelSender<Returned>,
    dead: Arc<AtomicBool>,
) -> Result<JoinHandle<Result<AckLog>>> {
    Ok(std::thread::Builder::new()
        .name(format!("produce-reader-{}", shared.producer))
        .spawn(move || read_responses(&shared, reader, &in_flight, version, &returns, &dead))?)
}

/// Takes the link's responses in order until the producer closes it. After
/// the connection fails, every request in flight (and any sent later
/// before the producer notices) is handed back for a retry.
fn read_responses(
    shared: &Shared,
    mut reader: FrameReader,
    in_flight: &Receiver<InFlight>,
    version: i16,
    returns: &ChannelSender<Returned>,
    dead: &AtomicBool,
) -> Result<AckLog> {
    let mut acks = AckLog::default();
    let mut recorder = Recorder::produce(shared.metrics.clone());
    while let Ok(request) = in_flight.recv() {
        if dead.load(Ordering::Acquire) {
            give_back(shared, returns, request.batches, CONNECTION_LOST);
            continue;
        }
        match read_one(shared, &mut reader, &request, version) {
            Ok((done, codes)) => {
                recorder.at(done);
                for (batch, code) in request.batches.into_iter().zip(codes) {
                    settle(shared, returns, &mut acks, &mut recorder, batch, code, done);
                }
            }
            Err(error) => {
                if !shared.metrics.stopping() {
                    eprintln!(
                        "producer {}: {:#}; retrying its batches",
                        shared.producer, error
                    );
                }
                dead.store(true, Ordering::Release);
                give_back(shared, returns, request.batches, CONNECTION_LOST);
            }
        }
    }
    Ok(acks)
}

/// One response: when it arrived and the (code, base offset) per batch.
fn read_one(
    shared: &Shared,
    reader: &mut FrameReader,
    request: &InFlight,
    version: i16,
) -> Result<(Instant, Vec<(i16, i64)>)> {
    let mut frame = reader.receive_frame()?;
    let done = Instant::now();
    let (correlation_id, response) = decode_response::<ProduceRequest>(&mut frame, version)?;
    if correlation_id != request.correlation_id {
        bail!(
            "response {correlation_id} arrived for request {}",
            request.correlation_id
        );
    }
    let mut codes = vec![None; request.batches.len()];
    for topic in &response.responses {
        for partition in &topic.partition_responses {
            let Some(at) = request
                .batches
                .iter()
                .position(|batch| batch.partition == partition.index)
            else {
                bail!(
                    "the broker answered for partition {} it was not sent",
                    partition.index
                );
            };
            codes[at] = Some((partition.error_code, partition.base_offset));
        }
    }
    let _ = shared;
    codes
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .map(|codes| (done, codes))
        .context("the broker did not answer for every partition sent")
}

fn settle(
    shared: &Shared,
    returns: &ChannelSender<Returned>,
    acks: &mut AckLog,
    recorder: &mut Recorder,
    batch: Batch,
    (code, base_offset): (i16, i64),
    done: Instant,
) {
    let records = batch.intended.len() as u64;
    match batch_outcome(code, shared.idempotent) {
        BatchOutcome::Written => {
            for intended in &batch.intended {
                recorder.record(latency_us(*intended, done));
            }
            let bytes = records * shared.config.record_bytes as u64;
            shared.metrics.produced.add(records, bytes);
            if shared.config.verify {
                acks.acknowledge(
                    (shared.producer, batch.partition),
                    batch.first_sequence,
                    records,
                    base_offset,
                );
            }
            out_of_flight(shared, batch.partition);
        }
        BatchOutcome::Retry(_) => give_back(shared, returns, vec![batch], code),
        BatchOutcome::Failed => {
            Metrics::count_error(&shared.metrics.produce_errors, code, records);
            out_of_flight(shared, batch.partition);
        }
    }
}

/// Hands batches back to the producer thread, then counts them out of
/// flight (in that order: the producer reads "none in flight" as "every
/// return is in the channel").
fn give_back(shared: &Shared, returns: &ChannelSender<Returned>, batches: Vec<Batch>, code: i16) {
    for batch in batches {
        let partition = batch.partition;
        if returns.send(Returned { batch, code }).is_err() {
            // The producer is gone: nothing will retry it.
            Metrics::count_error(&shared.metrics.produce_errors, code, 1);
        }
        out_of_flight(shared, partition);
    }
}

fn out_of_flight(shared: &Shared, partition: i32) {
    shared.in_flight[partition as usize].fetch_sub(1, Ordering::AcqRel);
}
