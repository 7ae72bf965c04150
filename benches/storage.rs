//! Storage engine benchmarks, beside the raw device figures of the same
//! machine in the same run.
//!
//! Run: `cargo bench --bench storage` (optionally `-- <scratch dir>`; the
//! default is the system temp dir, which must be on the disk under test).
//! Prints a Markdown table for BENCHMARKS.md.
//!
//! Not criterion (as benches/protocol.rs is), on purpose: this is a macro
//! benchmark. Each figure is one whole run of 1 GiB of appends (or 256 MiB
//! of reads) through the engine, seconds long, and means something only
//! next to the disk's own `dd` figure measured right before it, because the
//! virtual disk's speed drifts between runs. Criterion's model (thousands of
//! short iterations of one closure, statistics over their times) fits
//! neither the length of a run nor the ratio to a figure of another tool.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sluice::storage::batch::test_batches::batch;
use sluice::storage::{
    LogConfig, Offset, PartitionLog, ReadData, ReadOptions, ShardStorage, StorageConfig,
};

const APPEND_TOTAL_BYTES: usize = 1 << 30;
const READ_TOTAL_BYTES: usize = 256 << 20;

fn run_async<T, F, Fut>(body: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(1))
        .io_memory(1 << 20)
        .ring_depth(128)
        .spawn(body)
        .expect("executor")
        .join()
        .expect("bench")
}

/// `dd oflag=direct` sequential write of 1 GiB in 1 MiB blocks, with a final
/// fdatasync; returns (GB/s, dd's own summary line).
fn dd_direct_write(dir: &Path) -> (f64, String) {
    let target = dir.join("dd.bin");
    let output = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", target.display()))
        .args(["bs=1M", "count=1024", "oflag=direct", "conv=fdatasync"])
        .output()
        .expect("dd");
    let _ = std::fs::remove_file(&target);
    let text = String::from_utf8_lossy(&output.stderr).to_string();
    let line = text.lines().last().unwrap_or_default().to_string();
    let seconds: f64 = line
        .split(',')
        .nth(2)
        .and_then(|s| s.trim().split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN);
    ((1u64 << 30) as f64 / seconds / 1e9, line)
}

