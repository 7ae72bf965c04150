//! Where the time of a produce request goes: one latency histogram per
//! stage, kept by the shard whose connection the request came in on.
//!
//! Owns: the stage names and their histograms. The connection layer
//! (`net`) records the stages around the handler (reading the frame,
//! decoding, encoding, waiting for earlier responses, writing); the Produce
//! handler records its own (routing, the hop to the owning shard, the
//! append, the durability and replication waits, the hop back). Rendered by
//! the metrics endpoint as `sluice_produce_stage_seconds` quantiles, which
//! `benches/produce_tail.sh` prints beside the client's percentiles.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::histogram::LatencyHistogram;

/// The stages of a produce request, in the order they happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Reading the frame's body once its size has arrived.
    Read,
    /// Decoding the frame into a request.
    Decode,
    /// The handler's ordered part: leader checks and queuing a job per
    /// owning shard.
    Route,
    /// From queuing a job to its start on the owning shard (the mesh queue
    /// and the owner's task scheduling).
    Hop,
    /// Appending a job's partitions on the owning shard.
    Append,
    /// acks=all: from the append to the local `fdatasync` covering it.
    Durable,
    /// acks=all: from the append to the high watermark covering it (every
    /// in-sync replica has it on disk; on one replica, the same as durable
    /// plus the wake-up).
    Replicated,
    /// From the job's end on the owner to the requesting shard resuming.
    Reply,
    /// Encoding the response.
    Encode,
    /// The encoded response waiting for the connection's earlier responses
    /// (Kafka answers in order) and for the writer to run.
    InOrder,
    /// Writing the response to the socket.
    Write,
    /// From the frame's size to the response written.
    Total,
}

impl Stage {
    pub const ALL: [Stage; 12] = [
        Stage::Read,
        Stage::Decode,
        Stage::Route,
        Stage::Hop,
        Stage::Append,
        Stage::Durable,
        Stage::Replicated,
        Stage::Reply,
        Stage::Encode,
        Stage::InOrder,
        Stage::Write,
        Stage::Total,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Decode => "decode",
            Stage::Route => "route",
            Stage::Hop => "hop",
            Stage::Append => "append",
            Stage::Durable => "durable",
            Stage::Replicated => "replicated",
            Stage::Reply => "reply",
            Stage::Encode => "encode",
            Stage::InOrder => "in_order",
            Stage::Write => "write",
            Stage::Total => "total",
        }
    }
}

/// One histogram per [`Stage`].
#[derive(Clone, Debug, Default)]
pub struct StageHistograms {
    stages: [LatencyHistogram; Stage::ALL.len()],
}

impl StageHistograms {
    pub fn get(&self, stage: Stage) -> &LatencyHistogram {
        &self.stages[stage as usize]
    }
}

/// A shard's produce stage histograms.
#[derive(Debug, Default)]
pub struct ProduceStages {
    histograms: RefCell<StageHistograms>,
}

impl ProduceStages {
    pub fn record(&self, stage: Stage, took: Duration) {
        self.histograms.borrow_mut().stages[stage as usize].record(took);
    }

    /// Records the time between two instants (zero if `to` is earlier).
    pub fn record_between(&self, stage: Stage, from: Instant, to: Instant) {
        self.record(stage, to.saturating_duration_since(from));
    }

    pub fn snapshot(&self) -> StageHistograms {
        self.histograms.borrow().clone()
    }
}

/// When a produce job ran on its owning shard, for the requester's stages.
#[derive(Clone, Copy, Debug)]
pub struct JobTiming {
    pub started: Instant,
    pub appended: Instant,
    /// acks=all: when the last partition's records were synced locally, and
    /// when the high watermark covered them.
    pub durable: Option<Instant>,
    pub replicated: Option<Instant>,
    pub finished: Instant,
}

impl JobTiming {
    /// Records the job's stages; `queued` is when the requester queued it.
    pub fn record(&self, stages: &ProduceStages, queued: Instant, resumed: Instant) {
        stages.record_between(Stage::Hop, queued, self.started);
        stages.record_between(Stage::Append, self.started, self.appended);
        if let Some(durable) = self.durable {
            stages.record_between(Stage::Durable, self.appended, durable);
        }
        if let Some(replicated) = self.replicated {
            stages.record_between(Stage::Replicated, self.appended, replicated);
        }
        stages.record_between(Stage::Reply, self.finished, resumed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_records_its_stages_between_its_instants() {
        let stages = ProduceStages::default();
        let queued = Instant::now();
        let ms = Duration::from_millis;
        let timing = JobTiming {
            started: queued + ms(1),
            appended: queued + ms(3),
            durable: Some(queued + ms(7)),
            replicated: None,
            finished: queued + ms(8),
        };
        timing.record(&stages, queued, queued + ms(10));
        let snapshot = stages.snapshot();
        let millis = |stage| snapshot.get(stage).max().as_secs_f64() * 1e3;
        assert!((millis(Stage::Hop) - 1.0).abs() < 0.02);
        assert!((millis(Stage::Append) - 2.0).abs() < 0.03);
        assert!((millis(Stage::Durable) - 4.0).abs() < 0.05);
        assert!((millis(Stage::Reply) - 2.0).abs() < 0.03);
        assert_eq!(snapshot.get(Stage::Replicated).count(), 0);
        assert_eq!(snapshot.get(Stage::Total).count(), 0);
    }
}
