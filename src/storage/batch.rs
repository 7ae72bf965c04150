//! Kafka v2 record batch headers: parsing, validation and the two rewrites
//! the broker makes (base offset; max timestamp for LogAppendTime).
//!
//! Owns: the byte layout of a batch header and the checks on untrusted
//! batches (from producers, and from disk during recovery). Pure functions,
//! no I/O; runs on the shard that owns the log. Must never panic on input
//! bytes: every malformed input is an error.

use bytes::Bytes;

use super::error::{Result, StorageError};
use super::record_checks::{invalid_records, validate_records, RecordChecks};

/// Bytes of the fixed v2 batch header.
pub const HEADER_BYTES: usize = 61;
/// Bytes before the part counted by `batchLength` (baseOffset, batchLength).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// Smallest legal `batchLength`.
pub const BATCH_LENGTH_MIN: i32 = (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;

const LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

const ATTRIBUTE_CODEC_MASK: i16 = 0x07;
const ATTRIBUTE_LOG_APPEND_TIME: i16 = 0x08;
const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
const ATTRIBUTE_CONTROL: i16 = 0x20;

/// The fields of a v2 batch header the storage engine uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub base_sequence: i32,
    pub record_count: i32,
}

/// Why bytes are not a valid batch. Kept small so that recovery can report
/// exactly what it cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than the header or than `batchLength` announces.
    Truncated {
        have_bytes: usize,
        need_bytes: usize,
    },
    BadLength(i32),
    BadMagic(i8),
    BadCrc {
        stored: u32,
        computed: u32,
    },
    BadOffsetDelta(i32),
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

fn be_i64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}
fn be_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(buf[at..at + 2].try_into().expect("2 bytes"))
}

impl BatchHeader {
    /// Parses the fixed header and checks the length field and magic. Does
    /// not look at the CRC (see [`check_batch`]).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < HEADER_BYTES {
            return Err(BatchError::Truncated {
                have_bytes: buf.len(),
                need_bytes: HEADER_BYTES,
            });
        }
        let batch_length = be_i32(buf, LENGTH_AT);
        if batch_length < BATCH_LENGTH_MIN {
            return Err(BatchError::BadLength(batch_length));
        }
        let magic = buf[MAGIC_AT] as i8;
        if magic != 2 {
            return Err(BatchError::BadMagic(magic));
        }
        let header = BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length,
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH_AT),
            magic,
            crc: be_i32(buf, CRC_AT) as u32,
            attributes: be_i16(buf, ATTRIBUTES_AT),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_AT),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_AT),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_AT),
            producer_id: be_i64(buf, PRODUCER_ID_AT),
            base_sequence: be_i32(buf, BASE_SEQUENCE_AT),
            record_count: be_i32(buf, RECORD_COUNT_AT),
        };
        if header.last_offset_delta < 0 {
            return Err(BatchError::BadOffsetDelta(header.last_offset_delta));
        }
        Ok(header)
    }

    /// Bytes of the whole batch, header included.
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    pub fn codec(&self) -> i16 {
        self.attributes & ATTRIBUTE_CODEC_MASK
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTRIBUTE_LOG_APPEND_TIME != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTRIBUTE_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTRIBUTE_CONTROL != 0
    }
}

