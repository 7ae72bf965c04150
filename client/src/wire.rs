//! Blocking Kafka connections: frames out, frames in, nothing else.
//!
//! A [`Connection`] negotiates versions with ApiVersions once, then serves
//! synchronous calls (admin work, fetches, the command-line tools) or
//! splits into a [`FrameWriter`] and a [`FrameReader`] that two threads
//! drive for pipelining: the writer never waits for a response, the reader
//! takes responses in correlation order (Kafka answers in request order on
//! a connection).
//!
//! It knows no workload. Buffers are reused per connection: a request costs
//! one encode into a kept `BytesMut` and one `write_all`. A failure of the
//! socket itself (closed, reset, timed out) is a [`ConnectionError`], so
//! callers can tell a lost connection from a broker's error answer. Broker
//! bytes are untrusted: every decode error is an error value, never a panic.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use serde::Serialize;

use crate::errors::{codes, KafkaError};

/// The largest response frame we accept; a larger size prefix means a
/// broken stream, not a big response.
pub const FRAME_BYTES_MAX: usize = 512 * 1024 * 1024;

/// One API as the broker advertises it in ApiVersions.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ApiRange {
    pub api_key: i16,
    pub name: String,
    pub min_version: i16,
    pub max_version: i16,
}

/// What the broker advertised, and the versions we pick from it.
#[derive(Debug, Clone, Default)]
pub struct Versions {
    pub advertised: Vec<ApiRange>,
    by_key: HashMap<i16, (i16, i16)>,
}

impl Versions {
    /// The highest version both sides speak, capped at `ours_max` (the
    /// newest version the caller fills in correctly; some newer versions
    /// address topics by ID, which this client does not).
    pub fn pick<R: Request>(&self, ours_max: i16) -> Result<i16> {
        let name = api_name(R::KEY);
        let (broker_min, broker_max) = *self.by_key.get(&R::KEY).ok_or_else(|| KafkaError {
            code: codes::UNSUPPORTED_VERSION,
            message: None,
            context: format!("the broker does not support {name}"),
        })?;
        let high = broker_max.min(R::VERSIONS.max).min(ours_max);
        let low = broker_min.max(R::VERSIONS.min);
        if high < low {
            bail!(
                "no common version of {name}: the broker serves {broker_min}..={broker_max}, \
                 this client {}..={}",
                R::VERSIONS.min,
                R::VERSIONS.max.min(ours_max)
            );
        }
        Ok(high)
    }

    pub fn supports_key(&self, key: ApiKey) -> bool {
        self.by_key.contains_key(&(key as i16))
    }
}

/// The connection itself failed (closed, reset, timed out): whatever was in
/// flight on it has an unknown outcome, and the connection is done.
#[derive(Debug)]
pub struct ConnectionError {
    pub address: String,
    /// No answer within the read timeout (the broker may be stalled).
    pub timed_out: Option<Duration>,
    pub source: std::io::Error,
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.timed_out {
            Some(waited) => write!(
                f,
                "{} did not answer within {} ms (--request-timeout-ms)",
                self.address,
                waited.as_millis()
            ),
            None => write!(f, "connection to {} failed: {}", self.address, self.source),
        }
    }
}

impl std::error::Error for ConnectionError {}

