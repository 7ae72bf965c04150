"""Transactions (KIP-98, KIP-360, KIP-447) with real clients: confluent-kafka
(librdkafka) transactional producers, read_committed and read_uncommitted
consumers, offsets sent to transactions, fencing, the transaction timeout
aborting an abandoned transaction, and a broker killed mid-transaction."""

import logging
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from cluster import make_cluster  # noqa: F401 (fixture)
from conftest import confluent_admin, unique_topic, wait_until

TXN_ARGS = [
    "--set", "group.initial.rebalance.delay.ms=0",
    "--set", "transaction.abort.timed.out.transaction.cleanup.interval.ms=500",
]
PARTITIONS = 3
# librdkafka's log lines go to Python logging (shown on failure), so that
# clients outliving a killed broker do not flood the output.
LOG = logging.getLogger("librdkafka")


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory):
    from conftest import _finish, _start_broker

    b = _start_broker(tmp_path_factory, extra_args=TXN_ARGS)
    yield b
    _finish(b)


def create_topics(broker, *names, partitions=PARTITIONS):
    admin = confluent_admin(broker)
    futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    for future in futures.values():
        future.result(timeout=30)


def producer(broker, transactional_id, **extra):
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": 30000,
        "linger.ms": 0,
        "logger": LOG,
    }
    conf.update(extra)
    p = Producer(conf)
    p.init_transactions(30)
    return p


def consume_all(broker, topics, isolation, expected=None, idle_s=3.0, timeout_s=30.0):
    """Every value in `topics` (all partitions, from the start) as the given
    isolation level sees it: read until `expected` values came (if given)
    and nothing more came for `idle_s`."""
    c = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": f"reader-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": isolation,
        "logger": LOG,
    })
    c.assign([TopicPartition(t, p, 0) for t in topics for p in range(PARTITIONS)])
    values = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is None or msg.error():
                enough = expected is None or len(values) >= expected
                if enough and time.monotonic() - last >= idle_s:
                    break
                continue
            values.append(msg.value().decode())
            last = time.monotonic()
    finally:
        c.close()
    return values


def group_metadata(broker, group_id):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group_id, "logger": LOG})
    return c, c.consumer_group_metadata()


