//! A producer: one thread that generates records on schedule and batches
//! them per partition; its [`Sender`] pipelines Produce requests to each
//! partition's current leader, with one reader thread per connection that
//! takes the responses and records latencies, and retries batches whose
//! leader moved or whose connection was lost.
//!
//! The producer thread never waits for a response. Each connection has a
//! bounded queue of requests in flight (`max_in_flight`); when it is full
//! the producer blocks on it, which is the backpressure, and records that
//! fall due in the meantime keep their intended send times (see `rate`).
//! With idempotence each batch carries the producer ID and its Kafka base
//! sequence (the record's per-partition sequence number, as in the value
//! header), so a retried batch is written once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::BytesMut;
use sluice_client::admin::TopicLayout;
use sluice_client::idempotence::sequence_of;

use crate::batch::{BatchBuilder, Codec};
use crate::payload::VALUE_HEADER_BYTES;
use crate::payload::{
    partition_for_key, Filler, KeyDistribution, KeyGenerator, Payload, Rng, ValueHeader,
};
use crate::rate::{Pacer, WallClock};
use crate::sender::{Batch, Sender};
use crate::stats::Metrics;
use crate::verify::AckLog;

/// Records generated per loop turn at most, so sending stays responsive
/// when a fixed-rate producer has a backlog.
const GENERATE_PER_TURN_MAX: u64 = 4096;

/// Finished batches waiting to be sent before generating pauses.
const BACKLOG_BATCHES_MAX: usize = 256;

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
    /// Where the producer finds the cluster (Metadata, InitProducerId).
    pub bootstrap: String,
    /// Producer ID and sequence numbers on every batch (needs acks=all).
    pub idempotence: bool,
    /// A batch not acknowledged this long after it was made is given up.
    pub delivery_timeout: Duration,
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

/// Runs one producer to the end of its share; returns what was acknowledged.
pub fn run_producer(
    config: Arc<ProducerConfig>,
    share: ProducerShare,
    metrics: Arc<Metrics>,
) -> Result<AckLog> {
    let mut producer = Producer::new(config, share, metrics.clone())?;
    let outcome = producer.run();
    let acks = producer.sender.close();
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
    sender: Sender,
    pacer: Pacer,
    rng: Rng,
    filler: Filler,
    key_buf: Vec<u8>,
    builders: Vec<BatchBuilder>,
    intended: Vec<Vec<Instant>>,
    first_sequence: Vec<u64>,
    next_sequence: Vec<u64>,
    sticky: usize,
    issued: u64,
}

impl Producer {
    fn new(
        config: Arc<ProducerConfig>,
        share: ProducerShare,
        metrics: Arc<Metrics>,
    ) -> Result<Producer> {
        let partitions = config.layout.partitions();
        let sender = Sender::new(config.clone(), share.index, metrics.clone())?;
        let builder_bytes = config.batch_bytes + config.record_bytes + 64;
        Ok(Producer {
            sender,
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
            if self.sender.backlog() > BACKLOG_BATCHES_MAX {
                // The windows are full (or a leader is moving): records
                // that fall due meanwhile keep their intended send times.
                self.sender.pump()?;
                std::thread::sleep(Duration::from_micros(200));
                continue;
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
            self.sender.pump()?;
            if self.pacer.is_fixed_rate() || self.config.linger > Duration::ZERO {
                self.sleep_until_next_event(now);
            } else if !self.sender.idle() && due == 0 {
                // Waiting for the window, or for a retry: do not spin.
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        // Send what is left, lingering or not, then wait for every batch's
        // answer (retrying as leaders move) up to the delivery timeout.
        for partition in 0..self.builders.len() {
            self.finish(partition)?;
        }
        let deadline = Instant::now() + self.config.delivery_timeout;
        while !self.sender.idle() && Instant::now() < deadline && !self.metrics.stopping() {
            self.sender.pump()?;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
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
        let first_sequence = self.first_sequence[partition];
        let identity = self.sender.identity();
        let base_sequence = if identity.is_idempotent() {
            sequence_of(first_sequence)
        } else {
            -1
        };
        builder.finish_as(self.config.codec, &mut bytes, identity, base_sequence)?;
        self.sender.enqueue(Batch {
            partition: partition as i32,
            first_sequence,
            intended: std::mem::take(&mut self.intended[partition]),
            bytes: bytes.freeze(),
            created: Instant::now(),
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
}