impl ConnectionError {
    fn new(address: &str, stream: &TcpStream, source: std::io::Error) -> ConnectionError {
        use std::io::ErrorKind;
        let timed_out = matches!(source.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
            .then(|| stream.read_timeout().ok().flatten().unwrap_or_default());
        ConnectionError {
            address: address.to_string(),
            timed_out,
            source,
        }
    }

    /// The connection error in `error`'s chain, if the connection failed.
    pub fn find(error: &anyhow::Error) -> Option<&ConnectionError> {
        error
            .chain()
            .find_map(|cause| cause.downcast_ref::<ConnectionError>())
    }
}

/// A blocking connection to one broker.
pub struct Connection {
    stream: TcpStream,
    pub address: String,
    pub versions: Versions,
    writer: FrameWriter,
    reader: FrameReader,
}

impl Connection {
    /// Connects (within `timeout`), sets `timeout` as the read and write
    /// timeout, and negotiates API versions.
    pub fn connect(address: &str, client_id: &str, timeout: Duration) -> Result<Connection> {
        let socket_address = address
            .to_socket_addrs()
            .with_context(|| format!("resolving {address}"))?
            .next()
            .with_context(|| format!("{address} resolves to no address"))?;
        let stream = TcpStream::connect_timeout(&socket_address, timeout)
            .map_err(|source| ConnectionError {
                address: address.to_string(),
                timed_out: None,
                source,
            })
            .with_context(|| format!("connecting to {address}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let writer = FrameWriter {
            stream: stream.try_clone()?,
            address: address.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            next_correlation_id: 0,
            buf: BytesMut::with_capacity(64 * 1024),
        };
        let reader = FrameReader {
            stream: stream.try_clone()?,
            address: address.to_string(),
        };
        let mut connection = Connection {
            stream,
            address: address.to_string(),
            versions: Versions::default(),
            writer,
            reader,
        };
        connection.versions = connection.api_versions()?;
        Ok(connection)
    }

    fn api_versions(&mut self) -> Result<Versions> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut response: ApiVersionsResponse = self.call_at(&request, 3)?;
        if response.error_code == codes::UNSUPPORTED_VERSION {
            // The broker answers with v0 and lists what it serves.
            response = self.call_at(&request, 0)?;
        }
        KafkaError::check(response.error_code, None, "ApiVersions failed")?;
        let mut versions = Versions::default();
        for api in &response.api_keys {
            versions.advertised.push(ApiRange {
                api_key: api.api_key,
                name: api_name(api.api_key),
                min_version: api.min_version,
                max_version: api.max_version,
            });
            versions
                .by_key
                .insert(api.api_key, (api.min_version, api.max_version));
        }
        Ok(versions)
    }

    pub fn supports<R: Request>(&self) -> bool {
        self.versions.by_key.contains_key(&R::KEY)
    }

    /// The highest version of `R` both the broker and we speak, at most
    /// `ours_max`.
    pub fn version<R: Request>(&self, ours_max: i16) -> Result<i16> {
        self.versions
            .pick::<R>(ours_max)
            .with_context(|| format!("at {}", self.address))
    }

    /// Sends `request` at the best version up to `ours_max` and waits for
    /// the answer.
    pub fn call<R: Request>(&mut self, request: &R, ours_max: i16) -> Result<R::Response> {
        let version = self.version::<R>(ours_max)?;
        self.call_at(request, version)
    }

    /// Sends `request` at `version` and waits for its response.
    pub fn call_at<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let correlation_id = self.writer.send(request, version)?;
        let (got, body) = self.reader.receive::<R>(version)?;
        if got != correlation_id {
            bail!(
                "{}: response {got} answered request {correlation_id}",
                self.address
            );
        }
        Ok(body)
    }

    /// Writes one request without waiting; returns its correlation id.
    /// Produce with acks=0 uses this alone, since the broker sends no
    /// response.
    pub fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<i32> {
        self.writer.send(request, version)
    }

    /// Splits into a writer and a reader for two threads. Versions stay
    /// readable through the returned copy.
    pub fn split(self) -> (FrameWriter, FrameReader, Versions) {
        drop(self.stream);
        (self.writer, self.reader, self.versions)
    }
}

/// The sending half: encodes requests and writes them, never reads.
/// One request frame into `buf` (cleared first): the size prefix, the
/// header with `correlation_id` and `client_id`, the body at `version`.
/// Shared by every Kafka connection in the workspace, blocking or not.
pub fn encode_request<R: Request>(
    buf: &mut BytesMut,
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
) -> Result<()> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    buf.clear();
    buf.put_i32(0); // size, filled below
    header.encode(buf, R::header_version(version))?;
    request
        .encode(buf, version)
        .with_context(|| format!("encoding {} v{version}", api_name(R::KEY)))?;
    let size = i32::try_from(buf.len() - 4).context("request too large")?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

