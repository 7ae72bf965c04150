//! The cluster: the metadata log replicated by a Raft quorum of controllers
//! (`quorum.rs` over `raft_store.rs`), the records it carries
//! (`records.rs`) and the image they build (`metadata.rs`), the controller
//! that is the only writer (`controller.rs`, deciding with `commands.rs` and
//! `placement.rs`, with `credentials.rs` for SCRAM users, and with `election.rs` and `reassign.rs` for ElectLeaders
//! and partition reassignments), the controller listener's wire (`rpc.rs`),
//! the gauges of the cluster's health (`health.rs`), and the node's start-up
//! of all of it (`node.rs`).

pub mod acls;
pub mod commands;
pub mod controller;
pub mod credentials;
pub mod election;
pub mod health;
pub mod metadata;
pub mod node;
pub mod placement;
pub mod quorum;
pub mod raft_store;
pub mod reassign;
pub mod records;
pub mod rpc;
pub mod voters;

#[cfg(test)]
mod raft_tests;
#[cfg(test)]
mod test_images;
