//! The Prometheus text format of the shards' snapshots and of this node's
//! cluster gauges: what `GET /metrics` answers.
//!
//! Must not: read counters itself. It renders the [`Snapshot`]s the
//! endpoint gathered over the mesh, and [`Health`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kafka_protocol::messages::ApiKey;

use super::{ApiMetrics, PartitionOffsets, Snapshot, LATENCY_BUCKETS_US};
use crate::cluster::health::Health;
use crate::coordinator::runtime::GroupMetrics;
use crate::fetch_session::SessionStats;
use crate::histogram::LatencyHistogram;
use crate::protocol::response_errors::error_name;
use crate::stages::Stage;

/// A family's name, type and help text.
type Family<'a> = (&'a str, &'a str, &'a str);

/// Reads one per-shard value from a snapshot.
type ShardValue = fn(&Snapshot) -> u64;

/// Prometheus text, one family at a time.
struct Writer {
    text: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.text, "{name}");
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (label, text)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(text));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// The samples of one histogram: cumulative buckets, sum and count.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &LatencyHistogram) {
        for (index, cumulative) in histogram.cumulative_buckets().into_iter().enumerate() {
            let bound = LATENCY_BUCKETS_US
                .get(index)
                .map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
            let mut with_bound = labels.to_vec();
            with_bound.push(("le", &bound));
            self.sample(&format!("{name}_bucket"), &with_bound, cumulative);
        }
        self.sample(
            &format!("{name}_sum"),
            labels,
            histogram.sum().as_secs_f64(),
        );
        self.sample(&format!("{name}_count"), labels, histogram.count());
    }

    /// The samples of one summary: quantiles, sum and count.
    fn summary(&mut self, name: &str, labels: &[(&str, &str)], histogram: &LatencyHistogram) {
        for quantile in ["0.5", "0.99", "0.999", "1"] {
            let value = histogram.quantile(quantile.parse().unwrap_or(1.0));
            let mut with_quantile = labels.to_vec();
            with_quantile.push(("quantile", quantile));
            self.sample(name, &with_quantile, value.as_secs_f64());
        }
        self.sample(
            &format!("{name}_sum"),
            labels,
            histogram.sum().as_secs_f64(),
        );
        self.sample(&format!("{name}_count"), labels, histogram.count());
    }

    /// A family with one sample per shard.
    fn per_shard(
        &mut self,
        snapshots: &[Snapshot],
        (name, kind, help): Family,
        value: impl Fn(&Snapshot) -> u64,
    ) {
        self.family(name, kind, help);
        for snapshot in snapshots {
            self.sample(
                name,
                &[("shard", &snapshot.shard.to_string())],
                value(snapshot),
            );
        }
    }

    /// A family with one sample per shard and API.
    fn per_api(
        &mut self,
        snapshots: &[Snapshot],
        (name, help): (&str, &str),
        value: impl Fn(&ApiMetrics) -> u64,
    ) {
        self.family(name, "counter", help);
        for (shard, api_label, api) in api_series(snapshots) {
            self.sample(name, &[("shard", &shard), ("api", &api_label)], value(api));
        }
    }
}

/// Every (shard, API) pair with its metrics, labels rendered: the series
/// of the per-API families.
fn api_series(snapshots: &[Snapshot]) -> impl Iterator<Item = (String, String, &ApiMetrics)> {
    snapshots.iter().flat_map(|snapshot| {
        let shard = snapshot.shard.to_string();
        snapshot
            .apis
            .iter()
            .map(move |(key, api)| (shard.clone(), api_name(*key), api))
    })
}

