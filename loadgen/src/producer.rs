//! A producer: one thread that generates records on schedule, batches them
//! per partition and pipelines Produce requests, plus one reader thread per
//! connection that takes the responses and records latencies.
//!
//! The producer thread never waits for a response. Each connection has a
//! bounded queue of requests in flight (`max_in_flight`); when it is full
//! the producer blocks on it, which is the backpressure, and records that
//! fall due in the meantime keep their intended send times (see `rate`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};

use crate::admin::{topic_name, TopicLayout};
use crate::batch::{BatchBuilder, Codec};
use crate::payload::VALUE_HEADER_BYTES;
use crate::payload::{
    partition_for_key, Filler, KeyDistribution, KeyGenerator, Payload, Rng, ValueHeader,
};
use crate::rate::{latency_us, Pacer, WallClock};
use crate::stats::{Metrics, Recorder};
use crate::verify::AckLog;
use crate::wire::{decode_response, Connection, FrameReader, FrameWriter};

/// Records generated per loop turn at most, so sending stays responsive
/// when a fixed-rate producer has a backlog.
const GENERATE_PER_TURN_MAX: u64 = 4096;

/// What every producer of a run shares.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub layout: TopicLayout,
    pub client_id: String,
    pub run_id: u32,
    pub acks: i16,
    pub codec: Codec,
    pub batch_bytes: usize,
    pub linger: Duration,
    pub request_bytes_max: usize,
    pub max_in_flight: usize,
    pub connections_per_broker: usize,
    pub record_bytes: usize,
    pub keys: KeyGenerator,
    pub payload: Payload,
    pub request_timeout: Duration,
    pub verify: bool,
    pub wall_clock: WallClock,
}

/// One producer's share of the work.
#[derive(Debug, Clone, Copy)]
pub struct ProducerShare {
    pub index: u32,
    pub records_per_second: Option<f64>,
    pub records_max: Option<u64>,
    pub start: Instant,
    pub end: Instant,
}

/// A batch that went out in a request, waiting for its answer.
struct SentBatch {
    partition: i32,
    first_sequence: u64,
    intended: Vec<Instant>,
}

/// A request in flight.
struct InFlight {
    correlation_id: i32,
    batches: Vec<SentBatch>,
}

/// A finished batch not yet sent.
struct ReadyBatch {
    partition: i32,
    bytes: Bytes,
    first_sequence: u64,
    intended: Vec<Instant>,
}

struct Link {
    writer: FrameWriter,
    in_flight: Option<SyncSender<InFlight>>,
    reader: Option<JoinHandle<Result<AckLog>>>,
}

/// Runs one producer to the end of its share; returns what was acknowledged.
pub fn run_producer(
    config: Arc<ProducerConfig>,
    share: ProducerShare,
    metrics: Arc<Metrics>,
) -> Result<AckLog> {
    let mut producer = Producer::new(config, share, metrics.clone())?;
    let outcome = producer.run();
    let acks = producer.close();
    if let Err(error) = &outcome {
        metrics.fail(format!("producer {}: {error:#}", share.index));
    }
    outcome?;
    acks
}

struct Producer {
    config: Arc<ProducerConfig>,
    share: ProducerShare,
    metrics: Arc<Metrics>,
    produce_version: i16,
    /// Connections per broker id.
    links: BTreeMap<i32, Vec<Link>>,
    pacer: Pacer,
    rng: Rng,
    filler: Filler,
    key_buf: Vec<u8>,
    builders: Vec<BatchBuilder>,
    intended: Vec<Vec<Instant>>,
    first_sequence: Vec<u64>,
    next_sequence: Vec<u64>,
    sticky: usize,
    ready: Vec<ReadyBatch>,
    issued: u64,
}

