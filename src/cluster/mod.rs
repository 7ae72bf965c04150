//! Node and cluster metadata: the topic image every shard reads, and the
//! controller on shard 0 that is its only writer.

pub mod controller;
pub mod metadata;
pub mod raft_store;

#[cfg(test)]
mod raft_tests;
