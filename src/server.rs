//! Start-up and shutdown of one broker node.
//!
//! Runs on the main thread until the shards start: it prepares the data
//! directory (lock, metadata image, leftovers of deleted topics), checks
//! every listener's address and the TLS files, then starts one shard per
//! core and waits for them. Each shard installs its state, opens its
//! partitions, binds every listener and serves
//! until [`request_shutdown`] is called (SIGTERM or SIGINT, from `main`).

use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use sluice_shards::{Mesh, PoolConfig, ShardPool};

use crate::cluster::metadata::{self, MetadataDelta, MetadataImage};
use crate::cluster::node::{self, MetaProperties, NodeStart};
use crate::cluster::records::MetadataRecord;
use crate::config::{BrokerConfig, ClientAuth, SecurityProtocol, TlsFiles};
use crate::net::tls::TlsServer;
use crate::shard::{Shard, CONTROLLER_SHARD};

static SHUTDOWN: AtomicBool = AtomicBool::new(false);
/// Why the broker stopped on its own, if it did.
static FATAL: Mutex<Option<String>> = Mutex::new(None);
/// How often shards look for a shutdown request.
const SHUTDOWN_POLL_MS: u64 = 50;

/// When the first stop request came, to log how long the stop took.
static STOP_REQUESTED_AT: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Asks every shard to stop. Safe to call from any thread.
pub fn request_shutdown() {
    STOP_REQUESTED_AT.get_or_init(std::time::Instant::now);
    SHUTDOWN.store(true, Ordering::SeqCst);
}

/// Whether a stop was asked for (`/ready` answers 503 from then on).
pub fn shutdown_requested() -> bool {
    SHUTDOWN.load(Ordering::SeqCst)
}

