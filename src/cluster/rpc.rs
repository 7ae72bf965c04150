//! The controller listener's wire: how nodes of one cluster talk to each
//! other's controller (shard 0). Not a Kafka protocol; no client sees it.
//!
//! A frame is `length: u32 | kind: u8 | payload`. Every connection starts
//! with a `Hello` (node id and, once known, cluster id), so a node with
//! another cluster's data dir is turned away before any Raft message of
//! it is read. Then either:
//! - Raft messages, one way (protobuf, as raft-rs encodes them), on one
//!   long-lived connection per (sender, receiver) pair; a lost message is
//!   fine (Raft resends), so a broken connection drops what was queued; or
//! - one controller request and its answer (JSON), on a short connection.
//!
//! When the controller listener is SSL ([`Transport`]), every connection
//! is mutual TLS before the `Hello`: each side shows its keystore
//! certificate and verifies the other's against the truststore.
//!
//! Runs on shard 0 only. Must not: decide anything; it carries bytes to
//! [`super::quorum`] and [`super::controller`].

use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use serde::{Deserialize, Serialize};

use crate::config::TlsFiles;
use crate::net::tls::TlsServer;

/// Larger frames are refused (a snapshot of many thousands of partitions
/// still fits).
pub const FRAME_BYTES_MAX: usize = 256 * 1024 * 1024;
/// A controller request that takes longer than this failed (the caller may
/// retry with the new controller).
pub const REQUEST_TIMEOUT_MS: u64 = 15_000;
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Hello = 0,
    Raft = 1,
    Request = 2,
    Response = 3,
}

impl FrameKind {
    fn from_u8(kind: u8) -> Option<FrameKind> {
        match kind {
            0 => Some(FrameKind::Hello),
            1 => Some(FrameKind::Raft),
            2 => Some(FrameKind::Request),
            3 => Some(FrameKind::Response),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub node_id: i32,
    /// `None` until this node has learned its cluster's id.
    pub cluster_id: Option<String>,
}

impl Hello {
    /// Why two nodes cannot talk, if they cannot.
    pub fn mismatch(&self, other: &Hello) -> Option<String> {
        match (&self.cluster_id, &other.cluster_id) {
            (Some(mine), Some(theirs)) if mine != theirs => Some(format!(
                "node {} belongs to cluster {theirs}, but node {} belongs to cluster {mine}: a data dir of another cluster cannot join (give the broker an empty data dir)",
                other.node_id, self.node_id
            )),
            _ => None,
        }
    }
}

/// A controller connection: plain TCP, or TLS over it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin {}
impl<S: AsyncRead + AsyncWrite + Unpin> Stream for S {}
pub type RpcStream = Box<dyn Stream>;

/// How controller connections are made and accepted: plain TCP, or mutual
/// TLS with this node's keystore and truststore (an SSL controller listener).
#[derive(Default)]
pub struct Transport {
    tls: Option<(futures_rustls::TlsConnector, TlsServer)>,
}

impl Transport {
    /// Reads the TLS files, if any; an error names the key at fault.
    pub fn new(files: Option<&TlsFiles>) -> Result<Transport, String> {
        let tls = match files {
            Some(files) => Some((
                crate::net::tls::client_connector(files)?,
                TlsServer::load(files)?,
            )),
            None => None,
        };
        Ok(Transport { tls })
    }

    async fn open(&self, address: SocketAddr) -> std::io::Result<RpcStream> {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(std::io::Error::from)?;
        tcp.set_nodelay(true).ok();
        Ok(match &self.tls {
            Some((connector, _)) => {
                let name =
                    futures_rustls::rustls::pki_types::ServerName::IpAddress(address.ip().into());
                Box::new(connector.connect(name, tcp).await?)
            }
            None => Box::new(tcp),
        })
    }

    /// The server side of a new connection: a TLS handshake that requires
    /// a client certificate the truststore verifies, within
    /// [`CONNECT_TIMEOUT_MS`].
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<RpcStream> {
        tcp.set_nodelay(true).ok();
        match &self.tls {
            Some((_, server)) => {
                let acceptor = server.acceptor();
                let stream =
                    with_timeout(CONNECT_TIMEOUT_MS, async { acceptor.accept(tcp).await }).await?;
                Ok(Box::new(stream))
            }
            None => Ok(Box::new(tcp)),
        }
    }
}

pub async fn write_frame<S: AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    kind: FrameKind,
    payload: &[u8],
) -> std::io::Result<()> {
    let length = u32::try_from(payload.len() + 1).map_err(|_| invalid("frame too large"))?;
    let mut frame = Vec::with_capacity(payload.len() + 5);
    frame.extend_from_slice(&length.to_be_bytes());
    frame.push(kind as u8);
    frame.extend_from_slice(payload);
    stream.write_all(&frame).await?;
    stream.flush().await
}

pub async fn read_frame<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
) -> std::io::Result<(FrameKind, Vec<u8>)> {
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).await?;
    let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if length == 0 || length > FRAME_BYTES_MAX {
        return Err(invalid("bad frame length"));
    }
    let kind = FrameKind::from_u8(header[4]).ok_or_else(|| invalid("unknown frame kind"))?;
    let mut payload = vec![0u8; length - 1];
    stream.read_exact(&mut payload).await?;
    Ok((kind, payload))
}

