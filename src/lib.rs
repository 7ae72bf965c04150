//! Sluice: a Kafka-compatible message broker, thread-per-core on io_uring.
//!
//! The crate is the broker; the binary in `main.rs` is a thin edge over it.
//! Flow runs one way: `net` (frames) -> `protocol` (decode) -> `handlers`
//! (one per Kafka API) -> routed to the owning shard -> `storage`.
//! See ARCHITECTURE.md at the repository root for the map and invariants.

pub mod storage;