impl Producer {
    fn new(
        config: Arc<ProducerConfig>,
        share: ProducerShare,
        metrics: Arc<Metrics>,
    ) -> Result<Producer> {
        let partitions = config.layout.partitions();
        let mut links = BTreeMap::new();
        let mut produce_version = None;
        let leaders: std::collections::BTreeSet<i32> =
            config.layout.leaders.iter().copied().collect();
        for leader in leaders {
            let address = config.layout.address(leader)?.to_string();
            let mut broker_links = Vec::new();
            for connection_index in 0..config.connections_per_broker {
                let client_id = format!(
                    "{}-p{}-c{}",
                    config.client_id, share.index, connection_index
                );
                let connection = Connection::connect(
                    &address,
                    &client_id,
                    config.request_timeout + Duration::from_secs(5),
                )?;
                let version = connection.versions.pick::<ProduceRequest>(12)?;
                produce_version = Some(version);
                let (writer, reader, _) = connection.split();
                let (in_flight, reader) = if config.acks == 0 {
                    (None, None)
                } else {
                    let (sender, receiver) = sync_channel(config.max_in_flight.max(1) - 1);
                    let handle = spawn_reader(
                        config.clone(),
                        share.index,
                        metrics.clone(),
                        reader,
                        receiver,
                        version,
                    )?;
                    (Some(sender), Some(handle))
                };
                broker_links.push(Link {
                    writer,
                    in_flight,
                    reader,
                });
            }
            links.insert(leader, broker_links);
        }
        let builder_bytes = config.batch_bytes + config.record_bytes + 64;
        Ok(Producer {
            produce_version: produce_version.context("the topic has no partition")?,
            links,
            pacer: Pacer::new(share.start, share.records_per_second),
            rng: Rng::new(u64::from(config.run_id) << 32 | u64::from(share.index)),
            filler: Filler::new(config.payload, u64::from(share.index) + 1),
            key_buf: vec![0; config.keys.key_bytes.max(1)],
            builders: (0..partitions)
                .map(|_| BatchBuilder::with_capacity(builder_bytes))
                .collect(),
            intended: (0..partitions).map(|_| Vec::new()).collect(),
            first_sequence: vec![0; partitions],
            next_sequence: vec![0; partitions],
            sticky: share.index as usize % partitions,
            ready: Vec::new(),
            issued: 0,
            config,
            share,
            metrics,
        })
    }

    fn run(&mut self) -> Result<()> {
        loop {
            let now = Instant::now();
            if now >= self.share.end || self.metrics.stopping() || self.all_issued() {
                break;
            }
            let budget = self
                .share
                .records_max
                .map_or(u64::MAX, |max| max - self.issued);
            let due = self.pacer.due(now, GENERATE_PER_TURN_MAX.min(budget));
            for _ in 0..due {
                self.generate(now)?;
            }
            self.collect_lingered(Instant::now())?;
            if !self.ready.is_empty() {
                self.send_ready()?;
                continue;
            }
            if self.pacer.is_fixed_rate() || self.config.linger > Duration::ZERO {
                self.sleep_until_next_event(now);
            }
        }
        // Send what is left, lingering or not.
        for partition in 0..self.builders.len() {
            self.finish(partition)?;
        }
        self.send_ready()
    }

    fn all_issued(&self) -> bool {
        self.share.records_max.is_some_and(|max| self.issued >= max)
    }

    fn generate(&mut self, now: Instant) -> Result<()> {
        let (_, intended) = self.pacer.issue(now);
        self.issued += 1;
        let partitions = self.builders.len();
        let key = self.config.keys.next(&mut self.rng, &mut self.key_buf);
        let partition = match key {
            Some(key) => partition_for_key(key, partitions as u32) as usize,
            None => self.sticky,
        };
        let sequence = self.next_sequence[partition];
        self.next_sequence[partition] += 1;
        let intended_send_ns = self.config.wall_clock.unix_ns(intended);
        let header = ValueHeader {
            run_id: self.config.run_id,
            producer: self.share.index,
            sequence,
            intended_send_ns,
        }
        .encode();
        let filler_bytes = self.config.record_bytes.saturating_sub(VALUE_HEADER_BYTES);
        let filler = self.filler.take(filler_bytes);
        let header = &header[..self.config.record_bytes.min(VALUE_HEADER_BYTES)];
        let builder = &mut self.builders[partition];
        if builder.is_empty() {
            self.first_sequence[partition] = sequence;
        }
        builder.push(
            (intended_send_ns / 1_000_000) as i64,
            key,
            &[header, filler],
        );
        self.intended[partition].push(intended);
        if builder.size_bytes() >= self.config.batch_bytes {
            self.finish(partition)?;
        }
        Ok(())
    }

    /// Closes the open batch of `partition` (if any) into the ready list.
    fn finish(&mut self, partition: usize) -> Result<()> {
        let builder = &mut self.builders[partition];
        if builder.is_empty() {
            return Ok(());
        }
        let mut bytes = BytesMut::with_capacity(builder.size_bytes());
        builder.finish(self.config.codec, &mut bytes)?;
        self.ready.push(ReadyBatch {
            partition: partition as i32,
            bytes: bytes.freeze(),
            first_sequence: self.first_sequence[partition],
            intended: std::mem::take(&mut self.intended[partition]),
        });
        if self.config.keys.distribution == KeyDistribution::None && partition == self.sticky {
            self.sticky = (self.sticky + 1) % self.builders.len();
        }
        Ok(())
    }

