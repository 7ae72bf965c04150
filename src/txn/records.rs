//! The records of `__transaction_state`, in Kafka's `TransactionLogKey`
//! (version 0: the transactional id) and `TransactionLogValue` (version 0:
//! producer id and epoch, timeout, status, partitions, last update and
//! start timestamps) schemas, so the topic reads as Kafka's does. A null
//! value is a tombstone; the topic is compacted on the key.
//!
//! Pure encoding. Decoding reads disk contents: it checks every length and
//! returns an error, never panics.

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};

use super::state::{TxnMetadata, TxnState};
use crate::coordinator::records::{put_string, LogRecord, Reader, RecordError};

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

pub fn key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(KEY_VERSION);
    put_string(&mut buf, transactional_id);
    buf.freeze()
}

pub fn value(metadata: &TxnMetadata) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(metadata.producer_id);
    buf.put_i16(metadata.producer_epoch);
    buf.put_i32(i32::try_from(metadata.timeout_ms).unwrap_or(i32::MAX));
    buf.put_i8(metadata.state.code());
    // Kafka writes the partitions grouped by topic.
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in &metadata.partitions {
        match topics.last_mut() {
            Some((name, partitions)) if *name == topic.as_str() => partitions.push(*partition),
            _ => topics.push((topic.as_str(), vec![*partition])),
        }
    }
    buf.put_i32(topics.len() as i32);
    for (topic, partitions) in topics {
        put_string(&mut buf, topic);
        buf.put_i32(partitions.len() as i32);
        for partition in partitions {
            buf.put_i32(partition);
        }
    }
    buf.put_i64(metadata.last_update_ms);
    buf.put_i64(metadata.start_ms);
    buf.freeze()
}

/// The record that stores `metadata` in `partition` of `__transaction_state`.
pub fn record(partition: i32, metadata: &TxnMetadata) -> LogRecord {
    LogRecord {
        partition,
        key: key(&metadata.transactional_id),
        value: Some(value(metadata)),
    }
}

/// A record read back: its transactional id, and its metadata (`None`: a
/// tombstone).
pub fn decode(
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<(String, Option<TxnMetadata>), RecordError> {
    let mut reader = Reader { bytes: key };
    let version = reader.i16()?;
    if version != KEY_VERSION {
        return Err(RecordError::Version {
            what: "TransactionLogKey",
            version,
        });
    }
    let transactional_id = reader.string()?;
    let Some(value) = value else {
        return Ok((transactional_id, None));
    };
    let metadata = decode_value(&transactional_id, value)?;
    Ok((transactional_id, Some(metadata)))
}

fn decode_value(transactional_id: &str, value: &[u8]) -> Result<TxnMetadata, RecordError> {
    let mut reader = Reader { bytes: value };
    let version = reader.i16()?;
    // Version 1 is flexible (tagged fields after the same fields), written
    // by Kafka with transaction version 2; Sluice writes and reads 0.
    if version != VALUE_VERSION {
        return Err(RecordError::Version {
            what: "TransactionLogValue",
            version,
        });
    }
    let producer_id = reader.i64()?;
    let producer_epoch = reader.i16()?;
    let timeout_ms = reader.i32()?;
    let state_code = reader.take(1)?[0] as i8;
    let state = TxnState::from_code(state_code).ok_or(RecordError::Version {
        what: "TransactionStatus",
        version: i16::from(state_code),
    })?;
    let mut partitions = BTreeSet::new();
    let topics = reader.i32()?;
    for _ in 0..topics.max(0) {
        let topic = reader.string()?;
        let count = reader.i32()?;
        if count < 0 {
            return Err(RecordError::Length(count));
        }
        for _ in 0..count {
            partitions.insert((topic.clone(), reader.i32()?));
        }
    }
    let last_update_ms = reader.i64()?;
    let start_ms = reader.i64()?;
    Ok(TxnMetadata {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch,
        last_producer_epoch: -1,
        timeout_ms: timeout_ms.max(0) as u64,
        state,
        partitions,
        last_update_ms,
        start_ms,
        pending: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips() {
        let metadata = TxnMetadata {
            transactional_id: "tx-1".into(),
            producer_id: 4000,
            producer_epoch: 3,
            last_producer_epoch: -1,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: [
                ("a".to_string(), 0),
                ("a".to_string(), 2),
                ("b".to_string(), 1),
            ]
            .into_iter()
            .collect(),
            last_update_ms: 1_700_000_000_123,
            start_ms: 1_700_000_000_000,
            pending: false,
        };
        let record = record(3, &metadata);
        let (id, decoded) = decode(&record.key, record.value.as_deref()).unwrap();
        assert_eq!(id, "tx-1");
        assert_eq!(decoded.unwrap(), metadata);
        // Kafka's key: version 0, then the id as a short string.
        assert_eq!(&record.key[..], b"\x00\x00\x00\x04tx-1");
        assert_eq!(decode(&record.key, None).unwrap(), ("tx-1".into(), None));
    }

    #[test]
    fn damaged_records_are_errors() {
        let metadata = TxnMetadata::new("t", 1, 0, 1000, 5);
        let value = value(&metadata);
        for cut in [0, 3, 10, value.len() - 1] {
            assert!(decode(&key("t"), Some(&value[..cut])).is_err(), "cut {cut}");
        }
        assert!(decode(b"\x00\x05\x00\x01t", None).is_err());
    }
}