pub fn invalid(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string())
}

pub fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("controller messages always serialize")
}

pub fn decode_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> std::io::Result<T> {
    serde_json::from_slice(bytes).map_err(|error| invalid(&error.to_string()))
}

/// Runs `future`, or fails with `TimedOut` after `ms`.
pub async fn with_timeout<T>(
    ms: u64,
    future: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    futures_lite::future::or(future, async {
        glommio::timer::sleep(Duration::from_millis(ms)).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "timed out",
        ))
    })
    .await
}

/// Connects and exchanges `Hello`s; an answer from another cluster is an
/// error naming both.
pub async fn connect(
    address: SocketAddr,
    hello: &Hello,
    transport: &Transport,
) -> std::io::Result<RpcStream> {
    with_timeout(CONNECT_TIMEOUT_MS, async {
        let mut stream = transport.open(address).await?;
        write_frame(&mut stream, FrameKind::Hello, &encode_json(hello)).await?;
        let (kind, payload) = read_frame(&mut stream).await?;
        if kind != FrameKind::Hello {
            return Err(invalid("expected a hello"));
        }
        let theirs: Hello = decode_json(&payload)?;
        if let Some(why) = hello.mismatch(&theirs) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                why,
            ));
        }
        Ok(stream)
    })
    .await
}

/// One request and its answer on a connection of its own.
pub async fn call<Q: Serialize, A: for<'de> Deserialize<'de>>(
    address: SocketAddr,
    hello: &Hello,
    transport: &Transport,
    request: &Q,
) -> std::io::Result<A> {
    let mut stream = connect(address, hello, transport).await?;
    with_timeout(REQUEST_TIMEOUT_MS, async {
        write_frame(&mut stream, FrameKind::Request, &encode_json(request)).await?;
        let (kind, payload) = read_frame(&mut stream).await?;
        if kind != FrameKind::Response {
            return Err(invalid("expected a response"));
        }
        decode_json(&payload)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hellos_of_two_clusters_do_not_match() {
        let a = Hello {
            node_id: 1,
            cluster_id: Some("x".into()),
        };
        let b = Hello {
            node_id: 2,
            cluster_id: Some("y".into()),
        };
        let fresh = Hello {
            node_id: 3,
            cluster_id: None,
        };
        assert!(a.mismatch(&b).unwrap().contains("another cluster"));
        assert_eq!(a.mismatch(&fresh), None);
        assert_eq!(a.mismatch(&a.clone()), None);
    }
}
