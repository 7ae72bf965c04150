//! One run, start to finish: set up the topic, start the reporter, the
//! consumers, the producers and the fault schedule, stop them on time, and
//! gather the results.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

use sluice_client::admin::{self, NewTopic, TopicLayout};
use sluice_client::offsets::{self, EARLIEST_TIMESTAMP as EARLIEST, LATEST_TIMESTAMP as LATEST};
use sluice_client::Cluster;

use crate::cli::{RunArgs, StartFrom, Workload};
use crate::consumer::{run_consumer, ConsumerConfig, ConsumerOutcome, EndOffsets};
use crate::faults::{parse_fault, spawn_schedule, Brokers};
use crate::payload::{KeyGenerator, Rng};
use crate::producer::{run_producer, ProducerConfig, ProducerShare};
use crate::rate::{unix_ns, WallClock};
use crate::report::{BrokerInfo, Latency, Report, Results, Throughput};
use crate::stats::{spawn_reporter, Metrics, ProgressConfig};
use crate::verify::{self, AckLog, SeenLog};

const CLIENT_ID: &str = "loadgen";

/// Runs a workload; returns the report (also printed and written).
pub fn run(args: &RunArgs, workload: Workload, verify_mode: bool) -> Result<Report> {
    args.validate(workload, verify_mode)?;
    let timeout = Duration::from_millis(args.request_timeout_ms);
    let mut cluster = Cluster::connect(&args.bootstrap, CLIENT_ID, timeout)?;
    let api_versions = cluster.any()?.versions.advertised.clone();
    let layout = prepare_topic(&mut cluster, args, workload)?;
    // Workers bootstrap from every broker, so losing one is not fatal.
    let mut addresses = vec![args.bootstrap.clone()];
    for address in layout.brokers.values() {
        if !addresses.contains(address) {
            addresses.push(address.clone());
        }
    }
    let bootstrap = addresses.join(",");
    let faults = args
        .faults
        .iter()
        .map(|fault| parse_fault(fault))
        .collect::<Result<Vec<_>>>()?;
    let brokers = Brokers::parse(&args.broker_pids, &args.broker_cmds)?;
    let run_id = (Rng::new(unix_ns(SystemTime::now())).next_u64() >> 32) as u32;
    let wall_clock = WallClock::new();
    let started_at_unix_ms = unix_ns(SystemTime::now()) / 1_000_000;
    eprintln!(
        "{} on {}: topic {} with {} partitions, run id {run_id:08x}",
        label(args),
        args.bootstrap,
        layout.topic,
        layout.partitions()
    );

    let produce = workload != Workload::Consume;
    let consume = workload != Workload::Produce;
    // Consumers of an end-to-end run start at the end of the log: they read
    // what this run produces.
    let start_offsets = if consume {
        let from = if workload == Workload::E2e || args.from == StartFrom::Latest {
            LATEST
        } else {
            EARLIEST
        };
        Some(log_offsets(&mut cluster, &layout, from)?)
    } else {
        None
    };
    let end_offsets: EndOffsets = Arc::new(Mutex::new(None));
    if workload == Workload::Consume && args.until_end {
        *end_offsets.lock().unwrap() = Some(log_offsets(&mut cluster, &layout, LATEST)?);
    }

    let metrics = Arc::new(Metrics::new(Instant::now(), args.warmup));
    let consume_after = args.consume_after || args.delete_records_before.is_some();
    let spawn = |offsets: &BTreeMap<i32, i64>| {
        spawn_consumers(
            args,
            &layout,
            &bootstrap,
            run_id,
            wall_clock,
            verify_mode,
            offsets,
            &end_offsets,
            &metrics,
        )
    };
    let mut consumers = match &start_offsets {
        Some(offsets) if !consume_after => spawn(offsets)?,
        _ => Vec::new(),
    };
    // The clock starts (and producers start) once every consumer has its
    // partitions: a group join can take seconds, and is neither end-to-end
    // latency nor consume throughput.
    if consume {
        let deadline = Instant::now() + timeout;
        let expected = consumers.len() as u64;
        sleep_until(deadline, &metrics, || {
            metrics.consumers_ready.load(Ordering::Relaxed) >= expected
                || consumers.iter().any(|handle| handle.is_finished())
        });
    }
    let start = Instant::now();
    metrics.begin(start, args.warmup);
    let end = start + args.warmup + args.duration;
    let reporter_done = Arc::new(AtomicBool::new(false));
    let reporter = spawn_reporter(
        metrics.clone(),
        reporter_done.clone(),
        ProgressConfig {
            show_produce: produce,
            show_consume: consume,
            quiet: args.quiet,
        },
        args.hdr_log.clone(),
    );
    let records_per_second = args
        .rate
        .map(|rate| rate.records_per_second(args.record_size));
    let producers = if produce {
        spawn_producers(
            args,
            &layout,
            &bootstrap,
            run_id,
            wall_clock,
            verify_mode,
            records_per_second,
            start,
            end,
            &metrics,
        )?
    } else {
        Vec::new()
    };

    let schedule = if faults.is_empty() {
        None
    } else {
        Some(spawn_schedule(
            faults,
            brokers,
            bootstrap.clone(),
            start,
            metrics.clone(),
        )?)
    };

    // Measure from the end of the warm-up to the end of the duration.
    sleep_until(metrics.warmup_end(), &metrics, || false);
    let warm = (
        Instant::now(),
        metrics.produced.snapshot(),
        metrics.consumed.snapshot(),
    );
    {
        let producers_done = || producers.iter().all(|handle| handle.is_finished());
        let consumers_done = || consumers.iter().all(|handle| handle.is_finished());
        let finished_early = || {
            (produce && producers_done()) && (!consume || consumers_done())
                || (!produce && consumers_done())
        };
        sleep_until(end, &metrics, finished_early);
    }
    let stop_instant = Instant::now();
    let stop = (
        stop_instant,
        metrics.produced.snapshot(),
        metrics.consumed.snapshot(),
    );

    let mut acks = AckLog::default();
    for handle in producers {
        match handle.join() {
            Ok(Ok(log)) => acks.merge(log),
            Ok(Err(_)) => {} // already reported in metrics.failures
            Err(_) => metrics.fail("a producer panicked".into()),
        }
    }
    // Producers are done and acknowledged: consumers read up to here.
    if let Some(offset) = args.delete_records_before {
        match admin::delete_records(&mut cluster, &layout.topic, 0, offset) {
            Ok(start) => eprintln!(
                "deleted the records of partition 0 below offset {offset}: it now starts at {start}"
            ),
            // Without the deletion the self-test means nothing: stop here.
            Err(error) => {
                metrics.stop.store(true, Ordering::Relaxed);
                anyhow::bail!(
                    "DeleteRecords on partition 0 failed, so nothing was verified: {error:#}"
                );
            }
        }
    }
    if workload == Workload::E2e {
        match log_offsets(&mut cluster, &layout, LATEST) {
            Ok(offsets) => *end_offsets.lock().unwrap() = Some(offsets),
            Err(error) => metrics.fail(format!("listing end offsets: {error:#}")),
        }
        if let (true, Some(offsets)) = (consume_after, &start_offsets) {
            consumers = spawn(offsets)?;
        }
        let drain_end = Instant::now() + args.drain_timeout;
        sleep_until(drain_end, &metrics, || {
            consumers.iter().all(|handle| handle.is_finished())
        });
    }
    metrics.stop.store(true, Ordering::Relaxed);
    let fault_log = match schedule.map(|handle| handle.join()) {
        None => Vec::new(),
        Some(Ok(log)) => log,
        Some(Err(_)) => {
            metrics.fail("the fault schedule panicked".into());
            Vec::new()
        }
    };
    let mut seen = SeenLog::default();
    let mut foreign = 0;
    for handle in consumers {
        match handle.join() {
            Ok(Ok(ConsumerOutcome {
                seen: log,
                foreign_records,
                ..
            })) => {
                seen.merge(log);
                foreign += foreign_records;
            }
            Ok(Err(_)) => {}
            Err(_) => metrics.fail("a consumer panicked".into()),
        }
    }
    let consumed_final = metrics.consumed.snapshot();
    reporter_done.store(true, Ordering::Relaxed);
    match reporter.join() {
        Ok(Ok(())) => {}
        Ok(Err(error)) => metrics.fail(format!("reporter: {error:#}")),
        Err(_) => metrics.fail("the reporter panicked".into()),
    }
    if foreign > 0 && workload != Workload::Consume {
        eprintln!("note: consumed {foreign} records not written by this run");
    }

    let measured = stop.0.saturating_duration_since(warm.0).as_secs_f64();
    let throughput =
        |warm: (u64, u64), stop: (u64, u64), requests: u64, errors: &Mutex<BTreeMap<i16, u64>>| {
            let records = stop.0 - warm.0;
            let bytes = stop.1 - warm.1;
            Throughput {
                records,
                bytes,
                records_per_second: records as f64 / measured.max(1e-9),
                megabytes_per_second: bytes as f64 / 1e6 / measured.max(1e-9),
                requests,
                errors: errors.lock().unwrap().clone(),
            }
        };
    let mut results = Results {
        measured_seconds: measured,
        target_records_per_second: records_per_second,
        failures: metrics.failures.lock().unwrap().clone(),
        produce_retries: metrics.produce_retries.load(Ordering::Relaxed),
        faults: fault_log,
        ..Results::default()
    };
    if produce {
        results.produce = Some(throughput(
            warm.1,
            stop.1,
            metrics.produce_requests.load(Ordering::Relaxed),
            &metrics.produce_errors,
        ));
        if args.acks != 0 {
            results.produce_latency = Latency::from_histogram(&metrics.produce_latency.measured());
        }
    }
    if consume {
        // A consume-only run that ended early (--until-end, --records)
        // measures up to its end, not the nominal duration.
        let consume_stop = if workload == Workload::Consume {
            consumed_final
        } else {
            stop.2
        };
        results.consume = Some(throughput(
            warm.2,
            consume_stop,
            metrics.fetch_requests.load(Ordering::Relaxed),
            &metrics.fetch_errors,
        ));
        results.e2e_latency = Latency::from_histogram(&metrics.e2e_latency.measured());
    }
    if verify_mode {
        results.verify = Some(verify::check(&acks, &seen));
    }
    Ok(Report {
        tool: format!("sluice-loadgen {}", env!("CARGO_PKG_VERSION")),
        label: label(args),
        workload: format!(
            "{}{}",
            workload_name(workload),
            if verify_mode { " (verify)" } else { "" }
        ),
        started_at_unix_ms,
        config: serde_json::to_value(args).context("serializing the configuration")?,
        broker: BrokerInfo {
            bootstrap: args.bootstrap.clone(),
            api_versions,
        },
        results,
    })
}

