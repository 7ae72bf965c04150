//! The cluster keys, with Kafka's names: `process.roles`,
//! `controller.quorum.voters` (Kafka's `ID@HOST:PORT,...`) and
//! `controller.listen`, and the rules between the cluster keys.
//!
//! Owns: parsing and normalizing the voters; the default of
//! `controller.listen` (this node's own voter entry, resolved); the rules
//! that combined mode is the only mode, that `node.id` is among the voters,
//! that the heartbeat interval is below the session timeout, and that a
//! follower's fetch wait fits in the replica lag time.
//!
//! Must not: connect to anything or hold cluster state (the Raft quorum and
//! replication read the typed fields of `BrokerConfig`). Its only I/O is
//! resolving this node's own voter host name (std `ToSocketAddrs`) once at
//! start-up, and only when `controller.listen` is not set.

use std::net::{SocketAddr, ToSocketAddrs};

use super::validate::{format_host_port, parse_listen, split_host_port};
use super::values::Values;
use super::{ConfigError, QuorumVoter};

const VOTERS: &str = "controller.quorum.voters";
const CONTROLLER_LISTEN: &str = "controller.listen";

/// Kafka's `1@127.0.0.1:9191,2@127.0.0.1:9192`; empty text is no voters.
/// Node ids are non-negative and distinct, ports non-zero.
pub(super) fn parse_voters(text: &str) -> Result<Vec<QuorumVoter>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut voters: Vec<QuorumVoter> = Vec::new();
    for entry in text.split(',').map(str::trim) {
        let voter = parse_voter(entry)?;
        if voters.iter().any(|other| other.node_id == voter.node_id) {
            let id = voter.node_id;
            return Err(format!("node id {id} is listed twice, got {text:?}"));
        }
        voters.push(voter);
    }
    Ok(voters)
}

fn parse_voter(entry: &str) -> Result<QuorumVoter, String> {
    let syntax = || {
        format!(
            "expected comma-separated ID@HOST:PORT such as 1@127.0.0.1:9191,2@127.0.0.1:9192, \
             got {entry:?}"
        )
    };
    let (id, address) = entry.split_once('@').ok_or_else(syntax)?;
    let node_id = id
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(syntax)?;
    let (host, port) = split_host_port(address)
        .filter(|(host, _)| !host.contains('@'))
        .ok_or_else(syntax)?;
    if port == 0 {
        return Err(format!("port 0 in {entry:?}: a voter needs a fixed port"));
    }
    Ok(QuorumVoter {
        node_id,
        host,
        port,
    })
}

/// The normalized text that is stored and reported.
pub(super) fn format_voters(voters: &[QuorumVoter]) -> String {
    let entries: Vec<String> = voters
        .iter()
        .map(|voter| {
            let address = format_host_port(&voter.host, voter.port);
            format!("{}@{address}", voter.node_id)
        })
        .collect();
    entries.join(",")
}

/// The voters, from a value that passed its validator.
pub(super) fn voters(values: &Values) -> Vec<QuorumVoter> {
    parse_voters(values.text(VOTERS)).expect("validated controller.quorum.voters")
}

fn own_voter(values: &Values) -> Option<QuorumVoter> {
    let node_id = values.integer("node.id");
    voters(values)
        .into_iter()
        .find(|voter| i64::from(voter.node_id) == node_id)
}

/// An IP literal or `localhost` without a resolver; any other name through
/// std's resolver, first address.
fn resolve(voter: &QuorumVoter) -> Result<SocketAddr, String> {
    let text = format_host_port(&voter.host, voter.port);
    if let Some(address) = parse_listen(&text) {
        return Ok(address);
    }
    match (voter.host.as_str(), voter.port).to_socket_addrs() {
        Ok(mut addresses) => addresses
            .next()
            .ok_or_else(|| format!("{text} resolves to no address")),
        Err(error) => Err(format!("cannot resolve {text}: {error}")),
    }
}

/// The default of `controller.listen`: this node's own voter entry,
/// resolved. `None` without voters (a single node needs no controller
/// listener), or when the entry is missing or does not resolve, which
/// [`check_rules`] then reports.
pub(super) fn default_controller_listen(values: &Values) -> Option<String> {
    let address = resolve(&own_voter(values)?).ok()?;
    Some(address.to_string())
}

/// The rules between cluster keys; each error names the key to change and
/// the other key involved.
pub(super) fn check_rules(values: &Values) -> Result<(), ConfigError> {
    let invalid =
        |key: &str, message: String| Err(ConfigError::invalid(key, values.origin_of(key), message));
    let roles = values.text("process.roles");
    let mut sorted: Vec<&str> = roles.split(',').collect();
    sorted.sort_unstable();
    if sorted != ["broker", "controller"] {
        let message = format!(
            "{roles:?}: only combined mode (broker,controller) is supported in this version"
        );
        return invalid("process.roles", message);
    }

    let voters = voters(values);
    if !voters.is_empty() {
        let Some(own) = own_voter(values) else {
            let node_id = values.text("node.id");
            let text = values.text(VOTERS);
            return invalid(
                VOTERS,
                format!("node.id {node_id} is not among the voters {text}"),
            );
        };
        if values.get(CONTROLLER_LISTEN).is_none() {
            let reason = resolve(&own).err().unwrap_or_default();
            let message = format!(
                "defaults to this node's entry in {VOTERS}, but {reason}; set {CONTROLLER_LISTEN} \
                 (--controller-listen)"
            );
            return invalid(CONTROLLER_LISTEN, message);
        }
    }
    if let Some(controller) = values.get(CONTROLLER_LISTEN).and_then(parse_listen) {
        let listen = parse_listen(values.text("listen")).expect("validated listen address");
        let same_ip = controller.ip() == listen.ip()
            || controller.ip().is_unspecified()
            || listen.ip().is_unspecified();
        if controller.port() != 0 && controller.port() == listen.port() && same_ip {
            let message = format!(
                "{controller} is also the Kafka listener (listen {listen}); the controller needs \
                 a port of its own"
            );
            return invalid(CONTROLLER_LISTEN, message);
        }
    }

    let session = values.integer("broker.session.timeout.ms");
    let heartbeat = values.integer("broker.heartbeat.interval.ms");
    if heartbeat >= session {
        let message = format!("{heartbeat} is not less than broker.session.timeout.ms {session}");
        return invalid("broker.heartbeat.interval.ms", message);
    }
    // Kafka's rule: a follower waiting this long in one fetch must not fall
    // out of the ISR for it.
    let wait = values.integer("replica.fetch.wait.max.ms");
    let lag = values.integer("replica.lag.time.max.ms");
    if wait > lag {
        let message = format!("{wait} is above replica.lag.time.max.ms {lag}");
        return invalid("replica.fetch.wait.max.ms", message);
    }
    Ok(())
}
