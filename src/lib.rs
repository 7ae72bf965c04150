//! Sluice: a Kafka-compatible message broker, thread-per-core on io_uring.
//!
//! The crate is the broker; the binary in `main.rs` is a thin edge over it.
//! Flow runs one way: `net` (frames) -> `protocol` (decode) -> `handlers`
//! (one per Kafka API) -> routed to the owning shard -> `partition` ->
//! `storage`. Topic metadata is owned by shard 0 (`cluster`) and copied
//! read-only to every shard. See ARCHITECTURE.md for the map and invariants.

pub mod alloc;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod console;
pub mod coordinator;
pub mod fetch_session;
pub mod handlers;
pub mod histogram;
pub mod metrics;
pub mod net;
pub mod partition;
pub mod protocol;
pub mod replication;
pub mod security;
pub mod server;
pub mod shard;
pub mod stages;
pub mod storage;
pub mod txn;

#[global_allocator]
static ALLOCATOR: alloc::SluiceAllocator = alloc::SluiceAllocator;