fn label(args: &RunArgs) -> String {
    args.label.clone().unwrap_or_else(|| args.bootstrap.clone())
}

fn workload_name(workload: Workload) -> &'static str {
    match workload {
        Workload::Produce => "produce",
        Workload::Consume => "consume",
        Workload::E2e => "e2e",
    }
}

fn prepare_topic(cluster: &mut Cluster, args: &RunArgs, workload: Workload) -> Result<TopicLayout> {
    let timeout = Duration::from_secs(30);
    if workload == Workload::Consume {
        return admin::describe_topic(cluster, &args.topic)?.with_context(|| {
            format!("topic {} does not exist: produce into it first", args.topic)
        });
    }
    if args.recreate {
        admin::delete_topic(cluster, &args.topic)?;
        // Deletion may finish in the background.
        let deadline = Instant::now() + timeout;
        while admin::describe_topic(cluster, &args.topic)?.is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if admin::describe_topic(cluster, &args.topic)?.is_none() {
        admin::ensure_topic(
            cluster,
            &NewTopic {
                name: args.topic.clone(),
                partitions: Some(args.partitions),
                replication_factor: Some(args.replication_factor),
                configs: args.topic_configs.clone(),
                validate_only: false,
            },
        )?;
    }
    let layout = admin::wait_for_leaders(cluster, &args.topic, timeout)?;
    if layout.partitions() != args.partitions as usize {
        eprintln!(
            "note: topic {} exists with {} partitions (not {}); using it as it is (--recreate to replace it)",
            args.topic,
            layout.partitions(),
            args.partitions
        );
    }
    Ok(layout)
}

/// Every partition's offset at `timestamp` (LATEST, EARLIEST), asked of
/// its current leader.
fn log_offsets(
    cluster: &mut Cluster,
    layout: &TopicLayout,
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>> {
    let partitions: Vec<(String, i32)> = (0..layout.partitions() as i32)
        .map(|partition| (layout.topic.clone(), partition))
        .collect();
    offsets::list_offsets(cluster, &partitions, timestamp)?
        .into_iter()
        .map(|((topic, partition), offset)| {
            let offset = offset
                .with_context(|| format!("ListOffsets gave no offset for {topic}-{partition}"))?;
            Ok((partition, offset))
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn spawn_producers(
    args: &RunArgs,
    layout: &TopicLayout,
    bootstrap: &str,
    run_id: u32,
    wall_clock: WallClock,
    verify_mode: bool,
    records_per_second: Option<f64>,
    start: Instant,
    end: Instant,
    metrics: &Arc<Metrics>,
) -> Result<Vec<JoinHandle<Result<AckLog>>>> {
    let config = Arc::new(ProducerConfig {
        layout: layout.clone(),
        client_id: CLIENT_ID.into(),
        run_id,
        acks: args.acks,
        codec: args.compression,
        batch_bytes: args.batch_size,
        linger: Duration::from_secs_f64(args.linger_ms / 1e3),
        request_bytes_max: args.max_request_size,
        max_in_flight: args.max_in_flight,
        connections_per_broker: args.connections,
        record_bytes: args.record_size,
        keys: KeyGenerator {
            distribution: args.keys,
            key_space: args.key_space,
            hot_keys: args.hot_keys,
            hot_fraction: args.hot_fraction,
            key_bytes: args.key_size,
        },
        payload: args.payload,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        verify: verify_mode,
        wall_clock,
        bootstrap: bootstrap.to_string(),
        idempotence: args.idempotent(verify_mode),
        delivery_timeout: args.delivery_timeout,
    });
    let producers = args.producers as u64;
    let mut handles = Vec::new();
    for index in 0..args.producers as u32 {
        let records_max = args
            .records
            .map(|total| total / producers + u64::from(u64::from(index) < total % producers));
        let share = ProducerShare {
            index,
            records_per_second: records_per_second.map(|rate| rate / producers as f64),
            records_max,
            start,
            end,
        };
        let config = config.clone();
        let metrics = metrics.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("producer-{index}"))
                .spawn(move || run_producer(config, share, metrics))?,
        );
    }
    Ok(handles)
}

#[allow(clippy::too_many_arguments)]
fn spawn_consumers(
    args: &RunArgs,
    layout: &TopicLayout,
    bootstrap: &str,
    run_id: u32,
    wall_clock: WallClock,
    verify_mode: bool,
    start_offsets: &BTreeMap<i32, i64>,
    end_offsets: &EndOffsets,
    metrics: &Arc<Metrics>,
) -> Result<Vec<JoinHandle<Result<ConsumerOutcome>>>> {
    let config = Arc::new(ConsumerConfig {
        layout: layout.clone(),
        client_id: CLIENT_ID.into(),
        run_id,
        max_wait: Duration::from_millis(args.fetch_max_wait_ms),
        min_bytes: args.fetch_min_bytes,
        max_bytes: args.fetch_max_bytes,
        partition_max_bytes: args.partition_max_bytes,
        check_crc: !args.no_crc_check,
        verify: verify_mode,
        drop_record: args.drop_acked.map(|sequence| (0, 0, sequence)),
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        wall_clock,
        group: args.group.clone(),
        bootstrap: bootstrap.to_string(),
        records_max: if args.records.is_some()
            && start_offsets.len() == layout.partitions()
            && !verify_mode
        {
            args.records
        } else {
            None
        },
    });
    let consumers = if args.group.is_some() {
        args.consumers
    } else {
        args.consumers.min(layout.partitions())
    };
    let mut handles = Vec::new();
    for index in 0..consumers {
        // In a group every member knows every start offset; the group
        // assigns the partitions.
        let assigned: BTreeMap<i32, i64> = start_offsets
            .iter()
            .filter(|(partition, _)| {
                args.group.is_some() || **partition as usize % consumers == index
            })
            .map(|(partition, offset)| (*partition, *offset))
            .collect();
        let config = config.clone();
        let metrics = metrics.clone();
        let end_offsets = end_offsets.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("consumer-{index}"))
                .spawn(move || run_consumer(config, index, assigned, end_offsets, metrics))?,
        );
    }
    Ok(handles)
}

/// Sleeps until `deadline`, a stop, or `done()`.
fn sleep_until(deadline: Instant, metrics: &Metrics, done: impl Fn() -> bool) {
    while Instant::now() < deadline && !metrics.stopping() && !done() {
        let left = deadline.saturating_duration_since(Instant::now());
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}
