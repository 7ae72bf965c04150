//! Throughput for the cluster page's charts: a thread that every
//! [`SAMPLE_INTERVAL`] reads each partition's log-end offset, from
//! `--metrics-url` (a broker's Prometheus text) when given, else with
//! ListOffsets at each leader, and keeps the records per second between
//! samples, per topic and per leader broker, for the last
//! [`POINTS_MAX`] intervals. Owns its own client connection; renders
//! nothing, changes nothing in the cluster.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sluice_client::offsets::{self, TopicPartition, LATEST_TIMESTAMP};
use sluice_client::Cluster as Client;

pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// Five minutes of points.
pub const POINTS_MAX: usize = 60;
/// Topics kept per point (the busiest); series shown on a chart.
const TOPICS_PER_POINT_MAX: usize = 100;
const SERIES_SHOWN_MAX: usize = 8;
/// A metrics page larger than this is refused.
const METRICS_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Records per second by series name.
pub type Rates = Vec<(String, f64)>;

/// Partition -> (log-end offset, leader).
type Ends = BTreeMap<TopicPartition, (i64, i32)>;

struct Point {
    at_ms: i64,
    topics: BTreeMap<String, f64>,
    brokers: BTreeMap<i32, f64>,
}

#[derive(Default)]
pub struct Throughput {
    last: Option<(Instant, Ends)>,
    points: VecDeque<Point>,
    pub error: Option<String>,
}

impl Throughput {
    /// Adds a sample taken at `now`; a point once there are two.
    fn add(&mut self, now: Instant, at_ms: i64, ends: Ends) {
        if let Some((then, previous)) = &self.last {
            let seconds = now.duration_since(*then).as_secs_f64().max(0.001);
            let mut topics: BTreeMap<String, f64> = BTreeMap::new();
            let mut brokers: BTreeMap<i32, f64> = BTreeMap::new();
            for (key, (end, leader)) in &ends {
                let Some((before, _)) = previous.get(key) else {
                    continue;
                };
                let rate = (end - before).max(0) as f64 / seconds;
                *topics.entry(key.0.clone()).or_default() += rate;
                *brokers.entry(*leader).or_default() += rate;
            }
            if topics.len() > TOPICS_PER_POINT_MAX {
                let mut ranked: Vec<(String, f64)> = topics.into_iter().collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
                ranked.truncate(TOPICS_PER_POINT_MAX);
                topics = ranked.into_iter().collect();
            }
            self.points.push_back(Point {
                at_ms,
                topics,
                brokers,
            });
            while self.points.len() > POINTS_MAX {
                self.points.pop_front();
            }
        }
        self.last = Some((now, ends));
    }

    /// The latest rate of each broker and of the busiest topics.
    pub fn latest(&self) -> (Rates, Rates) {
        let Some(point) = self.points.back() else {
            return (Vec::new(), Vec::new());
        };
        let brokers = point
            .brokers
            .iter()
            .map(|(id, rate)| (format!("broker {id}"), *rate))
            .collect();
        let mut topics: Vec<(String, f64)> =
            point.topics.iter().map(|(t, r)| (t.clone(), *r)).collect();
        topics.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        topics.truncate(SERIES_SHOWN_MAX);
        (brokers, topics)
    }

    /// The charts' data: `{"brokers": [{"name", "points": [[ms, rate]]}], "topics": [...]}`.
    pub fn to_json(&self) -> Value {
        let (brokers, topics) = self.latest();
        let series = |names: Vec<String>, rate: &dyn Fn(&Point, &str) -> f64| -> Vec<Value> {
            names
                .iter()
                .map(|name| {
                    let points: Vec<Value> = self
                        .points
                        .iter()
                        .map(|point| json!([point.at_ms, rate(point, name)]))
                        .collect();
                    json!({"name": name, "points": points})
                })
                .collect()
        };
        let broker_rate = |point: &Point, name: &str| {
            let id: i32 = name.trim_start_matches("broker ").parse().unwrap_or(-1);
            point.brokers.get(&id).copied().unwrap_or(0.0)
        };
        let topic_rate = |point: &Point, name: &str| point.topics.get(name).copied().unwrap_or(0.0);
        json!({
            "brokers": series(brokers.into_iter().map(|b| b.0).collect(), &broker_rate),
            "topics": series(topics.into_iter().map(|t| t.0).collect(), &topic_rate),
            "error": self.error,
        })
    }
}

/// Samples forever on its own thread.
pub fn spawn(
    bootstrap: String,
    timeout: Duration,
    metrics_url: Option<String>,
    throughput: Arc<Mutex<Throughput>>,
) {
    std::thread::Builder::new()
        .name("console-sampler".into())
        .spawn(move || {
            let mut client: Option<Client> = None;
            loop {
                let started = Instant::now();
                let result = sample(&mut client, &bootstrap, timeout, metrics_url.as_deref());
                let mut shared = throughput.lock().unwrap_or_else(|e| e.into_inner());
                match result {
                    Ok(ends) => {
                        shared.add(started, super::now_ms(), ends);
                        shared.error = None;
                    }
                    Err(error) => {
                        client = None;
                        shared.error = Some(format!("{error:#}"));
                    }
                }
                drop(shared);
                std::thread::sleep(SAMPLE_INTERVAL.saturating_sub(started.elapsed()));
            }
        })
        .expect("spawning the sampler thread");
}

