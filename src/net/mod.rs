//! Listeners and connections: size-prefixed frames in, responses out, in
//! arrival order.
//!
//! Every shard binds the listen address itself (glommio sets SO_REUSEPORT),
//! so the kernel spreads connections over shards; a connection lives on the
//! shard that accepted it for its whole life.
//!
//! Per connection, a reader reads frames and starts one handler task per
//! request; a writer awaits those tasks in the order the requests arrived
//! and writes their responses. Pipelined requests thus proceed together yet
//! are answered in order, as Kafka requires. The queue between them holds at
//! most [`REQUESTS_IN_FLIGHT_MAX`] requests: past that the reader stops
//! reading, which is backpressure on the client.
//!
//! A frame that is oversized, malformed, or names an unknown API closes this
//! connection only, with a log line. Nothing here panics on client bytes.
//!
//! Listeners (Kafka's `listeners`) are named; each has a security
//! protocol. On SSL and SASL_SSL listeners the connection is first a TLS
//! handshake (`tls.rs`); on SASL listeners only ApiVersions, SaslHandshake
//! and SaslAuthenticate are served until the client has authenticated, and
//! anything else closes the connection (as Kafka does), as does any request
//! but re-authentication once the session's lifetime has passed.
//! `max.connections` and `max.connections.per.ip` are checked at accept
//! (`limits.rs`), `connections.max.idle.ms` while waiting for a frame.

use std::net::SocketAddr;
use std::os::unix::io::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use futures_lite::FutureExt;
use glommio::channels::local_channel;
use glommio::net::{TcpListener, TcpStream};
use glommio::Task;
use kafka_protocol::messages::ApiKey;

use crate::config::SecurityProtocol;
use crate::handlers::{self, api_versions, RequestContext};
use crate::metrics::ShardMetrics;
use crate::protocol::splice::Part;
use crate::protocol::{self, DecodeError, Request};
use crate::security::sasl::Gate;
use crate::security::Session;
use crate::shard::Shard;
use crate::stages::Stage;
use crate::storage::FileRegion;

mod limits;
mod sendfile;
pub mod tls;

/// Requests read but not yet answered, per connection.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 64;
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// A listener for this shard: SO_REUSEPORT so every shard can bind the same
/// address (the kernel spreads connections), and SO_REUSEADDR so a restart
/// can bind while connections of the previous process linger in FIN-WAIT or
/// TIME-WAIT (glommio's own `bind` sets only SO_REUSEPORT).
pub fn bind_shared(address: SocketAddr) -> std::io::Result<TcpListener> {
    bind(address, true)
}

/// Pending connections the kernel queues per shard listener.
const LISTEN_BACKLOG: i32 = 1024;

/// A listener one shard owns alone (metrics, controller): SO_REUSEADDR so a
/// restart can bind while the previous process's connections linger in
/// TIME-WAIT, which glommio's own `bind` does not set; a restarted broker
/// failed with EADDRINUSE for a minute after one metrics scrape.
pub fn bind_exclusive(address: SocketAddr) -> std::io::Result<TcpListener> {
    bind(address, false)
}

