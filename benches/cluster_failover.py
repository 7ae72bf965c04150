"""Cluster failover and metadata rate measurements (issue 12); not a test.

    SLUICE_BIN=target/debug/sluice .venv/bin/python benches/cluster_failover.py [--runs 10]
        [--topics 500] [--concurrency 1,8,32] [--only controller,leader,rate] [--json out.json]

Real `sluice` processes on loopback (tests/integration/cluster.py: three
nodes, `--shards 1`, free ports, temporary data dirs) and confluent-kafka
(librdkafka) clients. Prints one JSON object (also to --json) and a table.

(a) controller: kill -9 the active controller; the time until a CreateTopics
    (1 partition, RF 2) from an AdminClient bootstrapped on a surviving
    broker succeeds (a new topic name each attempt, 2 s per attempt), both
    with a new AdminClient per attempt and with one made before the kill. The
    killed node is restarted, and the cluster waited for, before each run.
(b) leader: per run a new topic (6 partitions, RF 3), a producer (acks=all,
    bootstrap: all three brokers) sending to one partition every 5 ms; kill
    -9 that partition's leader (never the controller); the time from the kill
    to the first acknowledgement of a record sent after the kill (so from the
    new leader). With broker.session.timeout.ms 9000 (heartbeat 2000, the
    defaults) and 3000 (heartbeat 500).
(c) rate: topics created per second (1 partition, RF 3), `--topics` in all,
    by N threads each with its own AdminClient (bootstrap: node 1) creating
    one topic per request and waiting for it; a fresh cluster per N.

SLUICE_BIN defaults to target/release/sluice if built, else target/debug/sluice.
"""

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from confluent_kafka import KafkaError, KafkaException, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from cluster import Cluster  # noqa: E402
from conftest import wait_until  # noqa: E402

QUIET = logging.getLogger("librdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


def binary():
    for path in (os.environ.get("SLUICE_BIN"), os.path.join(ROOT, "target/release/sluice"),
                 os.path.join(ROOT, "target/debug/sluice")):
        if path and os.access(path, os.X_OK):
            return os.path.abspath(path)
    sys.exit("no sluice binary: cargo build --bin sluice, or set SLUICE_BIN")


def admin(bootstrap):
    # librdkafka learns a new controller only from a Metadata refresh: with
    # the default interval (5 min) a long-lived AdminClient keeps waiting
    # for the dead one, so refresh every second.
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000,
                        "topic.metadata.refresh.interval.ms": 1000, "logger": QUIET})


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create(client, topic, partitions=1, rf=3, timeout=10.0):
    client.create_topics([NewTopic(topic, partitions, rf)], operation_timeout=timeout,
                         request_timeout=timeout)[topic].result(timeout=timeout + 1)


def summary(samples):
    return {"runs": len(samples), "median_s": round(statistics.median(samples), 3),
            "worst_s": round(max(samples), 3), "best_s": round(min(samples), 3),
            "samples_s": [round(s, 3) for s in samples]}


def new_cluster(base, **kwargs):
    return Cluster(binary(), tempfile.mkdtemp(prefix="sluice-bench-", dir=base), **kwargs).start()


def controller_failover(base, runs):
    """Two pollers per run, side by side: a new AdminClient for every attempt
    (what the broker side allows), and one AdminClient made before the kill
    (what a long-lived librdkafka client sees)."""
    c = new_cluster(base)
    fresh, kept = [], []
    try:
        for run in range(runs):
            controller = c.wait_controller()
            survivor = next(n for n in c.nodes.values() if n.node_id != controller)
            long_lived = admin(survivor.bootstrap)
            create(long_lived, name("warm"), rf=2)  # the client knows the cluster
            done = {}

            def poll(key, client_for_attempt):
                while time.monotonic() - t0 < 60:
                    try:
                        create(client_for_attempt(), name("after"), rf=2, timeout=2.0)
                        done[key] = time.monotonic() - t0
                        return
                    except KafkaException:
                        pass
            t0 = time.monotonic()
            c[controller].kill()
            pollers = [threading.Thread(target=poll, args=("fresh", lambda: admin(survivor.bootstrap))),
                       threading.Thread(target=poll, args=("kept", lambda: long_lived))]
            for t in pollers:
                t.start()
            for t in pollers:
                t.join()
            fresh.append(done["fresh"])
            kept.append(done["kept"])
            print(f"  controller run {run + 1}: node {controller} killed, CreateTopics via node "
                  f"{survivor.node_id} after {fresh[-1]:.2f}s (new client), {kept[-1]:.2f}s "
                  f"(client made before the kill)", file=sys.stderr)
            c[controller].start()
            c.wait_ready()
    finally:
        c.stop(check=False)
    return {"new_client_per_attempt": summary(fresh), "client_made_before_kill": summary(kept)}


