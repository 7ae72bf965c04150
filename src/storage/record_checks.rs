//! The per-record checks a leader makes on a produce payload, past the batch
//! framing: keys on a compacted log, and CreateTime timestamps within
//! `message.timestamp.before.max.ms` / `.after.max.ms` of the broker's clock.
//!
//! Owns: [`RecordChecks`], [`TimestampWindow`] and the walk over a batch's
//! records. A refused record is a [`RecordError`] naming its index within
//! its batch (KIP-467), so that clients fail only those records. Pure
//! functions, no I/O; runs on the shard that owns the log. Must never panic
//! on input bytes.

use bytes::Bytes;

use super::batch::{read_varint, BatchHeader, HEADER_BYTES};
use super::error::{ErrorKind, RecordError, Result, StorageError};

/// Kafka's `RecordBatch.NO_TIMESTAMP`: a record without a timestamp, which
/// no bound applies to.
const NO_TIMESTAMP: i64 = -1;

/// Why a record without a key is refused (Kafka's wording, less the
/// partition, which the storage layer does not name).
pub const KEYLESS_ON_COMPACTED: &str = "Compacted topic cannot accept message without key";

/// What a leader checks in every record of a produce payload. A follower
/// checks nothing: it stores what its leader accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordChecks {
    /// Records without a key are refused (a compacted log).
    pub require_keys: bool,
    /// CreateTime timestamps must fall in this window.
    pub timestamps: Option<TimestampWindow>,
}

/// The timestamps a CreateTime log accepts, inclusive, in ms since the
/// epoch; `None` is no bound on that side (Kafka's Long.MAX_VALUE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampWindow {
    pub min_ms: Option<i64>,
    pub max_ms: Option<i64>,
}

impl TimestampWindow {
    /// Kafka's `message.timestamp.before.max.ms` and `.after.max.ms` around
    /// the broker's clock; `None` when neither side is bounded.
    pub fn around(
        now_ms: i64,
        before_max_ms: Option<i64>,
        after_max_ms: Option<i64>,
    ) -> Option<Self> {
        (before_max_ms.is_some() || after_max_ms.is_some()).then(|| TimestampWindow {
            min_ms: before_max_ms.map(|before| now_ms.saturating_sub(before)),
            max_ms: after_max_ms.map(|after| now_ms.saturating_add(after)),
        })
    }

    fn contains(self, timestamp_ms: i64) -> bool {
        timestamp_ms == NO_TIMESTAMP
            || (self.min_ms.is_none_or(|min| timestamp_ms >= min)
                && self.max_ms.is_none_or(|max| timestamp_ms <= max))
    }

    /// Kafka's per-record message; the offset it names is the record's
    /// offset in the batch as the producer sent it, its index.
    fn refusal(self, timestamp_ms: i64, batch_index: i32) -> RecordError {
        let bound = |value: Option<i64>, unbounded: i64| value.unwrap_or(unbounded);
        RecordError {
            batch_index,
            kind: ErrorKind::InvalidTimestamp,
            message: format!(
                "Timestamp {timestamp_ms} of message with offset {batch_index} is out of range. \
                 The timestamp should be within [{}, {}]",
                bound(self.min_ms, i64::MIN),
                bound(self.max_ms, i64::MAX)
            ),
        }
    }
}

/// What the checks need of one record.
struct RecordFacts {
    timestamp_ms: i64,
    keyless: bool,
}

/// Checks the records of one batch. A malformed batch is an error; records
/// that are well formed but not acceptable are returned, by their index
/// within the batch, one error each (the key first, as Kafka's
/// `LogValidator.validateRecord`).
pub(super) fn validate_records(
    batch: &[u8],
    header: &BatchHeader,
    checks: RecordChecks,
) -> Result<Vec<RecordError>> {
    if header.record_count < 1 || header.last_offset_delta != header.record_count - 1 {
        return Err(StorageError::InvalidRecord(format!(
            "record count {} does not match last offset delta {}",
            header.record_count, header.last_offset_delta
        )));
    }
    let require_keys = checks.require_keys && !header.is_control();
    let records = if header.codec() == 0 {
        walk_uncompressed_records(batch, header)?
    } else if require_keys || needs_each_timestamp(header, checks.timestamps) {
        decode_compressed(batch)?
    } else {
        Vec::new()
    };
    let mut errors = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let batch_index = index as i32;
        if require_keys && record.keyless {
            errors.push(RecordError {
                batch_index,
                kind: ErrorKind::InvalidRecord,
                message: KEYLESS_ON_COMPACTED.to_string(),
            });
        } else if let Some(window) = checks.timestamps {
            if !window.contains(record.timestamp_ms) {
                errors.push(window.refusal(record.timestamp_ms, batch_index));
            }
        }
    }
    Ok(errors)
}

