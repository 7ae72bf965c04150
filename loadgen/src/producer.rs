//! A producer: one thread that generates records on schedule and batches
//! them per partition; its [`Sender`] pipelines Produce requests to each
//! partition's current leader, with one reader thread per connection that
//! takes the responses and records latencies, and retries batches whose
//! leader moved or whose connection was lost.
//!
//! The producer thread never waits for a response. Each partition has at
//! most `max_in_flight` batches in flight; the rest wait in the sender's
//! queue, which is the backpressure: at maximum speed the next records are
//! made once the queue is empty, at a fixed rate once it is short again,
//! and records that fall due in the meantime keep their intended send
//! times (see `rate`). Only a fixed-rate producer sleeps for the next
//! record or for a lingering batch; at maximum speed records are always due.
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

/// How often the producer offers waiting batches to the sender again.
const PUMP_INTERVAL: Duration = Duration::from_micros(200);

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
            // At a fixed rate up to BACKLOG_BATCHES_MAX batches may wait;
            // at maximum speed a turn's records go out before the next
            // turn makes more (else the records' latencies would be
            // mostly time in this queue).
            let backlog_max = if self.pacer.is_fixed_rate() {
                BACKLOG_BATCHES_MAX
            } else {
                0
            };
            if self.sender.backlog() > backlog_max {
                // The windows are full (or a leader is moving): records
                // that fall due meanwhile keep their intended send times.
                self.sender.pump()?;
                std::thread::sleep(PUMP_INTERVAL);
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
            // At maximum speed records are always due: the next turn
            // generates more, and the backlog bound above is the only
            // pause. Sleeping for the linger there (or, with no batch
            // open, until the end of the run) stalled the producer.
            if self.pacer.is_fixed_rate() {
                self.sleep_until_next_event(now);
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

    /// Sleeps (fixed rate) until the next record falls due, the oldest open
    /// batch's linger runs out, or the end; no longer than a pump interval
    /// while batches wait in the sender (for the window, or for a retry).
    fn sleep_until_next_event(&self, now: Instant) {
        let oldest_open = self
            .intended
            .iter()
            .filter_map(|intended| intended.first())
            .min()
            .copied();
        let next_due = self.pacer.next_due().unwrap_or(now);
        let wake = next_wake(
            now,
            self.share.end,
            next_due,
            oldest_open.map(|first| first + self.config.linger),
            self.half_batch(),
        );
        let wake = if self.sender.backlog() > 0 {
            wake.min(now + PUMP_INTERVAL)
        } else {
            wake
        };
        let now = Instant::now();
        if wake > now {
            std::thread::sleep(wake - now);
        }
    }

    /// The time half a batch of records takes at the fixed rate.
    fn half_batch(&self) -> Duration {
        let records_per_batch =
            (self.config.batch_bytes / self.config.record_bytes.max(1)).max(1) as u32;
        match self.share.records_per_second {
            Some(rate) => Duration::from_secs_f64(f64::from(records_per_batch) / rate / 2.0),
            None => Duration::ZERO,
        }
    }
}

/// When a fixed-rate producer has something to do next: the end of the
/// run, an open batch's linger running out (`linger_end`), the next record
/// falling due; while a batch is open, at least every half batch, so full
/// batches go out on time.
fn next_wake(
    now: Instant,
    end: Instant,
    next_due: Instant,
    linger_end: Option<Instant>,
    half_batch: Duration,
) -> Instant {
    match linger_end {
        None => end.min(next_due),
        Some(linger_end) => end.min(linger_end).min(next_due.max(now + half_batch)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_rate_producer_wakes_for_the_next_record_or_the_linger() {
        let now = Instant::now();
        let end = now + Duration::from_secs(10);
        let ms = Duration::from_millis;
        // Nothing open: the next record.
        assert_eq!(next_wake(now, end, now + ms(3), None, ms(1)), now + ms(3));
        // An open batch whose linger ends first.
        assert_eq!(
            next_wake(now, end, now + ms(3), Some(now + ms(2)), ms(1)),
            now + ms(2)
        );
        // Records falling due faster than half a batch: every half batch.
        assert_eq!(
            next_wake(now, end, now, Some(now + ms(5)), ms(1)),
            now + ms(1)
        );
        // Never past the end.
        assert_eq!(next_wake(now, end, end + ms(1), None, ms(1)), end);
    }
}
