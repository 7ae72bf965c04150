//! Small durable files of a partition directory: the log start offset, the
//! leader epochs, the clean-shutdown marker, and whole-file writes of index
//! files.
//!
//! Owns: the text formats (Kafka's checkpoint format: a version line, a
//! count line, then one entry per line) and atomic replacement (write a
//! temporary file with direct I/O, fdatasync, rename, sync the directory).
//! Runs on the shard owning the log. Reading at open time uses `std::fs`
//! (recovery may block); writing never does. Parsing never panics.

use std::path::{Path, PathBuf};

use glommio::io::{Directory, DmaFile, OpenOptions};

use super::config::ALIGN_BYTES;
use super::error::{Result, StorageError};
use super::Offset;

pub(crate) const LOG_START_OFFSET_FILE: &str = "log-start-offset-checkpoint";
pub(crate) const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".sluice-clean-shutdown";

/// Writes `bytes` to `path` atomically and durably, without the page cache.
pub(crate) async fn write_file_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = path.with_extension("tmp");
    let io = |e: glommio::GlommioError<()>| StorageError::io(&temporary, e);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&temporary)
        .await
        .map_err(io)?;
    let padded = (bytes.len() as u64).div_ceil(ALIGN_BYTES) * ALIGN_BYTES;
    if padded > 0 {
        let mut buffer = file.alloc_dma_buffer(padded as usize);
        buffer.as_bytes_mut()[..bytes.len()].copy_from_slice(bytes);
        buffer.as_bytes_mut()[bytes.len()..].fill(0);
        file.write_at(buffer, 0).await.map_err(io)?;
    }
    file.truncate(bytes.len() as u64).await.map_err(io)?;
    file.fdatasync().await.map_err(io)?;
    file.close().await.map_err(io)?;
    glommio::io::rename(&temporary, path).await.map_err(io)?;
    sync_directory(path.parent().expect("file in a directory")).await
}

/// glommio opens the directory with no base descriptor, so a relative path
/// fails with EBADF: it is resolved against the working directory first.
pub(crate) async fn sync_directory(dir: &Path) -> Result<()> {
    let io = |e: glommio::GlommioError<()>| StorageError::io(dir, e);
    let absolute = std::path::absolute(dir).map_err(|e| StorageError::io(dir, e))?;
    let directory = Directory::open(&absolute).await.map_err(io)?;
    directory.sync().await.map_err(io)?;
    directory.close().await.map_err(io)
}

/// Creates (or truncates) a file for direct-I/O reads and writes.
pub(crate) async fn create_dma_file(path: &Path) -> Result<DmaFile> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(path)
        .await
        .map_err(|e| StorageError::io(path, e))
}

pub(crate) async fn open_dma_file(path: &Path, write: bool) -> Result<DmaFile> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .dma_open(path)
        .await
        .map_err(|e| StorageError::io(path, e))
}

fn encode(entries: &[String]) -> Vec<u8> {
    let mut text = format!("0\n{}\n", entries.len());
    for entry in entries {
        text.push_str(entry);
        text.push('\n');
    }
    text.into_bytes()
}

/// Parses a checkpoint file body into its entry lines, or `None` if damaged.
fn decode(text: &str) -> Option<Vec<&str>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let entries: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
    (entries.len() == count).then_some(entries)
}

pub(crate) async fn write_log_start_offset(dir: &Path, offset: Offset) -> Result<()> {
    let bytes = encode(&[offset.0.to_string()]);
    write_file_durably(&dir.join(LOG_START_OFFSET_FILE), &bytes).await
}

/// Reads the log start offset checkpoint at open time; `None` if absent or
/// damaged (the log then starts at its first segment).
pub(crate) fn read_log_start_offset(dir: &Path) -> Option<Offset> {
    let text = std::fs::read_to_string(dir.join(LOG_START_OFFSET_FILE)).ok()?;
    let entries = decode(&text)?;
    Some(Offset(entries.first()?.trim().parse().ok()?))
}

/// One leader epoch and the first offset written in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: Offset,
}

pub(crate) async fn write_leader_epochs(dir: &Path, entries: &[EpochEntry]) -> Result<()> {
    let lines: Vec<String> = entries
        .iter()
        .map(|e| format!("{} {}", e.epoch, e.start_offset.0))
        .collect();
    write_file_durably(&dir.join(LEADER_EPOCH_FILE), &encode(&lines)).await
}

pub(crate) fn read_leader_epochs(dir: &Path) -> Vec<EpochEntry> {
    let parse = |line: &str| {
        let mut fields = line.split_whitespace();
        Some(EpochEntry {
            epoch: fields.next()?.parse().ok()?,
            start_offset: Offset(fields.next()?.parse().ok()?),
        })
    };
    let Ok(text) = std::fs::read_to_string(dir.join(LEADER_EPOCH_FILE)) else {
        return Vec::new();
    };
    decode(&text)
        .and_then(|entries| entries.into_iter().map(parse).collect())
        .unwrap_or_default()
}

pub(crate) fn clean_shutdown_path(dir: &Path) -> PathBuf {
    dir.join(CLEAN_SHUTDOWN_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_text_round_trips_and_rejects_damage() {
        let bytes = encode(&["3 100".into(), "5 250".into()]);
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(decode(&text), Some(vec!["3 100", "5 250"]));
        assert_eq!(decode("0\n3\n1 2\n"), None);
        assert_eq!(decode("1\n0\n"), None);
        assert_eq!(decode(""), None);
    }
}
