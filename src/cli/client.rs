//! A small blocking Kafka client for the command-line tools: one
//! `TcpStream` per broker, one request in flight, versions negotiated with
//! ApiVersions.
//!
//! It runs on the CLI's main thread only (no glommio, no shards) and talks
//! to any Kafka-compatible broker. Broker bytes are untrusted: every decode
//! error is an error value, never a panic.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::FindCoordinatorResponse;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FindCoordinatorRequest, GroupId,
    MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// The largest response frame accepted; a larger size prefix means a broken
/// stream, not a big response.
pub const RESPONSE_BYTES_MAX: usize = 512 * 1024 * 1024;

const CLIENT_ID: &str = "sluice-cli";

/// A Kafka error code answered by a broker, shown with Kafka's name:
/// `TOPIC_ALREADY_EXISTS: Topic 'x' already exists.`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    pub code: i16,
    pub message: Option<String>,
    /// What was being done, when the broker's message does not say it.
    pub context: String,
}

impl KafkaError {
    /// `Ok` for code 0 (no error), otherwise the error.
    pub fn check(code: i16, message: Option<&StrBytes>, context: impl Into<String>) -> Result<()> {
        if code == 0 {
            return Ok(());
        }
        Err(KafkaError {
            code,
            message: message.map(|m| m.to_string()).filter(|m| !m.is_empty()),
            context: context.into(),
        }
        .into())
    }

    pub fn name(&self) -> String {
        error_name(self.code)
    }
}

impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.name())?;
        match &self.message {
            Some(message) => write!(f, "{message}"),
            None => write!(f, "{}", self.context),
        }
    }
}

impl std::error::Error for KafkaError {}

/// Kafka's name for an error code, as in the Java client's `Errors` enum
/// (`TOPIC_ALREADY_EXISTS`), or `UNKNOWN_ERROR_CODE_<n>`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(code)) => format!("UNKNOWN_ERROR_CODE_{code}"),
        Some(known) => screaming_snake(&known.to_string()),
    }
}

/// `TopicAlreadyExists` -> `TOPIC_ALREADY_EXISTS`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (index, character) in camel.chars().enumerate() {
        if character.is_ascii_uppercase() && index > 0 {
            out.push('_');
        }
        out.push(character.to_ascii_uppercase());
    }
    out
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

/// One blocking connection to one broker.
pub struct Connection {
    stream: TcpStream,
    pub address: String,
    /// API key -> (min, max) as the broker advertised.
    advertised: BTreeMap<i16, (i16, i16)>,
    next_correlation_id: i32,
    buf: BytesMut,
}

impl Connection {
    /// Connects to `address` and negotiates API versions.
    pub fn connect(address: &str, timeout: Duration) -> Result<Connection> {
        let socket_address = address
            .to_socket_addrs()
            .with_context(|| format!("resolving {address}"))?
            .next()
            .with_context(|| format!("{address} resolves to no address"))?;
        let stream = TcpStream::connect_timeout(&socket_address, timeout)
            .with_context(|| format!("connecting to {address}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut connection = Connection {
            stream,
            address: address.to_string(),
            advertised: BTreeMap::new(),
            next_correlation_id: 0,
            buf: BytesMut::with_capacity(64 * 1024),
        };
        connection.negotiate()?;
        Ok(connection)
    }

    fn negotiate(&mut self) -> Result<()> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut response: ApiVersionsResponse = self.call_at(&request, 3)?;
        if response.error_code == ResponseError::UnsupportedVersion.code() {
            // The broker answered in v0 and listed what it serves.
            response = self.call_at(&request, 0)?;
        }
        KafkaError::check(response.error_code, None, "ApiVersions failed")?;
        for api in &response.api_keys {
            self.advertised
                .insert(api.api_key, (api.min_version, api.max_version));
        }
        Ok(())
    }

    pub fn supports<R: Request>(&self) -> bool {
        self.advertised.contains_key(&R::KEY)
    }

    /// The highest version of `R` both the broker and we speak, at most
    /// `ours_max` (the newest version this client fills in correctly).
    pub fn version<R: Request>(&self, ours_max: i16) -> Result<i16> {
        let name = api_name(R::KEY);
        let (broker_min, broker_max) = *self.advertised.get(&R::KEY).ok_or_else(|| KafkaError {
            code: ResponseError::UnsupportedVersion.code(),
            message: None,
            context: format!("the broker at {} does not support {name}", self.address),
        })?;
        let high = broker_max.min(R::VERSIONS.max).min(ours_max);
        let low = broker_min.max(R::VERSIONS.min);
        if high < low {
            bail!(
                "no common version of {name}: the broker at {} serves {broker_min}..={broker_max}, \
                 this tool {}..={}",
                self.address,
                R::VERSIONS.min,
                R::VERSIONS.max.min(ours_max)
            );
        }
        Ok(high)
    }