def committed_offsets(broker, group_id, topic):
    """The group's committed offsets (read without require_stable)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    admin = confluent_admin(broker)
    request = ConsumerGroupTopicPartitions(
        group_id, [TopicPartition(topic, p) for p in range(PARTITIONS)])
    result = admin.list_consumer_group_offsets([request])[group_id].result(timeout=30)
    return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}


def test_commit_and_abort_across_topics_with_offsets(shared_broker):
    a, b, source = unique_topic("ta"), unique_topic("tb"), unique_topic("src")
    create_topics(shared_broker, a, b, source)
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer, metadata = group_metadata(shared_broker, group)
    p = producer(shared_broker, f"tx-{uuid.uuid4().hex[:8]}")
    try:
        # Committed: 3 partitions of 2 topics, plus offsets.
        p.begin_transaction()
        for partition in (0, 1):
            p.produce(a, value=f"commit-a{partition}".encode(), partition=partition)
        p.produce(b, value=b"commit-b2", partition=2)
        p.send_offsets_to_transaction([TopicPartition(source, 0, 5)], metadata)
        p.flush(30)
        assert committed_offsets(shared_broker, group, source) == {}, \
            "offsets of an open transaction must not be visible"
        p.commit_transaction(30)
        # EndTxn is answered once the commit is prepared; the offsets become
        # visible when the marker reaches the group's coordinator (in Kafka
        # too).
        wait_until(lambda: committed_offsets(shared_broker, group, source) == {0: 5},
                   timeout=30, what="the transaction's offsets to be committed")

        # Aborted: records and offsets vanish for read_committed.
        p.begin_transaction()
        p.produce(a, value=b"abort-a0", partition=0)
        p.produce(b, value=b"abort-b1", partition=1)
        p.send_offsets_to_transaction([TopicPartition(source, 0, 9)], metadata)
        p.flush(30)
        p.abort_transaction(30)
        assert committed_offsets(shared_broker, group, source) == {0: 5}

        # A later commit on the same partitions is read past the abort.
        p.begin_transaction()
        p.produce(a, value=b"commit-after", partition=0)
        p.commit_transaction(30)
    finally:
        consumer.close()

    committed = ["commit-a0", "commit-a1", "commit-b2", "commit-after"]
    seen = consume_all(shared_broker, [a, b], "read_committed", expected=len(committed))
    assert sorted(seen) == sorted(committed)
    everything = committed + ["abort-a0", "abort-b1"]
    seen = consume_all(shared_broker, [a, b], "read_uncommitted", expected=len(everything))
    assert sorted(seen) == sorted(everything)


def test_open_transaction_holds_back_read_committed_only(shared_broker):
    topic = unique_topic("open")
    create_topics(shared_broker, topic)
    p = producer(shared_broker, f"tx-{uuid.uuid4().hex[:8]}")
    p.begin_transaction()
    p.produce(topic, value=b"pending", partition=0)
    p.flush(30)
    plain = Producer({"bootstrap.servers": shared_broker.bootstrap, "logger": LOG})
    plain.produce(topic, value=b"plain", partition=0)
    plain.flush(30)
    # The open transaction's first offset is the LSO: nothing after it is
    # read_committed-visible yet, the plain record included.
    assert consume_all(shared_broker, [topic], "read_committed", idle_s=2) == []
    assert consume_all(shared_broker, [topic], "read_uncommitted", expected=2) == \
        ["pending", "plain"]
    # ListOffsets "latest": the last stable offset for read_committed.
    assert latest_offset(shared_broker, topic, committed=True) == 0
    assert latest_offset(shared_broker, topic, committed=False) == 2
    p.commit_transaction(30)
    assert consume_all(shared_broker, [topic], "read_committed", expected=2) == \
        ["pending", "plain"]
    # Both now at the end: past the two records and the COMMIT marker.
    assert latest_offset(shared_broker, topic, committed=True) == 3
    assert latest_offset(shared_broker, topic, committed=False) == 3


def latest_offset(broker, topic, committed):
    from confluent_kafka import IsolationLevel
    from confluent_kafka.admin import OffsetSpec

    isolation = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    tp = TopicPartition(topic, 0)
    admin = confluent_admin(broker)  # kept alive until the answer comes
    futures = admin.list_offsets({tp: OffsetSpec.latest()}, isolation_level=isolation)
    return futures[tp].result(timeout=30).offset


def test_a_timeout_above_the_maximum_is_refused(shared_broker):
    p = Producer({"bootstrap.servers": shared_broker.bootstrap, "logger": LOG,
                  "transactional.id": f"tx-{uuid.uuid4().hex[:8]}",
                  "transaction.timeout.ms": 900001})
    with pytest.raises(KafkaException) as raised:
        p.init_transactions(30)
    assert "INVALID_TRANSACTION_TIMEOUT" in raised.value.args[0].name() or \
        "timeout" in raised.value.args[0].str().lower(), raised.value.args[0]


def test_a_second_producer_fences_the_first(shared_broker):
    topic = unique_topic("fence")
    create_topics(shared_broker, topic)
    tid = f"tx-{uuid.uuid4().hex[:8]}"
    first = producer(shared_broker, tid)
    first.begin_transaction()
    first.produce(topic, value=b"from-first", partition=0)
    first.flush(30)
    # The second instance aborts what the first left open, then takes over.
    second = producer(shared_broker, tid)
    second.begin_transaction()
    second.produce(topic, value=b"from-second", partition=1)
    second.commit_transaction(30)
    with pytest.raises(KafkaException) as raised:
        first.produce(topic, value=b"late", partition=0)
        first.commit_transaction(30)
    error = raised.value.args[0]
    assert error.fatal() or "fenced" in error.str().lower(), error
    assert consume_all(shared_broker, [topic], "read_committed", expected=1) == ["from-second"]


KILLABLE_PRODUCER = textwrap.dedent("""
    import sys, time
    from confluent_kafka import Producer
    bootstrap, topic, tid = sys.argv[1:4]
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid,
                  "transaction.timeout.ms": 3000})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, value=b"abandoned", partition=0)
    p.flush(30)
    print("ready", flush=True)
    time.sleep(600)
