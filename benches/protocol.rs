//! Micro-benchmarks of the broker's frame hot paths: decoding a Produce
//! request frame and encoding a Fetch response (plain, and around a
//! zero-copy placeholder), each in a criterion group beside a `memcpy`
//! baseline of the same bytes, measured in the same run. Throughput is per
//! byte of the frame (decode) or of the records (encode).
//!
//! Run: `cargo bench --bench protocol` (release build); criterion's options
//! follow `--`, e.g. `-- --warm-up-time 1 --measurement-time 3`, a filter
//! such as `-- decode_produce`, or `--save-baseline before` then
//! `--baseline before` to compare two builds.

use std::hint::black_box;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchResponse, ProduceRequest, RequestHeader, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice::handlers::supported_range;
use sluice::protocol::{decode_request, encode_response, encode_response_parts, splice};

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

/// Decoding a Produce v9 frame, and copying the same frame with `memcpy`.
fn decode_produce(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_produce_v9");
    for (partitions, records_bytes) in [(1, 16 * 1024), (6, 16 * 1024), (1, 1 << 20)] {
        let frame = produce_frame(partitions, records_bytes);
        let case = format!("{partitions}x{}KiB", records_bytes / 1024);
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_function(BenchmarkId::new("decode", &case), |b| {
            b.iter(|| decode_request(black_box(frame.clone()), supported_range).unwrap())
        });
        let mut target = vec![0u8; frame.len()];
        group.bench_function(BenchmarkId::new("memcpy_baseline", &case), |b| {
            b.iter(|| {
                target.copy_from_slice(black_box(&frame));
                black_box(&target);
            })
        });
    }
    group.finish();
}

/// Encoding a Fetch v12 response with the records in memory and around a
/// file region (zero-copy placeholder), and copying the records with `memcpy`.
fn encode_fetch(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_fetch_v12");
    for records_bytes in [16 * 1024, 1 << 20] {
        let case = format!("{}KiB", records_bytes / 1024);
        group.throughput(Throughput::Bytes(records_bytes as u64));
        let body = fetch_response(Bytes::from(vec![9u8; records_bytes]));
        group.bench_function(BenchmarkId::new("in_memory", &case), |b| {
            b.iter(|| encode_response(ApiKey::Fetch, 12, 1, black_box(&body)).unwrap())
        });
        let placeholder = splice::placeholder(0, records_bytes).expect("placeholder mapping");
        let spliced = fetch_response(placeholder);
        group.bench_function(BenchmarkId::new("file_region_zero_copy", &case), |b| {
            b.iter(|| encode_response_parts(ApiKey::Fetch, 12, 1, black_box(&spliced)).unwrap())
        });
        let source = vec![9u8; records_bytes];
        let mut target = BytesMut::with_capacity(records_bytes);
        group.bench_function(BenchmarkId::new("memcpy_baseline", &case), |b| {
            b.iter(|| {
                target.clear();
                target.put_slice(black_box(&source));
                black_box(&target);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode_produce, encode_fetch);
criterion_main!(benches);