    /// Sends `request` at the best version up to `ours_max` and waits for
    /// the answer.
    pub fn call<R: Request>(&mut self, request: &R, ours_max: i16) -> Result<R::Response> {
        let version = self.version::<R>(ours_max)?;
        self.call_at(request, version)
    }

    /// Sends `request` at `version` and waits for the answer.
    pub fn call_at<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let correlation_id = self.send(request, version)?;
        let name = api_name(R::KEY);
        let mut frame = self
            .receive_frame()
            .with_context(|| format!("waiting for the {name} v{version} response"))?;
        let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
            .with_context(|| format!("decoding the {name} response header"))?;
        if header.correlation_id != correlation_id {
            bail!(
                "{}: response {} answered request {correlation_id}",
                self.address,
                header.correlation_id
            );
        }
        let body = R::Response::decode(&mut frame, version)
            .with_context(|| format!("decoding the {name} v{version} response"))?;
        frame.advance(frame.remaining());
        Ok(body)
    }

    /// Writes one request; returns its correlation id. Produce with acks=0
    /// uses this alone, since the broker sends no response.
    pub fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<i32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        self.buf.clear();
        self.buf.put_i32(0); // the size, filled in below
        header.encode(&mut self.buf, R::header_version(version))?;
        request
            .encode(&mut self.buf, version)
            .with_context(|| format!("encoding {} v{version}", api_name(R::KEY)))?;
        let size = i32::try_from(self.buf.len() - 4).context("request too large")?;
        self.buf[..4].copy_from_slice(&size.to_be_bytes());
        self.stream
            .write_all(&self.buf)
            .with_context(|| format!("writing to {}", self.address))?;
        Ok(correlation_id)
    }

    fn receive_frame(&mut self) -> Result<Bytes> {
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|error| self.read_error(error))?;
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > RESPONSE_BYTES_MAX {
            bail!("{} sent a response frame of {size} bytes", self.address);
        }
        let mut body = vec![0u8; size as usize];
        self.stream
            .read_exact(&mut body)
            .map_err(|error| self.read_error(error))?;
        Ok(Bytes::from(body))
    }

    /// A read timeout reads as EAGAIN; say what it means.
    fn read_error(&self, error: std::io::Error) -> anyhow::Error {
        use std::io::ErrorKind;
        if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            let waited = self
                .stream
                .read_timeout()
                .ok()
                .flatten()
                .unwrap_or_default();
            return anyhow!(
                "{} did not answer within {} ms (--request-timeout-ms)",
                self.address,
                waited.as_millis()
            );
        }
        anyhow::Error::from(error).context(format!("reading a response from {}", self.address))
    }
}

pub fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|_| format!("API {key}"), |key| format!("{key:?}"))
}

/// The cluster as the CLI sees it: a bootstrap connection, the brokers
/// named by the last Metadata, and connections to them opened on demand.
pub struct Client {
    bootstrap: Connection,
    bootstrap_node: Option<i32>,
    timeout: Duration,
    brokers: BTreeMap<i32, String>,
    connections: BTreeMap<i32, Connection>,
    /// Group -> its coordinator's node id and address.
    coordinators: BTreeMap<String, (i32, String)>,
}

