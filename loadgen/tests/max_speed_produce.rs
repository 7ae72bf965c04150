//! `loadgen produce` at maximum speed (no --rate) with a linger: it must
//! keep producing until its records are done. A regression once made the
//! producer sleep until the end of the run whenever no batch was open
//! (with 1000-byte records, 17 to a batch, after 4096 turns' worth of
//! records: 69,632 records in 4096 requests), so `--records N` waited for
//! `--duration` and delivered only what was made before the stall.
//!
//! The broker is started as in `common`; without one the test says so and
//! passes.

mod common;

use std::process::Command;

use common::{report_json, start_broker, NO_BROKER};

#[test]
fn max_speed_produce_with_linger_delivers_every_record_before_the_duration() {
    let Some(broker) = start_broker() else {
        eprintln!("{NO_BROKER}");
        return;
    };
    let records: u64 = 100_000;
    let duration_s = 120.0;
    let report =
        std::env::temp_dir().join(format!("loadgen-max-speed-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["produce", "--bootstrap", &broker.bootstrap])
        .args(["--topic", &format!("max-speed-{}", std::process::id())])
        .args(["--partitions", "1", "--record-size", "1000", "--acks", "1"])
        .args(["--linger-ms", "5", "--records", &records.to_string()])
        .args(["--duration", &format!("{duration_s}s"), "--warmup", "0s"])
        .arg("--quiet")
        .arg("--report")
        .arg(&report)
        .output()
        .expect("running loadgen");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "loadgen failed:\n{stdout}\n{stderr}"
    );
    let results = report_json(&report)["results"].clone();
    let _ = std::fs::remove_file(&report);
    let produce = &results["produce"];
    assert_eq!(produce["records"], records, "{results}");
    assert!(
        produce["errors"]
            .as_object()
            .is_some_and(|errors| errors.is_empty()),
        "{results}"
    );
    // 1000-byte records fill a 16 KiB batch with 17: one request each.
    let requests = produce["requests"].as_u64().unwrap();
    assert!(requests > 4096, "only {requests} requests: {results}");
    // The run ended when its records were acknowledged, not at --duration.
    let measured = results["measured_seconds"].as_f64().unwrap();
    assert!(
        measured < duration_s,
        "the producer waited for the end of the run: {results}"
    );
}
