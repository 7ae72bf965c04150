//! Sluice's load generator: a Kafka client built for measurement.
//!
//! It speaks the Kafka protocol through `sluice-client` (connections,
//! cluster metadata, leader following, retries, idempotence, groups) with
//! its own batch builder and parser on the hot path, over blocking sockets: a
//! producer thread pipelines Produce requests and a reader thread per
//! connection takes the answers; consumer threads Fetch from assigned
//! partitions. Nothing here belongs to the broker; it measures any
//! Kafka-compatible broker the same way.
//!
//! Honesty rules, each enforced in one place:
//! - latency is measured from the intended send time (`rate`), so a stalled
//!   broker cannot hide behind a generator that waited for it;
//! - warm-up is excluded exactly (`stats`);
//! - verification compares what was acknowledged with what was consumed
//!   (`verify`), so a broker that loses, duplicates or reorders records is
//!   named with offsets.
//!
//! Module map: `cli` (flags), `run` (one run's orchestration), `producer`,
//! `consumer`, `faults` (the fault schedule: signals to broker processes),
//! `batch` (v2 record batches), `payload` (value header, keys, partitioner),
//! `rate` (schedule, coordinated omission), `stats` (histograms, progress,
//! HDR log), `verify`, `report` (table, JSON), `plot` (SVG), `limits` (the machine's raw
//! limits: loopback TCP, direct-I/O write, fdatasync).

pub mod batch;
pub mod cli;
pub mod consumer;
pub mod faults;
pub mod limits;
pub mod payload;
pub mod plot;
pub mod producer;
pub mod rate;
pub mod report;
pub mod run;
pub mod sender;
pub mod stats;
pub mod verify;