fn bind(address: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    // SAFETY: the descriptor is a listening TCP socket we own; ownership
    // passes to the glommio listener.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// One Kafka listener as a shard serves it.
pub struct ServedListener {
    pub name: Rc<str>,
    pub protocol: SecurityProtocol,
    /// Present on SSL and SASL_SSL listeners.
    pub tls: Option<tls::TlsServer>,
}

/// How a connection's bytes reach the peer, which decides how a fetched
/// file region is sent.
#[derive(Clone, Copy)]
enum Transport {
    /// `sendfile` from the segment straight into this socket.
    Plain(RawFd),
    /// Read into memory and written through TLS. Kernel TLS (kTLS) would
    /// let `sendfile` encrypt in the kernel: the seam is here, a third
    /// variant once the handshake's keys are handed to the socket.
    Tls,
}

/// Accepts connections until the task is dropped.
pub async fn accept_loop(listener: TcpListener, endpoint: Rc<ServedListener>, shard: Rc<Shard>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(serve_connection(stream, endpoint.clone(), shard.clone()))
                    .detach();
            }
            Err(error) => {
                // Out of descriptors or a transient failure: keep serving
                // the connections we have, and try again shortly.
                tracing::warn!(%error, shard = %shard.id(), "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What the writer does for one request, in arrival order.
enum Pending {
    Ready(Bytes),
    Running(Task<Outcome>),
}

enum Outcome {
    /// Encoded parts, and the file regions its holes stand for; for a
    /// produce request, its clock (its stages are recorded).
    Respond(Vec<Part>, Vec<FileRegion>, Option<ProduceClock>),
    /// The request wants no response (Produce with acks=0).
    Silent,
    Close,
}

/// When a produce request's frame began to arrive and its response was
/// encoded, for the stages the writer records.
#[derive(Clone, Copy)]
struct ProduceClock {
    size_read_at: Instant,
    encoded_at: Instant,
}

/// A frame's body, and when its size prefix had been read.
struct Frame {
    body: Bytes,
    size_read_at: Instant,
}

#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("frame size {0} is negative")]
    Negative(i32),
    #[error("frame size {size} exceeds socket.request.max.bytes={max}")]
    Oversized { size: usize, max: usize },
    #[error("connection failed mid-frame: {0}")]
    Io(#[from] std::io::Error),
    #[error("no request for connections.max.idle.ms")]
    Idle,
}

async fn serve_connection(stream: TcpStream, endpoint: Rc<ServedListener>, shard: Rc<Shard>) {
    let peer = stream.peer_addr().ok();
    let security = &shard.config.security;
    let admitted = match peer.map(|peer| {
        limits::admit(
            peer.ip(),
            security.max_connections,
            security.max_connections_per_ip,
        )
    }) {
        Some(Err(refused)) => {
            ShardMetrics::count(&shard.metrics.connections_refused);
            tracing::warn!(
                ?peer,
                ?refused,
                "connection limit reached; closing the connection"
            );
            return;
        }
        Some(Ok(admitted)) => Some(admitted),
        None => None,
    };
    shard.metrics.connection_opened();
    let metrics_shard = shard.clone();
    serve_listener(stream, &endpoint, shard, peer).await;
    metrics_shard.metrics.connection_closed();
    drop(admitted);
}

/// The TLS handshake if the listener has one, then the frames.
async fn serve_listener(
    stream: TcpStream,
    endpoint: &ServedListener,
    shard: Rc<Shard>,
    peer: Option<SocketAddr>,
) {
    let _ = stream.set_nodelay(true);
    let session = Session::on_listener(endpoint.name.clone(), endpoint.protocol.uses_sasl());
    let Some(tls) = &endpoint.tls else {
        let socket = stream.as_raw_fd();
        if let Err(error) = sendfile::set_nonblocking(socket) {
            tracing::warn!(?peer, %error, "cannot make the socket non-blocking; closing it");
            return;
        }
        serve_frames(stream, Transport::Plain(socket), session, shard, peer).await;
        return;
    };
    let idle = Duration::from_millis(shard.config.security.connections_max_idle_ms);
    let handshake = async {
        tls.acceptor()
            .accept(stream)
            .await
            .map_err(|e| e.to_string())
    };
    let timeout = async {
        glommio::timer::sleep(idle).await;
        Err("no handshake within connections.max.idle.ms".to_string())
    };
    match handshake.or(timeout).await {
        Ok(stream) => {
            if endpoint.protocol == SecurityProtocol::Ssl {
                if let Some(principal) = tls::principal_of(stream.get_ref().1) {
                    tracing::info!(?peer, %principal, "TLS client authenticated");
                    session.set_principal(principal);
                }
            }
            serve_frames(stream, Transport::Tls, session, shard, peer).await;
        }
        Err(error) => {
            ShardMetrics::count(&shard.metrics.tls_handshake_failures);
            tracing::warn!(?peer, listener = %endpoint.name, %error, "TLS handshake failed");
        }
    }
}

/// A bare SASL token after a version 0 SaslHandshake: the reply is a bare
/// frame too; `None` (a failure) closes the connection, as Kafka does.
fn raw_sasl_token(
    shard: &Shard,
    session: &Session,
    peer: Option<SocketAddr>,
    token: &[u8],
) -> Option<Bytes> {
    use crate::handlers::sasl_authenticate::{exchange, Exchanged};
    let reply = match exchange(shard, session, peer, token) {
        Exchanged::Continue(bytes) | Exchanged::Done(bytes, _) => bytes,
        Exchanged::Failed(_) => return None,
    };
    let size = u32::try_from(reply.len()).ok()?;
    let mut frame = Vec::with_capacity(4 + reply.len());
    frame.extend_from_slice(&size.to_be_bytes());
    frame.extend_from_slice(&reply);
    Some(Bytes::from(frame))
}

/// Whether a SASL listener may serve `api_key` now; `false` closes the
/// connection.
fn sasl_allows(session: &Session, api_key: ApiKey, peer: Option<SocketAddr>) -> bool {
    let Some(sasl) = &session.sasl else {
        return true;
    };
    let exchange = matches!(
        api_key,
        ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
    );
    match sasl.borrow().gate(Instant::now()) {
        Gate::Open => true,
        _ if exchange => true,
        Gate::SaslOnly => {
            tracing::warn!(
                ?peer,
                ?api_key,
                "request before SASL authentication; closing the connection"
            );
            false
        }
        Gate::Expired => {
            tracing::info!(
                ?peer,
                ?api_key,
                "SASL session expired (connections.max.reauth.ms); closing the connection"
            );
            false
        }
    }
}

async fn serve_frames<S>(
    stream: S,
    transport: Transport,
    session: Rc<Session>,
    shard: Rc<Shard>,
    peer: Option<SocketAddr>,
) where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + 'static,
{
    let (reader, writer) = futures_lite::io::split(stream);
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let (queue, pending) = local_channel::new_bounded(REQUESTS_IN_FLIGHT_MAX);
    let writer_task = glommio::spawn_local(write_responses(
        pending,
        writer,
        transport,
        shard.clone(),
        peer,
    ));
    let request_bytes_max = shard.config.socket_request_max_bytes;
    let idle = Duration::from_millis(shard.config.security.connections_max_idle_ms);
    loop {
        // A client over its quota: read nothing until its throttle passed.
        if let Some(until) = session.muted_until() {
            glommio::timer::sleep(until.saturating_duration_since(Instant::now())).await;
        }
        let idle_timeout = async {
            glommio::timer::sleep(idle).await;
            Err(FrameError::Idle)
        };
        let frame = match read_frame(&mut reader, request_bytes_max)
            .or(idle_timeout)
            .await
        {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(FrameError::Idle) => {
                ShardMetrics::count(&shard.metrics.connections_idle_closed);
                tracing::debug!(?peer, "closing idle connection");
                break;
            }
            Err(error) => {
                tracing::warn!(?peer, %error, "closing connection");
                shard.metrics.count_bad_frame();
                break;
            }
        };
        let Frame { body, size_read_at } = frame;
        let raw_token = session
            .sasl
            .as_ref()
            .is_some_and(|sasl| sasl.borrow().expects_raw_token());
        if raw_token {
            let Some(reply) = raw_sasl_token(&shard, &session, peer, &body) else {
                break;
            };
            if queue.send(Pending::Ready(reply)).await.is_err() {
                break;
            }
            continue;
        }
        let frame_bytes = body.len() as u64 + 4;
        let read_at = Instant::now();
        let next = match protocol::decode_request(body, handlers::supported_range) {
            Ok(request) => {
                if !sasl_allows(&session, request.api_key, peer) {
                    break;
                }
                if request.api_key == ApiKey::Produce {
                    let stages = &shard.metrics.produce_stages;
                    stages.record_between(Stage::Read, size_read_at, read_at);
                    stages.record_between(Stage::Decode, read_at, Instant::now());
                }
                let started = start(
                    shard.clone(),
                    request,
                    frame_bytes,
                    peer,
                    session.clone(),
                    size_read_at,
                );
                Pending::Running(started.await)
            }
            Err(DecodeError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                correlation_id,
                ..
            }) => match protocol::encode_unsupported_api_versions(
                correlation_id,
                api_versions::advertised(),
            ) {
                Ok(bytes) => Pending::Ready(bytes),
                Err(_) => break,
            },
            Err(error) => {
                tracing::warn!(?peer, %error, "closing connection");
                shard.metrics.count_bad_frame();
                break;
            }
        };
        if queue.send(next).await.is_err() {
            break; // the writer has gone: the peer closed or failed
        }
    }
    drop(queue);
    writer_task.await;
}

/// Reads one frame; `None` at a clean end of stream between frames.
async fn read_frame<R>(
    reader: &mut R,
    request_bytes_max: usize,
) -> Result<Option<Frame>, FrameError>
where
    R: futures_lite::AsyncRead + Unpin,
{
    let mut size_bytes = [0u8; 4];
    match reader.read_exact(&mut size_bytes).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let size_read_at = Instant::now();
    let size = i32::from_be_bytes(size_bytes);
    let size = usize::try_from(size).map_err(|_| FrameError::Negative(size))?;
    if size > request_bytes_max {
        return Err(FrameError::Oversized {
            size,
            max: request_bytes_max,
        });
    }
    let mut body = vec![0u8; size];
    reader.read_exact(&mut body).await?;
    Ok(Some(Frame {
        body: Bytes::from(body),
        size_read_at,
    }))
}

/// Starts `request` (its ordered part runs now) and returns the task that
/// finishes it and encodes the response.
async fn start(
    shard: Rc<Shard>,
    request: Request,
    frame_bytes: u64,
    peer: Option<SocketAddr>,
    session: Rc<Session>,
    size_read_at: Instant,
) -> Task<Outcome> {
    let Request {
        api_key,
        api_version,
        header,
        body,
    } = request;
    let correlation_id = header.correlation_id;
    let started = std::time::Instant::now();
    shard.metrics.count_request(api_key, frame_bytes);
    let metrics_shard = shard.clone();
    let context = RequestContext {
        shard,
        api_version,
        header,
        client_address: peer,
        session,
    };
    let remainder = handlers::start(context, body).await;
    let finish = async move {
        let answer = remainder.await;
        let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let metrics = &metrics_shard.metrics;
        metrics.record_response(api_key, latency_us, answer.as_ref().map(|a| &a.body));
        let Some(answer) = answer else {
            return Outcome::Silent;
        };
        let encoding_at = Instant::now();
        match protocol::encode_response_parts(api_key, api_version, correlation_id, &answer.body) {
            Ok(parts) => {
                let bytes: usize = parts.iter().map(Part::len).sum();
                metrics.add_response_bytes(api_key, bytes as u64);
                let clock = (api_key == ApiKey::Produce).then(|| {
                    let encoded_at = Instant::now();
                    let stages = &metrics.produce_stages;
                    stages.record_between(Stage::Encode, encoding_at, encoded_at);
                    ProduceClock {
                        size_read_at,
                        encoded_at,
                    }
                });
                Outcome::Respond(parts, answer.regions, clock)
            }
            Err(error) => {
                tracing::error!(?api_key, api_version, %error, "could not encode a response");
                Outcome::Close
            }
        }
    };
    glommio::spawn_local(async move {
        // A bug in a handler or encoder costs one connection, not the shard.
        AssertUnwindSafe(finish)
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                tracing::error!(
                    ?api_key,
                    api_version,
                    "request handling panicked; closing the connection"
                );
                Outcome::Close
            })
    })
}