/// Parses the batch at the start of `buf` and verifies its length and
/// CRC-32C. `buf` may hold more bytes after the batch.
pub fn check_batch(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let total = header.total_bytes();
    if buf.len() < total {
        return Err(BatchError::Truncated {
            have_bytes: buf.len(),
            need_bytes: total,
        });
    }
    let computed = crc32c::crc32c(&buf[ATTRIBUTES_AT..total]);
    if computed != header.crc {
        return Err(BatchError::BadCrc {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Rewrites the base offset. The CRC does not cover it.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Stamps the leader epoch the batch was appended in. The CRC starts at the
/// attributes, after this field, so it stays valid.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch LogAppendTime with `now_ms` as max timestamp and
/// recomputes the CRC, which covers both fields.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = be_i16(batch, ATTRIBUTES_AT) | ATTRIBUTE_LOG_APPEND_TIME;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let total = LOG_OVERHEAD_BYTES + be_i32(batch, LENGTH_AT) as usize;
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..total]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Sets the base sequence and recomputes the CRC (compaction re-encodes
/// batches and must keep "no sequence" as -1).
pub fn set_base_sequence(batch: &mut [u8], base_sequence: i32) {
    batch[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&base_sequence.to_be_bytes());
    let total = LOG_OVERHEAD_BYTES + be_i32(batch, LENGTH_AT) as usize;
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..total]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// One batch of a produce payload, validated: its byte range and header.
#[derive(Clone, Copy, Debug)]
pub struct ValidBatch {
    pub start: usize,
    pub header: BatchHeader,
}

/// Splits a produce payload into batches and validates each one, all before
/// anything is written: a payload is accepted whole or refused whole. A
/// payload refused because of some of its records (keyless records on a
/// compacted log, timestamps out of bounds: `record_checks.rs`) is
/// [`StorageError::InvalidRecords`], naming each one by its index within
/// its batch (KIP-467), so that clients fail only those.
pub fn validate_payload(
    payload: &[u8],
    max_message_bytes: usize,
    checks: RecordChecks,
) -> Result<Vec<ValidBatch>> {
    if payload.is_empty() {
        return Err(StorageError::CorruptMessage("empty records".into()));
    }
    let mut batches = Vec::new();
    let mut record_errors = Vec::new();
    let mut start = 0;
    while start < payload.len() {
        let rest = &payload[start..];
        if let Ok(header) = BatchHeader::parse(rest) {
            if header.total_bytes() > max_message_bytes {
                return Err(StorageError::MessageTooLarge {
                    size_bytes: header.total_bytes(),
                    max_bytes: max_message_bytes,
                });
            }
        }
        let header = check_batch(rest)
            .map_err(|e| StorageError::CorruptMessage(format!("batch at byte {start}: {e}")))?;
        let batch = &rest[..header.total_bytes()];
        record_errors.extend(validate_records(batch, &header, checks)?);
        batches.push(ValidBatch { start, header });
        start += header.total_bytes();
    }
    if !record_errors.is_empty() {
        return Err(invalid_records(record_errors));
    }
    Ok(batches)
}

/// Reads a zigzag varint (up to 10 bytes). Returns (value, bytes used).
pub fn read_varint(buf: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, byte) in buf.iter().take(10).enumerate() {
        raw |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            let value = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
            return Some((value, i + 1));
        }
    }
    None
}

/// Builders of valid batches, for the storage tests, crash tests and benches.
#[doc(hidden)]
pub mod test_batches {
    use super::*;

    fn put_varint(out: &mut Vec<u8>, value: i64) {
        let mut raw = ((value << 1) ^ (value >> 63)) as u64;
        loop {
            let byte = (raw & 0x7f) as u8;
            raw >>= 7;
            if raw == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    /// An uncompressed batch of `count` records with keys `key_prefix-i` (or
    /// null keys) and values of `value_bytes` bytes, all at `timestamp_ms`.
    pub fn batch(
        count: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp_ms: i64,
    ) -> Vec<u8> {
        let keys = vec![key; count.max(0) as usize];
        batch_with_keys(&keys, value, timestamp_ms)
    }

    /// A record's key and value (`None`: null).
    pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

    /// One batch of the given (key, value) records, encoded by kafka-protocol
    /// with `compression` (no producer id, no sequence).
    pub fn encoded_batch(
        records: &[KeyValue<'_>],
        timestamp_ms: i64,
        compression: kafka_protocol::records::Compression,
    ) -> Vec<u8> {
        let timestamps = vec![timestamp_ms; records.len()];
        encoded_batch_at(records, &timestamps, compression)
    }

    /// As [`encoded_batch`], with each record at its own timestamp.
    pub fn encoded_batch_at(
        records: &[KeyValue<'_>],
        timestamps_ms: &[i64],
        compression: kafka_protocol::records::Compression,
    ) -> Vec<u8> {
        use kafka_protocol::records::*;
        let records: Vec<Record> = records
            .iter()
            .zip(timestamps_ms)
            .enumerate()
            .map(|(i, ((key, value), timestamp_ms))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder keeps records in one batch while offset and
                // sequence advance together; base sequence -1 is "none".
                sequence: (i as i32).wrapping_sub(1),
                timestamp: *timestamp_ms,
                key: key.map(Bytes::copy_from_slice),
                value: value.map(Bytes::copy_from_slice),
                headers: kafka_protocol::indexmap::IndexMap::new(),
            })
            .collect();
        let mut out = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut out, records.iter(), &options).expect("encodable");
        out.to_vec()
    }

    /// An uncompressed batch of one record per entry of `keys` (a null key
    /// for `None`), all with `value`, at `timestamp_ms`.
    pub fn batch_with_keys(
        keys: &[Option<&[u8]>],
        value: Option<&[u8]>,
        timestamp_ms: i64,
    ) -> Vec<u8> {
        let count = keys.len() as i32;
        let mut records = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let mut body = vec![0u8];
            put_varint(&mut body, 0);
            put_varint(&mut body, i as i64);
            match key {
                Some(k) => {
                    put_varint(&mut body, k.len() as i64);
                    body.extend_from_slice(k);
                }
                None => put_varint(&mut body, -1),
            }
            match value {
                Some(v) => {
                    put_varint(&mut body, v.len() as i64);
                    body.extend_from_slice(v);
                }
                None => put_varint(&mut body, -1),
            }
            put_varint(&mut body, 0);
            put_varint(&mut records, body.len() as i64);
            records.extend_from_slice(&body);
        }
        let mut out = Vec::with_capacity(HEADER_BYTES + records.len());
        out.extend_from_slice(&0i64.to_be_bytes());
        out.extend_from_slice(&((HEADER_BYTES - 12 + records.len()) as i32).to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.push(2);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&0i16.to_be_bytes());
        out.extend_from_slice(&(count - 1).to_be_bytes());
        out.extend_from_slice(&timestamp_ms.to_be_bytes());
        out.extend_from_slice(&timestamp_ms.to_be_bytes());
        out.extend_from_slice(&(-1i64).to_be_bytes());
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out.extend_from_slice(&(-1i32).to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&records);
        let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::record_checks::KEYLESS_ON_COMPACTED;
    use super::test_batches::batch;
    use super::*;

    const KEYS: RecordChecks = RecordChecks {
        require_keys: true,
        timestamps: None,
    };
    const NO_CHECKS: RecordChecks = RecordChecks {
        require_keys: false,
        timestamps: None,
    };

    #[test]
    fn valid_batch_round_trips_through_kafka_protocol_decoder() {
        let bytes = batch(3, Some(b"k"), Some(b"value"), 1000);
        let batches = validate_payload(&bytes, 1 << 20, KEYS).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].header.record_count, 3);
        let mut buf = Bytes::from(bytes);
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
        assert_eq!(set.records.len(), 3);
        assert_eq!(set.records[2].offset, 2);
    }

    #[test]
    fn bad_crc_is_corrupt_message() {
        let mut bytes = batch(1, None, Some(b"v"), 1);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let error = validate_payload(&bytes, 1 << 20, NO_CHECKS).unwrap_err();
        assert_eq!(error.kind(), super::super::ErrorKind::CorruptMessage);
    }

    #[test]
    fn too_large_and_keyless_and_bad_count_are_typed() {
        use super::super::ErrorKind;
        let big = batch(1, None, Some(&[7u8; 2000]), 1);
        let kind = validate_payload(&big, 1000, NO_CHECKS).unwrap_err().kind();
        assert_eq!(kind, ErrorKind::MessageTooLarge);
        let keyless = batch(2, None, Some(b"v"), 1);
        let kind = validate_payload(&keyless, 1 << 20, KEYS)
            .unwrap_err()
            .kind();
        assert_eq!(kind, ErrorKind::InvalidRecord);
        let mut wrong_count = batch(2, None, Some(b"v"), 1);
        wrong_count[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&3i32.to_be_bytes());
        let crc = crc32c::crc32c(&wrong_count[ATTRIBUTES_AT..]);
        wrong_count[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        let kind = validate_payload(&wrong_count, 1 << 20, NO_CHECKS)
            .unwrap_err()
            .kind();
        assert_eq!(kind, ErrorKind::InvalidRecord);
    }

    fn record_errors(payload: &[u8]) -> Vec<(i32, String)> {
        match validate_payload(payload, 1 << 20, KEYS) {
            Err(error @ StorageError::InvalidRecords { .. }) => {
                assert_eq!(error.kind(), super::super::ErrorKind::InvalidRecord);
                error
                    .record_errors()
                    .iter()
                    .map(|r| (r.batch_index, r.message.clone()))
                    .collect()
            }
            other => panic!("expected InvalidRecords, got {other:?}"),
        }
    }

    fn keys_with_holes(count: usize, keyless: &[usize]) -> Vec<Option<&'static [u8]>> {
        (0..count)
            .map(|i| (!keyless.contains(&i)).then_some(&b"k"[..]))
            .collect()
    }

    #[test]
    fn keyless_records_are_named_by_their_index_in_the_batch() {
        use super::test_batches::batch_with_keys;
        let holes = [0, 3, 4, 99];
        let bytes = batch_with_keys(&keys_with_holes(100, &holes), Some(b"v"), 1);
        let named = record_errors(&bytes);
        let indexes: Vec<i32> = named.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, vec![0, 3, 4, 99]);
        assert!(named.iter().all(|(_, m)| m == KEYLESS_ON_COMPACTED));
        let error = validate_payload(&bytes, 1 << 20, KEYS).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("4 record(s)"), "{text}");
        assert!(text.contains("batch index 4") && !text.contains("batch index 99"));
        // Not compacted: the same batch is fine.
        assert_eq!(
            validate_payload(&bytes, 1 << 20, NO_CHECKS).unwrap().len(),
            1
        );
    }

    #[test]
    fn indexes_are_relative_to_each_batch_of_the_payload() {
        use super::test_batches::batch_with_keys;
        let mut payload = batch_with_keys(&keys_with_holes(5, &[1]), Some(b"v"), 1);
        payload.extend(batch_with_keys(&keys_with_holes(3, &[]), Some(b"v"), 1));
        payload.extend(batch_with_keys(&keys_with_holes(4, &[0, 2]), Some(b"v"), 1));
        let indexes: Vec<i32> = record_errors(&payload).iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, vec![1, 0, 2]);
    }

    #[test]
    fn keyless_records_of_a_compressed_batch_are_named() {
        use kafka_protocol::records::Compression;
        let records: Vec<super::test_batches::KeyValue> = (0..10)
            .map(|i| ((i % 4 != 2).then_some(&b"k"[..]), Some(&b"value"[..])))
            .collect();
        let out = super::test_batches::encoded_batch(&records, 1, Compression::Gzip);
        let header = check_batch(&out).unwrap();
        assert_ne!(header.codec(), 0);
        assert_eq!(header.total_bytes(), out.len(), "one batch");
        let indexes: Vec<i32> = record_errors(&out).iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, vec![2, 6]);
    }

    #[test]
    fn a_malformed_batch_is_refused_whole_without_record_errors() {
        use super::test_batches::batch_with_keys;
        let mut payload = batch_with_keys(&keys_with_holes(3, &[1]), Some(b"v"), 1);
        let mut bad = batch_with_keys(&keys_with_holes(2, &[]), Some(b"v"), 1);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        payload.extend(bad);
        let error = validate_payload(&payload, 1 << 20, KEYS).unwrap_err();
        assert_eq!(error.kind(), super::super::ErrorKind::CorruptMessage);
        assert!(error.record_errors().is_empty());
    }

    #[test]
    fn rewrites_keep_crc_valid() {
        let mut bytes = batch(2, Some(b"k"), Some(b"v"), 5);
        set_base_offset(&mut bytes, 1234);
        set_log_append_time(&mut bytes, 99);
        let header = check_batch(&bytes).unwrap();
        assert_eq!(header.base_offset, 1234);
        assert_eq!(header.last_offset(), 1235);
        assert_eq!(header.max_timestamp, 99);
        assert!(header.is_log_append_time());
    }

    #[test]
    fn truncated_and_garbage_never_panic() {
        let bytes = batch(2, Some(b"k"), Some(b"v"), 5);
        for cut in 0..bytes.len() {
            assert!(validate_payload(&bytes[..cut], 1 << 20, NO_CHECKS).is_err());
        }
        for flip in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[flip] ^= 0x55;
            let _ = validate_payload(&corrupt, 1 << 20, KEYS);
        }
    }
}
