//! Flags. Names follow Kafka's client settings where one exists
//! (`--acks`, `--linger-ms`, `--batch-size`, `--compression`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::batch::Codec;
use crate::payload::{KeyDistribution, Payload};

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "A Kafka load generator with honest latency percentiles",
    long_about = "Produces, consumes, or both, against any Kafka-compatible broker, speaking the \
                  Kafka protocol itself. Fixed-rate runs measure latency from each record's \
                  intended send time (coordinated omission corrected)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Produce only: throughput and acknowledgement latency.
    Produce(RunArgs),
    /// Consume only, from assigned partitions.
    Consume(RunArgs),
    /// Producers and consumers together: end-to-end latency from the
    /// timestamp carried in each record to its consumption.
    E2e(RunArgs),
    /// End to end with verification: every acknowledged record must be
    /// consumed once, in order per partition. Exits 2 when it is not.
    Verify(RunArgs),
    /// Draws latency-percentile curves of one or more JSON reports as SVG.
    Plot(PlotArgs),
    /// Measures the machine's raw limits: loopback TCP bandwidth, direct-I/O
    /// write bandwidth and fdatasync latency.
    Limits(LimitsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct LimitsArgs {
    /// Directory on the disk to measure (the broker's data disk).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Time for each measure.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    Produce,
    Consume,
    E2e,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    Earliest,
    Latest,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct RunArgs {
    /// Broker to bootstrap from (host:port).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Topic to use.
    #[arg(long, default_value = "loadgen")]
    pub topic: String,
    /// Partitions when creating the topic.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i16,
    /// Topic configs when creating it, as name=value (repeatable).
    #[arg(long = "topic-config", value_parser = parse_key_value)]
    pub topic_configs: Vec<(String, String)>,
    /// Delete the topic first, then create it.
    #[arg(long)]
    pub recreate: bool,

    /// Record value size in bytes (at least 24 for end-to-end latency and
    /// verification: the value starts with a 24-byte header).
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// How records get keys.
    #[arg(long, value_enum, default_value_t = KeyDistribution::None)]
    pub keys: KeyDistribution,
    /// Distinct keys (uniform and hot distributions).
    #[arg(long, default_value_t = 1_000_000)]
    pub key_space: u64,
    /// Key size in bytes.
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Number of hot keys (hot distribution).
    #[arg(long, default_value_t = 4)]
    pub hot_keys: u64,
    /// Share of records that use a hot key (hot distribution).
    #[arg(long, default_value_t = 0.8)]
    pub hot_fraction: f64,
    /// Filler after the value header: incompressible, or text (about 2:1).
    #[arg(long, value_enum, default_value_t = Payload::Random)]
    pub payload: Payload,

    /// Close a batch at this many bytes.
    #[arg(long, default_value_t = 16384)]
    pub batch_size: usize,
    /// Wait up to this long (ms, fractions allowed) for a batch to fill.
    #[arg(long, default_value_t = 5.0)]
    pub linger_ms: f64,
    /// Largest Produce request, in bytes.
    #[arg(long, default_value_t = 1_048_576)]
    pub max_request_size: usize,
    /// Produce requests in flight per connection.
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: i16,
    #[arg(long, value_enum, default_value_t = Codec::None)]
    pub compression: Codec,
    /// Producer threads.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Connections per producer to each broker; each partition keeps to one
    /// of them (partition modulo connections), so its batches stay in order.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Consumer threads; partitions are assigned round-robin.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,

    /// Total target rate: records/s (e.g. 50000), or bytes/s with a unit
    /// (50MB/s, 50MiB/s). Absent: as fast as possible.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<Rate>,
    /// Measured duration, after the warm-up (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub duration: Duration,
    /// Warm-up, excluded from the results (e.g. 5s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub warmup: Duration,
    /// Stop after this many records in total (produced, or consumed).
    #[arg(long)]
    pub records: Option<u64>,

    /// Consume as members of this consumer group (classic protocol, range
    /// assignment, commits on rebalance and exit) instead of reading
    /// assigned partitions.
    #[arg(long)]
    pub group: Option<String>,
    /// Where consumers start (consume workload; end to end starts at the end).
    #[arg(long, value_enum, default_value_t = StartFrom::Earliest)]
    pub from: StartFrom,
    /// Consume workload: stop when every partition reaches the end it had at
    /// the start.
    #[arg(long)]
    pub until_end: bool,
    #[arg(long, default_value_t = 500)]
    pub fetch_max_wait_ms: u64,
    #[arg(long, default_value_t = 1)]
    pub fetch_min_bytes: i32,
    #[arg(long, default_value_t = 52_428_800)]
    pub fetch_max_bytes: i32,
    #[arg(long, default_value_t = 1_048_576)]
    pub partition_max_bytes: i32,
    /// Skip the CRC check of fetched batches.
    #[arg(long)]
    pub no_crc_check: bool,
    /// End to end: how long consumers may take to catch up after producers stop.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub drain_timeout: Duration,

    /// Self-test of verify mode: the consumer discards the record with this
    /// sequence number of producer 0 in partition 0, as if the broker had
    /// lost it; verification must then report exactly one lost record.
    #[arg(long)]
    pub drop_acked: Option<u64>,
    /// Verify: consumers start only when producers are done, and read
    /// everything this run wrote (checks what the broker kept, e.g. after a
    /// fault; end-to-end latency is then not meaningful).
    #[arg(long)]
    pub consume_after: bool,
    /// Self-test of verify mode against the broker itself: when producers
    /// are done, DeleteRecords removes partition 0's records below this
    /// offset, then consumers read (implies --consume-after). Verification
    /// must report exactly the deleted acknowledged records as lost.
    #[arg(long)]
    pub delete_records_before: Option<i64>,

    #[arg(long, default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// Idempotent producing (a producer ID and sequence numbers on every
    /// batch, so a batch retried after a leader change is written once;
    /// needs --acks all). Default: on for verify with --acks all, off
    /// otherwise.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub idempotence: Option<bool>,
    /// A batch not acknowledged this long after it was made (retries
    /// included) is given up.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub delivery_timeout: Duration,
    /// A fault at a time of the run: ACTION:TARGET@TIME[,FOLLOWUP@TIME],
    /// e.g. kill:leader-of=TOPIC/0@10s,restart@20s or
    /// stop:broker=2@15s,cont@25s (repeatable; see loadgen/README.md).
    #[arg(long = "fault", value_name = "SPEC")]
    pub faults: Vec<String>,
    /// Pid files of the brokers faults may signal: N=PATH[,N=PATH...].
    #[arg(long, value_delimiter = ',', value_name = "N=PATH")]
    pub broker_pids: Vec<String>,
    /// How to start broker N again after a kill (run as `sh -c 'exec CMD'`;
    /// the new pid goes to its pid file): N=CMD (repeatable).
    #[arg(long = "broker-cmd", value_name = "N=CMD")]
    pub broker_cmds: Vec<String>,
    /// A name for this run in reports and plots (e.g. the broker's name).
    #[arg(long)]
    pub label: Option<String>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the HDR interval log (1 s intervals, tagged produce and e2e) here.
    #[arg(long)]
    pub hdr_log: Option<PathBuf>,
    /// Write a latency-percentile plot (SVG) of this run here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// JSON reports written with --report.
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// The SVG to write.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Plot title.
    #[arg(long, default_value = "Latency by percentile")]
    pub title: String,
}

/// A target rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rate {
    RecordsPerSecond(f64),
    BytesPerSecond(f64),
}

impl Rate {
    pub fn records_per_second(self, record_bytes: usize) -> f64 {
        match self {
            Rate::RecordsPerSecond(rate) => rate,
            Rate::BytesPerSecond(rate) => rate / record_bytes.max(1) as f64,
        }
    }
}

pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix("/s").unwrap_or(&lower);
    let units: &[(&str, f64)] = &[
        ("kib", 1024.0),
        ("mib", 1024.0 * 1024.0),
        ("gib", 1024.0 * 1024.0 * 1024.0),
        ("kb", 1e3),
        ("mb", 1e6),
        ("gb", 1e9),
        ("b", 1.0),
    ];
    for (unit, scale) in units {
        if let Some(number) = lower.strip_suffix(unit) {
            let value: f64 = number
                .trim()
                .parse()
                .map_err(|_| format!("bad rate {text:?}"))?;
            return positive(value * scale, text).map(Rate::BytesPerSecond);
        }
    }
    let value: f64 = lower
        .parse()
        .map_err(|_| format!("bad rate {text:?}: records/s, or e.g. 50MB/s"))?;
    positive(value, text).map(Rate::RecordsPerSecond)
}

