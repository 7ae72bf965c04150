//! Micro-benchmarks of loadgen's own hot paths, so the generator is known
//! not to be the bottleneck: building a batch (per codec), parsing fetched
//! batches with the CRC check, the value header, keys and the partitioner,
//! and recording a latency. Throughput is per byte of records (1 KiB each).
//!
//! `cargo bench -p loadgen --bench hot_paths`; criterion's options follow
//! `--`: `-- --save-baseline main` keeps a run's figures under a name (in
//! target/criterion) and `-- --baseline main` compares a later run with it.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use loadgen::batch::{parse_batches, BatchBuilder, Codec};
use loadgen::payload::{
    partition_for_key, Filler, KeyDistribution, KeyGenerator, Payload, Rng, ValueHeader,
};
use loadgen::stats::new_histogram;

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 16;
/// Batches in one parsed fetch response.
const FETCHED_BATCHES: usize = 64;
const CODECS: [Codec; 5] = [
    Codec::None,
    Codec::Lz4,
    Codec::Zstd,
    Codec::Snappy,
    Codec::Gzip,
];

fn build_batch(builder: &mut BatchBuilder, filler: &mut Filler, codec: Codec, out: &mut BytesMut) {
    out.clear();
    for sequence in 0..RECORDS_PER_BATCH as u64 {
        let header = ValueHeader {
            run_id: 1,
            producer: 0,
            sequence,
            intended_send_ns: 1,
        }
        .encode();
        let body = filler.take(RECORD_BYTES - header.len());
        builder.push(1_700_000_000_000, None, &[&header, body]);
    }
    builder.finish(codec, out).unwrap();
}

fn codec_name(codec: Codec) -> String {
    format!("{codec:?}").to_lowercase()
}

/// Building one batch of 16 x 1 KiB records, per codec (CRC-32C included).
fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build_batch_16x1KiB");
    group.throughput(Throughput::Bytes((RECORDS_PER_BATCH * RECORD_BYTES) as u64));
    for codec in CODECS {
        let mut builder = BatchBuilder::default();
        let mut filler = Filler::new(Payload::Text, 1);
        let mut out = BytesMut::with_capacity(32 * 1024);
        group.bench_function(BenchmarkId::from_parameter(codec_name(codec)), |b| {
            b.iter(|| build_batch(&mut builder, &mut filler, codec, &mut out))
        });
    }
    group.finish();
}

/// Parsing 64 such batches with the CRC check and each record's value header.
fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_crc_64x16x1KiB");
    group.throughput(Throughput::Bytes(
        (FETCHED_BATCHES * RECORDS_PER_BATCH * RECORD_BYTES) as u64,
    ));
    for codec in CODECS {
        let mut builder = BatchBuilder::default();
        let mut filler = Filler::new(Payload::Text, 1);
        let mut out = BytesMut::with_capacity(32 * 1024);
        let mut fetched = BytesMut::new();
        for _ in 0..FETCHED_BATCHES {
            build_batch(&mut builder, &mut filler, codec, &mut out);
            fetched.extend_from_slice(&out);
        }
        let fetched = fetched.freeze();
        group.bench_function(BenchmarkId::from_parameter(codec_name(codec)), |b| {
            b.iter(|| {
                let mut seen = 0u64;
                parse_batches(&fetched, true, |record| {
                    if let Some(header) = ValueHeader::decode(record.value.unwrap()) {
                        seen += header.sequence;
                    }
                })
                .unwrap();
                seen
            })
        });
    }
    group.finish();
}

/// Per-record costs: a uniform key and its murmur2 partition; recording a
/// latency in the histogram.
fn per_record(c: &mut Criterion) {
    let mut group = c.benchmark_group("per_record");
    let keys = KeyGenerator {
        distribution: KeyDistribution::Uniform,
        key_space: 1_000_000,
        hot_keys: 4,
        hot_fraction: 0.8,
        key_bytes: 16,
    };
    let mut rng = Rng::new(7);
    let mut key = [0u8; 16];
    group.bench_function("key_and_partition", |b| {
        b.iter(|| {
            let key = keys.next(&mut rng, &mut key).unwrap();
            partition_for_key(black_box(key), 1000)
        })
    });
    let mut histogram = new_histogram();
    let mut value = 1u64;
    group.bench_function("histogram_record", |b| {
        b.iter(|| {
            value = value.wrapping_mul(6364136223846793005).wrapping_add(1);
            histogram.saturating_record(1 + (value >> 40) % 100_000);
        })
    });
    group.finish();
}

criterion_group!(benches, build, parse, per_record);
criterion_main!(benches);
