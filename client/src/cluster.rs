//! The cluster as a client sees it: bootstrap addresses, then Metadata's
//! brokers and the leader of every partition it asked about, one
//! connection per broker opened on demand, and group coordinators found
//! with FindCoordinator.
//!
//! A [`Cluster`] belongs to one thread. It does not refresh by itself:
//! [`retrying`] runs an attempt, asks the retry policy what an error means,
//! and refreshes Metadata (leaders moved, a connection was lost) or the
//! coordinator before trying again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use kafka_protocol::messages::find_coordinator_response::FindCoordinatorResponse;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{FindCoordinatorRequest, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;

use crate::errors::KafkaError;
use crate::retry::{Decision, Outcome, Refresh, RetryPolicy};
use crate::topic_name;
use crate::wire::{Connection, ConnectionError};

/// One partition as the last Metadata described it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionView {
    /// -1 while the partition has no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error_code: i16,
}

/// The cluster: brokers, leaders, connections.
pub struct Cluster {
    bootstrap: Vec<String>,
    client_id: String,
    timeout: Duration,
    policy: RetryPolicy,
    /// The connection for requests any broker answers.
    any: Option<Connection>,
    brokers: BTreeMap<i32, String>,
    connections: BTreeMap<i32, Connection>,
    /// Topic -> partition -> what Metadata said.
    topics: BTreeMap<String, BTreeMap<i32, PartitionView>>,
    /// Group -> its coordinator's node id and address.
    /// By key type (0 group, 1 transactional id) and key.
    coordinators: BTreeMap<(i8, String), (i32, String)>,
}

impl Cluster {
    /// Connects to the first reachable address of a comma-separated list.
    pub fn connect(bootstrap_servers: &str, client_id: &str, timeout: Duration) -> Result<Cluster> {
        let bootstrap: Vec<String> = bootstrap_servers
            .split(',')
            .map(str::trim)
            .filter(|address| !address.is_empty())
            .map(String::from)
            .collect();
        if bootstrap.is_empty() {
            anyhow::bail!("the bootstrap server list names no address");
        }
        let mut cluster = Cluster {
            bootstrap,
            client_id: client_id.to_string(),
            timeout,
            policy: RetryPolicy::with_budget(timeout),
            any: None,
            brokers: BTreeMap::new(),
            connections: BTreeMap::new(),
            topics: BTreeMap::new(),
            coordinators: BTreeMap::new(),
        };
        cluster.any()?;
        Ok(cluster)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    pub fn set_policy(&mut self, policy: RetryPolicy) {
        self.policy = policy;
    }

    /// A connection for requests any broker answers: the bootstrap
    /// connection, or after it failed, any broker that answers (the
    /// bootstrap addresses first, then those Metadata named).
    pub fn any(&mut self) -> Result<&mut Connection> {
        if self.any.is_none() {
            let mut candidates = self.bootstrap.clone();
            candidates.extend(self.brokers.values().cloned());
            let mut last_error = None;
            for address in candidates {
                match Connection::connect(&address, &self.client_id, self.timeout) {
                    Ok(connection) => {
                        self.any = Some(connection);
                        break;
                    }
                    Err(error) => last_error = Some(error),
                }
            }
            if self.any.is_none() {
                return Err(last_error.unwrap_or_else(|| anyhow!("no broker to connect to")));
            }
        }
        Ok(self.any.as_mut().expect("connected above"))
    }

    /// Metadata for `topics` (`None`: every topic), without creating any.
    /// Remembers the brokers' addresses and the partitions' leaders.
    pub fn metadata(&mut self, topics: Option<&[String]>) -> Result<MetadataResponse> {
        self.metadata_with(topics, false)
    }

    /// Metadata, letting the broker auto-create `topics` if it is set to
    /// (as producers do).
    pub fn metadata_with(
        &mut self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> Result<MetadataResponse> {
        let response = match self.metadata_once(topics, allow_auto_create) {
            Err(error) if ConnectionError::find(&error).is_some() => {
                // The broker we asked went away: ask another.
                self.any = None;
                self.metadata_once(topics, allow_auto_create)?
            }
            result => result?,
        };
        self.learn(&response);
        Ok(response)
    }

    fn metadata_once(
        &mut self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> Result<MetadataResponse> {
        let connection = self.any()?;
        let version = connection.version::<MetadataRequest>(12)?;
        let mut request = MetadataRequest::default().with_topics(topics.map(|names| {
            names
                .iter()
                .map(|name| MetadataRequestTopic::default().with_name(Some(topic_name(name))))
                .collect()
        }));
        if version >= 4 {
            request = request.with_allow_auto_topic_creation(allow_auto_create);
        }
        connection.call_at(&request, version)
    }

    fn learn(&mut self, response: &MetadataResponse) {
        for broker in &response.brokers {
            let address = format!("{}:{}", broker.host.as_str(), broker.port);
            if self.brokers.get(&broker.node_id.0) != Some(&address) {
                self.connections.remove(&broker.node_id.0);
            }
            self.brokers.insert(broker.node_id.0, address);
        }
        for topic in &response.topics {
            let Some(name) = topic.name.as_ref() else {
                continue;
            };
            if topic.error_code != 0 {
                self.topics.remove(name.0.as_str());
                continue;
            }
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    (
                        partition.partition_index,
                        PartitionView {
                            leader: if partition.error_code == 0 || partition.leader_id.0 >= 0 {
                                partition.leader_id.0
                            } else {
                                -1
                            },
                            leader_epoch: partition.leader_epoch,
                            replicas: partition.replica_nodes.iter().map(|b| b.0).collect(),
                            isr: partition.isr_nodes.iter().map(|b| b.0).collect(),
                            error_code: partition.error_code,
                        },
                    )
                })
                .collect();
            self.topics.insert(name.0.to_string(), partitions);
        }
    }

    /// Metadata again for every topic asked about so far (and `extra`).
    pub fn refresh(&mut self, extra: &[String]) -> Result<()> {
        let mut topics: Vec<String> = self.topics.keys().cloned().collect();
        topics.extend(extra.iter().cloned());
        topics.sort();
        topics.dedup();
        self.metadata(Some(&topics))?;
        Ok(())
    }

    /// What the last Metadata said of `topic`'s partitions.
    pub fn partitions(&self, topic: &str) -> Option<&BTreeMap<i32, PartitionView>> {
        self.topics.get(topic)
    }

    /// The leader of a partition as last seen, if it has one.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        self.topics
            .get(topic)?
            .get(&partition)
            .map(|view| view.leader)
            .filter(|leader| *leader >= 0)
    }

