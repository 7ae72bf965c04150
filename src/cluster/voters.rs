//! The controller addresses of the quorum voters, by node id: resolved from
//! `controller.quorum.voters` at start-up, and looked up again after a
//! connection to a voter fails, so a voter that comes back under the same
//! name with a new IP (a recreated Kubernetes pod, a container on a new
//! address) is found without restarting the others.
//!
//! Runs on shard 0 (shared by the peer senders and the controller through
//! an `Rc`). Must not: hold a connection, or look a name up more often than
//! every `LOOKUP_INTERVAL_MS` per voter: a lookup blocks shard 0's thread
//! (std's resolver), as the replication fetcher's does.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::config::{BrokerConfig, QuorumVoter};

/// The least time between two lookups of one voter's name.
pub const LOOKUP_INTERVAL_MS: u64 = 2_000;

pub struct VoterAddresses {
    voters: Vec<QuorumVoter>,
    current: RefCell<BTreeMap<i32, SocketAddr>>,
    looked_up: RefCell<BTreeMap<i32, Instant>>,
}

fn lookup(voter: &QuorumVoter) -> Option<SocketAddr> {
    (voter.host.as_str(), voter.port)
        .to_socket_addrs()
        .ok()?
        .next()
}

impl VoterAddresses {
    /// Every voter resolved; an error names the first that does not
    /// resolve. A single node without voters is its own only voter and
    /// needs no address.
    pub fn resolve(config: &BrokerConfig) -> Result<VoterAddresses, String> {
        let mut current = BTreeMap::new();
        if config.controller_quorum_voters.is_empty() {
            current.insert(config.node_id, SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        for voter in &config.controller_quorum_voters {
            let address = lookup(voter).ok_or_else(|| {
                format!(
                    "cannot resolve {}:{} (key 'controller.quorum.voters')",
                    voter.host, voter.port
                )
            })?;
            current.insert(voter.node_id, address);
        }
        Ok(VoterAddresses {
            voters: config.controller_quorum_voters.clone(),
            current: RefCell::new(current),
            looked_up: RefCell::new(BTreeMap::new()),
        })
    }

    pub fn get(&self, node_id: i32) -> Option<SocketAddr> {
        self.current.borrow().get(&node_id).copied()
    }

    pub fn all(&self) -> BTreeMap<i32, SocketAddr> {
        self.current.borrow().clone()
    }

    /// After a failed connection to `node_id`: look its name up again,
    /// unless that was done less than `LOOKUP_INTERVAL_MS` ago. A name that
    /// does not resolve now keeps the last address.
    pub fn refresh(&self, node_id: i32) {
        let now = Instant::now();
        let interval = Duration::from_millis(LOOKUP_INTERVAL_MS);
        if let Some(last) = self.looked_up.borrow().get(&node_id) {
            if now.duration_since(*last) < interval {
                return;
            }
        }
        self.looked_up.borrow_mut().insert(node_id, now);
        let Some(voter) = self.voters.iter().find(|voter| voter.node_id == node_id) else {
            return;
        };
        let Some(address) = lookup(voter) else {
            return;
        };
        let previous = self.current.borrow_mut().insert(node_id, address);
        if previous != Some(address) {
            tracing::info!(
                node_id,
                host = %voter.host,
                %address,
                previous = ?previous,
                "controller address of a voter changed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(voters: &str) -> BrokerConfig {
        BrokerConfig::from_toml_str(&format!(
            "node.id = 1\ncontroller.quorum.voters = \"{voters}\"\ncontroller.listen = \"127.0.0.1:0\""
        ))
        .unwrap()
    }

    #[test]
    fn resolves_every_voter_and_names_one_that_does_not_resolve() {
        let voters = VoterAddresses::resolve(&config("1@127.0.0.1:9191,2@localhost:9192")).unwrap();
        assert_eq!(
            voters.get(1),
            Some(SocketAddr::from(([127, 0, 0, 1], 9191)))
        );
        assert_eq!(voters.get(2).map(|address| address.port()), Some(9192));
        let error =
            VoterAddresses::resolve(&config("1@127.0.0.1:9191,2@no-such-host.invalid:9192"))
                .err()
                .unwrap();
        assert!(error.contains("no-such-host.invalid:9192"), "{error}");
    }

    #[test]
    fn refresh_looks_up_again_at_most_every_interval() {
        let voters = VoterAddresses::resolve(&config("1@127.0.0.1:9191,2@127.0.0.1:9192")).unwrap();
        let stale = SocketAddr::from(([10, 0, 0, 2], 9192));
        voters.current.borrow_mut().insert(2, stale);
        voters.refresh(2);
        assert_eq!(
            voters.get(2),
            Some(SocketAddr::from(([127, 0, 0, 1], 9192)))
        );
        voters.current.borrow_mut().insert(2, stale);
        voters.refresh(2);
        assert_eq!(
            voters.get(2),
            Some(stale),
            "looked up again within the interval"
        );
    }
}
