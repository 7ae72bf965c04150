//! Micro-benchmarks of loadgen's own hot paths, so the generator is known
//! not to be the bottleneck: building a batch (per codec), parsing fetched
//! batches with the CRC check, the value header, keys and the partitioner,
//! and recording a latency.
//!
//! `cargo bench -p loadgen --bench hot_paths` prints ns per operation and
//! the ratio to `benches/baseline.json`; add `-- --save-baseline` to
//! replace the baseline with this run's figures.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use loadgen::batch::{parse_batches, BatchBuilder, Codec};
use loadgen::payload::{
    partition_for_key, Filler, KeyDistribution, KeyGenerator, Payload, Rng, ValueHeader,
};
use loadgen::stats::new_histogram;

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 16;

/// Runs `op` repeatedly for about `budget`; returns ns per call.
fn measure(budget: Duration, mut op: impl FnMut()) -> f64 {
    for _ in 0..10 {
        op();
    }
    let mut calls = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        for _ in 0..16 {
            op();
        }
        calls += 16;
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

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

fn main() {
    let save = std::env::args().any(|arg| arg == "--save-baseline");
    let budget = Duration::from_millis(400);
    let mut results: BTreeMap<String, f64> = BTreeMap::new();

    for codec in [
        Codec::None,
        Codec::Lz4,
        Codec::Zstd,
        Codec::Snappy,
        Codec::Gzip,
    ] {
        let mut builder = BatchBuilder::default();
        let mut filler = Filler::new(Payload::Text, 1);
        let mut out = BytesMut::with_capacity(32 * 1024);
        let ns = measure(budget, || {
            build_batch(&mut builder, &mut filler, codec, &mut out)
        });
        results.insert(format!("build_batch_16x1KiB_{codec:?}").to_lowercase(), ns);

        let fetched = {
            let mut data = BytesMut::new();
            for _ in 0..64 {
                build_batch(&mut builder, &mut filler, codec, &mut out);
                data.extend_from_slice(&out);
            }
            data.freeze()
        };
        let ns = measure(budget, || {
            let mut seen = 0u64;
            parse_batches(&fetched, true, |record| {
                if let Some(header) = ValueHeader::decode(record.value.unwrap()) {
                    seen += header.sequence;
                }
            })
            .unwrap();
            black_box(seen);
        });
        results.insert(format!("parse_crc_64x16x1KiB_{codec:?}").to_lowercase(), ns);
    }

    let keys = KeyGenerator {
        distribution: KeyDistribution::Uniform,
        key_space: 1_000_000,
        hot_keys: 4,
        hot_fraction: 0.8,
        key_bytes: 16,
    };
    let mut rng = Rng::new(7);
    let mut key = [0u8; 16];
    let ns = measure(budget, || {
        let key = keys.next(&mut rng, &mut key).unwrap();
        black_box(partition_for_key(key, 1000));
    });
    results.insert("key_and_partition".into(), ns);

    let mut histogram = new_histogram();
    let mut value = 1u64;
    let ns = measure(budget, || {
        value = value.wrapping_mul(6364136223846793005).wrapping_add(1);
        histogram.saturating_record(1 + (value >> 40) % 100_000);
    });
    results.insert("histogram_record".into(), ns);

    let baseline_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/baseline.json");
    let baseline: BTreeMap<String, f64> = std::fs::read_to_string(&baseline_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    println!(
        "{:<36} {:>12} {:>12} {:>8} {:>10}",
        "benchmark", "ns/op", "baseline", "ratio", "MB/s"
    );
    for (name, ns) in &results {
        let bytes = if name.starts_with("build_batch") {
            (RECORDS_PER_BATCH * RECORD_BYTES) as f64
        } else if name.starts_with("parse") {
            (64 * RECORDS_PER_BATCH * RECORD_BYTES) as f64
        } else {
            0.0
        };
        let throughput = if bytes > 0.0 {
            format!("{:.0}", bytes / ns * 1e3)
        } else {
            "-".into()
        };
        match baseline.get(name) {
            Some(base) => println!(
                "{name:<36} {ns:>12.1} {base:>12.1} {:>8.2} {throughput:>10}",
                ns / base
            ),
            None => println!(
                "{name:<36} {ns:>12.1} {:>12} {:>8} {throughput:>10}",
                "-", "-"
            ),
        }
    }
    if save {
        std::fs::write(
            &baseline_path,
            serde_json::to_string_pretty(&results).unwrap() + "\n",
        )
        .unwrap();
        println!("saved {}", baseline_path.display());
    }
}