def leader_failover(base, runs, session_ms, heartbeat_ms):
    c = new_cluster(base, session_timeout_ms=session_ms, heartbeat_interval_ms=heartbeat_ms)
    samples = []
    try:
        for run in range(runs):
            controller = c.wait_controller()
            topic = name("lead")
            create(admin(c[1].bootstrap), topic, partitions=6)
            wait_until(lambda: [p["leader"] for p in c.metadata(controller, [topic])["topics"]
                                [topic]["partitions"].values()].count(-1) == 0, timeout=10, what="leaders")
            parts = c.metadata(controller, [topic])["topics"][topic]["partitions"]
            partition, leader = next((i, p["leader"]) for i, p in sorted(parts.items())
                                     if p["leader"] != controller)
            acked_after_kill = []
            state = {"kill_seq": None, "seq": 0}
            stop = threading.Event()

            def on_delivery(err, msg):
                if err is None and state["kill_seq"] is not None and \
                        int(msg.value()) >= state["kill_seq"] and not acked_after_kill:
                    acked_after_kill.append(time.monotonic())

            prod = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 0,
                             "message.timeout.ms": 60000, "socket.timeout.ms": 2000,
                             "topic.metadata.refresh.interval.ms": 1000,
                             "retry.backoff.ms": 50, "retry.backoff.max.ms": 250,
                             "logger": QUIET})

            def send():
                while not stop.is_set():
                    prod.produce(topic, value=str(state["seq"]).encode(), partition=partition,
                                 on_delivery=on_delivery)
                    state["seq"] += 1
                    prod.poll(0.005)
            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            time.sleep(1.0)
            state["kill_seq"] = state["seq"] + 1
            t0 = time.monotonic()
            c[leader].kill()
            wait_until(lambda: acked_after_kill, timeout=session_ms / 1000 + 30, interval=0.01,
                       what="an acknowledgement from the new leader")
            samples.append(acked_after_kill[0] - t0)
            stop.set()
            sender.join()
            prod.flush(10)
            print(f"  leader run {run + 1} (session {session_ms} ms): node {leader} killed, "
                  f"first ack on partition {partition} after {samples[-1]:.2f}s", file=sys.stderr)
            c[leader].start()
            c.wait_ready()
    finally:
        c.stop(check=False)
    return summary(samples)


def creation_rate(base, topics, concurrency):
    c = new_cluster(base)
    try:
        names = [name(f"rate{concurrency}") for _ in range(topics)]
        lock = threading.Lock()
        errors = []

        def worker():
            client = admin(c[1].bootstrap)
            while True:
                with lock:
                    if not names:
                        return
                    topic = names.pop()
                try:
                    create(client, topic, timeout=30.0)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        errors.append(str(exc))
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        listed = sum(1 for t in c.metadata(1)["topics"] if t.startswith(f"rate{concurrency}-"))
    finally:
        c.stop(check=False)
    return {"concurrency": concurrency, "topics": topics, "created": listed, "errors": len(errors),
            "first_errors": errors[:3], "seconds": round(elapsed, 2),
            "topics_per_s": round(topics / elapsed, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--topics", type=int, default=500)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--only", default="controller,leader,rate")
    ap.add_argument("--json")
    ap.add_argument("--dir", default=None, help="where the temporary data dirs go")
    args = ap.parse_args()
    only = set(args.only.split(","))
    base = args.dir or tempfile.mkdtemp(prefix="sluice-cluster-bench-")
    bin_path = binary()
    result = {"binary": bin_path, "build": "release" if "/release/" in bin_path else "debug",
              "nproc": os.cpu_count(), "shards_per_node": 1, "nodes": 3}
    if "controller" in only:
        result["controller_failover"] = controller_failover(base, args.runs)
    if "leader" in only:
        result["leader_failover"] = {
            str(ms): leader_failover(base, args.runs, ms, hb) for ms, hb in ((9000, 2000), (3000, 500))}
    if "rate" in only:
        result["topic_creation"] = [creation_rate(base, args.topics, int(n))
                                    for n in args.concurrency.split(",")]
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")

    print(f"\nbuild: {result['build']} ({bin_path}), 3 nodes x 1 shard, {os.cpu_count()} cores")
    print(f"{'measurement':58} {'median':>8} {'worst':>8}")
    for kind, r in result.get("controller_failover", {}).items():
        print(f"{'controller kill -9 -> CreateTopics ok, %s' % kind.replace('_', ' '):58} "
              f"{r['median_s']:7.2f}s {r['worst_s']:7.2f}s")
    for ms, r in result.get("leader_failover", {}).items():
        print(f"{'leader kill -9 -> first ack, session.timeout %s ms (%d runs)' % (ms, r['runs']):58} "
              f"{r['median_s']:7.2f}s {r['worst_s']:7.2f}s")
    for r in result.get("topic_creation", []):
        print(f"{'create %d topics (1 partition, RF 3), %d concurrent' % (r['topics'], r['concurrency']):58} "
              f"{r['topics_per_s']:6.1f}/s  ({r['seconds']}s, {r['errors']} errors)")


if __name__ == "__main__":
    main()
