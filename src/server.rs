//! Start-up and shutdown of one broker node.
//!
//! Runs on the main thread until the shards start: it prepares the data
//! directory (lock, metadata image, leftovers of deleted topics), checks the
//! listen address, then starts one shard per core and waits for them. Each
//! shard installs its state, opens its partitions, binds the port and serves
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
use crate::config::BrokerConfig;
use crate::shard::{Shard, CONTROLLER_SHARD};

static SHUTDOWN: AtomicBool = AtomicBool::new(false);
/// Why the broker stopped on its own, if it did.
static FATAL: Mutex<Option<String>> = Mutex::new(None);
/// How often shards look for a shutdown request.
const SHUTDOWN_POLL_MS: u64 = 50;

/// Asks every shard to stop. Safe to call from any thread.
pub fn request_shutdown() {
    SHUTDOWN.store(true, Ordering::SeqCst);
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

/// Runs the broker until shutdown is requested.
pub fn run(mut config: BrokerConfig) -> anyhow::Result<()> {
    config.data_dir = absolute_data_dir(&config.data_dir)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let meta =
        node::claim_data_dir(&config.data_dir, config.node_id).map_err(anyhow::Error::msg)?;
    let bootstrap = legacy_bootstrap(&config)?;
    let listen = check_listen_address(config.listen)?;
    if let Some(metrics) = config.metrics {
        config.metrics = Some(check_listen_address(metrics).context("key 'metrics'")?);
    }
    if config.advertise_port == 0 {
        config.advertise_port = listen.port();
    }
    let pool = PoolConfig {
        nr_shards: config.shards,
        io_memory_bytes: config.io_memory_bytes,
        ring_depth: config.ring_depth,
        mesh_channel_capacity: config.mesh_channel_capacity,
        name: "sluice".into(),
    };
    tracing::info!(
        %listen,
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
        shard_main(mesh, config.clone(), start.clone(), listen)
    })?;
    if let Some(why) = FATAL
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .take()
    {
        bail!(why);
    }
    tracing::info!("sluice stopped");
    Ok(())
}

/// What shard 0 needs to open the quorum, taken once.
type StartState = Arc<Mutex<Option<(MetaProperties, Option<Vec<MetadataRecord>>)>>>;

/// This run of the broker (Kafka's incarnation id).
static INCARNATION: std::sync::OnceLock<uuid::Uuid> = std::sync::OnceLock::new();

fn incarnation() -> uuid::Uuid {
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
    listen: SocketAddr,
) -> Result<(), String> {
    let shard = Shard::install(mesh, config, Arc::new(MetadataImage::default()));
    // Before any direct-I/O file: glommio's per-device polling probe must
    // see a non-empty file (see storage::prime_direct_io).
    crate::storage::prime_direct_io(&shard.config.data_dir)
        .await
        .map_err(|error| format!("cannot use direct I/O in the data dir: {error}"))?;
    // Work from other shards may run from here on: the shard's state exists.
    shard.mesh.open_inbox();
    if shard.id() == CONTROLLER_SHARD {
        start_node(&shard, start)?;
    }
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
    let listener = crate::net::bind_shared(listen)
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    let accepting = glommio::spawn_local(crate::net::accept_loop(listener, shard.clone()));
    // The transaction coordinator reloads the partitions this node leads
    // and finishes the transactions they had prepared (after a restart).
    crate::txn::runtime::start();
    // ISR changes and high watermark checkpoints of the partitions it leads.
    let upkeep = glommio::spawn_local(crate::replication::ShardReplication::run_upkeep(
        shard.clone(),
    ));
    // Retention and compaction, every log.retention.check.interval.ms.
    let maintenance = shard.storage.spawn_maintenance();
    let metrics = match shard.config.metrics {
        Some(address) if shard.id() == crate::shard::CONTROLLER_SHARD => {
            let listener = crate::net::bind_exclusive(address)
                .map_err(|error| format!("cannot serve metrics on {address}: {error}"))?;
            tracing::info!(%address, "metrics endpoint listening");
            Some(glommio::spawn_local(crate::metrics::serve(
                listener,
                shard.clone(),
            )))
        }
        _ => None,
    };
    tracing::debug!(shard = %shard.id(), partitions = shard.partitions.len(), "shard serving");
    while !SHUTDOWN.load(Ordering::SeqCst) {
        glommio::timer::sleep(Duration::from_millis(SHUTDOWN_POLL_MS)).await;
    }
    drop(accepting);
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
        .with_context(|| format!("cannot listen on {listen} (key 'listen')"))?;
    Ok(probe.local_addr()?)
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
