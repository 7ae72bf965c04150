//! The Prometheus rendering, from made-up snapshots.

use std::time::Duration;

use super::*;
use crate::cluster::health::Health;
use crate::stages::Stage;
use render::escape_label;

fn stages_with(stage: Stage, took: Duration) -> StageHistograms {
    let stages = ProduceStages::default();
    stages.record(stage, took);
    stages.snapshot()
}

#[test]
fn renders_prometheus_text() {
    let mut first = Snapshot {
        shard: 0,
        fetch_sendfile_bytes: 42,
        cache_hits: 3,
        cache_misses: 1,
        fetch_sessions: crate::fetch_session::SessionStats {
            sessions: 2,
            partitions: 400,
            evictions_total: 1,
            incremental_fetches_total: 90,
            full_fetches_total: 4,
            session_errors_total: 1,
        },
        ..Snapshot::default()
    };
    let mut produce = ApiMetrics {
        requests: 3,
        request_bytes: 300,
        response_bytes: 90,
        ..ApiMetrics::default()
    };
    produce.errors.insert(3, 2);
    produce.latency.record_us(300);
    produce.latency.record_us(10_000_000);
    first.apis.insert(ApiKey::Produce as i16, produce);
    first.partitions.push(PartitionOffsets {
        topic: "t".to_string(),
        partition: 0,
        log_start_offset: 0,
        high_watermark: 100,
        log_end_offset: 101,
        size_bytes: 4096,
    });
    let mut sync_rounds = LatencyHistogram::default();
    sync_rounds.record_us(2_000);
    first.produce_stages = stages_with(Stage::Append, Duration::from_micros(40));
    let second = Snapshot {
        shard: 1,
        syncs: 7,
        partitions_offline: 1,
        sync_rounds,
        groups: vec![GroupMetrics {
            group_id: "g\"1".to_string(),
            state: "Stable",
            members: 2,
            offsets: vec![("t".to_string(), 0, 40), ("gone".to_string(), 0, 5)],
        }],
        ..Snapshot::default()
    };
    let text = render(&[first, second]);
    let has = |line: &str| assert!(text.contains(line), "missing {line:?} in\n{text}");
    has("# TYPE sluice_fetch_sendfile_bytes_total counter");
    has("sluice_fetch_sendfile_bytes_total{shard=\"0\"} 42");
    has("sluice_fetch_sendfile_bytes_total{shard=\"1\"} 0");
    has("sluice_read_cache_hit_ratio{shard=\"0\"} 0.75");
    has("# TYPE sluice_fetch_sessions gauge");
    has("sluice_fetch_sessions{shard=\"0\"} 2");
    has("sluice_fetch_session_partitions{shard=\"0\"} 400");
    has("sluice_fetch_session_evictions_total{shard=\"0\"} 1");
    has("sluice_fetch_requests_incremental_total{shard=\"0\"} 90");
    has("sluice_fetch_requests_full_total{shard=\"1\"} 0");
    has("sluice_requests_total{shard=\"0\",api=\"Produce\"} 3");
    has("sluice_request_bytes_total{shard=\"0\",api=\"Produce\"} 300");
    has("sluice_response_bytes_total{shard=\"0\",api=\"Produce\"} 90");
    has("sluice_request_errors_total{shard=\"0\",api=\"Produce\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"} 2");
    let bucket = |le: &str, count: u64| {
        format!("sluice_request_latency_seconds_bucket{{shard=\"0\",api=\"Produce\",le=\"{le}\"}} {count}")
    };
    has(&bucket("0.00025", 0));
    has(&bucket("0.0005", 1));
    has(&bucket("+Inf", 2));
    has("sluice_request_latency_seconds_count{shard=\"0\",api=\"Produce\"} 2");
    has("sluice_partitions{shard=\"0\"} 1");
    has("sluice_partitions_offline{shard=\"1\"} 1");
    has("sluice_log_syncs_total{shard=\"1\"} 7");
    has("sluice_log_sync_round_seconds_bucket{shard=\"1\",le=\"0.0025\"} 1");
    has("sluice_log_sync_round_seconds_bucket{shard=\"1\",le=\"0.001\"} 0");
    has("sluice_log_sync_round_seconds_count{shard=\"1\"} 1");
    has("# TYPE sluice_produce_stage_seconds summary");
    has("sluice_produce_stage_seconds{shard=\"0\",stage=\"append\",quantile=\"0.99\"} 0.00004");
    has("sluice_produce_stage_seconds_count{shard=\"0\",stage=\"append\"} 1");
    assert!(
        !text.contains("stage=\"hop\""),
        "stages never seen are left out"
    );
    has("sluice_partition_high_watermark{topic=\"t\",partition=\"0\"} 100");
    has("sluice_partition_log_end_offset{topic=\"t\",partition=\"0\"} 101");
    has("sluice_consumer_groups{state=\"Stable\"} 1");
    has("sluice_consumer_groups{state=\"Empty\"} 0");
    has("sluice_consumer_group_members{group=\"g\\\"1\"} 2");
    // Lag joins across shards: the group is on shard 1, the partition on 0.
    has("sluice_consumer_group_lag{group=\"g\\\"1\",topic=\"t\",partition=\"0\"} 60");
    has(
        "sluice_consumer_group_committed_offset{group=\"g\\\"1\",topic=\"gone\",partition=\"0\"} 5",
    );
    assert!(!text.contains("topic=\"gone\",partition=\"0\"} 5\nsluice_consumer_group_lag"));
    assert!(!text.contains("sluice_consumer_group_lag{group=\"g\\\"1\",topic=\"gone\""));
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}

#[test]
fn cluster_gauges_are_wide_only_on_the_active_controller() {
    let mut health = Health {
        active_controller: false,
        fenced_brokers: 1,
        offline_partitions: 2,
        under_replicated_partitions: 3,
        cluster: None,
    };
    let text = render_health(&health);
    assert!(text.contains("sluice_active_controller 0\n"), "{text}");
    assert!(text.contains("sluice_fenced_brokers 1\n"));
    assert!(text.contains("sluice_offline_partitions 2\n"));
    assert!(text.contains("sluice_under_replicated_partitions 3\n"));
    assert!(!text.contains("sluice_cluster_"));
    health.active_controller = true;
    health.cluster = Some((4, 5));
    let text = render_health(&health);
    assert!(text.contains("sluice_active_controller 1\n"));
    assert!(text.contains(
        "# TYPE sluice_cluster_offline_partitions gauge\nsluice_cluster_offline_partitions 4\n"
    ));
    assert!(text.contains("sluice_cluster_under_replicated_partitions 5\n"));
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
}