/// Whether a compressed batch must be decompressed to check timestamps.
/// With no lower bound (the default `before.max.ms`), the batch's max
/// timestamp within the upper bound clears every record without
/// decompressing; a lower bound needs every record (a batch's base
/// timestamp is its first record's, not necessarily its smallest).
fn needs_each_timestamp(header: &BatchHeader, window: Option<TimestampWindow>) -> bool {
    window.is_some_and(|window| window.min_ms.is_some() || !window.contains(header.max_timestamp))
}

/// Walks the records of an uncompressed batch: their lengths must tile the
/// batch body exactly and their count must match.
fn walk_uncompressed_records(batch: &[u8], header: &BatchHeader) -> Result<Vec<RecordFacts>> {
    let invalid = |what: &str| StorageError::InvalidRecord(what.to_string());
    let mut at = HEADER_BYTES;
    let mut records = Vec::with_capacity(header.record_count as usize);
    for _ in 0..header.record_count {
        let (length, used) = read_varint(&batch[at..]).ok_or_else(|| invalid("record length"))?;
        at += used;
        if length < 0 || batch.len() - at < length as usize {
            return Err(invalid("record length beyond batch"));
        }
        let record = &batch[at..at + length as usize];
        let (timestamp_delta, key_length) =
            record_fields(record).ok_or_else(|| invalid("record fields"))?;
        records.push(RecordFacts {
            timestamp_ms: header.base_timestamp.wrapping_add(timestamp_delta),
            keyless: key_length < 0,
        });
        at += length as usize;
    }
    if at != batch.len() {
        return Err(invalid("records do not fill the batch"));
    }
    Ok(records)
}

/// Timestamp delta and key length of one record body: attributes i8,
/// timestampDelta varlong, offsetDelta varint, keyLength varint.
fn record_fields(record: &[u8]) -> Option<(i64, i64)> {
    let mut at = 1;
    let (timestamp_delta, used) = read_varint(record.get(at..)?)?;
    at += used;
    let (_, used) = read_varint(record.get(at..)?)?;
    at += used;
    read_varint(record.get(at..)?).map(|(key_length, _)| (timestamp_delta, key_length))
}

/// The records of a compressed batch, decompressed.
fn decode_compressed(batch: &[u8]) -> Result<Vec<RecordFacts>> {
    let mut bytes = Bytes::copy_from_slice(batch);
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes)
        .map_err(|e| StorageError::CorruptMessage(format!("cannot decompress: {e}")))?;
    Ok(set
        .records
        .iter()
        .map(|record| RecordFacts {
            timestamp_ms: record.timestamp,
            keyless: record.key.is_none(),
        })
        .collect())
}

