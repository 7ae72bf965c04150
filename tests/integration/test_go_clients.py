"""Go clients from Debian's packages against the broker: Sarama 1.22
(tests/go/sarama) and kafka-go 0.2 (tests/go/kafkago), small CLIs built by
tests/go/build.sh into target/go/ and asserted on their JSON output.

Both libraries predate Kafka 4.0 and pin some request versions without
consulting ApiVersions. Sluice has Kafka 4.0's minimum versions (KIP-896
removed the older ones), so what fails here fails against Kafka 4 too; those
tests are strict xfails naming the request."""

import json
import os
import subprocess

import pytest

from conftest import confluent_admin, unique_topic

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GO_DIR = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "go")
COUNT = 300
PARTITIONS = 3


@pytest.fixture(scope="module")
def go_bins():
    bins = {name: os.path.join(GO_DIR, name) for name in ("sarama", "kafkago")}
    if not all(os.access(p, os.X_OK) for p in bins.values()):
        proc = subprocess.run(["bash", os.path.join(ROOT, "tests", "go", "build.sh")],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail("tests/go/build.sh failed (tests/run.sh installs golang-go and the "
                        f"Debian Go sources):\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    return bins


def run(binary, *args, timeout=150, env=None):
    proc = subprocess.run([binary, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, **(env or {})))
    assert proc.returncode == 0, (f"{os.path.basename(binary)} {args[0]} exited {proc.returncode}\n"
                                  f"stderr:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class UnsupportedVersion(Exception):
    """The program failed and the broker logged that it closed a connection
    for a request version below its minimum (the expected-failure cause)."""


def run_expecting_unsupported(broker, request, binary, *args, **kwargs):
    """run(), raising UnsupportedVersion when it fails and the broker's log
    shows `request` (e.g. "Fetch version 2") refused; other failures stay
    assertion errors, so a strict xfail(raises=UnsupportedVersion) does not
    hide them."""
    try:
        return run(binary, *args, **kwargs)
    except AssertionError as exc:
        if f"error={request} is not supported" in broker.log():
            raise UnsupportedVersion(f"{request} refused by the broker") from exc
        raise


def expected():
    return {f"k{i}": f"v{i}" for i in range(COUNT)}


def check_consumed(records):
    assert len(records) == COUNT
    assert {r["key"]: r["value"] for r in records} == expected()
    assert len({(r["partition"], r["offset"]) for r in records}) == COUNT
    assert {r["partition"] for r in records} <= set(range(PARTITIONS))


def end_offsets(broker, topic):
    """High watermarks per partition, from confluent-kafka."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_topic("wm")})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(PARTITIONS)}
    finally:
        c.close()


def confluent_committed(broker, topic, group):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def create_topic(broker, topic, partitions):
    from confluent_kafka.admin import NewTopic
    admin = confluent_admin(broker)  # kept alive until the result arrives
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=30)


def confluent_setup(broker, topic):
    """A 3-partition topic holding COUNT records, made by confluent-kafka."""
    from confluent_kafka import Producer
    create_topic(broker, topic, PARTITIONS)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(COUNT):
        p.produce(topic, key=f"k{i}", value=f"v{i}")
    assert p.flush(30) == 0


# --- Sarama 1.22 -----------------------------------------------------------

def test_sarama_admin_produce_consume_commit(go_bins, shared_broker):
    """ClusterAdmin CreateTopic/DescribeTopics/DeleteTopic, a SyncProducer with
    acks=all, and a ConsumerGroup from the oldest offset that commits."""
    b, sarama = shared_broker, go_bins["sarama"]
    topic, group = unique_topic("sarama"), unique_topic("sarama-g")
    adm = run(sarama, "admin", b.bootstrap, topic, PARTITIONS)
    assert adm == {"created": topic, "partitions": PARTITIONS, "listed": True,
                   "tmp_after_delete": False, "topic_after_delete": True}

    acks = run(sarama, "produce", b.bootstrap, topic, COUNT)
    assert [(a["key"], a["value"]) for a in acks] == list(expected().items())
    per_partition = {}
    for a in acks:
        per_partition.setdefault(a["partition"], []).append(a["offset"])
    assert set(per_partition) <= set(range(PARTITIONS))
    for offsets in per_partition.values():
        assert offsets == list(range(len(offsets)))  # dense, in send order

    records = run(sarama, "consume", b.bootstrap, topic, COUNT, group)
    check_consumed(records)
    assert {(r["partition"], r["offset"], r["key"]) for r in records} == \
        {(a["partition"], a["offset"], a["key"]) for a in acks}

    committed = {int(p): o for p, o in run(sarama, "committed", b.bootstrap, topic, group).items()}
    ends = end_offsets(b, topic)
    assert committed == ends and sum(committed.values()) == COUNT
    assert confluent_committed(b, topic, group) == ends


@pytest.mark.xfail(strict=True, raises=UnsupportedVersion, reason=(
    "Sarama 1.22 ClusterAdmin.ListTopics follows Metadata with DescribeConfigs v0 (hard-coded, "
    "admin.go), which Kafka 4.0 removed (KIP-896; Sluice serves DescribeConfigs v1-v4 and, like "
    "Kafka, closes the connection on an unsupported version): the client sees EOF"))
def test_sarama_cluster_admin_list_topics(go_bins, shared_broker):
    topic = unique_topic("sarama-ls")
    create_topic(shared_broker, topic, 1)
    assert topic in run_expecting_unsupported(shared_broker, "DescribeConfigs version 0",
                                              go_bins["sarama"], "list-admin", shared_broker.bootstrap)


# --- kafka-go 0.2 ----------------------------------------------------------

def test_kafkago_metadata_and_delete_topics(go_bins, shared_broker):
    """Conn.ReadPartitions (Metadata v1) and Conn.DeleteTopics (DeleteTopics v1)."""
    b, kgo = shared_broker, go_bins["kafkago"]
    topic = unique_topic("kgo-md")
    confluent_setup(b, topic)
    assert run(kgo, "list", b.bootstrap, topic) == {topic: PARTITIONS}
    assert run(kgo, "delete", b.bootstrap, topic) == {"deleted": topic}
    md = confluent_admin(b).list_topics(timeout=10)
    assert topic not in md.topics


@pytest.mark.xfail(strict=True, raises=UnsupportedVersion, reason=(
    "kafka-go 0.2 Conn.CreateTopics sends CreateTopics v0 (hard-coded, createtopics.go), which "
    "Kafka 4.0 removed (KIP-896; Sluice serves v2-v7 and closes the connection): EOF"))
def test_kafkago_admin(go_bins, shared_broker):
    topic = unique_topic("kgo-adm")
    out = run_expecting_unsupported(shared_broker, "CreateTopics version 0", go_bins["kafkago"],
                                    "admin", shared_broker.bootstrap, topic, PARTITIONS)
    assert out["partitions"] == PARTITIONS


@pytest.mark.xfail(strict=True, raises=UnsupportedVersion, reason=(
    "kafka-go 0.2 Writer sends Produce v2 with message format v1 (writeProduceRequestV2, "
    "write.go), which Kafka 4.0 removed (KIP-896; Sluice serves Produce v3-v12 and closes the "
    "connection): EOF"))
def test_kafkago_produce(go_bins, shared_broker):
    b = shared_broker
    topic = unique_topic("kgo-prod")
    create_topic(b, topic, PARTITIONS)
    acks = run_expecting_unsupported(b, "Produce version 2", go_bins["kafkago"],
                                     "produce", b.bootstrap, topic, COUNT)
    assert [(a["key"], a["value"]) for a in acks] == list(expected().items())
    assert sum(end_offsets(b, topic).values()) == COUNT


@pytest.mark.xfail(strict=True, raises=UnsupportedVersion, reason=(
    "kafka-go 0.2 Reader fetches with Fetch v2 (writeFetchRequestV2, write.go), which Kafka 4.0 "
    "removed (KIP-896; Sluice serves Fetch v4-v12 and closes the connection), so the group "
    "member joins but never reads a record"))
def test_kafkago_consume_group_commit(go_bins, shared_broker):
    b = shared_broker
    topic, group = unique_topic("kgo-cons"), unique_topic("kgo-g")
    confluent_setup(b, topic)
    records = run_expecting_unsupported(b, "Fetch version 2", go_bins["kafkago"], "consume",
                                        b.bootstrap, topic, COUNT, group,
                                        env={"GO_CLIENT_TIMEOUT_S": "15"})
    check_consumed(records)
    committed = confluent_committed(b, topic, group)
    # CommitMessages commits each message's offset + 1
    assert committed == end_offsets(b, topic) and sum(committed.values()) == COUNT
