//! Typed errors of the storage engine.
//!
//! Owns: [`StorageError`] and its [`ErrorKind`], the one place where storage
//! failures are classified. Runs on whichever shard owns the log. Must not
//! name Kafka API types: the protocol layer maps [`ErrorKind`] to wire codes.

use std::path::PathBuf;

use super::Offset;

/// The class of a storage failure, one per Kafka error code the protocol
/// layer should answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Kafka `CORRUPT_MESSAGE` (2): bad length, magic or CRC in a batch.
    CorruptMessage,
    /// Kafka `INVALID_RECORD` (87): a batch that is well formed but not
    /// acceptable (record count mismatch, keyless record on a compacted log).
    InvalidRecord,
    /// Kafka `INVALID_TIMESTAMP` (32): a CreateTime timestamp outside
    /// `message.timestamp.before.max.ms` / `.after.max.ms`.
    InvalidTimestamp,
    /// Kafka `MESSAGE_TOO_LARGE` (10): a batch above `max.message.bytes`.
    MessageTooLarge,
    /// Kafka `OFFSET_OUT_OF_RANGE` (1).
    OffsetOutOfRange,
    /// Kafka `KAFKA_STORAGE_ERROR` (56): I/O failure or a log that failed
    /// and must be reopened (recovered) before it serves again.
    StorageError,
}

/// One record that made its batch invalid: its index within its batch
/// (0-based, as Kafka's `batch_index`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    pub batch_index: i32,
    /// `InvalidRecord` or `InvalidTimestamp`.
    pub kind: ErrorKind,
    pub message: String,
}

/// A storage failure. Untrusted bytes (from the network or from disk) only
/// ever produce these; they never panic.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("corrupt batch: {0}")]
    CorruptMessage(String),
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A batch refused because of some of its records (KIP-467): nothing
    /// of the payload is appended, and `records` names the culprits so that
    /// clients fail only those and retry the others.
    #[error("invalid records: {message}")]
    InvalidRecords {
        message: String,
        records: Vec<RecordError>,
    },
    #[error("batch of {size_bytes} bytes is above max.message.bytes {max_bytes}")]
    MessageTooLarge { size_bytes: usize, max_bytes: usize },
    #[error("offset {offset} out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: Offset,
        log_start_offset: Offset,
        log_end_offset: Offset,
    },
    #[error("I/O error on {path:?}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt data on disk in {path:?} at position {position_bytes}: {reason}")]
    CorruptOnDisk {
        path: PathBuf,
        position_bytes: u64,
        reason: String,
    },
    #[error("log failed after an earlier error and must be reopened: {0}")]
    LogFailed(String),
    #[error("log is closed")]
    Closed,
}

impl StorageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::CorruptMessage(_) => ErrorKind::CorruptMessage,
            StorageError::InvalidRecord(_) => ErrorKind::InvalidRecord,
            // Kafka answers INVALID_TIMESTAMP if any record's timestamp is
            // out of bounds, INVALID_RECORD otherwise.
            StorageError::InvalidRecords { records, .. } => {
                if records
                    .iter()
                    .any(|r| r.kind == ErrorKind::InvalidTimestamp)
                {
                    ErrorKind::InvalidTimestamp
                } else {
                    ErrorKind::InvalidRecord
                }
            }
            StorageError::MessageTooLarge { .. } => ErrorKind::MessageTooLarge,
            StorageError::OffsetOutOfRange { .. } => ErrorKind::OffsetOutOfRange,
            StorageError::Io { .. }
            | StorageError::CorruptOnDisk { .. }
            | StorageError::LogFailed(_)
            | StorageError::Closed => ErrorKind::StorageError,
        }
    }

    /// The records named by an [`StorageError::InvalidRecords`]; empty for
    /// every other error.
    pub fn record_errors(&self) -> &[RecordError] {
        match self {
            StorageError::InvalidRecords { records, .. } => records,
            _ => &[],
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: impl Into<std::io::Error>) -> Self {
        StorageError::Io {
            path: path.into(),
            source: source.into(),
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