thread_local! {
    /// This shard has bound the Kafka listener (each shard is one thread).
    static SERVING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling shard serves clients; read by `/ready`.
pub fn shard_is_serving() -> bool {
    SERVING.with(std::cell::Cell::get)
}

/// Bounds a stop: called once a stop was asked for (from the signal
/// thread), it waits `timeout_ms` and, if the process still runs, logs and
/// exits with status 1. Acknowledged data is already synced (flush.messages
/// defaults to 1), so this is no worse than a crash, which recovery handles;
/// a runtime's SIGKILL after its grace period would be the same, unlogged.
pub fn bound_shutdown(timeout_ms: u64) {
    let spawned = std::thread::Builder::new()
        .name("sluice-stop-timer".into())
        .spawn(move || {
            std::thread::sleep(Duration::from_millis(timeout_ms));
            tracing::error!(
                timeout_ms,
                "stop did not finish within shutdown.timeout.ms; exiting with status 1"
            );
            eprintln!("sluice: stop did not finish within {timeout_ms} ms (shutdown.timeout.ms)");
            std::process::exit(1);
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the stop timer; the stop is not bounded");
    }
}

/// Stops the broker because it cannot go on safely; `run` returns `why`.
pub fn fail(why: String) {
    tracing::error!("{why}");
    FATAL
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .get_or_insert(why);
    request_shutdown();
}

/// A shard that cannot start stops the others too: they would otherwise
/// wait forever for a registration that shard 0 never makes, and a
/// supervisor (systemd, Kubernetes) could not restart the process.
fn stop_all(why: String) -> String {
    request_shutdown();
    why
}

/// Runs the broker until shutdown is requested.
pub fn run(mut config: BrokerConfig) -> anyhow::Result<()> {
    config.data_dir = absolute_data_dir(&config.data_dir)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let meta =
        node::claim_data_dir(&config.data_dir, config.node_id).map_err(anyhow::Error::msg)?;
    let bootstrap = legacy_bootstrap(&config)?;
    resolve_listeners(&mut config)?;
    if let Some(metrics) = config.metrics {
        config.metrics = Some(check_listen_address(metrics).context("key 'metrics'")?);
    }
    let pool = PoolConfig {
        nr_shards: config.shards,
        io_memory_bytes: config.io_memory_bytes,
        ring_depth: config.ring_depth,
        mesh_channel_capacity: config.mesh_channel_capacity,
        name: "sluice".into(),
    };
    let listeners: Vec<String> = config
        .security
        .listeners
        .iter()
        .map(|listener| format!("{}://{}", listener.name, listener.address))
        .collect();
    tracing::info!(
        listeners = %listeners.join(","),
        advertise = %format!("{}:{}", config.advertise_host, config.advertise_port),
        shards = config.shards,
        node_id = config.node_id,
        cluster_id = meta.cluster_id.as_deref().unwrap_or("(not yet formatted)"),
        data_dir = %config.data_dir.display(),
        voters = config.controller_quorum_voters.len().max(1),
        "sluice starting"
    );
    let config = Arc::new(config);
    let start = Arc::new(Mutex::new(Some((meta, bootstrap))));
    ShardPool::run(&pool, move |mesh: Mesh| {
        shard_main(mesh, config.clone(), start.clone())
    })?;
    if let Some(why) = FATAL
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .take()
    {
        bail!(why);
    }
    let stopping_ms = STOP_REQUESTED_AT
        .get()
        .map(|at| at.elapsed().as_millis() as u64);
    tracing::info!(stopping_ms, "sluice stopped");
    Ok(())
}

/// What shard 0 needs to open the quorum, taken once.
type StartState = Arc<Mutex<Option<(MetaProperties, Option<Vec<MetadataRecord>>)>>>;

/// This run of the broker (Kafka's incarnation id).
static INCARNATION: std::sync::OnceLock<uuid::Uuid> = std::sync::OnceLock::new();

pub fn incarnation() -> uuid::Uuid {
    *INCARNATION.get_or_init(uuid::Uuid::new_v4)
}

/// Records recreating a single-node data dir of an earlier version, if the
/// data dir has one and no metadata log yet. The old file is kept, renamed.
fn legacy_bootstrap(config: &BrokerConfig) -> anyhow::Result<Option<Vec<MetadataRecord>>> {
    if config.data_dir.join(node::METADATA_LOG_DIR_NAME).exists() {
        return Ok(None);
    }
    let records =
        metadata::load_legacy(&config.data_dir, config.node_id).map_err(anyhow::Error::msg)?;
    if records.is_some() {
        tracing::info!("migrating the single-node metadata file into the metadata log");
    }
    Ok(records)
}

async fn shard_main(
    mesh: Mesh,
    config: Arc<BrokerConfig>,
    start: StartState,
) -> Result<(), String> {
    let shard = Shard::install(mesh, config, Arc::new(MetadataImage::default()));
    // Before any direct-I/O file: glommio's per-device polling probe must
    // see a non-empty file (see storage::prime_direct_io).
    crate::storage::prime_direct_io(&shard.config.data_dir)
        .await
        .map_err(|error| stop_all(format!("cannot use direct I/O in the data dir: {error}")))?;
    // Work from other shards may run from here on: the shard's state exists.
    shard.mesh.open_inbox();
    if shard.id() == CONTROLLER_SHARD {
        start_node(&shard, start).map_err(stop_all)?;
    }
    // The metrics endpoint first: /health answers and /ready says what is
    // missing while the broker waits to join the cluster.
    let metrics = match shard.config.metrics {
        Some(address) if shard.id() == crate::shard::CONTROLLER_SHARD => {
            let listener = crate::net::bind_exclusive(address)
                .map_err(|error| stop_all(format!("cannot serve metrics on {address}: {error}")))?;
            tracing::info!(%address, "metrics endpoint listening");
            Some(glommio::spawn_local(crate::metrics::serve(
                listener,
                shard.clone(),
            )))
        }
        _ => None,
    };
    // Serve clients once this broker is registered and unfenced: before
    // that it knows no partitions and leads nothing.
    let mut waited_ms = 0u64;
    while !shard.is_live(incarnation()) && !SHUTDOWN.load(Ordering::SeqCst) {
        glommio::timer::sleep(Duration::from_millis(SHUTDOWN_POLL_MS)).await;
        waited_ms += SHUTDOWN_POLL_MS;
        if waited_ms % 10_000 == 0 && shard.id() == CONTROLLER_SHARD {
            tracing::info!("waiting for the controller quorum to register this broker");
        }
    }
    let accepting = accept_on_every_listener(&shard).map_err(stop_all)?;
    SERVING.with(|serving| serving.set(true));
    // The transaction coordinator reloads the partitions this node leads
    // and finishes the transactions they had prepared (after a restart).
    crate::txn::runtime::start();
    // ISR changes and high watermark checkpoints of the partitions it leads.
    let upkeep = glommio::spawn_local(crate::replication::ShardReplication::run_upkeep(
        shard.clone(),
    ));
    // Retention and compaction, every log.retention.check.interval.ms.
    let maintenance = shard.storage.spawn_maintenance();
    tracing::debug!(shard = %shard.id(), partitions = shard.partitions.len(), "shard serving");
    while !SHUTDOWN.load(Ordering::SeqCst) {
        glommio::timer::sleep(Duration::from_millis(SHUTDOWN_POLL_MS)).await;
    }
    drop(accepting);
    SERVING.with(|serving| serving.set(false));
    drop(metrics);
    drop(maintenance);
    drop(upkeep);
    shard.replication.stop();
    shard.replication.checkpoint(&shard).await;
    let cache = shard.storage.cache_stats();
    tracing::info!(
        shard = %shard.id(),
        fetch_sendfile_bytes = shard.metrics.fetch_sendfile_bytes.get(),
        fetch_memory_bytes = shard.metrics.fetch_memory_bytes.get(),
        cache_hits = cache.hits,
        cache_misses = cache.misses,
        disk_read_bytes = cache.disk_read_bytes,
        read_ahead_bytes = cache.read_ahead_bytes,
        "shard stopping"
    );
    shard.partitions.close_all().await;
    shard.storage.stop();
    Ok(())
}

/// `data.dir` resolved once against the working directory: io_uring opens
/// directories relative to a descriptor (glommio's `Directory::open` passes
/// none), so a relative path must never reach storage.
fn absolute_data_dir(data_dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    std::path::absolute(data_dir).with_context(|| {
        format!(
            "cannot resolve data dir {} against the working directory (key 'data.dir')",
            data_dir.display()
        )
    })
}

/// One broker per data dir: a second one would corrupt the first's logs.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::io::AsRawFd;
    let path = data_dir.join(".lock");
    let file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        bail!(
            "data dir {} is in use by another Sluice process (cannot lock {})",
            data_dir.display(),
            path.display()
        );
    }
    Ok(file)
}

