//! `sluice consume`: arguments, formats and offsets.

use super::*;
use bytes::BytesMut;
use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};
use sluice_client::records::BATCH_MAGIC_AT;

fn record(offset: i64, key: Option<&'static str>, value: &'static str) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: offset as i32 - 1,
        timestamp: 1_700_000_000_000 + offset,
        key: key.map(|key| Bytes::from_static(key.as_bytes())),
        value: Some(Bytes::from_static(value.as_bytes())),
        headers: Default::default(),
    }
}

fn encode(records: &[Record]) -> Bytes {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records, &options).unwrap();
    buf.freeze()
}

#[test]
fn start_offsets_parse() {
    assert_eq!(parse_start_offset("earliest"), Ok(StartOffset::Earliest));
    assert_eq!(parse_start_offset("latest"), Ok(StartOffset::Latest));
    assert_eq!(parse_start_offset("42"), Ok(StartOffset::At(42)));
    assert!(parse_start_offset("-1").is_err());
    assert!(parse_start_offset("soon").is_err());
}

#[test]
fn records_print_in_kafkas_field_order() {
    let mut with_header = record(7, Some("k"), "v");
    with_header
        .headers
        .insert("h".into(), Some(Bytes::from_static(b"x")));
    let all = Format {
        key: true,
        headers: true,
        timestamp: true,
        offset: true,
        partition: true,
        separator: "\t".into(),
        json: false,
    };
    assert_eq!(
        format_record(&all, "t", 2, &with_header),
        "CreateTime:1700000000007\tPartition:2\tOffset:7\th:x\tk\tv"
    );
    let plain = Format {
        separator: "\t".into(),
        ..Format::default()
    };
    assert_eq!(format_record(&plain, "t", 0, &record(0, None, "v")), "v");
    let keyed = Format {
        key: true,
        headers: true,
        separator: " | ".into(),
        ..Format::default()
    };
    assert_eq!(
        format_record(&keyed, "t", 0, &record(0, None, "v")),
        "NO_HEADERS | null | v"
    );
}

#[test]
fn json_records_carry_every_field() {
    let format = Format {
        json: true,
        ..Format::default()
    };
    let line = format_record(&format, "t", 1, &record(3, Some("k"), "v"));
    let value: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["topic"], "t");
    assert_eq!(value["partition"], 1);
    assert_eq!(value["offset"], 3);
    assert_eq!(value["key"], "k");
    assert_eq!(value["value"], "v");
    assert_eq!(value["timestamp_type"], "CreateTime");
}

#[test]
fn batches_split_whole_and_drop_a_cut_one() {
    let first = encode(&[record(0, None, "a"), record(1, None, "b")]);
    let second = encode(&[record(2, None, "c")]);
    let mut both = BytesMut::new();
    both.extend_from_slice(&first);
    both.extend_from_slice(&second);
    let whole = split_batches(both.clone().freeze());
    assert_eq!(whole.len(), 2);
    let cut = split_batches(both.freeze().slice(..first.len() + 10));
    assert_eq!(cut.len(), 1);
    let batch = decode_batch(cut[0].clone()).unwrap();
    assert_eq!(batch.records.len(), 2);
    assert_eq!(batch.next_offset, 2);
    assert!(split_batches(Bytes::from_static(b"short")).is_empty());
}

proptest::proptest! {
    /// Whatever a broker sends as records, splitting and decoding return
    /// values, never a panic: random bytes, and real batches with one
    /// byte changed (CRC, lengths, varints, compression attributes).
    #[test]
    fn fetched_bytes_never_panic(
        noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        flip_at in proptest::prelude::any::<proptest::sample::Index>(),
        flip_to in proptest::prelude::any::<u8>(),
    ) {
        for batch in split_batches(Bytes::from(noise)) {
            let _ = decode_batch(batch);
        }
        let mut real = encode(&[record(0, Some("k"), "v"), record(1, None, "w")]).to_vec();
        let at = flip_at.index(real.len());
        real[at] = flip_to;
        for batch in split_batches(Bytes::from(real)) {
            let _ = decode_batch(batch);
        }
    }
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let mut bytes = encode(&[record(0, None, "a")]).to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    bytes[BATCH_MAGIC_AT] = 2;
    for split in split_batches(Bytes::from(bytes)) {
        let _ = decode_batch(split);
    }
    let mut wrong_magic = encode(&[record(0, None, "a")]).to_vec();
    wrong_magic[BATCH_MAGIC_AT] = 1;
    let batch = split_batches(Bytes::from(wrong_magic)).remove(0);
    assert!(decode_batch(batch).is_err());
}