fn positive(value: f64, text: &str) -> Result<f64, String> {
    if value > 0.0 && value.is_finite() {
        Ok(value)
    } else {
        Err(format!("rate {text:?} must be positive"))
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {text:?}: e.g. 30s, 500ms, 2m"))?;
    if value < 0.0 || !value.is_finite() {
        return Err(format!("bad duration {text:?}"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

pub fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err(format!("acks must be 0, 1 or all, not {text:?}")),
    }
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected name=value, got {text:?}"))?;
    Ok((key.to_string(), value.to_string()))
}

fn serialize_duration<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

impl RunArgs {
    /// Checks flags against each other, before any connection.
    pub fn validate(&self, workload: Workload, verify: bool) -> Result<()> {
        if self.partitions < 1 {
            bail!("--partitions must be at least 1");
        }
        if self.producers < 1 || self.consumers < 1 || self.connections < 1 {
            bail!("--producers, --consumers and --connections must be at least 1");
        }
        let needs_header = workload == Workload::E2e || verify;
        if needs_header && self.record_size < crate::payload::VALUE_HEADER_BYTES {
            bail!(
                "--record-size must be at least {} for end-to-end latency and verification",
                crate::payload::VALUE_HEADER_BYTES
            );
        }
        if self.record_size > crate::payload::FILLER_POOL_BYTES / 2 {
            bail!(
                "--record-size is at most {}",
                crate::payload::FILLER_POOL_BYTES / 2
            );
        }
        if self.keys != KeyDistribution::None && self.key_size < 1 {
            bail!("--key-size must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.hot_fraction) {
            bail!("--hot-fraction is between 0 and 1");
        }
        if self.keys == KeyDistribution::Hot && self.hot_keys < 1 {
            bail!("--hot-keys must be at least 1");
        }
        if self.key_space < 1 {
            bail!("--key-space must be at least 1");
        }
        if verify && self.acks == 0 {
            bail!("verify needs acknowledgements: --acks 1 or all");
        }
        if (self.consume_after || self.delete_records_before.is_some()) && !verify {
            bail!("--consume-after and --delete-records-before belong to the verify command");
        }
        if self.drop_acked.is_some() && !verify {
            bail!("--drop-acked is a self-test of the verify command");
        }
        if self.linger_ms < 0.0 {
            bail!("--linger-ms cannot be negative");
        }
        if self.idempotence == Some(true) && self.acks != -1 {
            bail!("--idempotence needs --acks all");
        }
        for fault in &self.faults {
            crate::faults::parse_fault(fault)?;
        }
        crate::faults::Brokers::parse(&self.broker_pids, &self.broker_cmds)?;
        Ok(())
    }

    /// Whether producers are idempotent: as asked, else in verify runs
    /// with acks=all.
    pub fn idempotent(&self, verify: bool) -> bool {
        self.idempotence.unwrap_or(verify && self.acks == -1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("50000"), Ok(Rate::RecordsPerSecond(50_000.0)));
        assert_eq!(parse_rate("50MB/s"), Ok(Rate::BytesPerSecond(50e6)));
        assert_eq!(parse_rate("1MiB/s"), Ok(Rate::BytesPerSecond(1048576.0)));
        assert_eq!(parse_rate("10kb"), Ok(Rate::BytesPerSecond(10e3)));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        assert_eq!(
            Rate::BytesPerSecond(50e6).records_per_second(1000),
            50_000.0
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn acks() {
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("1"), Ok(1));
        assert!(parse_acks("2").is_err());
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
