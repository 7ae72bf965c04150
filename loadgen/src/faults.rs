//! The fault schedule: signals to broker processes at set times of a run,
//! so one command runs "produce and consume at a rate, kill -9 the leader
//! in the middle, bring it back, verify".
//!
//! A fault is `ACTION:TARGET@TIME[,FOLLOWUP@TIME]`:
//! - ACTION: `kill` (SIGKILL), `term` (SIGTERM) or `stop` (SIGSTOP);
//! - TARGET: `leader-of=TOPIC/PARTITION` (the leader Metadata names at
//!   fault time), `follower-of=TOPIC/PARTITION` (a replica that is not the
//!   leader, preferring a broker the schedule has not signalled yet) or
//!   `broker=N`;
//! - FOLLOWUP: `restart` (runs the broker's `--broker-cmd`) after kill or
//!   term, `cont` (SIGCONT) after stop;
//! - TIME: from the start of the run (after consumers joined), e.g. `10s`.
//!
//! Brokers are known by their pid files (`--broker-pids 1=/run/n1.pid`);
//! a restart runs `sh -c 'exec CMD'` without waiting for it and writes the
//! new process id to the broker's pid file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sluice_client::Cluster;

use crate::cli::parse_duration;
use crate::stats::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Kill,
    Term,
    Stop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    LeaderOf(String, i32),
    FollowerOf(String, i32),
    Broker(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followup {
    Restart,
    Cont,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub action: Action,
    pub target: Target,
    pub at: Duration,
    pub then: Option<(Followup, Duration)>,
}

fn split_at_time(text: &str) -> Result<(&str, Duration)> {
    let (what, time) = text
        .rsplit_once('@')
        .ok_or_else(|| anyhow!("{text:?} has no @TIME"))?;
    Ok((what, parse_duration(time).map_err(|error| anyhow!(error))?))
}

fn topic_partition(text: &str) -> Result<(String, i32)> {
    let (topic, partition) = text
        .rsplit_once('/')
        .ok_or_else(|| anyhow!("expected TOPIC/PARTITION, got {text:?}"))?;
    Ok((topic.to_string(), partition.parse()?))
}

/// Parses `kill:leader-of=t/0@10s,restart@20s`.
pub fn parse_fault(text: &str) -> Result<Fault> {
    let context = || format!("bad fault {text:?} (e.g. kill:leader-of=TOPIC/0@10s,restart@20s)");
    let parse = || -> Result<Fault> {
        let (first, followup) = match text.split_once(',') {
            Some((first, followup)) => (first, Some(followup)),
            None => (text, None),
        };
        let (what, at) = split_at_time(first)?;
        let (action, target) = what
            .split_once(':')
            .ok_or_else(|| anyhow!("expected ACTION:TARGET"))?;
        let action = match action {
            "kill" => Action::Kill,
            "term" => Action::Term,
            "stop" => Action::Stop,
            other => bail!("unknown action {other:?} (kill, term or stop)"),
        };
        let (kind, value) = target
            .split_once('=')
            .ok_or_else(|| anyhow!("expected a target such as leader-of=TOPIC/0"))?;
        let target = match kind {
            "leader-of" => {
                let (topic, partition) = topic_partition(value)?;
                Target::LeaderOf(topic, partition)
            }
            "follower-of" => {
                let (topic, partition) = topic_partition(value)?;
                Target::FollowerOf(topic, partition)
            }
            "broker" => Target::Broker(value.parse()?),
            other => bail!("unknown target {other:?} (leader-of, follower-of or broker)"),
        };
        let then = match followup {
            None => None,
            Some(text) => {
                let (what, when) = split_at_time(text)?;
                let followup = match (what, action) {
                    ("restart", Action::Kill | Action::Term) => Followup::Restart,
                    ("cont", Action::Stop) => Followup::Cont,
                    _ => bail!(
                        "{what:?} does not follow {action:?} (kill/term: restart, stop: cont)"
                    ),
                };
                if when < at {
                    bail!("the follow-up comes before the fault");
                }
                Some((followup, when))
            }
        };
        Ok(Fault {
            action,
            target,
            at,
            then,
        })
    };
    parse().with_context(context)
}

/// The broker processes a schedule may signal.
#[derive(Debug, Clone, Default)]
pub struct Brokers {
    pub pid_files: BTreeMap<i32, PathBuf>,
    pub commands: BTreeMap<i32, String>,
}

fn node_and(text: &str) -> Result<(i32, String)> {
    let (node, rest) = text
        .split_once('=')
        .ok_or_else(|| anyhow!("expected N=VALUE, got {text:?}"))?;
    Ok((node.trim().parse()?, rest.to_string()))
}

impl Brokers {
    pub fn parse(pid_files: &[String], commands: &[String]) -> Result<Brokers> {
        let mut brokers = Brokers::default();
        for text in pid_files {
            let (node, path) = node_and(text).context("--broker-pids")?;
            brokers.pid_files.insert(node, PathBuf::from(path));
        }
        for text in commands {
            let (node, command) = node_and(text).context("--broker-cmd")?;
            brokers.commands.insert(node, command);
        }
        Ok(brokers)
    }

    fn pid(&self, node: i32) -> Result<i32> {
        let path = self
            .pid_files
            .get(&node)
            .with_context(|| format!("no --broker-pids entry for broker {node}"))?;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        text.trim()
            .parse()
            .with_context(|| format!("{} holds no pid", path.display()))
    }

    fn signal(&self, node: i32, signal: libc::c_int) -> Result<i32> {
        let pid = self.pid(node)?;
        // SAFETY: kill(2) with a pid read from the broker's pid file.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!(
                "signalling broker {node} (pid {pid}): {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(pid)
    }

    fn restart(&self, node: i32) -> Result<u32> {
        let command = self
            .commands
            .get(&node)
            .with_context(|| format!("no --broker-cmd for broker {node}"))?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {command}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("restarting broker {node}"))?;
        let pid = child.id();
        if let Some(path) = self.pid_files.get(&node) {
            std::fs::write(path, format!("{pid}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(pid)
    }
}

/// The broker a target names, now; a follower is one not in `signalled`
/// if there is one.
fn resolve(target: &Target, bootstrap: &str, signalled: &[i32]) -> Result<(i32, String)> {
    let (topic, partition, leader) = match target {
        Target::Broker(node) => return Ok((*node, format!("broker {node}"))),
        Target::LeaderOf(topic, partition) => (topic, *partition, true),
        Target::FollowerOf(topic, partition) => (topic, *partition, false),
    };
    let mut cluster = Cluster::connect(bootstrap, "loadgen-faults", Duration::from_secs(5))?;
    cluster.metadata(Some(std::slice::from_ref(topic)))?;
    let view = cluster
        .partitions(topic)
        .and_then(|partitions| partitions.get(&partition))
        .with_context(|| format!("Metadata does not list {topic}/{partition}"))?;
    if leader {
        if view.leader < 0 {
            bail!("{topic}/{partition} has no leader now");
        }
        return Ok((view.leader, format!("leader of {topic}/{partition}")));
    }
    let followers: Vec<i32> = view
        .replicas
        .iter()
        .copied()
        .filter(|replica| *replica != view.leader)
        .collect();
    let follower = followers
        .iter()
        .find(|replica| !signalled.contains(replica))
        .or(followers.first())
        .copied()
        .with_context(|| format!("{topic}/{partition} has no follower"))?;
    Ok((follower, format!("follower of {topic}/{partition}")))
}

/// Runs the schedule on its own thread from `start`; returns what it did.
pub fn spawn_schedule(
    faults: Vec<Fault>,
    brokers: Brokers,
    bootstrap: String,
    start: Instant,
    metrics: Arc<Metrics>,
) -> Result<JoinHandle<Vec<String>>> {
    Ok(std::thread::Builder::new()
        .name("faults".into())
        .spawn(move || run_schedule(&faults, &brokers, &bootstrap, start, &metrics))?)
}

fn run_schedule(
    faults: &[Fault],
    brokers: &Brokers,
    bootstrap: &str,
    start: Instant,
    metrics: &Metrics,
) -> Vec<String> {
    // (time, fault index, is the follow-up)
    let mut steps: Vec<(Duration, usize, bool)> = Vec::new();
    for (index, fault) in faults.iter().enumerate() {
        steps.push((fault.at, index, false));
        if let Some((_, when)) = fault.then {
            steps.push((when, index, true));
        }
    }
    steps.sort();
    let mut chosen: BTreeMap<usize, i32> = BTreeMap::new();
    let mut log = Vec::new();
    for (when, index, followup) in steps {
        while start.elapsed() < when {
            if metrics.stopping() {
                return log;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let fault = &faults[index];
        let result = if followup {
            let Some(&node) = chosen.get(&index) else {
                continue; // the fault itself failed
            };
            match fault.then.map(|(followup, _)| followup) {
                Some(Followup::Restart) => brokers
                    .restart(node)
                    .map(|pid| format!("restarted broker {node} (pid {pid})")),
                _ => brokers
                    .signal(node, libc::SIGCONT)
                    .map(|pid| format!("SIGCONT broker {node} (pid {pid})")),
            }
        } else {
            let signalled: Vec<i32> = chosen.values().copied().collect();
            resolve(&fault.target, bootstrap, &signalled).and_then(|(node, what)| {
                let (signal, name) = match fault.action {
                    Action::Kill => (libc::SIGKILL, "SIGKILL"),
                    Action::Term => (libc::SIGTERM, "SIGTERM"),
                    Action::Stop => (libc::SIGSTOP, "SIGSTOP"),
                };
                let pid = brokers.signal(node, signal)?;
                chosen.insert(index, node);
                Ok(format!("{name} broker {node} (pid {pid}, {what})"))
            })
        };
        let line = match result {
            Ok(done) => format!("{:.2}s: {done}", start.elapsed().as_secs_f64()),
            Err(error) => format!("{:.2}s: FAILED: {error:#}", start.elapsed().as_secs_f64()),
        };
        eprintln!("fault: {line}");
        log.push(line);
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse() {
        let fault = parse_fault("kill:leader-of=orders/0@10s,restart@20s").unwrap();
        assert_eq!(fault.action, Action::Kill);
        assert_eq!(fault.target, Target::LeaderOf("orders".into(), 0));
        assert_eq!(fault.at, Duration::from_secs(10));
        assert_eq!(
            fault.then,
            Some((Followup::Restart, Duration::from_secs(20)))
        );
        let stop = parse_fault("stop:broker=2@15s,cont@25s").unwrap();
        assert_eq!(stop.target, Target::Broker(2));
        assert_eq!(stop.then, Some((Followup::Cont, Duration::from_secs(25))));
        let follower = parse_fault("stop:follower-of=a/b/3@1s").unwrap();
        assert_eq!(follower.target, Target::FollowerOf("a/b".into(), 3));
        assert_eq!(follower.then, None);
        for bad in [
            "kill:leader-of=t/0",
            "explode:broker=1@1s",
            "kill:broker=x@1s",
            "kill:broker=1@1s,cont@2s",
            "stop:broker=1@5s,cont@2s",
            "kill:leader-of=t@1s",
        ] {
            assert!(parse_fault(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn brokers_parse() {
        let brokers = Brokers::parse(
            &["1=/tmp/n1.pid".into(), "2=/tmp/n2.pid".into()],
            &["1=sluice --node-id 1 --x=y".into()],
        )
        .unwrap();
        assert_eq!(brokers.pid_files[&2], PathBuf::from("/tmp/n2.pid"));
        assert_eq!(brokers.commands[&1], "sluice --node-id 1 --x=y");
        assert!(Brokers::parse(&["x".into()], &[]).is_err());
    }
}