    pub fn broker_ids(&self) -> Vec<i32> {
        self.brokers.keys().copied().collect()
    }

    pub fn brokers(&self) -> &BTreeMap<i32, String> {
        &self.brokers
    }

    pub fn address(&self, node: i32) -> Option<&str> {
        self.brokers.get(&node).map(String::as_str)
    }

    /// A connection to broker `node` (as named by the last Metadata).
    pub fn broker(&mut self, node: i32) -> Result<&mut Connection> {
        if !self.connections.contains_key(&node) {
            let address = self
                .brokers
                .get(&node)
                .with_context(|| format!("broker {node} is not in the cluster's metadata"))?
                .clone();
            let connection = Connection::connect(&address, &self.client_id, self.timeout)?;
            self.connections.insert(node, connection);
        }
        Ok(self.connections.get_mut(&node).expect("inserted above"))
    }

    /// A connection to the leader of `topic`-`partition`; a partition
    /// without a leader is LEADER_NOT_AVAILABLE (retriable).
    pub fn leader_connection(&mut self, topic: &str, partition: i32) -> Result<&mut Connection> {
        let leader = self.leader(topic, partition).ok_or_else(|| KafkaError {
            code: crate::errors::codes::LEADER_NOT_AVAILABLE,
            message: None,
            context: format!("{topic}-{partition} has no leader"),
        })?;
        self.broker(leader)
    }

    /// Forgets connections to `address` (after they failed).
    pub fn disconnect_address(&mut self, address: &str) {
        self.connections
            .retain(|_, connection| connection.address != address);
        if self.any.as_ref().is_some_and(|any| any.address == address) {
            self.any = None;
        }
    }

    /// Forgets the connection to `node`.
    pub fn disconnect(&mut self, node: i32) {
        self.connections.remove(&node);
    }

    /// A connection to the coordinator of consumer group `group`, found
    /// with FindCoordinator once and remembered until
    /// [`Cluster::forget_coordinators`].
    pub fn coordinator(&mut self, group: &str) -> Result<&mut Connection> {
        self.coordinator_of_key(KEY_TYPE_GROUP, group)
    }

    /// A connection to the transaction coordinator of `transactional_id`
    /// (FindCoordinator key type 1), remembered like a group's.
    pub fn transaction_coordinator(&mut self, transactional_id: &str) -> Result<&mut Connection> {
        self.coordinator_of_key(KEY_TYPE_TRANSACTION, transactional_id)
    }