/// Escapes a label value as the text format asks (`\\`, `\"`, `\n`):
/// group ids are arbitrary client strings.
pub(super) fn escape_label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Renders snapshots in the Prometheus text format (version 0.0.4).
pub fn render(snapshots: &[Snapshot]) -> String {
    let mut out = Writer {
        text: String::new(),
    };
    let shard_families: [(Family, ShardValue); 20] = [
        (
            (
                "sluice_log_syncs_total",
                "counter",
                "fdatasync calls on partition log segments.",
            ),
            |s| s.syncs,
        ),
        (
            (
                "sluice_fetch_sendfile_bytes_total",
                "counter",
                "Record bytes sent to consumers by sendfile.",
            ),
            |s| s.fetch_sendfile_bytes,
        ),
        (
            (
                "sluice_fetch_memory_bytes_total",
                "counter",
                "Record bytes sent to consumers from memory.",
            ),
            |s| s.fetch_memory_bytes,
        ),
        (
            (
                "sluice_bad_frames_total",
                "counter",
                "Connections closed for a malformed, oversized or unknown frame.",
            ),
            |s| s.bad_frames,
        ),
        (
            (
                "sluice_connections_accepted_total",
                "counter",
                "Client connections accepted.",
            ),
            |s| s.connections_accepted,
        ),
        (
            (
                "sluice_sasl_authentication_failures_total",
                "counter",
                "SASL authentications that failed.",
            ),
            |s| s.sasl_authentication_failures,
        ),
        (
            (
                "sluice_tls_handshake_failures_total",
                "counter",
                "TLS handshakes that failed.",
            ),
            |s| s.tls_handshake_failures,
        ),
        (
            (
                "sluice_connections_refused_total",
                "counter",
                "Connections closed at accept by max.connections or max.connections.per.ip.",
            ),
            |s| s.connections_refused,
        ),
        (
            (
                "sluice_connections_idle_closed_total",
                "counter",
                "Connections closed after connections.max.idle.ms without a request.",
            ),
            |s| s.connections_idle_closed,
        ),
        (
            ("sluice_connections", "gauge", "Client connections open."),
            |s| s.connections_open,
        ),
        (
            (
                "sluice_read_cache_hits_total",
                "counter",
                "Read-cache hits.",
            ),
            |s| s.cache_hits,
        ),
        (
            (
                "sluice_read_cache_misses_total",
                "counter",
                "Read-cache misses.",
            ),
            |s| s.cache_misses,
        ),
        (
            (
                "sluice_read_disk_bytes_total",
                "counter",
                "Bytes read from the disk into memory to serve reads (fetch.cold.read=read), read-ahead included.",
            ),
            |s| s.disk_read_bytes,
        ),
        (
            (
                "sluice_read_ahead_bytes_total",
                "counter",
                "Bytes read from the disk ahead of readers into the read cache.",
            ),
            |s| s.read_ahead_bytes,
        ),
        (
            (
                "sluice_read_cache_bytes",
                "gauge",
                "Bytes held by the read cache.",
            ),
            |s| s.cache_bytes,
        ),
        (
            (
                "sluice_partitions",
                "gauge",
                "Partitions owned by the shard.",
            ),
            |s| s.partitions.len() as u64,
        ),
        (
            (
                "sluice_partitions_offline",
                "gauge",
                "Partitions of the shard that failed to open (KAFKA_STORAGE_ERROR until restart).",
            ),
            |s| s.partitions_offline,
        ),
        (
            (
                "sluice_log_bytes",
                "gauge",
                "Bytes of the partition logs owned by the shard.",
            ),
            |s| s.log_bytes,
        ),
        (
            (
                "sluice_mesh_sent_total",
                "counter",
                "Jobs sent to other shards.",
            ),
            |s| s.mesh_sent,
        ),
        (
            (
                "sluice_mesh_queue_full_total",
                "counter",
                "Sends that waited on a full cross-shard queue.",
            ),
            |s| s.mesh_queue_full,
        ),
    ];
    for (family, value) in shard_families {
        out.per_shard(snapshots, family, value);
    }
    for (index, family) in SessionStats::FAMILIES.into_iter().enumerate() {
        out.per_shard(snapshots, family, |s| s.fetch_sessions.values()[index]);
    }
    let name = "sluice_read_cache_hit_ratio";
    out.family(
        name,
        "gauge",
        "Read-cache hits over lookups since start (0 before any lookup).",
    );
    for snapshot in snapshots {
        let lookups = snapshot.cache_hits + snapshot.cache_misses;
        let ratio = if lookups == 0 {
            0.0
        } else {
            snapshot.cache_hits as f64 / lookups as f64
        };
        out.sample(name, &[("shard", &snapshot.shard.to_string())], ratio);
    }
    out.per_api(
        snapshots,
        ("sluice_requests_total", "Requests started, by API."),
        |api| api.requests,
    );
    out.per_api(
        snapshots,
        (
            "sluice_request_bytes_total",
            "Request bytes received, by API (size prefix included).",
        ),
        |api| api.request_bytes,
    );
    out.per_api(
        snapshots,
        (
            "sluice_response_bytes_total",
            "Response bytes sent, by API (size prefix and sendfile bytes included).",
        ),
        |api| api.response_bytes,
    );
    render_errors(&mut out, snapshots);
    render_latency(&mut out, snapshots);
    render_partitions(&mut out, snapshots);
    render_groups(&mut out, snapshots);
    out.text
}

