//! Start-up and shutdown of one broker node.
//!
//! Runs on the main thread until the shards start: it prepares the data
//! directory (lock, metadata image, leftovers of deleted topics), checks the
//! listen address, then starts one shard per core and waits for them. Each
//! shard installs its state, opens its partitions, binds the port and serves
//! until [`request_shutdown`] is called (SIGTERM or SIGINT, from `main`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use sluice_shards::{Mesh, PoolConfig, ShardPool};

use crate::cluster::metadata::{self, MetadataImage};
use crate::config::BrokerConfig;
use crate::partition;
use crate::shard::Shard;

static SHUTDOWN: AtomicBool = AtomicBool::new(false);
/// How often shards look for a shutdown request.
const SHUTDOWN_POLL_MS: u64 = 50;

/// Asks every shard to stop. Safe to call from any thread.
pub fn request_shutdown() {
    SHUTDOWN.store(true, Ordering::SeqCst);
}

/// Runs the broker until shutdown is requested.
pub fn run(mut config: BrokerConfig) -> anyhow::Result<()> {
    config.data_dir = absolute_data_dir(&config.data_dir)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let image = load_or_create_image(&config)?;
    for removed in partition::remove_orphan_dirs(&config.data_dir, &image)? {
        tracing::info!(dir = %removed.display(), "removed the directory of a deleted topic");
    }
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
        cluster_id = %image.cluster_id,
        data_dir = %config.data_dir.display(),
        topics = image.topics.len(),
        "sluice starting"
    );
    let config = Arc::new(config);
    let image = Arc::new(image);
    ShardPool::run(&pool, move |mesh: Mesh| {
        shard_main(mesh, config.clone(), image.clone(), listen)
    })?;
    tracing::info!("sluice stopped");
    Ok(())
}

async fn shard_main(
    mesh: Mesh,
    config: Arc<BrokerConfig>,
    image: Arc<MetadataImage>,
    listen: SocketAddr,
) -> Result<(), String> {
    let shard = Shard::install(mesh, config, image.clone());
    // Before any direct-I/O file: glommio's per-device polling probe must
    // see a non-empty file (see storage::prime_direct_io).
    crate::storage::prime_direct_io(&shard.config.data_dir)
        .await
        .map_err(|error| format!("cannot use direct I/O in the data dir: {error}"))?;
    // Work from other shards may run from here on: the shard's state exists.
    shard.mesh.open_inbox();
    shard
        .install_image(image)
        .await
        .map_err(|error| format!("cannot open partitions: {error}"))?;
    let listener = crate::net::bind_shared(listen)
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    let accepting = glommio::spawn_local(crate::net::accept_loop(listener, shard.clone()));
    // Retention and compaction, every log.retention.check.interval.ms.
    let maintenance = shard.storage.spawn_maintenance();
    let metrics = match shard.config.metrics {
        Some(address) if shard.id() == crate::shard::CONTROLLER_SHARD => {
            let listener = glommio::net::TcpListener::bind(address)
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

fn load_or_create_image(config: &BrokerConfig) -> anyhow::Result<MetadataImage> {
    if let Some(image) = metadata::load(&config.data_dir)? {
        if image.node_id != config.node_id {
            bail!(
                "data dir {} belongs to node.id {}, but this broker is node.id {} (key 'node.id')",
                config.data_dir.display(),
                image.node_id,
                config.node_id
            );
        }
        return Ok(image);
    }
    let image = MetadataImage::new(metadata::new_cluster_id(), config.node_id);
    metadata::store(&config.data_dir, &image)?;
    tracing::info!(cluster_id = %image.cluster_id, "formatted a new data dir");
    Ok(image)
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