async fn write_responses<W>(
    pending: local_channel::LocalReceiver<Pending>,
    mut writer: W,
    transport: Transport,
    shard: Rc<Shard>,
    peer: Option<SocketAddr>,
) where
    W: futures_lite::AsyncWrite + Unpin,
{
    // Regions sent through TLS pass through this one buffer.
    let mut region_buffer = Vec::new();
    while let Some(next) = pending.recv().await {
        let (parts, regions, clock) = match next {
            Pending::Ready(bytes) => (vec![Part::Bytes(bytes)], Vec::new(), None),
            Pending::Running(task) => match task.await {
                Outcome::Respond(parts, regions, clock) => (parts, regions, clock),
                Outcome::Silent => continue,
                Outcome::Close => break,
            },
        };
        let writing_at = Instant::now();
        let sent = write_parts(
            &mut writer,
            transport,
            &mut region_buffer,
            &shard,
            parts,
            &regions,
        );
        if let Err(error) = sent.await {
            tracing::debug!(?peer, %error, "write failed; closing connection");
            break;
        }
        if let Some(clock) = clock {
            let written_at = Instant::now();
            let stages = &shard.metrics.produce_stages;
            stages.record_between(Stage::InOrder, clock.encoded_at, writing_at);
            stages.record_between(Stage::Write, writing_at, written_at);
            stages.record_between(Stage::Total, clock.size_read_at, written_at);
        }
    }
    let _ = writer.close().await;
}