""")


def test_abandoned_transaction_is_aborted_after_its_timeout(shared_broker, tmp_path):
    topic = unique_topic("abandon")
    create_topics(shared_broker, topic)
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE_PRODUCER)
    proc = subprocess.Popen(
        [sys.executable, str(script), shared_broker.bootstrap, topic, f"tx-{uuid.uuid4().hex[:8]}"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    other = producer(shared_broker, f"tx-{uuid.uuid4().hex[:8]}")
    other.begin_transaction()
    other.produce(topic, value=b"after", partition=0)
    other.commit_transaction(30)
    # Held back by the abandoned transaction until the coordinator aborts
    # it (timeout 3 s, checked every 0.5 s); then read past it.
    seen = consume_all(shared_broker, [topic], "read_committed", expected=1, idle_s=1,
                       timeout_s=30)
    assert seen == ["after"]


def test_broker_killed_mid_transaction_recovers(make_broker):
    broker = make_broker(extra_args=TXN_ARGS)
    topic = unique_topic("crash")
    create_topics(broker, topic)
    tid = f"tx-{uuid.uuid4().hex[:8]}"
    p = producer(broker, tid, **{"transaction.timeout.ms": 5000})
    p.begin_transaction()
    p.produce(topic, value=b"in-flight", partition=0)
    p.flush(30)
    broker.kill()
    broker.start()
    # The coordinator reloads the id; the transaction the dead session left
    # open is aborted after its timeout (or by the next instance, which
    # fences it): either way read_committed progresses past it.
    successor = producer(broker, tid)
    successor.begin_transaction()
    successor.produce(topic, value=b"after-restart", partition=0)
    successor.commit_transaction(30)
    seen = consume_all(broker, [topic], "read_committed", expected=1, idle_s=1)
    assert seen == ["after-restart"]
    everything = consume_all(broker, [topic], "read_uncommitted", expected=2, idle_s=1)
    assert sorted(everything) == ["after-restart", "in-flight"]


def test_cli_lists_and_describes_transactions(shared_broker):
    from test_cli import sluice, sluice_json, table

    topic = unique_topic("cli")
    create_topics(shared_broker, topic)
    tid = f"tx-{uuid.uuid4().hex[:8]}"
    p = producer(shared_broker, tid)
    p.begin_transaction()
    p.produce(topic, value=b"x", partition=1)
    p.flush(30)
    listed = {t["transactional_id"]: t for t in sluice_json(shared_broker, "transactions", "list")}
    assert listed[tid]["state"] == "Ongoing"
    [described] = sluice_json(shared_broker, "transactions", "describe", "--transactional-id", tid)
    assert described["state"] == "Ongoing"
    assert described["partitions"] == f"{topic}(1)"
    assert described["timeout_ms"] == 30000
    assert described["producer_id"] == listed[tid]["producer_id"]
    p.commit_transaction(30)

    def completed():
        rows = table(sluice(shared_broker, "transactions", "describe", "--transactional-id",
                            tid).stdout)
        return rows[0]["STATE"] == "CompleteCommit" and rows[0]["PARTITIONS"] == "-"
    # EndTxn answers once PrepareCommit is durable; the markers follow.
    wait_until(completed, timeout=30, what="the transaction to complete")
    missing = sluice(shared_broker, "transactions", "describe", "--transactional-id", "nope",
                     check=False)
    assert missing.returncode != 0


EOS_WORKER = textwrap.dedent("""
    import sys, time
    from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
    bootstrap, source, sink, group, tid, partitions = sys.argv[1:7]
    partitions = int(partitions)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid,
                         "transaction.timeout.ms": 20000, "linger.ms": 5})
    # Fences the killed instance and aborts what it left open first, so the
    # committed offsets read next are stable.
    producer.init_transactions(60)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "auto.offset.reset": "earliest"})
    wanted = [TopicPartition(source, p) for p in range(partitions)]
    committed = consumer.committed(wanted, timeout=60)
    consumer.assign([TopicPartition(source, tp.partition,
                                    tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                     for tp in committed])
    print("running", flush=True)
    idle = 0
    while idle < 10:
        messages = [m for m in consumer.consume(num_messages=5, timeout=0.5) if not m.error()]
        if not messages:
            idle += 1
            continue
        idle = 0
        producer.begin_transaction()
        for m in messages:
            producer.produce(sink, value=b"out-" + m.value(), partition=m.partition())
            time.sleep(0.01)  # the "transform": keeps kills landing mid-stream
        positions = consumer.position(consumer.assignment())
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
    print("idle", flush=True)
""")


def test_consume_transform_produce_killed_and_restarted_is_exactly_once(shared_broker, tmp_path):
    import random

    source, sink = unique_topic("eos-in"), unique_topic("eos-out")
    create_topics(shared_broker, source, sink)
    count = 600
    plain = Producer({"bootstrap.servers": shared_broker.bootstrap, "logger": LOG,
                      "linger.ms": 20})
    for i in range(count):
        plain.produce(source, value=f"{i}".encode(), partition=i % PARTITIONS)
        if i % 100 == 99:
            # Spread over time so that the kills land mid-stream.
            plain.flush(30)
    plain.flush(30)
    script = tmp_path / "eos_worker.py"
    script.write_text(EOS_WORKER)
    group, tid = f"eos-{uuid.uuid4().hex[:8]}", f"eos-tx-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, str(script), shared_broker.bootstrap, source, sink, group, tid,
               str(PARTITIONS)]
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    for _ in range(5):
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "running", f"seed {seed}"
            time.sleep(rng.uniform(0.2, 1.5))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    # How far the killed instances got (for the failure message).
    before = len(consume_all(shared_broker, [sink], "read_committed", idle_s=1))
    final = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert final.returncode == 0, f"seed {seed}: {final.stderr[-2000:]}"
    seen = consume_all(shared_broker, [sink], "read_committed", expected=count, idle_s=2,
                       timeout_s=60)
    expected = [f"out-{i}" for i in range(count)]
    duplicates = len(seen) - len(set(seen))
    context = f"seed {seed}, {before} committed before the last run"
    assert duplicates == 0, f"{context}: {duplicates} duplicates"
    assert sorted(seen) == sorted(expected), context


def test_transaction_across_the_leaders_of_a_cluster(make_cluster):
    """Three brokers: a topic whose six partitions are led by every broker,
    and a consumer group's offsets partition and the transaction's
    coordinator wherever they fall. The coordinator writes the markers of
    the partitions it does not lead with WriteTxnMarkers."""
    cluster = make_cluster(size=3, extra_args=[
        "--set", "transaction.state.log.num.partitions=3",
        "--set", "offsets.topic.num.partitions=3",
        "--set", "group.initial.rebalance.delay.ms=0",
    ])

    class Bootstrap:  # what the helpers above need of a broker
        bootstrap = cluster.bootstrap

    topic, source = unique_topic("ctx"), unique_topic("csrc")
    admin = confluent_admin(Bootstrap)
    for future in admin.create_topics([NewTopic(topic, 6, 1), NewTopic(source, 3, 1)]).values():
        future.result(timeout=30)
    wait_until(lambda: len({p["leader"] for p in
                            cluster.metadata(topics=[topic])["topics"][topic]["partitions"]
                            .values()}) == 3, timeout=30, what="leaders on every broker")
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer, metadata = group_metadata(Bootstrap, group)
    p = producer(Bootstrap, f"tx-{uuid.uuid4().hex[:8]}")
    try:
        p.begin_transaction()
        for partition in range(6):
            p.produce(topic, value=f"commit-{partition}".encode(), partition=partition)
        p.send_offsets_to_transaction([TopicPartition(source, 1, 11)], metadata)
        p.commit_transaction(30)
        p.begin_transaction()
        for partition in range(6):
            p.produce(topic, value=f"abort-{partition}".encode(), partition=partition)
        p.abort_transaction(30)
    finally:
        consumer.close()
    wait_until(lambda: committed_offsets(Bootstrap, group, source) == {1: 11}, timeout=30,
               what="the transaction's offsets to be committed")
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"r-{uuid.uuid4().hex}",
                  "isolation.level": "read_committed", "logger": LOG,
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, partition, 0) for partition in range(6)])
    values, deadline = [], time.monotonic() + 30
    while len(values) < 6 and time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is not None and not msg.error():
            values.append(msg.value().decode())
    # Anything past the committed six would be an aborted record.
    extra = c.poll(2)
    c.close()
    assert sorted(values) == [f"commit-{partition}" for partition in range(6)]
    assert extra is None or extra.error(), extra.value()


def test_offsets_of_a_transaction_survive_a_broker_kill_before_its_commit(make_broker):
    broker = make_broker(extra_args=TXN_ARGS)
    topic, source = unique_topic("ko"), unique_topic("ksrc")
    create_topics(broker, topic, source)
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer, metadata = group_metadata(broker, group)
    p = producer(broker, f"tx-{uuid.uuid4().hex[:8]}", **{"transaction.timeout.ms": 60000})
    try:
        p.begin_transaction()
        p.produce(topic, value=b"kept", partition=0)
        p.send_offsets_to_transaction([TopicPartition(source, 2, 7)], metadata)
        p.flush(30)
        broker.kill()
        broker.start()
        # The restarted broker reloads the open transaction, its records
        # and its offsets (transactional records in __consumer_offsets);
        # the same producer commits it.
        p.commit_transaction(60)
    finally:
        consumer.close()
    wait_until(lambda: committed_offsets(broker, group, source) == {2: 7}, timeout=30,
               what="the offsets of the transaction to be committed")
    assert consume_all(broker, [topic], "read_committed", expected=1, idle_s=1) == ["kept"]


def test_kafkajs_commits_and_aborts(shared_broker):
    import json
    import os
    import shutil

    js_dir = os.path.join(os.path.dirname(__file__), "..", "js")
    node = shutil.which("node")
    if node is None or not os.path.isdir(os.path.join(js_dir, "node_modules", "kafkajs")):
        pytest.fail("node and tests/js/node_modules/kafkajs are needed (tests/run.sh installs "
                    "them)", pytrace=False)
    topic, source = unique_topic("js"), unique_topic("jssrc")
    create_topics(shared_broker, topic, source)
    group = f"g-{uuid.uuid4().hex[:8]}"
    proc = subprocess.run(
        [node, os.path.join(js_dir, "transactions.js"), shared_broker.bootstrap, topic, source,
         group, f"tx-{uuid.uuid4().hex[:8]}"],
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(result["committed"]) == ["c0", "c1", "c2"]
    wait_until(lambda: committed_offsets(shared_broker, group, source) == {0: 4}, timeout=30,
               what="the committed transaction's offsets")
    everything = consume_all(shared_broker, [topic], "read_uncommitted", expected=6, idle_s=1)
    assert sorted(everything) == ["a0", "a1", "a2", "c0", "c1", "c2"]


def test_compaction_drops_aborted_records_and_keeps_committed_ones(make_broker):
    """The cleaner treats transactions as Kafka's does: an aborted value
    never replaces a committed one, and aborted records go."""
    broker = make_broker(extra_args=[*TXN_ARGS, "--set", "log.cleaner.backoff.ms=500"])
    topic = unique_topic("compacted")
    admin = confluent_admin(broker)
    configs = {"cleanup.policy": "compact", "segment.bytes": "1024",
               "min.cleanable.dirty.ratio": "0.01"}
    admin.create_topics([NewTopic(topic, 1, 1, config=configs)])[topic].result(30)
    p = producer(broker, f"tx-{uuid.uuid4().hex[:8]}")
    keys = [f"k{i}" for i in range(10)]
    for rounds, commit in (("committed", True), ("aborted", False)):
        p.begin_transaction()
        for key in keys:
            p.produce(topic, key=key.encode(), value=f"{key}-{rounds}".encode(), partition=0)
        p.flush(30)
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
    # Later plain records roll the segments holding both transactions.
    plain = Producer({"bootstrap.servers": broker.bootstrap, "logger": LOG})
    for i in range(60):
        plain.produce(topic, key=f"filler{i % 3}".encode(), value=b"x" * 100, partition=0)
        plain.flush(30)

    def compacted():
        values = consume_all(broker, [topic], "read_uncommitted", idle_s=1)
        return not any(v.endswith("-aborted") for v in values) and values
    values = wait_until(compacted, timeout=60, interval=1, what="aborted records compacted away")
    committed = sorted(v for v in values if v.endswith("-committed"))
    assert committed == sorted(f"{key}-committed" for key in keys)


def transaction_coordinator(broker, transactional_id):
    """FindCoordinator v1 with key type 1 sent to `broker`: (error, node id)."""
    import socket
    import struct

    from conftest import recv_exact

    client_id = b"sluice-txn-test"
    key = transactional_id.encode()
    body = (struct.pack(">hhih", 10, 1, 1, len(client_id)) + client_id
            + struct.pack(">h", len(key)) + key + struct.pack(">b", 1))
    with socket.create_connection((broker.host, broker.port), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", recv_exact(sock, 4))[0]
        response = recv_exact(sock, size)
    # correlation id, throttle, error, error message (nullable), node id
    _cid, _throttle, error, message_len = struct.unpack(">iihh", response[:12])
    offset = 12 + max(message_len, 0)
    (node_id,) = struct.unpack(">i", response[offset:offset + 4])
    return error, node_id


def test_transaction_survives_its_coordinators_death(make_cluster):
    """The broker coordinating an open transaction is killed: the new
    leader of its `__transaction_state` partition loads it (replicated
    there), and the producer commits it there."""
    cluster = make_cluster(size=3, extra_args=[
        "--set", "transaction.state.log.num.partitions=3",
        "--set", "offsets.topic.num.partitions=3",
    ])

    class Bootstrap:
        bootstrap = cluster.bootstrap

    topic = unique_topic("failover")
    admin = confluent_admin(Bootstrap)
    admin.create_topics([NewTopic(topic, PARTITIONS, 3)])[topic].result(30)
    tid = f"tx-{uuid.uuid4().hex[:8]}"
    p = producer(Bootstrap, tid, **{"transaction.timeout.ms": 120000})
    p.begin_transaction()
    for partition in range(PARTITIONS):
        p.produce(topic, value=f"v{partition}".encode(), partition=partition)
    p.flush(30)
    error, coordinator = transaction_coordinator(cluster[1], tid)
    assert error == 0 and coordinator in cluster.nodes
    cluster[coordinator].kill()
    survivors = [n for n in cluster.nodes.values() if n.is_running()]
    p.commit_transaction(120)

    class Survivors:
        bootstrap = ",".join(n.bootstrap for n in survivors)

    seen = consume_all(Survivors, [topic], "read_committed", expected=PARTITIONS, idle_s=1,
                       timeout_s=90)
    assert sorted(seen) == [f"v{partition}" for partition in range(PARTITIONS)]