    fn coordinator_of_key(&mut self, key_type: i8, key: &str) -> Result<&mut Connection> {
        let remembered = (key_type, key.to_string());
        let (node, address) = match self.coordinators.get(&remembered) {
            Some(found) => found.clone(),
            None => {
                let found = self.find_coordinator(key_type, key)?;
                self.coordinators.insert(remembered, found.clone());
                found
            }
        };
        if self.brokers.get(&node) != Some(&address) {
            self.connections.remove(&node);
            self.brokers.insert(node, address);
        }
        self.broker(node)
    }

    /// After NOT_COORDINATOR and the like: ask FindCoordinator again.
    pub fn forget_coordinators(&mut self) {
        self.coordinators.clear();
    }

    fn find_coordinator(&mut self, key_type: i8, group: &str) -> Result<(i32, String)> {
        let connection = self.any()?;
        let version = connection.version::<FindCoordinatorRequest>(4)?;
        let mut request = FindCoordinatorRequest::default().with_key_type(key_type);
        let key = StrBytes::from_string(group.to_string());
        request = if version >= 4 {
            request.with_coordinator_keys(vec![key])
        } else {
            request.with_key(key)
        };
        let response = connection.call_at(&request, version)?;
        coordinator_of(&response, version, group)
    }

    /// Acts on a failed attempt's error: forgets a failed connection,
    /// refreshes what the policy says. Returns the outcome it saw.
    pub fn recover(&mut self, error: &anyhow::Error, refresh: Refresh) {
        if let Some(lost) = ConnectionError::find(error) {
            let address = lost.address.clone();
            self.disconnect_address(&address);
        }
        match refresh {
            Refresh::Nothing => {}
            Refresh::Coordinator => self.forget_coordinators(),
            Refresh::Metadata => {
                // A failed refresh is retried with the next attempt.
                let _ = self.refresh(&[]);
                self.forget_coordinators();
            }
        }
    }
}

/// FindCoordinator's key types.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// What an attempt's result means to the retry policy.
pub fn outcome_of<T>(result: &Result<T>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(error) => {
            if let Some(code) = KafkaError::code_of(error) {
                Outcome::Error(code)
            } else if ConnectionError::find(error).is_some() {
                Outcome::ConnectionLost
            } else {
                // Neither the broker's answer nor the connection: a bug or
                // a broken stream; retrying will not help.
                Outcome::Error(i16::MIN)
            }
        }
    }
}

/// Runs `attempt` until it succeeds or the cluster's retry policy gives up,
/// refreshing Metadata or the coordinator between attempts as it says.
pub fn retrying<T>(
    cluster: &mut Cluster,
    mut attempt: impl FnMut(&mut Cluster) -> Result<T>,
) -> Result<T> {
    let policy = cluster.policy();
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        let result = attempt(cluster);
        match policy.decide(outcome_of(&result), attempts, started.elapsed()) {
            Decision::Retry { refresh, after } => {
                let error = result.err().expect("only errors are retried");
                std::thread::sleep(after);
                cluster.recover(&error, refresh);
                attempts += 1;
            }
            Decision::Done | Decision::GiveUp => return result,
        }
    }
}

fn coordinator_of(
    response: &FindCoordinatorResponse,
    version: i16,
    group: &str,
) -> Result<(i32, String)> {
    let context = format!("finding the coordinator of group '{group}'");
    if version >= 4 {
        let found = response
            .coordinators
            .first()
            .with_context(|| format!("{context}: the broker answered no coordinator"))?;
        KafkaError::check(found.error_code, found.error_message.as_ref(), context)?;
        return Ok((
            found.node_id.0,
            format!("{}:{}", found.host.as_str(), found.port),
        ));
    }
    KafkaError::check(
        response.error_code,
        response.error_message.as_ref(),
        context,
    )?;
    Ok((
        response.node_id.0,
        format!("{}:{}", response.host.as_str(), response.port),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::codes;

    #[test]
    fn outcomes_tell_answers_from_lost_connections() {
        let answered: Result<()> = KafkaError::check(codes::NOT_LEADER_OR_FOLLOWER, None, "x");
        assert_eq!(
            outcome_of(&answered),
            Outcome::Error(codes::NOT_LEADER_OR_FOLLOWER)
        );
        let lost: Result<()> = Err(anyhow::Error::from(ConnectionError {
            address: "h:1".into(),
            timed_out: None,
            source: std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        })
        .context("fetching"));
        assert_eq!(outcome_of(&lost), Outcome::ConnectionLost);
        assert_eq!(outcome_of(&Ok(())), Outcome::Ok);
        let other: Result<()> = Err(anyhow!("decoding"));
        assert_eq!(
            RetryPolicy::default().decide(outcome_of(&other), 0, Duration::ZERO),
            Decision::GiveUp
        );
    }
}