/// The error for a payload with refused records: INVALID_TIMESTAMP when any
/// record's timestamp is out of bounds, else INVALID_RECORD with the count
/// and the first three (Kafka's `LogValidator.processRecordErrors`).
pub(super) fn invalid_records(records: Vec<RecordError>) -> StorageError {
    if records
        .iter()
        .any(|r| r.kind == ErrorKind::InvalidTimestamp)
    {
        return StorageError::InvalidRecords {
            message: "One or more records have been rejected due to invalid timestamp".into(),
            records,
        };
    }
    let shown: Vec<String> = records
        .iter()
        .take(3)
        .map(|r| format!("(batch index {}: {})", r.batch_index, r.message))
        .collect();
    StorageError::InvalidRecords {
        message: format!(
            "{} record(s) rejected, the first {} of them: {}",
            records.len(),
            shown.len(),
            shown.join(", ")
        ),
        records,
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::Compression;

    use super::super::batch::test_batches::{encoded_batch_at, KeyValue};
    use super::super::batch::validate_payload;
    use super::*;

    const NOW_MS: i64 = 1_800_000_000_000;
    const HOUR_MS: i64 = 3_600_000;

    /// One batch with a record per (key, timestamp), encoded by kafka-protocol.
    fn batch(records: &[(Option<&[u8]>, i64)], compression: Compression) -> Vec<u8> {
        let key_values: Vec<KeyValue> = records
            .iter()
            .map(|(key, _)| (*key, Some(&b"v"[..])))
            .collect();
        let timestamps: Vec<i64> = records.iter().map(|(_, timestamp)| *timestamp).collect();
        encoded_batch_at(&key_values, &timestamps, compression)
    }

    fn refused(payload: &[u8], checks: RecordChecks) -> (ErrorKind, Vec<(i32, ErrorKind)>) {
        let error = validate_payload(payload, 1 << 20, checks).unwrap_err();
        let records = error
            .record_errors()
            .iter()
            .map(|r| (r.batch_index, r.kind))
            .collect();
        (error.kind(), records)
    }

    fn window(before_ms: Option<i64>, after_ms: Option<i64>) -> RecordChecks {
        RecordChecks {
            require_keys: false,
            timestamps: TimestampWindow::around(NOW_MS, before_ms, after_ms),
        }
    }

    #[test]
    fn no_bound_is_no_window() {
        assert_eq!(TimestampWindow::around(NOW_MS, None, None), None);
    }

    #[test]
    fn records_out_of_the_window_are_named_in_both_encodings() {
        let records: Vec<(Option<&[u8]>, i64)> = vec![
            (Some(b"k"), NOW_MS),
            (Some(b"k"), NOW_MS + 2 * HOUR_MS),
            (Some(b"k"), NOW_MS + HOUR_MS),
            (Some(b"k"), NO_TIMESTAMP),
            (Some(b"k"), NOW_MS - 3 * HOUR_MS),
            (Some(b"k"), NOW_MS + HOUR_MS + 1),
        ];
        for compression in [Compression::None, Compression::Gzip] {
            let payload = batch(&records, compression);
            let (kind, named) = refused(&payload, window(None, Some(HOUR_MS)));
            assert_eq!(kind, ErrorKind::InvalidTimestamp, "{compression:?}");
            let ts = ErrorKind::InvalidTimestamp;
            assert_eq!(named, vec![(1, ts), (5, ts)], "{compression:?}");
            let (_, named) = refused(&payload, window(Some(2 * HOUR_MS), Some(HOUR_MS)));
            assert_eq!(named, vec![(1, ts), (4, ts), (5, ts)], "{compression:?}");
            // The bounds are inclusive.
            let (_, named) = refused(&payload, window(Some(3 * HOUR_MS), Some(2 * HOUR_MS - 1)));
            assert_eq!(named, vec![(1, ts)], "{compression:?}");
            let wide = window(Some(3 * HOUR_MS), Some(2 * HOUR_MS));
            assert!(validate_payload(&payload, 1 << 20, wide).is_ok());
        }
    }

    #[test]
    fn the_message_is_kafkas() {
        let payload = batch(&[(Some(b"k"), NOW_MS + 2 * HOUR_MS)], Compression::None);
        let error = validate_payload(&payload, 1 << 20, window(None, Some(HOUR_MS))).unwrap_err();
        assert_eq!(
            error.record_errors()[0].message,
            format!(
                "Timestamp {} of message with offset 0 is out of range. The timestamp should be \
                 within [{}, {}]",
                NOW_MS + 2 * HOUR_MS,
                i64::MIN,
                NOW_MS + HOUR_MS
            )
        );
        assert!(error
            .to_string()
            .contains("rejected due to invalid timestamp"));
    }

    #[test]
    fn a_keyless_record_is_a_key_error_and_a_timestamp_error_wins_the_batch() {
        let records: Vec<(Option<&[u8]>, i64)> = vec![
            (None, NOW_MS + 2 * HOUR_MS),
            (Some(b"k"), NOW_MS + 2 * HOUR_MS),
            (None, NOW_MS),
        ];
        let checks = RecordChecks {
            require_keys: true,
            ..window(None, Some(HOUR_MS))
        };
        for compression in [Compression::None, Compression::Lz4] {
            let (kind, named) = refused(&batch(&records, compression), checks);
            assert_eq!(kind, ErrorKind::InvalidTimestamp);
            assert_eq!(
                named,
                vec![
                    (0, ErrorKind::InvalidRecord),
                    (1, ErrorKind::InvalidTimestamp),
                    (2, ErrorKind::InvalidRecord)
                ]
            );
        }
    }
}