fn render_errors(out: &mut Writer, snapshots: &[Snapshot]) {
    let name = "sluice_request_errors_total";
    out.family(
        name,
        "counter",
        "Error codes answered, by API and Kafka error name (one per partition or resource in error).",
    );
    for (shard, api_label, api) in api_series(snapshots) {
        for (code, count) in &api.errors {
            out.sample(
                name,
                &[
                    ("shard", &shard),
                    ("api", &api_label),
                    ("error", &error_name(*code)),
                ],
                count,
            );
        }
    }
}

fn render_latency(out: &mut Writer, snapshots: &[Snapshot]) {
    let name = "sluice_request_latency_seconds";
    out.family(
        name,
        "histogram",
        "Time from decode to encoded response, by API.",
    );
    for (shard, api_label, api) in api_series(snapshots) {
        out.histogram(
            name,
            &[("shard", &shard), ("api", &api_label)],
            &api.latency,
        );
    }
    let name = "sluice_produce_stage_seconds";
    out.family(
        name,
        "summary",
        "Where produce time goes, by stage, on the shard the request came in on (see src/stages.rs).",
    );
    for snapshot in snapshots {
        let shard = snapshot.shard.to_string();
        for stage in Stage::ALL {
            let histogram = snapshot.produce_stages.get(stage);
            if histogram.count() > 0 {
                out.summary(
                    name,
                    &[("shard", &shard), ("stage", stage.name())],
                    histogram,
                );
            }
        }
    }
    let name = "sluice_log_sync_round_seconds";
    out.family(
        name,
        "histogram",
        "Time of a group-commit round: writing out the due logs' tails and fdatasync of each.",
    );
    for snapshot in snapshots {
        out.histogram(
            name,
            &[("shard", &snapshot.shard.to_string())],
            &snapshot.sync_rounds,
        );
    }
}

fn render_partitions(out: &mut Writer, snapshots: &[Snapshot]) {
    type Field = fn(&PartitionOffsets) -> u64;
    let families: [(&str, &str, Field); 4] = [
        (
            "sluice_partition_high_watermark",
            "The offset below which consumers read (on disk, by default).",
            |p| p.high_watermark.max(0) as u64,
        ),
        (
            "sluice_partition_log_end_offset",
            "The offset the next record appended to the partition gets.",
            |p| p.log_end_offset.max(0) as u64,
        ),
        (
            "sluice_partition_log_start_offset",
            "The first offset still in the partition.",
            |p| p.log_start_offset.max(0) as u64,
        ),
        (
            "sluice_partition_log_bytes",
            "Bytes of the partition's log segments.",
            |p| p.size_bytes,
        ),
    ];
    for (name, help, value) in families {
        out.family(name, "gauge", help);
        for snapshot in snapshots {
            for partition in &snapshot.partitions {
                out.sample(
                    name,
                    &[
                        ("topic", &partition.topic),
                        ("partition", &partition.partition.to_string()),
                    ],
                    value(partition),
                );
            }
        }
    }
}

