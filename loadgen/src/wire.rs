//! Blocking Kafka connections: frames out, frames in, nothing else.
//!
//! A [`Connection`] negotiates versions with ApiVersions once, then serves
//! synchronous calls (admin work) or splits into a [`FrameWriter`] and a
//! [`FrameReader`] that two threads drive for pipelining: the writer never
//! waits for a response, the reader takes responses in correlation order
//! (Kafka answers in request order on a connection).
//!
//! It knows no workload. Buffers are reused per connection: a request costs
//! one encode into a kept `BytesMut` and one `write_all`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use serde::Serialize;

/// The largest response frame we accept; a larger size prefix means a
/// broken stream, not a big response.
pub const FRAME_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// One API as the broker advertises it in ApiVersions.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ApiRange {
    pub api_key: i16,
    pub name: String,
    pub min_version: i16,
    pub max_version: i16,
}

/// What the broker advertised, and the versions we picked from it.
#[derive(Debug, Clone, Default)]
pub struct Versions {
    pub advertised: Vec<ApiRange>,
    by_key: HashMap<i16, (i16, i16)>,
}

impl Versions {
    /// The highest version both sides speak, capped at `ours_max` (some
    /// newer versions address topics by ID, which this client does not).
    pub fn pick<R: Request>(&self, ours_max: i16) -> Result<i16> {
        let (broker_min, broker_max) = *self.by_key.get(&R::KEY).ok_or_else(|| {
            anyhow!(
                "the broker does not advertise {:?}",
                ApiKey::try_from(R::KEY).map_or(R::KEY.to_string(), |k| format!("{k:?}"))
            )
        })?;
        let ours = R::VERSIONS;
        let high = broker_max.min(ours.max).min(ours_max);
        let low = broker_min.max(ours.min);
        if high < low {
            bail!(
                "no common version for API {}: broker {}..={}, loadgen {}..={}",
                R::KEY,
                broker_min,
                broker_max,
                ours.min,
                ours.max.min(ours_max)
            );
        }
        Ok(high)
    }

    pub fn supports(&self, key: ApiKey) -> bool {
        self.by_key.contains_key(&(key as i16))
    }
}

/// A blocking connection to one broker.
pub struct Connection {
    stream: TcpStream,
    pub addr: String,
    pub versions: Versions,
    writer: FrameWriter,
    reader: FrameReader,
}

impl Connection {
    /// Connects and negotiates API versions.
    pub fn connect(addr: &str, client_id: &str, timeout: Duration) -> Result<Connection> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        let client_id = StrBytes::from_string(client_id.to_string());
        let writer = FrameWriter {
            stream: stream.try_clone()?,
            client_id,
            next_correlation_id: 0,
            buf: BytesMut::with_capacity(64 * 1024),
        };
        let reader = FrameReader {
            stream: stream.try_clone()?,
        };
        let mut connection = Connection {
            stream,
            addr: addr.to_string(),
            versions: Versions::default(),
            writer,
            reader,
        };
        connection.versions = connection.api_versions()?;
        Ok(connection)
    }

    fn api_versions(&mut self) -> Result<Versions> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-loadgen"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut response: ApiVersionsResponse = self.call(&request, 3)?;
        if response.error_code == UNSUPPORTED_VERSION {
            // The broker answers with v0 and lists what it serves.
            response = self.call(&request, 0)?;
        }
        if response.error_code != 0 {
            bail!("ApiVersions failed with error code {}", response.error_code);
        }
        let mut versions = Versions::default();
        for api in &response.api_keys {
            let name = ApiKey::try_from(api.api_key)
                .map_or_else(|_| format!("Unknown{}", api.api_key), |k| format!("{k:?}"));
            versions.advertised.push(ApiRange {
                api_key: api.api_key,
                name,
                min_version: api.min_version,
                max_version: api.max_version,
            });
            versions
                .by_key
                .insert(api.api_key, (api.min_version, api.max_version));
        }
        Ok(versions)
    }

    /// Sends one request and waits for its response.
    pub fn call<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let correlation_id = self.writer.send(request, version)?;
        let (got, body) = self.reader.receive::<R>(version)?;
        if got != correlation_id {
            bail!("correlation id {got} answered request {correlation_id}");
        }
        Ok(body)
    }

    /// Splits into a writer and a reader for two threads. Versions stay
    /// readable through the returned copy.
    pub fn split(self) -> (FrameWriter, FrameReader, Versions) {
        drop(self.stream);
        (self.writer, self.reader, self.versions)
    }
}

/// The sending half: encodes requests and writes them, never reads.
pub struct FrameWriter {
    stream: TcpStream,
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
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        self.buf.clear();
        self.buf.put_i32(0); // size, filled below
        header.encode(&mut self.buf, R::header_version(version))?;
        request.encode(&mut self.buf, version)?;
        let size = (self.buf.len() - 4) as i32;
        self.buf[..4].copy_from_slice(&size.to_be_bytes());
        self.stream
            .write_all(&self.buf)
            .context("writing a request")?;
        Ok(correlation_id)
    }

    /// Closes the sending direction, so the broker sees end of stream
    /// after the requests already written.
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }
}

/// The receiving half: reads response frames in order.
pub struct FrameReader {
    stream: TcpStream,
}

impl FrameReader {
    /// Reads one whole frame (without its size prefix).
    pub fn receive_frame(&mut self) -> Result<Bytes> {
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .context("reading a response size")?;
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > FRAME_BYTES_MAX {
            bail!("response frame of {size} bytes");
        }
        let mut body = vec![0u8; size as usize];
        self.stream
            .read_exact(&mut body)
            .context("reading a response body")?;
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
}

/// Decodes a response frame (header and body) for a request of type `R`.
pub fn decode_response<R: Request>(frame: &mut Bytes, version: i16) -> Result<(i32, R::Response)> {
    let header_version = R::Response::header_version(version);
    let header = ResponseHeader::decode(frame, header_version)?;
    let body = R::Response::decode(frame, version)
        .with_context(|| format!("decoding the response to API {} v{version}", R::KEY))?;
    if frame.has_remaining() {
        // Newer brokers may append fields we do not know; not an error.
        frame.advance(frame.remaining());
    }
    Ok((header.correlation_id, body))
}