impl Client {
    /// Connects to the first reachable address of a comma-separated list.
    pub fn connect(bootstrap_servers: &str, timeout: Duration) -> Result<Client> {
        let mut last_error = None;
        for address in bootstrap_servers.split(',').map(str::trim) {
            if address.is_empty() {
                continue;
            }
            match Connection::connect(address, timeout) {
                Ok(bootstrap) => {
                    return Ok(Client {
                        bootstrap,
                        bootstrap_node: None,
                        timeout,
                        brokers: BTreeMap::new(),
                        connections: BTreeMap::new(),
                        coordinators: BTreeMap::new(),
                    })
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("--bootstrap-server names no address")))
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The bootstrap connection, for requests any broker answers.
    pub fn any(&mut self) -> &mut Connection {
        &mut self.bootstrap
    }

    /// Metadata for `topics` (`None`: every topic), without creating any.
    /// Remembers the brokers' addresses.
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
        let version = self.bootstrap.version::<MetadataRequest>(12)?;
        let mut request = MetadataRequest::default().with_topics(topics.map(|names| {
            names
                .iter()
                .map(|name| MetadataRequestTopic::default().with_name(Some(topic_name(name))))
                .collect()
        }));
        if version >= 4 {
            request = request.with_allow_auto_topic_creation(allow_auto_create);
        }
        let response = self.bootstrap.call_at(&request, version)?;
        for broker in &response.brokers {
            let address = format!("{}:{}", broker.host.as_str(), broker.port);
            if address == self.bootstrap.address {
                self.bootstrap_node = Some(broker.node_id.0);
            }
            self.brokers.insert(broker.node_id.0, address);
        }
        Ok(response)
    }

    pub fn broker_ids(&self) -> Vec<i32> {
        self.brokers.keys().copied().collect()
    }

    /// A connection to broker `node` (as named by the last Metadata).
    pub fn broker(&mut self, node: i32) -> Result<&mut Connection> {
        if self.bootstrap_node == Some(node) {
            return Ok(&mut self.bootstrap);
        }
        if !self.connections.contains_key(&node) {
            let address = self
                .brokers
                .get(&node)
                .with_context(|| format!("broker {node} is not in the cluster's metadata"))?
                .clone();
            let connection = Connection::connect(&address, self.timeout)?;
            self.connections.insert(node, connection);
        }
        Ok(self.connections.get_mut(&node).expect("inserted above"))
    }

    /// A connection to the coordinator of consumer group `group`, found
    /// with FindCoordinator once and remembered until
    /// [`Client::forget_coordinators`].
    pub fn coordinator(&mut self, group: &str) -> Result<&mut Connection> {
        let (node, address) = match self.coordinators.get(group) {
            Some(found) => found.clone(),
            None => {
                let found = self.find_coordinator(group)?;
                self.coordinators.insert(group.to_string(), found.clone());
                found
            }
        };
        if address == self.bootstrap.address {
            return Ok(&mut self.bootstrap);
        }
        self.brokers.insert(node, address);
        self.broker(node)
    }

    /// After NOT_COORDINATOR and the like: ask FindCoordinator again.
    pub fn forget_coordinators(&mut self) {
        self.coordinators.clear();
    }

    fn find_coordinator(&mut self, group: &str) -> Result<(i32, String)> {
        let version = self.bootstrap.version::<FindCoordinatorRequest>(4)?;
        let mut request = FindCoordinatorRequest::default().with_key_type(0);
        let key = StrBytes::from_string(group.to_string());
        request = if version >= 4 {
            request.with_coordinator_keys(vec![key])
        } else {
            request.with_key(key)
        };
        let response = self.bootstrap.call_at(&request, version)?;
        coordinator_of(&response, version, group)
    }
}

/// Errors that clear up by themselves: a partition or coordinator still
/// loading or moving (as right after a broker starts).
pub const RETRIABLE: &[i16] = &[5, 6, 7, 14, 15, 16];
/// The same, plus UNKNOWN_TOPIC_OR_PARTITION, for requests about partitions
/// Metadata has just named (a restarted broker may not have opened them yet).
pub const RETRIABLE_FOR_DATA: &[i16] = &[3, 5, 6, 7, 14, 15, 16];
const RETRY_BACKOFF_MS: u64 = 100;

/// Runs `attempt` until it succeeds, fails with an error that is not a
/// Kafka error in `codes`, or the client's request timeout has passed.
pub fn retrying<T>(
    client: &mut Client,
    codes: &[i16],
    mut attempt: impl FnMut(&mut Client) -> Result<T>,
) -> Result<T> {
    let deadline = std::time::Instant::now() + client.timeout();
    loop {
        match attempt(client) {
            Err(error)
                if std::time::Instant::now() < deadline
                    && error
                        .downcast_ref::<KafkaError>()
                        .is_some_and(|kafka| codes.contains(&kafka.code)) =>
            {
                // The coordinator may have moved or be another broker now.
                client.forget_coordinators();
                std::thread::sleep(Duration::from_millis(RETRY_BACKOFF_MS));
            }
            result => return result,
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

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(30000), "UNKNOWN_ERROR_CODE_30000");
    }

    #[test]
    fn kafka_error_shows_the_brokers_message_or_the_context() {
        let with_message = KafkaError {
            code: 36,
            message: Some("Topic 'x' already exists.".into()),
            context: "creating topic 'x'".into(),
        };
        assert_eq!(
            with_message.to_string(),
            "TOPIC_ALREADY_EXISTS: Topic 'x' already exists."
        );
        let without = KafkaError {
            message: None,
            ..with_message
        };
        assert_eq!(
            without.to_string(),
            "TOPIC_ALREADY_EXISTS: creating topic 'x'"
        );
    }
}
