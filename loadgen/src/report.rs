//! Results: the final table, and the JSON report (configuration, the
//! broker's ApiVersions, throughput, latency percentiles and their full
//! spectrum for plots, verification).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::stats::format_us;
use crate::verify::VerifyReport;
use sluice_client::wire::ApiRange;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub label: String,
    pub workload: String,
    pub started_at_unix_ms: u64,
    pub config: serde_json::Value,
    pub broker: BrokerInfo,
    pub results: Results,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub bootstrap: String,
    pub api_versions: Vec<ApiRange>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    /// Seconds between the end of the warm-up and the end of the run.
    pub measured_seconds: f64,
    pub target_records_per_second: Option<f64>,
    pub produce: Option<Throughput>,
    pub consume: Option<Throughput>,
    pub produce_latency: Option<Latency>,
    pub e2e_latency: Option<Latency>,
    pub verify: Option<VerifyReport>,
    pub failures: Vec<String>,
    /// Records the producers sent again (leader changes, lost connections).
    #[serde(default)]
    pub produce_retries: u64,
    /// What the fault schedule did, with times from the start of the run.
    #[serde(default)]
    pub faults: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Throughput {
    pub records: u64,
    /// Value bytes.
    pub bytes: u64,
    pub records_per_second: f64,
    /// Value bytes per second, in 10^6 bytes.
    pub megabytes_per_second: f64,
    pub requests: u64,
    /// Records (produce) or partition responses (fetch) in error, by Kafka
    /// error code; -1 is a failed connection.
    pub errors: BTreeMap<i16, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
    /// (percentile, microseconds) pairs for percentile plots.
    pub spectrum: Vec<(f64, u64)>,
}

impl Latency {
    pub fn from_histogram(histogram: &Histogram<u64>) -> Option<Latency> {
        if histogram.is_empty() {
            return None;
        }
        let mut spectrum: Vec<(f64, u64)> = Vec::new();
        for value in histogram.iter_quantiles(4) {
            // Rounded so the JSON text is short and reads back exactly.
            let percentile = (value.quantile_iterated_to() * 100.0 * 1e6).round() / 1e6;
            if percentile > 99.9999 {
                break;
            }
            spectrum.push((
                percentile,
                histogram.highest_equivalent(value.value_iterated_to()),
            ));
        }
        spectrum.push((100.0, histogram.max()));
        Some(Latency {
            count: histogram.len(),
            min_us: histogram.min(),
            mean_us: histogram.mean(),
            p50_us: histogram.value_at_quantile(0.5),
            p90_us: histogram.value_at_quantile(0.9),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            p9999_us: histogram.value_at_quantile(0.9999),
            max_us: histogram.max(),
            spectrum,
        })
    }
}