    /// Closes every batch whose first record has waited `linger`.
    fn collect_lingered(&mut self, now: Instant) -> Result<()> {
        for partition in 0..self.builders.len() {
            if let Some(first) = self.intended[partition].first() {
                if now.saturating_duration_since(*first) >= self.config.linger {
                    self.finish(partition)?;
                }
            }
        }
        Ok(())
    }

    fn sleep_until_next_event(&self, now: Instant) {
        let mut wake = self.share.end;
        if let Some(first) = self
            .intended
            .iter()
            .filter_map(|intended| intended.first())
            .min()
        {
            wake = wake.min(*first + self.config.linger);
        }
        if let Some(next_due) = self.pacer.next_due() {
            let lingering = self.intended.iter().any(|intended| !intended.is_empty());
            if !lingering {
                wake = wake.min(next_due);
            } else {
                // Wake at least every half batch so full batches go out on time.
                let records_per_batch =
                    (self.config.batch_bytes / self.config.record_bytes.max(1)).max(1) as u32;
                let half_batch = match self.share.records_per_second {
                    Some(rate) => {
                        Duration::from_secs_f64(f64::from(records_per_batch) / rate / 2.0)
                    }
                    None => Duration::ZERO,
                };
                wake = wake.min(next_due.max(now + half_batch));
            }
        }
        let now = Instant::now();
        if wake > now {
            std::thread::sleep(wake - now);
        }
    }

    /// Sends the ready batches, grouped by leader, one batch per partition
    /// per request and at most `request_bytes_max` per request.
    fn send_ready(&mut self) -> Result<()> {
        let mut ready = std::mem::take(&mut self.ready);
        ready.sort_by_key(|batch| (self.route(batch.partition), batch.partition));
        let mut request: Vec<ReadyBatch> = Vec::new();
        let mut request_bytes = 0;
        let mut route = None;
        for batch in ready {
            let batch_route = self.route(batch.partition);
            let full = request_bytes + batch.bytes.len() > self.config.request_bytes_max;
            let repeated = request
                .iter()
                .any(|queued| queued.partition == batch.partition);
            if !request.is_empty() && (route != Some(batch_route) || full || repeated) {
                self.send_request(route.unwrap(), std::mem::take(&mut request))?;
                request_bytes = 0;
            }
            route = Some(batch_route);
            request_bytes += batch.bytes.len();
            request.push(batch);
        }
        if let Some(route) = route {
            if !request.is_empty() {
                self.send_request(route, request)?;
            }
        }
        Ok(())
    }

    /// The leader of `partition` and the connection to it that carries the
    /// partition's batches. One connection per partition keeps a
    /// partition's batches in the order they were made, as a Kafka client's
    /// one connection per broker does; `--connections` spreads partitions,
    /// not the batches of one partition.
    fn route(&self, partition: i32) -> (i32, usize) {
        let leader = self.config.layout.leaders[partition as usize];
        let links = self.links.get(&leader).map_or(1, Vec::len).max(1);
        (leader, partition as usize % links)
    }

