//! Micro-benchmarks of the broker's frame hot paths: decoding a Produce
//! request frame and encoding a Fetch response (plain, and around a
//! zero-copy placeholder), each beside a baseline of copying the same
//! number of bytes with `memcpy`, measured in the same run.
//!
//! Run: `cargo bench --bench protocol` (release build). Prints one line per
//! figure: the median of 15 timed rounds, as time per operation and bytes
//! per second.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchResponse, ProduceRequest, RequestHeader, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice::handlers::supported_range;
use sluice::protocol::{decode_request, encode_response, encode_response_parts, splice};

const ROUNDS: usize = 15;

/// Median time of `f` over rounds of `iterations` calls.
fn time_per_op(iterations: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..iterations {
        f(); // warm-up
    }
    let mut rounds: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed() / iterations as u32
        })
        .collect();
    rounds.sort();
    rounds[ROUNDS / 2]
}

fn report(name: &str, per_op: Duration, bytes: usize) {
    let gb_per_s = bytes as f64 / per_op.as_secs_f64() / 1e9;
    println!(
        "{name:<58} {:>10.2} us/op {gb_per_s:>8.2} GB/s",
        per_op.as_secs_f64() * 1e6
    );
}

fn produce_frame(partitions: i32, records_bytes: usize) -> Bytes {
    let records = Bytes::from(vec![7u8; records_bytes]);
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("bench")))
        .with_partition_data(
            (0..partitions)
                .map(|index| {
                    PartitionProduceData::default()
                        .with_index(index)
                        .with_records(Some(records.clone()))
                })
                .collect(),
        );
    let body = RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![topic]),
    );
    let version = 9;
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("bench")));
    let mut frame = BytesMut::new();
    header
        .encode(&mut frame, ApiKey::Produce.request_header_version(version))
        .unwrap();
    body.encode(&mut frame, version).unwrap();
    frame.freeze()
}

fn fetch_response(records: Bytes) -> ResponseKind {
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_high_watermark(1_000_000)
        .with_records(Some(records));
    let topic = FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("bench")))
        .with_partitions(vec![partition]);
    ResponseKind::Fetch(FetchResponse::default().with_responses(vec![topic]))
}

fn main() {
    println!("protocol hot paths (median of {ROUNDS} rounds)");
    for (partitions, records_bytes) in [(1, 16 * 1024), (6, 16 * 1024), (1, 1 << 20)] {
        let frame = produce_frame(partitions, records_bytes);
        let size = frame.len();
        let decode = time_per_op(200, || {
            black_box(decode_request(black_box(frame.clone()), supported_range).unwrap());
        });
        report(
            &format!(
                "decode Produce v9, {partitions} x {} KiB",
                records_bytes / 1024
            ),
            decode,
            size,
        );
        let mut target = vec![0u8; size];
        let baseline = time_per_op(200, || {
            target.copy_from_slice(black_box(&frame));
            black_box(&target);
        });
        report("  baseline: memcpy of the same frame", baseline, size);
    }
    for records_bytes in [16 * 1024, 1 << 20] {
        let body = fetch_response(Bytes::from(vec![9u8; records_bytes]));
        let encode = time_per_op(200, || {
            black_box(encode_response(ApiKey::Fetch, 12, 1, black_box(&body)).unwrap());
        });
        report(
            &format!(
                "encode Fetch v12, {} KiB of records in memory",
                records_bytes / 1024
            ),
            encode,
            records_bytes,
        );
        let placeholder = splice::placeholder(0, records_bytes).expect("placeholder mapping");
        let spliced = fetch_response(placeholder);
        let encode_parts = time_per_op(200, || {
            black_box(encode_response_parts(ApiKey::Fetch, 12, 1, black_box(&spliced)).unwrap());
        });
        report(
            &format!(
                "encode Fetch v12 around a {} KiB file region (zero-copy)",
                records_bytes / 1024
            ),
            encode_parts,
            records_bytes,
        );
        let source = vec![9u8; records_bytes];
        let mut target = BytesMut::with_capacity(records_bytes);
        let baseline = time_per_op(200, || {
            target.clear();
            target.put_slice(black_box(&source));
            black_box(&target);
        });
        report("  baseline: memcpy of the records", baseline, records_bytes);
    }
}
