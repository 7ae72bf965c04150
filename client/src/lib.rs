//! Sluice's Kafka client: the one client library `loadgen`, the web console and the
//! `sluice` command-line tools share. Blocking std networking, no
//! workload: what a tool sends is its own business.
//!
//! - [`wire`]: connections with ApiVersions negotiation; synchronous calls,
//!   or a writer and a reader half for pipelining on two threads.
//! - [`errors`]: Kafka's error codes by name, [`KafkaError`].
//! - [`retry`]: the retry policy as a pure function (what to refresh,
//!   how long to back off, when to give up).
//! - [`cluster`]: bootstrap, Metadata (leaders, broker addresses), a
//!   connection per broker, coordinators, and [`cluster::retrying`], which
//!   follows a leader or coordinator that moved.
//! - [`idempotence`]: producer IDs, epochs and per-partition sequence
//!   numbers, so a retried batch is deduplicated by the broker.
//! - [`group`]: a consumer-group member (classic protocol, range assignor).
//! - [`offsets`]: ListOffsets at each leader, OffsetFetch, OffsetCommit.
//! - [`admin`]: topics, configs, partitions, DeleteRecords.
//! - [`acls`]: CreateAcls, DescribeAcls, DeleteAcls.
//! - [`partitioner`]: Kafka's murmur2 key partitioner.
//! - [`records`]: the Fetch request, and record batches split and decoded.

use kafka_protocol::messages::{GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;

pub mod acls;
pub mod admin;
pub mod cluster;
pub mod errors;
pub mod group;
pub mod idempotence;
pub mod offsets;
pub mod partitioner;
pub mod records;
pub mod retry;
pub mod users;
pub mod wire;

pub use cluster::{retrying, Cluster};
pub use errors::{codes, error_name, KafkaError};
pub use wire::{Connection, ConnectionError};

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}
