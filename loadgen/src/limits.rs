//! The machine's raw limits, measured next to a benchmark so the broker's
//! figures can be read as fractions of them: loopback TCP bandwidth (one
//! stream), direct-I/O sequential write and read bandwidth (one request in
//! flight, 1 MiB each: what one consumer's sequential cold read could get),
//! and fdatasync latency of a 4 KiB append.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::report::Latency;
use crate::stats::new_histogram;

/// Direct I/O needs aligned buffers, offsets and lengths.
const ALIGN: usize = 4096;
const DIRECT_WRITE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Limits {
    pub loopback_tcp_megabytes_per_second: f64,
    pub direct_write_megabytes_per_second: f64,
    /// Absent in reports from before it was measured.
    #[serde(default)]
    pub direct_read_megabytes_per_second: f64,
    pub fdatasync_4k_latency: Option<Latency>,
}

pub fn measure(dir: &Path, duration: Duration) -> Result<Limits> {
    let loopback = loopback_tcp(duration)?;
    eprintln!("loopback TCP, one stream: {loopback:.0} MB/s");
    let path = dir.join("loadgen-limits-direct.tmp");
    let direct = direct_write(&path, duration)?;
    eprintln!("direct-I/O sequential write (1 MiB writes): {direct:.0} MB/s");
    let direct_read = direct_read(&path, duration);
    let _ = std::fs::remove_file(&path);
    let direct_read = direct_read?;
    eprintln!("direct-I/O sequential read (1 MiB reads): {direct_read:.0} MB/s");
    let sync = fdatasync_latency(dir, duration)?;
    if let Some(latency) = &sync {
        eprintln!(
            "fdatasync after a 4 KiB append: p50 {} p99 {} max {} ({} syncs)",
            crate::stats::format_us(latency.p50_us),
            crate::stats::format_us(latency.p99_us),
            crate::stats::format_us(latency.max_us),
            latency.count
        );
    }
    Ok(Limits {
        loopback_tcp_megabytes_per_second: loopback,
        direct_write_megabytes_per_second: direct,
        direct_read_megabytes_per_second: direct_read,
        fdatasync_4k_latency: sync,
    })
}

fn loopback_tcp(duration: Duration) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> Result<u64> {
        let (mut stream, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let read = stream.read(&mut buf)?;
            if read == 0 {
                return Ok(total);
            }
            total += read as u64;
        }
    });
    let mut stream = TcpStream::connect(address)?;
    let buf = vec![7u8; 1 << 20];
    let start = Instant::now();
    while start.elapsed() < duration {
        stream.write_all(&buf)?;
    }
    drop(stream);
    let total = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    Ok(total as f64 / 1e6 / start.elapsed().as_secs_f64())
}

/// A heap buffer aligned for O_DIRECT.
struct AlignedBuf {
    storage: Vec<u8>,
    offset: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> AlignedBuf {
        let storage = vec![0x5au8; len + ALIGN];
        let offset = storage.as_ptr().align_offset(ALIGN);
        AlignedBuf {
            storage,
            offset,
            len,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.storage[self.offset..self.offset + self.len]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.offset..self.offset + self.len]
    }
}

/// Writes `path` for `duration`; leaves it for [`direct_read`].
fn direct_write(path: &Path, duration: Duration) -> Result<f64> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .with_context(|| format!("opening {} with O_DIRECT", path.display()))?;
    let buf = AlignedBuf::new(DIRECT_WRITE_BYTES);
    let start = Instant::now();
    let mut written = 0u64;
    while start.elapsed() < duration {
        file.write_all(buf.bytes())?;
        written += DIRECT_WRITE_BYTES as u64;
    }
    file.sync_data()?;
    Ok(written as f64 / 1e6 / start.elapsed().as_secs_f64())
}

/// Reads `path` from the start with O_DIRECT (no page cache), for
/// `duration` or to its end.
fn direct_read(path: &Path, duration: Duration) -> Result<f64> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .with_context(|| format!("opening {} with O_DIRECT", path.display()))?;
    let mut buf = AlignedBuf::new(DIRECT_WRITE_BYTES);
    let start = Instant::now();
    let mut read = 0u64;
    while start.elapsed() < duration {
        let got = file.read(buf.bytes_mut())?;
        if got == 0 {
            break;
        }
        read += got as u64;
    }
    Ok(read as f64 / 1e6 / start.elapsed().as_secs_f64())
}

fn fdatasync_latency(dir: &Path, duration: Duration) -> Result<Option<Latency>> {
    let path = dir.join("loadgen-limits-sync.tmp");
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)?;
    let block = vec![0x5au8; 4096];
    let mut histogram = new_histogram();
    let start = Instant::now();
    while start.elapsed() < duration {
        file.write_all(&block)?;
        let before = Instant::now();
        file.sync_data()?;
        histogram.saturating_record(before.elapsed().as_micros().max(1) as u64);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(Latency::from_histogram(&histogram))
}