fn render_groups(out: &mut Writer, snapshots: &[Snapshot]) {
    let groups: Vec<&GroupMetrics> = snapshots.iter().flat_map(|s| &s.groups).collect();
    let name = "sluice_consumer_groups";
    out.family(
        name,
        "gauge",
        "Consumer groups this broker coordinates, by state.",
    );
    for state in [
        "Empty",
        "PreparingRebalance",
        "CompletingRebalance",
        "Stable",
        // KIP-848 consumer groups' own states.
        "Assigning",
        "Reconciling",
    ] {
        let count = groups.iter().filter(|g| g.state == state).count();
        out.sample(name, &[("state", state)], count);
    }
    let name = "sluice_consumer_group_members";
    out.family(name, "gauge", "Members of each consumer group.");
    for group in &groups {
        out.sample(name, &[("group", &group.group_id)], group.members);
    }
    // Lag joins a group's committed offsets (its coordinator shard) with
    // high watermarks (the partitions' owner shards) from the same scrape,
    // as `kafka-consumer-groups.sh` measures it.
    let ends: BTreeMap<(&str, i32), i64> = snapshots
        .iter()
        .flat_map(|s| &s.partitions)
        .map(|p| ((p.topic.as_str(), p.partition), p.high_watermark))
        .collect();
    type GroupValue<'a> = Box<dyn Fn(&str, i32, i64) -> Option<i64> + 'a>;
    let families: [(&str, &str, GroupValue); 2] = [
        (
            "sluice_consumer_group_committed_offset",
            "The offset a consumer group committed, per partition.",
            Box::new(|_, _, offset| Some(offset)),
        ),
        (
            "sluice_consumer_group_lag",
            "High watermark minus committed offset, per group and partition (partitions this broker has).",
            Box::new(|topic, partition, offset| {
                ends.get(&(topic, partition)).map(|end| (end - offset).max(0))
            }),
        ),
    ];
    for (name, help, value) in families {
        out.family(name, "gauge", help);
        for group in &groups {
            for (topic, partition, offset) in &group.offsets {
                let Some(value) = value(topic, *partition, *offset) else {
                    continue;
                };
                out.sample(
                    name,
                    &[
                        ("group", &group.group_id),
                        ("topic", topic),
                        ("partition", &partition.to_string()),
                    ],
                    value,
                );
            }
        }
    }
}

/// The cluster gauges of this node (shard 0's image): every node reports
/// its own; only the active controller reports the cluster-wide counts.
pub fn render_health(health: &Health) -> String {
    let mut out = Writer {
        text: String::new(),
    };
    let mut gauge = |name: &str, help: &str, value: u64| {
        out.family(name, "gauge", help);
        out.sample(name, &[], value);
    };
    gauge(
        "sluice_active_controller",
        "1 on the node that is the active controller, else 0.",
        u64::from(health.active_controller),
    );
    gauge(
        "sluice_fenced_brokers",
        "Registered brokers that are fenced, in this node's metadata image.",
        health.fenced_brokers,
    );
    gauge(
        "sluice_offline_partitions",
        "Partitions with a replica on this node and no leader.",
        health.offline_partitions,
    );
    gauge(
        "sluice_under_replicated_partitions",
        "Partitions this node leads whose ISR is smaller than their replica set.",
        health.under_replicated_partitions,
    );
    if let Some((offline, under_replicated)) = health.cluster {
        gauge(
            "sluice_cluster_offline_partitions",
            "Partitions with no leader, cluster-wide (active controller only).",
            offline,
        );
        gauge(
            "sluice_cluster_under_replicated_partitions",
            "Partitions whose ISR is smaller than their replica set, cluster-wide (active controller only).",
            under_replicated,
        );
    }
    out.text
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|_| key.to_string(), |api| format!("{api:?}"))
}