/// Latency of write(4 KiB, O_DIRECT) + fdatasync, p50 and p99 in ms.
fn fdatasync_latency(dir: &Path) -> (f64, f64) {
    let path = dir.join("sync.bin");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .unwrap();
    let layout = std::alloc::Layout::from_size_align(4096, 4096).unwrap();
    // SAFETY: layout is non-zero; the buffer is freed below.
    let buffer = unsafe { std::alloc::alloc_zeroed(layout) };
    let block = unsafe { std::slice::from_raw_parts(buffer, 4096) };
    let mut samples = Vec::new();
    for i in 0..200 {
        use std::os::unix::fs::FileExt;
        let started = Instant::now();
        file.write_all_at(block, (i % 16) * 4096).unwrap();
        file.sync_data().unwrap();
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    file.flush().unwrap();
    unsafe { std::alloc::dealloc(buffer, layout) };
    let _ = std::fs::remove_file(&path);
    samples.sort_by(f64::total_cmp);
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

fn storage_config(dir: &Path, cache_bytes: usize) -> StorageConfig {
    let mut config = StorageConfig::new(dir);
    config.read_cache_bytes = cache_bytes;
    config
}

fn log_config() -> LogConfig {
    LogConfig {
        max_message_bytes: 2 << 20,
        ..LogConfig::default()
    }
}

struct AppendFigures {
    gb_per_s: f64,
    syncs: u64,
    batches: usize,
}

/// `producers` tasks append `batch_bytes` batches until `APPEND_TOTAL_BYTES`,
/// each waiting for durability (acks=all) when `wait_durable`.
fn append_bench(
    dir: PathBuf,
    batch_bytes: usize,
    producers: usize,
    wait_durable: bool,
) -> AppendFigures {
    let records = (batch_bytes / (16 << 10)).clamp(1, 64) as i32;
    let value_bytes = batch_bytes / records as usize - 64;
    run_async(move || async move {
        let shard = ShardStorage::new(storage_config(&dir, 64 << 20));
        let path = dir.join(format!("append-{batch_bytes}-{wait_durable}"));
        let log = PartitionLog::open(&path, log_config(), &shard)
            .await
            .unwrap();
        let payload = batch(records, Some(b"key"), Some(&vec![42u8; value_bytes]), 1);
        let per_producer = APPEND_TOTAL_BYTES / payload.len() / producers;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..producers {
            let (log, payload) = (log.clone(), payload.clone());
            tasks.push(glommio::spawn_local(async move {
                for _ in 0..per_producer {
                    let info = log.append(&payload, 1).await.unwrap();
                    if wait_durable {
                        log.wait_durable(info.last_offset).await.unwrap();
                    }
                }
            }));
        }
        for task in tasks {
            task.await;
        }
        log.flush().await.unwrap();
        let elapsed = started.elapsed();
        let batches = per_producer * producers;
        let figures = AppendFigures {
            gb_per_s: (batches * payload.len()) as f64 / elapsed.as_secs_f64() / 1e9,
            syncs: shard.flush_stats().syncs,
            batches,
        };
        log.remove().await.unwrap();
        shard.stop();
        figures
    })
}

/// Appends `READ_TOTAL_BYTES` of 16 KiB batches, then reads them all back
/// in 1 MiB fetches: from the cache (hit), from disk into memory (miss), and
/// as file regions (miss, zero-copy: no bytes move). Returns GB/s for each.
fn read_bench(dir: PathBuf) -> (f64, f64, f64, sluice::storage::CacheStats) {
    run_async(move || async move {
        let shard = ShardStorage::new(storage_config(&dir, READ_TOTAL_BYTES + (16 << 20)));
        let path = dir.join("read");
        let log = PartitionLog::open(&path, log_config(), &shard)
            .await
            .unwrap();
        let payload = batch(1, Some(b"key"), Some(&vec![7u8; (16 << 10) - 80]), 1);
        for _ in 0..READ_TOTAL_BYTES / payload.len() {
            log.append(&payload, 1).await.unwrap();
        }
        log.flush().await.unwrap();
        let hit = read_all(&log, false).await;
        let stats = shard.cache_stats();
        log.close().await.unwrap();
        let cold = ShardStorage::new(storage_config(&dir, 0));
        let log = PartitionLog::open(&path, log_config(), &cold)
            .await
            .unwrap();
        let miss = read_all(&log, false).await;
        let region = read_all(&log, true).await;
        log.remove().await.unwrap();
        (hit, miss, region, stats)
    })
}

async fn read_all(log: &PartitionLog, zero_copy: bool) -> f64 {
    let started = Instant::now();
    let mut offset = Offset(0);
    let mut bytes = 0u64;
    while offset < log.log_end_offset() {
        let options = ReadOptions {
            max_bytes: 1 << 20,
            min_one_batch: true,
            upper_offset: None,
            zero_copy,
        };
        let result = log.read_with(offset, options).await.unwrap();
        bytes += result.data.len_bytes();
        offset = match &result.data {
            ReadData::File(region) => region.next_offset,
            ReadData::Memory(batches) => {
                let last =
                    sluice::storage::batch::BatchHeader::parse(batches.last().unwrap()).unwrap();
                Offset(last.last_offset() + 1)
            }
            ReadData::Empty => break,
        };
    }
    bytes as f64 / started.elapsed().as_secs_f64() / 1e9
}

fn main() {
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("sluice-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (dd_gb_per_s, dd_line) = dd_direct_write(&dir);
    let (sync_p50_ms, sync_p99_ms) = fdatasync_latency(&dir);
    println!("raw: dd oflag=direct 1 GiB in 1 MiB blocks: {dd_line}");
    println!("| figure | value | notes |\n|---|---|---|");
    println!("| raw direct-I/O sequential write (dd, 1 MiB blocks, conv=fdatasync) | {dd_gb_per_s:.2} GB/s | |");
    println!("| raw fdatasync after a 4 KiB direct write, p50 / p99 | {sync_p50_ms:.2} ms / {sync_p99_ms:.2} ms | 200 samples |");
    let runs = [
        (16 << 10, 16, false),
        (16 << 10, 256, true),
        (16 << 10, 1024, true),
        (1 << 20, 4, false),
        (1 << 20, 4, true),
        (1 << 20, 16, true),
    ];
    let repeat: usize = std::env::var("SLUICE_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let only = std::env::var("SLUICE_BENCH_ONLY").unwrap_or_default();
    for (batch_bytes, producers, wait_durable) in runs {
        let name = format!("append-{}k-{producers}-{wait_durable}", batch_bytes >> 10);
        if !name.contains(&only) {
            continue;
        }
        // The virtual disk's speed drifts: measure dd right before each run
        // and compare each run with its own dd.
        let mut samples = Vec::new();
        for _ in 0..repeat {
            let (dd, _) = dd_direct_write(&dir);
            let figures = append_bench(dir.clone(), batch_bytes, producers, wait_durable);
            samples.push((figures.gb_per_s / dd, figures.gb_per_s, dd, figures));
        }
        samples.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (ratio, gb_per_s, dd, figures) = &samples[samples.len() / 2];
        let mode = if wait_durable {
            "acks=all (each waits for its sync)"
        } else {
            "no wait, one flush at the end"
        };
        println!(
            "| append {} KiB batches, {producers} producers, {mode} | {gb_per_s:.2} GB/s = {:.0}% of dd {dd:.2} GB/s (runs: {}) | {} batches, {} fdatasyncs |",
            batch_bytes >> 10,
            100.0 * ratio,
            samples.iter().map(|s| format!("{:.0}%", 100.0 * s.0)).collect::<Vec<_>>().join(" "),
            figures.batches,
            figures.syncs
        );
    }
    if !"read".contains(&only) {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let (hit, miss, region, stats) = read_bench(dir.clone());
    println!(
        "| read 1 MiB fetches of 16 KiB batches, cache hit | {hit:.2} GB/s | hits {}, misses {} |",
        stats.hits, stats.misses
    );
    println!("| read, cache miss, direct I/O into memory with CRC check | {miss:.2} GB/s | |");
    println!("| read, cache miss, file regions for sendfile (locating only) | {region:.2} GB/s of regions | no bytes move; sendfile is the network layer |");
    let _ = std::fs::remove_dir_all(&dir);
}