fn sample(
    client: &mut Option<Client>,
    bootstrap: &str,
    timeout: Duration,
    metrics_url: Option<&str>,
) -> Result<Ends> {
    if client.is_none() {
        *client = Some(Client::connect(bootstrap, "sluice-console", timeout)?);
    }
    let client = client.as_mut().expect("connected above");
    let metadata = client.metadata(None)?;
    let mut leaders: BTreeMap<TopicPartition, i32> = BTreeMap::new();
    for topic in &metadata.topics {
        let name = topic.name.as_ref().map_or("", |n| n.0.as_str());
        for partition in &topic.partitions {
            let key = (name.to_string(), partition.partition_index);
            leaders.insert(key, partition.leader_id.0);
        }
    }
    let ends: BTreeMap<TopicPartition, i64> = match metrics_url {
        Some(url) => log_end_offsets(&http_get(url, timeout)?),
        None => {
            let led: Vec<TopicPartition> = leaders
                .iter()
                .filter(|(_, leader)| **leader >= 0)
                .map(|(key, _)| key.clone())
                .collect();
            offsets::list_offsets(client, &led, LATEST_TIMESTAMP)?
                .into_iter()
                .filter_map(|(key, end)| Some((key, end?)))
                .collect()
        }
    };
    Ok(ends
        .into_iter()
        .filter_map(|(key, end)| {
            let leader = *leaders.get(&key)?;
            Some((key, (end, leader)))
        })
        .collect())
}

/// Each partition's log-end offset in Prometheus text: Sluice's
/// `sluice_partition_log_end_offset{topic,partition}`, or a Kafka JMX
/// exporter's `kafka_log_log_value{name="LogEndOffset",topic,partition}`
/// (any metric whose name or `name` label says log end offset).
pub fn log_end_offsets(text: &str) -> BTreeMap<TopicPartition, i64> {
    let squash = |s: &str| s.replace('_', "").to_ascii_lowercase();
    let mut ends = BTreeMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, parse_labels(labels.trim_end_matches('}'))),
            None => (series, BTreeMap::new()),
        };
        let named = squash(name).contains("logendoffset")
            || labels
                .get("name")
                .is_some_and(|n| squash(n) == "logendoffset");
        let (Some(topic), Some(partition)) = (labels.get("topic"), labels.get("partition")) else {
            continue;
        };
        let (Ok(partition), Ok(value)) = (partition.parse::<i32>(), value.parse::<f64>()) else {
            continue;
        };
        if named {
            ends.insert((topic.clone(), partition), value as i64);
        }
    }
    ends
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = index + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(name.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    labels
}

/// A plain-HTTP GET of `url` (`http://host:port/path`), body only.
fn http_get(url: &str, timeout: Duration) -> Result<String> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("--metrics-url must start with http:// (got '{url}')");
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/metrics"),
    };
    let address = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("no address for {authority}"))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("connecting to {url}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream
        .take(METRICS_BYTES_MAX)
        .read_to_end(&mut response)
        .with_context(|| format!("reading {url}"))?;
    let text = String::from_utf8_lossy(&response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("{url} answered no HTTP response");
    };
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("{url} answered HTTP {status}");
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_end_offsets_from_sluice_and_kafka_exporters() {
        let text = "# HELP x\n\
            sluice_partition_log_end_offset{topic=\"orders\",partition=\"0\"} 42\n\
            sluice_partition_log_end_offset{topic=\"a \\\"q\\\"\",partition=\"1\"} 7\n\
            sluice_partition_log_start_offset{topic=\"orders\",partition=\"0\"} 3\n\
            kafka_log_log_value{name=\"LogEndOffset\",partition=\"2\",topic=\"pay\"} 1.0e3\n\
            garbage line\n";
        let ends = log_end_offsets(text);
        assert_eq!(ends.get(&("orders".into(), 0)), Some(&42));
        assert_eq!(ends.get(&("a \"q\"".into(), 1)), Some(&7));
        assert_eq!(ends.get(&("pay".into(), 2)), Some(&1000));
        assert_eq!(ends.len(), 3);
    }

    #[test]
    fn rates_per_topic_and_leader() {
        let mut throughput = Throughput::default();
        let start = Instant::now();
        let ends = |a: i64, b: i64| -> Ends {
            [
                (("t".to_string(), 0), (a, 1)),
                (("u".to_string(), 0), (b, 2)),
            ]
            .into_iter()
            .collect()
        };
        throughput.add(start, 0, ends(0, 0));
        assert!(throughput.latest().0.is_empty());
        throughput.add(start + Duration::from_secs(2), 2000, ends(100, 10));
        let (brokers, topics) = throughput.latest();
        assert_eq!(
            brokers,
            vec![("broker 1".into(), 50.0), ("broker 2".into(), 5.0)]
        );
        assert_eq!(topics[0], ("t".into(), 50.0));
        let json = throughput.to_json();
        assert_eq!(json["topics"][0]["points"][0][1], 50.0);
    }
}