/// Opens the metadata quorum on shard 0 and starts the node's cluster parts.
fn start_node(shard: &Rc<Shard>, start: StartState) -> Result<(), String> {
    let (meta, bootstrap) = start
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .take()
        .expect("shard 0 starts once");
    let mesh_shard = shard.clone();
    let install: crate::cluster::quorum::Install = Box::new(move |image, delta| {
        let shard = mesh_shard.clone();
        Box::pin(async move { install_everywhere(&shard, image, delta).await })
    });
    let controller = node::start(NodeStart {
        config: shard.config.clone(),
        incarnation: incarnation(),
        data_dir: shard.config.data_dir.clone(),
        meta,
        bootstrap,
        install,
        fatal: Box::new(fail),
    })?;
    shard.set_controller(controller);
    Ok(())
}

/// Installs `image` on every shard and waits until each has reconciled the
/// partitions `delta` names.
async fn install_everywhere(
    shard: &Shard,
    image: Arc<MetadataImage>,
    delta: MetadataDelta,
) -> Result<(), String> {
    let outcomes = shard
        .mesh
        .submit_to_all(move || {
            let (image, delta) = (image.clone(), delta.clone());
            async move {
                let shard = crate::shard::current();
                shard
                    .install_image(image, delta)
                    .await
                    .map_err(|error| format!("{}: {error}", shard.id()))
            }
        })
        .await
        .map_err(|error| error.to_string())?;
    outcomes.into_iter().collect()
}

/// Shards bind with SO_REUSEPORT, which would silently share a port with
/// another broker. Binding once without it first turns that into an error
/// naming the address. Port 0 is resolved here, so all shards share one.
fn check_listen_address(listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    Ok(probe.local_addr()?)
}

/// Checks every Kafka listener's address (port 0 becomes the port found
/// free, and what it advertises unless set), and the TLS files once, so a
/// bad certificate stops start-up with the key named.
fn resolve_listeners(config: &mut BrokerConfig) -> anyhow::Result<()> {
    let key = if config
        .value("listeners")
        .is_some_and(|value| !value.is_empty())
    {
        "listeners"
    } else {
        "listen"
    };
    for listener in &mut config.security.listeners {
        let bound = check_listen_address(listener.address)
            .with_context(|| format!("listener {} (key '{key}')", listener.name))?;
        if listener.advertised_port == 0 {
            listener.advertised_port = bound.port();
        }
        listener.address = bound;
    }
    if let Some(files) = &config.security.tls {
        crate::net::tls::server_config(files).map_err(anyhow::Error::msg)?;
    }
    let inter_broker = config.security.inter_broker().clone();
    config.listen = inter_broker.address;
    config.advertise_host = inter_broker.advertised_host;
    config.advertise_port = inter_broker.advertised_port;
    Ok(())
}

/// Binds every Kafka listener on this shard (SO_REUSEPORT) and accepts on
/// each; the tasks stop when dropped.
fn accept_on_every_listener(shard: &Rc<Shard>) -> Result<Vec<glommio::Task<()>>, String> {
    let security = &shard.config.security;
    security
        .listeners
        .iter()
        .map(|config| {
            let tls = match (&security.tls, config.protocol) {
                (Some(files), SecurityProtocol::Ssl) => Some(TlsServer::load(files)?),
                // As Kafka (KIP-684): SASL_SSL authenticates with SASL, so
                // ssl.client.auth applies to SSL listeners only.
                (Some(files), SecurityProtocol::SaslSsl) => Some(TlsServer::load(&TlsFiles {
                    client_auth: ClientAuth::None,
                    ..files.clone()
                })?),
                _ => None,
            };
            let endpoint = Rc::new(crate::net::ServedListener {
                name: Rc::from(config.name.as_str()),
                protocol: config.protocol,
                tls,
            });
            let address = config.address;
            let listener = crate::net::bind_shared(address).map_err(|error| {
                format!(
                    "cannot listen on {address} (listener {}): {error}",
                    config.name
                )
            })?;
            Ok(glommio::spawn_local(crate::net::accept_loop(
                listener,
                endpoint,
                shard.clone(),
            )))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_data_dir_is_resolved_against_the_working_directory() {
        let cwd = std::env::current_dir().unwrap();
        let resolved = absolute_data_dir(Path::new("./data")).unwrap();
        assert!(resolved.is_absolute());
        assert_eq!(resolved, cwd.join("data"));
        let absolute = Path::new("/var/lib/sluice");
        assert_eq!(absolute_data_dir(absolute).unwrap(), absolute);
    }
}