impl Report {
    /// The final table, for people.
    pub fn table(&self) -> String {
        let results = &self.results;
        let mut out = String::new();
        let name = if self.label == self.broker.bootstrap {
            String::new()
        } else {
            format!("{}: ", self.label)
        };
        out.push_str(&format!(
            "\n{name}{} against {}, {:.1} s measured\n",
            self.workload, self.broker.bootstrap, results.measured_seconds
        ));
        for fault in &results.faults {
            out.push_str(&format!("fault {fault}\n"));
        }
        if results.produce_retries > 0 {
            out.push_str(&format!(
                "records sent again (leader changes, lost connections): {}\n",
                results.produce_retries
            ));
        }
        if let Some(target) = results.target_records_per_second {
            out.push_str(&format!("target rate: {target:.0} records/s\n"));
            let achieved = results
                .produce
                .as_ref()
                .map_or(0.0, |p| p.records_per_second);
            if achieved < 0.95 * target {
                out.push_str(&format!(
                    "WARNING: {achieved:.0} records/s achieved, below the target: records queued behind \
                     the schedule and their latencies include that wait. If the broker is not \
                     the limit, raise --batch-size, --max-in-flight, --connections or --producers.\n"
                ));
            }
        }
        out.push_str(&format!(
            "{:<10} {:>12} {:>12} {:>10} {:>10} {:>10}\n",
            "", "records", "records/s", "MB/s", "requests", "errors"
        ));
        for (name, throughput) in [("produce", &results.produce), ("consume", &results.consume)] {
            if let Some(t) = throughput {
                out.push_str(&format!(
                    "{:<10} {:>12} {:>12.0} {:>10.1} {:>10} {:>10}\n",
                    name,
                    t.records,
                    t.records_per_second,
                    t.megabytes_per_second,
                    t.requests,
                    t.errors.values().sum::<u64>()
                ));
                for (code, count) in &t.errors {
                    out.push_str(&format!("           error code {code}: {count}\n"));
                }
            }
        }
        let latencies = [
            ("produce ack", &results.produce_latency),
            ("end to end", &results.e2e_latency),
        ];
        if latencies.iter().any(|(_, latency)| latency.is_some()) {
            out.push_str(&format!(
                "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
                "latency", "count", "p50", "p90", "p99", "p99.9", "p99.99", "max"
            ));
        }
        for (name, latency) in latencies {
            if let Some(l) = latency {
                out.push_str(&format!(
                    "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
                    name,
                    l.count,
                    format_us(l.p50_us),
                    format_us(l.p90_us),
                    format_us(l.p99_us),
                    format_us(l.p999_us),
                    format_us(l.p9999_us),
                    format_us(l.max_us)
                ));
            }
        }
        for failure in &results.failures {
            out.push_str(&format!("failure: {failure}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    fn sample_report() -> Report {
        let mut histogram = new_histogram();
        for value in 1..=10_000u64 {
            histogram.record(value).unwrap();
        }
        Report {
            tool: "loadgen".into(),
            label: "test".into(),
            workload: "produce".into(),
            started_at_unix_ms: 1,
            config: serde_json::json!({"acks": -1}),
            broker: BrokerInfo {
                bootstrap: "127.0.0.1:9092".into(),
                api_versions: vec![ApiRange {
                    api_key: 0,
                    name: "Produce".into(),
                    min_version: 3,
                    max_version: 12,
                }],
            },
            results: Results {
                measured_seconds: 10.0,
                produce: Some(Throughput {
                    records: 100,
                    bytes: 102_400,
                    records_per_second: 10.0,
                    megabytes_per_second: 0.01,
                    requests: 4,
                    errors: BTreeMap::from([(7, 2)]),
                }),
                produce_latency: Latency::from_histogram(&histogram),
                ..Results::default()
            },
        }
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let latency = sample_report().results.produce_latency.unwrap();
        assert_eq!(latency.count, 10_000);
        assert!(
            (4_990..=5_010).contains(&latency.p50_us),
            "{}",
            latency.p50_us
        );
        assert!(
            (9_890..=9_910).contains(&latency.p99_us),
            "{}",
            latency.p99_us
        );
        // 3 significant digits: the max is reported as the top of its bucket.
        assert!((10_000..=10_010).contains(&latency.max_us));
        assert_eq!(latency.spectrum.last(), Some(&(100.0, latency.max_us)));
        assert!(latency
            .spectrum
            .windows(2)
            .all(|pair| pair[0].0 <= pair[1].0));
    }

    #[test]
    fn the_report_round_trips_through_json() {
        let report = sample_report();
        let json = serde_json::to_string_pretty(&report).unwrap();
        assert!(json.contains("\"p99_us\""));
        assert!(json.contains("\"api_versions\""));
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back.results.produce_latency, report.results.produce_latency);
        assert_eq!(back.results.produce.unwrap().errors[&7], 2);
    }

    #[test]
    fn the_table_names_the_figures() {
        let table = sample_report().table();
        assert!(table.contains("produce ack"));
        assert!(table.contains("p99.99"));
        assert!(table.contains("error code 7: 2"));
    }
}