async fn write_parts<W>(
    writer: &mut W,
    transport: Transport,
    region_buffer: &mut Vec<u8>,
    shard: &Shard,
    parts: Vec<Part>,
    regions: &[FileRegion],
) -> std::io::Result<()>
where
    W: futures_lite::AsyncWrite + Unpin,
{
    for part in parts {
        match part {
            Part::Bytes(bytes) => writer.write_all(&bytes).await?,
            Part::Hole { index, len } => {
                let region = regions
                    .get(index)
                    .filter(|region| region.len as usize == len)
                    .ok_or_else(|| {
                        std::io::Error::other(format!("response hole {index} has no file region"))
                    })?;
                match transport {
                    Transport::Plain(socket) => {
                        writer.flush().await?;
                        sendfile::send_region(socket, region).await?;
                        shard.metrics.add_sendfile_bytes(region.len);
                    }
                    Transport::Tls => {
                        sendfile::copy_region(writer, region, region_buffer).await?;
                        shard.metrics.add_memory_bytes(region.len);
                    }
                }
            }
        }
    }
    // A write into TLS may return with the last records still encrypted in
    // rustls' buffer (the socket was full): flush sends them, or the client
    // waits for the rest of its response until the next one pushes it out.
    // On a plain socket (glommio's, unbuffered) this is a no-op.
    writer.flush().await
}
