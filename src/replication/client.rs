//! A follower's connection to its leader's Kafka listener: requests
//! encoded with `kafka-protocol`, one at a time, on a glommio stream of the
//! shard that runs the fetcher.
//!
//! Must not: retry or interpret answers (the fetcher does). The leader's
//! bytes are trusted no more than a client's: sizes are bounded and decode
//! errors are errors, never panics.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::{ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::{Decodable, HeaderVersion, Request, StrBytes};

use crate::config::BrokerConfig;

/// Fetch answers are bounded by `replica.fetch.response.max.bytes`; this
/// only stops a broken peer from claiming gigabytes.
const RESPONSE_BYTES_MAX: usize = 512 * 1024 * 1024;
const CLIENT_ID: &str = "sluice-replica-fetcher";

/// A plaintext or TLS stream to the leader.
trait Stream: AsyncRead + AsyncWrite + Unpin {}
impl<S: AsyncRead + AsyncWrite + Unpin> Stream for S {}

pub struct LeaderConnection {
    stream: Box<dyn Stream>,
    next_correlation_id: i32,
    buf: BytesMut,
}

fn invalid(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why)
}

impl LeaderConnection {
    /// Connects to the leader's inter-broker listener: TLS and SASL/PLAIN
    /// with this broker's own credentials when that listener uses them.
    pub async fn connect(
        address: SocketAddr,
        timeout: Duration,
        config: &BrokerConfig,
    ) -> std::io::Result<LeaderConnection> {
        let security = &config.security;
        let protocol = security.inter_broker().protocol;
        let stream = crate::cluster::rpc::with_timeout(timeout.as_millis() as u64, async {
            let tcp = TcpStream::connect(address)
                .await
                .map_err(std::io::Error::from)?;
            tcp.set_nodelay(true).ok();
            let stream: Box<dyn Stream> = match (&security.tls, protocol.uses_tls()) {
                (Some(files), true) => {
                    let connector = crate::net::tls::client_connector(files).map_err(invalid)?;
                    let name = futures_rustls::rustls::pki_types::ServerName::IpAddress(
                        address.ip().into(),
                    );
                    Box::new(connector.connect(name, tcp).await?)
                }
                _ => Box::new(tcp),
            };
            Ok(stream)
        })
        .await?;
        let mut connection = LeaderConnection {
            stream,
            next_correlation_id: 0,
            buf: BytesMut::with_capacity(64 * 1024),
        };
        if protocol.uses_sasl() {
            connection.authenticate(security, timeout).await?;
        }
        Ok(connection)
    }

    /// SASL/PLAIN as `inter.broker.sasl.username`.
    async fn authenticate(
        &mut self,
        security: &crate::config::SecurityConfig,
        timeout: Duration,
    ) -> std::io::Result<()> {
        let (user, password) = &security.inter_broker_credentials;
        let handshake =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        let answer = self.call(&handshake, 1, timeout).await?;
        if answer.error_code != 0 {
            return Err(invalid(format!(
                "leader refused SASL/PLAIN (error {})",
                answer.error_code
            )));
        }
        let token = format!("\0{user}\0{password}");
        let request =
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token.into_bytes()));
        let answer = self.call(&request, 1, timeout).await?;
        if answer.error_code != 0 {
            return Err(invalid(format!(
                "leader refused this broker's credentials (inter.broker.sasl.username {user}): error {}",
                answer.error_code
            )));
        }
        Ok(())
    }

    /// Sends `request` at `version` and reads its answer within `timeout`.
    pub async fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> std::io::Result<R::Response> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let client_id = StrBytes::from_static_str(CLIENT_ID);
        sluice_client::wire::encode_request(
            &mut self.buf,
            request,
            version,
            correlation_id,
            &client_id,
        )
        .map_err(|error| invalid(format!("{error:#}")))?;
        let stream = &mut self.stream;
        let buf = &self.buf;
        let mut frame = crate::cluster::rpc::with_timeout(timeout.as_millis() as u64, async move {
            stream.write_all(buf).await?;
            stream.flush().await?;
            let mut size = [0u8; 4];
            stream.read_exact(&mut size).await?;
            let size = i32::from_be_bytes(size);
            if size < 4 || size as usize > RESPONSE_BYTES_MAX {
                return Err(invalid(format!("response frame of {size} bytes")));
            }
            let mut body = vec![0u8; size as usize];
            stream.read_exact(&mut body).await?;
            Ok(Bytes::from(body))
        })
        .await?;
        let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
            .map_err(|error| invalid(error.to_string()))?;
        if header.correlation_id != correlation_id {
            return Err(invalid(format!(
                "response {} answered request {correlation_id}",
                header.correlation_id
            )));
        }
        let body =
            R::Response::decode(&mut frame, version).map_err(|error| invalid(error.to_string()))?;
        frame.advance(frame.remaining());
        Ok(body)
    }
}
