//! Verify mode against a real broker: a clean run passes; a run where one
//! acknowledged record goes missing from what the consumer saw (`--drop-acked`,
//! the documented self-test) fails with exactly that record named; and a run
//! where the broker itself deletes five acknowledged records (DeleteRecords,
//! `--delete-records-before 5`, when the broker serves it) names those five.
//!
//! The broker is Sluice's own binary (`SLUICE_BIN`, else target/release or
//! target/debug), started on a free port in a temporary directory, or any
//! broker already running at `LOADGEN_TEST_BOOTSTRAP` (host:port; e.g. tansu).
//! Without either, or when the broker does not serve Produce and Fetch yet,
//! the test says so and passes: it checks brokers, it does not build them.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{report_json, start_broker, NO_BROKER};

fn loadgen(bootstrap: &str, topic: &str, report: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "verify",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--partitions",
            "2",
        ])
        .args([
            "--duration",
            "2s",
            "--warmup",
            "0s",
            "--rate",
            "2000",
            "--record-size",
            "100",
        ])
        .args([
            "--fetch-max-wait-ms",
            "100",
            "--drain-timeout",
            "20s",
            "--quiet",
        ])
        .arg("--report")
        .arg(report)
        .args(extra)
        .output()
        .expect("running loadgen")
}

#[test]
fn verify_mode_detects_a_dropped_acknowledged_record() {
    let Some(broker) = start_broker() else {
        eprintln!("{NO_BROKER}");
        return;
    };
    let scratch =
        std::env::temp_dir().join(format!("loadgen-verify-report-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let topic_suffix = std::process::id();

    // A clean run: nothing lost, duplicated or reordered.
    let clean_report = scratch.join("clean.json");
    let clean = loadgen(
        &broker.bootstrap,
        &format!("verify-clean-{topic_suffix}"),
        &clean_report,
        &[],
    );
    let stderr = String::from_utf8_lossy(&clean.stderr);
    if stderr.contains("does not advertise")
        || stderr.contains("DeleteRecords on partition 0 failed")
    {
        eprintln!(
            "SKIPPED: the broker at {} does not serve Produce and Fetch yet: {stderr}",
            broker.bootstrap
        );
        return;
    }
    let stdout = String::from_utf8_lossy(&clean.stdout);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "clean run failed:\n{stdout}\n{stderr}"
    );
    let verify = &report_json(&clean_report)["results"]["verify"];
    assert_eq!(verify["passed"], true, "{verify}");
    let acknowledged = verify["acknowledged"].as_u64().unwrap();
    assert!(
        acknowledged >= 1000,
        "only {acknowledged} records acknowledged"
    );
    assert_eq!(verify["lost"], 0);

    // The same, with record 10 of producer 0 in partition 0 removed from
    // what the consumer saw: verify must name it, and only it.
    let dropped_report = scratch.join("dropped.json");
    let dropped = loadgen(
        &broker.bootstrap,
        &format!("verify-dropped-{topic_suffix}"),
        &dropped_report,
        &["--drop-acked", "10"],
    );
    let stdout = String::from_utf8_lossy(&dropped.stdout);
    assert_eq!(
        dropped.status.code(),
        Some(2),
        "verify should fail:\n{stdout}"
    );
    assert!(stdout.contains("1 lost"), "{stdout}");
    assert!(
        stdout.contains("lost: partition 0 producer 0 sequence 10:"),
        "{stdout}"
    );
    let verify = &report_json(&dropped_report)["results"]["verify"];
    assert_eq!(verify["passed"], false);
    assert_eq!(verify["lost"], 1);
    assert_eq!(verify["duplicated"], 0);
    assert_eq!(verify["reordered"], 0);

    // The broker itself loses records: DeleteRecords removes partition 0's
    // first five acknowledged records before the consumers read.
    let deleted_report = scratch.join("deleted.json");
    let deleted = loadgen(
        &broker.bootstrap,
        &format!("verify-deleted-{topic_suffix}"),
        &deleted_report,
        &["--delete-records-before", "5"],
    );
    let stdout = String::from_utf8_lossy(&deleted.stdout);
    let stderr = String::from_utf8_lossy(&deleted.stderr);
    if stderr.contains("does not advertise")
        || stderr.contains("DeleteRecords on partition 0 failed")
    {
        eprintln!(
            "SKIPPED the DeleteRecords case: the broker does not serve DeleteRecords: {stderr}"
        );
    } else {
        assert_eq!(
            deleted.status.code(),
            Some(2),
            "verify should fail:\n{stdout}\n{stderr}"
        );
        let verify = &report_json(&deleted_report)["results"]["verify"];
        assert_eq!(verify["lost"], 5, "{verify}");
        assert_eq!(verify["duplicated"], 0);
        assert_eq!(verify["reordered"], 0);
        for sequence in 0..5 {
            let line = format!("lost: partition 0 producer 0 sequence {sequence}: acknowledged at offset {sequence},");
            assert!(stdout.contains(&line), "{line} missing from:\n{stdout}");
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