pub struct FrameWriter {
    stream: TcpStream,
    address: String,
    client_id: StrBytes,
    next_correlation_id: i32,
    buf: BytesMut,
}

impl FrameWriter {
    /// The correlation id the next `send` will use.
    pub fn next_correlation_id(&self) -> i32 {
        self.next_correlation_id
    }

    /// Encodes and writes one request; returns its correlation id.
    pub fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<i32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        encode_request(
            &mut self.buf,
            request,
            version,
            correlation_id,
            &self.client_id,
        )?;
        self.stream
            .write_all(&self.buf)
            .map_err(|error| ConnectionError::new(&self.address, &self.stream, error))?;
        Ok(correlation_id)
    }

    /// Closes the sending direction, so the broker sees end of stream
    /// after the requests already written.
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Closes both directions: the reader's blocked read fails at once.
    pub fn abort(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The receiving half: reads response frames in order.
pub struct FrameReader {
    stream: TcpStream,
    address: String,
}

impl FrameReader {
    /// Reads one whole frame (without its size prefix).
    pub fn receive_frame(&mut self) -> Result<Bytes> {
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|error| ConnectionError::new(&self.address, &self.stream, error))?;
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > FRAME_BYTES_MAX {
            bail!("{} sent a response frame of {size} bytes", self.address);
        }
        let mut body = vec![0u8; size as usize];
        self.stream
            .read_exact(&mut body)
            .map_err(|error| ConnectionError::new(&self.address, &self.stream, error))?;
        Ok(Bytes::from(body))
    }

    /// Reads and decodes one response to a request of type `R`.
    pub fn receive<R: Request>(&mut self, version: i16) -> Result<(i32, R::Response)> {
        let mut frame = self.receive_frame()?;
        decode_response::<R>(&mut frame, version)
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        Ok(self.stream.set_read_timeout(timeout)?)
    }

    pub fn address(&self) -> &str {
        &self.address
    }
}

/// Decodes a response frame (header and body) for a request of type `R`.
pub fn decode_response<R: Request>(frame: &mut Bytes, version: i16) -> Result<(i32, R::Response)> {
    let name = api_name(R::KEY);
    let header = ResponseHeader::decode(frame, R::Response::header_version(version))
        .with_context(|| format!("decoding the {name} response header"))?;
    let body = R::Response::decode(frame, version)
        .with_context(|| format!("decoding the {name} v{version} response"))?;
    if frame.has_remaining() {
        // Newer brokers may append fields we do not know; not an error.
        frame.advance(frame.remaining());
    }
    Ok((header.correlation_id, body))
}

/// Kafka's name of an API (`Metadata`), or `API <key>`.
pub fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|_| format!("API {key}"), |key| format!("{key:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

    #[test]
    fn responses_decode_with_their_header() {
        let mut buf = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(42)
            .encode(&mut buf, MetadataResponse::header_version(12))
            .unwrap();
        MetadataResponse::default()
            .with_throttle_time_ms(7)
            .encode(&mut buf, 12)
            .unwrap();
        buf.put_u8(0xff); // a field from the future
        let (correlation_id, response) =
            decode_response::<MetadataRequest>(&mut buf.freeze(), 12).unwrap();
        assert_eq!(correlation_id, 42);
        assert_eq!(response.throttle_time_ms, 7);
        let garbage = decode_response::<MetadataRequest>(&mut Bytes::from_static(&[0, 0]), 12);
        assert!(garbage.is_err());
    }

    #[test]
    fn versions_pick_the_highest_common_one() {
        let mut versions = Versions::default();
        versions
            .by_key
            .insert(MetadataRequest::KEY, (0, 9 /* an older broker */));
        assert_eq!(versions.pick::<MetadataRequest>(12).unwrap(), 9);
        assert_eq!(versions.pick::<MetadataRequest>(4).unwrap(), 4);
        let error = Versions::default().pick::<MetadataRequest>(12).unwrap_err();
        assert_eq!(
            KafkaError::code_of(&error),
            Some(codes::UNSUPPORTED_VERSION)
        );
    }
}