    fn send_request(
        &mut self,
        (leader, link): (i32, usize),
        batches: Vec<ReadyBatch>,
    ) -> Result<()> {
        let topic: TopicName = topic_name(&self.config.layout.topic);
        let partition_data = batches
            .iter()
            .map(|batch| {
                PartitionProduceData::default()
                    .with_index(batch.partition)
                    .with_records(Some(batch.bytes.clone()))
            })
            .collect();
        let request = ProduceRequest::default()
            .with_acks(self.config.acks)
            .with_timeout_ms(self.config.request_timeout.as_millis() as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic)
                .with_partition_data(partition_data)]);
        let links = self
            .links
            .get_mut(&leader)
            .context("no connection to a leader")?;
        let link = &mut links[link];
        let records: u64 = batches
            .iter()
            .map(|batch| batch.intended.len() as u64)
            .sum();
        let sent = batches
            .into_iter()
            .map(|batch| SentBatch {
                partition: batch.partition,
                first_sequence: batch.first_sequence,
                intended: batch.intended,
            })
            .collect();
        self.metrics
            .produce_requests
            .fetch_add(1, Ordering::Relaxed);
        match &link.in_flight {
            Some(in_flight) => {
                // Reserve the slot first: the reader must find it when the
                // response arrives. Blocks while the window is full.
                let correlation_id = link.writer.next_correlation_id();
                in_flight
                    .send(InFlight {
                        correlation_id,
                        batches: sent,
                    })
                    .map_err(|_| anyhow::anyhow!("the response reader stopped"))?;
                link.writer.send(&request, self.produce_version)?;
            }
            None => {
                link.writer.send(&request, self.produce_version)?;
                // acks=0: the broker answers nothing; count what was sent.
                self.metrics
                    .produced
                    .add(records, records * self.config.record_bytes as u64);
            }
        }
        Ok(())
    }

    /// Closes the queues, lets the readers drain, and merges their logs.
    fn close(&mut self) -> Result<AckLog> {
        let mut acks = AckLog::default();
        for links in self.links.values_mut() {
            for link in links.iter_mut() {
                link.in_flight = None;
            }
        }
        let mut first_error = None;
        for links in self.links.values_mut() {
            for link in links.iter_mut() {
                if let Some(reader) = link.reader.take() {
                    match reader.join() {
                        Ok(Ok(log)) => acks.merge(log),
                        Ok(Err(error)) => {
                            first_error.get_or_insert(error);
                        }
                        Err(_) => bail!("a response reader panicked"),
                    }
                }
                link.writer.shutdown();
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(acks),
        }
    }
}

fn spawn_reader(
    config: Arc<ProducerConfig>,
    producer: u32,
    metrics: Arc<Metrics>,
    reader: FrameReader,
    in_flight: Receiver<InFlight>,
    version: i16,
) -> Result<JoinHandle<Result<AckLog>>> {
    Ok(std::thread::Builder::new()
        .name(format!("produce-reader-{producer}"))
        .spawn(move || {
            let result = read_responses(&config, producer, &metrics, reader, &in_flight, version);
            if let Err(error) = &result {
                // Count what can no longer be acknowledged, then stop the run.
                let mut lost = 0;
                while let Ok(request) = in_flight.try_recv() {
                    lost += request
                        .batches
                        .iter()
                        .map(|batch| batch.intended.len() as u64)
                        .sum::<u64>();
                }
                Metrics::count_error(&metrics.produce_errors, -1, lost);
                metrics.fail(format!("producer {producer}: {error:#}"));
                // Keep draining so the producer thread never blocks on us.
                while in_flight.recv().is_ok() {}
            }
            result
        })?)
}

fn read_responses(
    config: &ProducerConfig,
    producer: u32,
    metrics: &Arc<Metrics>,
    mut reader: FrameReader,
    in_flight: &Receiver<InFlight>,
    version: i16,
) -> Result<AckLog> {
    let mut acks = AckLog::default();
    let mut recorder = Recorder::produce(metrics.clone());
    let record_bytes = config.record_bytes as u64;
    while let Ok(request) = in_flight.recv() {
        let mut frame = reader.receive_frame()?;
        let done = Instant::now();
        recorder.at(done);
        let (correlation_id, response) = decode_response::<ProduceRequest>(&mut frame, version)?;
        if correlation_id != request.correlation_id {
            bail!(
                "response {correlation_id} arrived for request {}",
                request.correlation_id
            );
        }
        let mut answered = 0usize;
        for topic in &response.responses {
            for partition in &topic.partition_responses {
                let Some(batch) = request
                    .batches
                    .iter()
                    .find(|batch| batch.partition == partition.index)
                else {
                    bail!(
                        "the broker answered for partition {} it was not sent",
                        partition.index
                    );
                };
                answered += 1;
                let records = batch.intended.len() as u64;
                if partition.error_code != 0 {
                    Metrics::count_error(&metrics.produce_errors, partition.error_code, records);
                    continue;
                }
                for intended in &batch.intended {
                    recorder.record(latency_us(*intended, done));
                }
                metrics.produced.add(records, records * record_bytes);
                if config.verify {
                    acks.acknowledge(
                        (producer, batch.partition),
                        batch.first_sequence,
                        records,
                        partition.base_offset,
                    );
                }
            }
        }
        if answered != request.batches.len() {
            bail!(
                "the broker answered {answered} of {} partitions",
                request.batches.len()
            );
        }
    }
    Ok(acks)
}
