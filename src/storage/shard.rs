//! The per-shard storage context: read cache, group-commit flusher, the
//! registry of open logs, and the retention/compaction timer.
//!
//! Owns: [`ShardStorage`], created once per shard on that shard's executor
//! (it spawns the flusher task there). Cheap to clone (`Rc`); never crosses
//! shards. Must not block the reactor: maintenance work yields between logs.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::appender::BufferPool;
use super::cache::{CacheStats, ReadCache};
use super::config::StorageConfig;
use super::error::{Result, StorageError};
use super::flusher::{self, FlushStats, Flusher};
use super::log::{LogInner, PartitionLog};
use super::MaintenanceReport;

/// glommio decides once per block device whether direct-I/O reads go to its
/// polled ring, by reading the first block of the first file it opens there.
/// On an empty file that read succeeds (0 bytes) even when the device cannot
/// poll (virtio disks), and every later read fails with EOPNOTSUPP. Opening
/// a non-empty file first makes the probe see the truth. Blocking `std::fs`
/// here runs once per shard at start.
///
/// [`super::PartitionLog::open`] calls it once per thread; a broker that opens
/// other direct-I/O files should call it first, at start.
pub async fn prime_direct_io(data_dir: &std::path::Path) -> Result<()> {
    if PRIMED.with(|primed| primed.get()) {
        return Ok(());
    }
    std::fs::create_dir_all(data_dir).map_err(|e| StorageError::io(data_dir, e))?;
    // One probe file per call: shards prime concurrently, and one must not
    // remove the file another is opening.
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let probe = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!(".sluice-iopoll-probe-{}-{probe}", std::process::id());
    let path = data_dir.join(name);
    std::fs::write(&path, [0u8; 4096]).map_err(|e| StorageError::io(&path, e))?;
    let opened = glommio::io::DmaFile::open(&path).await;
    let _ = std::fs::remove_file(&path);
    let file = opened.map_err(|e| StorageError::io(&path, e))?;
    file.close().await.map_err(|e| StorageError::io(&path, e))?;
    PRIMED.with(|primed| primed.set(true));
    Ok(())
}

thread_local! {
    static PRIMED: Cell<bool> = const { Cell::new(false) };
}

/// The storage context of one shard. Create it on the shard's executor.
#[derive(Clone)]
pub struct ShardStorage {
    pub(crate) inner: Rc<ShardInner>,
}

pub(crate) struct ShardInner {
    pub config: StorageConfig,
    pub cache: RefCell<ReadCache>,
    /// Write buffers shared by the shard's appenders.
    pub write_buffers: Rc<BufferPool>,
    pub flusher: Flusher,
    logs: RefCell<Vec<Weak<LogInner>>>,
    /// How many entries `logs` kept at its last sweep of closed logs.
    logs_after_sweep: Cell<usize>,
    next_log_id: Cell<u64>,
}

impl ShardStorage {
    /// Creates the shard's storage and spawns its group-commit flusher on the
    /// current glommio executor.
    pub fn new(config: StorageConfig) -> ShardStorage {
        let inner = Rc::new(ShardInner {
            cache: RefCell::new(ReadCache::new(config.read_cache_bytes)),
            write_buffers: Rc::new(BufferPool::new(
                config.write_buffer_bytes,
                2 * config.write_buffers_in_flight_max + 2,
            )),
            config,
            flusher: Flusher::default(),
            logs: RefCell::new(Vec::new()),
            logs_after_sweep: Cell::new(0),
            next_log_id: Cell::new(1),
        });
        glommio::spawn_local(flusher::run(Rc::downgrade(&inner))).detach();
        ShardStorage { inner }
    }

    pub fn config(&self) -> &StorageConfig {
        &self.inner.config
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.borrow().stats()
    }

    pub fn flush_stats(&self) -> FlushStats {
        self.inner.flusher.stats()
    }

    /// Stops the flusher task (after its current round). Close logs first.
    pub fn stop(&self) {
        self.inner.flusher.stop();
    }

    pub(crate) fn register(&self, log: &Rc<LogInner>) {
        let mut logs = self.inner.logs.borrow_mut();
        // Drop closed logs' entries when the list has doubled since the last
        // sweep: amortised constant time per log, where a sweep on every
        // registration made opening N partitions cost N squared.
        if logs.len() >= 2 * self.inner.logs_after_sweep.get().max(8) {
            logs.retain(|weak| weak.strong_count() > 0);
            self.inner.logs_after_sweep.set(logs.len());
        }
        logs.push(Rc::downgrade(log));
    }

    pub(crate) fn next_log_id(&self) -> u64 {
        let id = self.inner.next_log_id.get();
        self.inner.next_log_id.set(id + 1);
        id
    }

    /// Every open log of this shard.
    pub fn logs(&self) -> Vec<PartitionLog> {
        self.inner
            .logs
            .borrow()
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|log| !log.is_closed())
            .map(|inner| PartitionLog { inner })
            .collect()
    }

    /// One pass of retention then compaction over every open log.
    pub async fn run_maintenance(&self, now_ms: i64) -> Vec<MaintenanceReport> {
        let mut reports = Vec::new();
        for log in self.logs() {
            reports.push(log.run_maintenance(now_ms).await);
            glommio::yield_if_needed().await;
        }
        reports
    }

    /// The cleaner's pass: the compacted logs that are due, dirtiest first
    /// (Kafka's cleaner order); see [`PartitionLog::clean_if_due`].
    pub async fn run_cleaner(&self, now_ms: i64) {
        let mut due: Vec<(f64, PartitionLog)> = self
            .logs()
            .into_iter()
            .filter_map(|log| Some((log.cleaning_priority(now_ms)?, log)))
            .collect();
        due.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, log) in due {
            match log.clean_if_due(now_ms).await {
                Some(Ok(report)) if !report.segments_rewritten.is_empty() => tracing::debug!(
                    dir = %log.dir().display(),
                    segments = report.segments_rewritten.len(),
                    records_removed = report.records_removed,
                    "log cleaned"
                ),
                Some(Err(error)) => {
                    tracing::warn!(dir = %log.dir().display(), %error, "log cleaning failed")
                }
                _ => {}
            }
            glommio::yield_if_needed().await;
        }
    }

    /// Spawns the shard's one maintenance task: the cleaner every
    /// `log.cleaner.backoff.ms`, and retention (with a compaction pass)
    /// every `log.retention.check.interval.ms`. One task, so that two
    /// passes never compact one log at once. The broker keeps (or detaches)
    /// it.
    pub fn spawn_maintenance(&self) -> glommio::Task<()> {
        let shard = Rc::downgrade(&self.inner);
        let retention = Duration::from_millis(self.inner.config.retention_check_interval_ms);
        let cleaner = Duration::from_millis(self.inner.config.cleaner_backoff_ms.max(1));
        glommio::spawn_local(async move {
            let mut next_retention = std::time::Instant::now() + retention;
            loop {
                let now = std::time::Instant::now();
                let wake = next_retention.min(now + cleaner);
                glommio::timer::sleep(wake.saturating_duration_since(now)).await;
                let Some(inner) = shard.upgrade() else { return };
                if inner.flusher.is_stopped() {
                    return;
                }
                let storage = ShardStorage { inner };
                if std::time::Instant::now() >= next_retention {
                    next_retention = std::time::Instant::now() + retention;
                    for report in storage.run_maintenance(super::now_ms()).await {
                        if let Some(error) = &report.error {
                            tracing::warn!(dir = ?report.dir, %error, "log maintenance failed");
                        }
                    }
                } else {
                    storage.run_cleaner(super::now_ms()).await;
                }
            }
        })
    }
}
