"""Produce, Fetch and ListOffsets end to end (issue 4) with kafka-python,
aiokafka and kafkajs (tests/js/produce_consume.js) against the real broker.

Each client's producer writes keyed records that are read back byte-exact and
in order per partition, by the same client's consumer (partitions assigned
where the client allows it) and by confluent-kafka as a reference. Consumers
that need consumer groups (subscribe; kafkajs always) skip, saying why, when
the broker's ApiVersions does not advertise JoinGroup. Every wait polls a
condition with a bound.
"""

import asyncio
import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer
from confluent_kafka import TopicPartition as CTopicPartition
from confluent_kafka.admin import NewTopic

from conftest import _finish, _start_broker, confluent_admin, unique_topic

PARTITIONS = 3
TIMEOUT_S = 30
API_JOIN_GROUP = 11
BROKER_ARGS = ["--set", "group.initial.rebalance.delay.ms=0"]
JS_DIR = os.path.join(os.path.dirname(__file__), "..", "js")
JS_SCRIPT = os.path.join(JS_DIR, "produce_consume.js")


# ---------------------------------------------------------------------------
# Helpers


def advertised_apis(bootstrap):
    """API keys from ApiVersions v0 over a raw socket."""
    host, port = bootstrap.split(":")
    client_id = b"sluice-clients-test"
    header = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(header)) + header)

        def read_exact(n):
            data = b""
            while len(data) < n:
                chunk = s.recv(n - len(data))
                if not chunk:
                    raise ConnectionError("broker closed the connection")
                data += chunk
            return data

        (size,) = struct.unpack(">i", read_exact(4))
        body = read_exact(size)
    _correlation, error, count = struct.unpack(">ihi", body[:10])
    assert error == 0, f"ApiVersions error {error}"
    return {struct.unpack(">h", body[10 + 6 * i: 12 + 6 * i])[0] for i in range(count)}


def require_groups(broker, who):
    if API_JOIN_GROUP not in advertised_apis(broker.bootstrap):
        pytest.skip(f"{who} needs consumer groups; this broker's ApiVersions does not "
                    "advertise JoinGroup (key 11) yet")


def create_topic(broker, partitions=PARTITIONS, prefix="cl"):
    name = unique_topic(prefix)
    admin = confluent_admin(broker)  # kept alive until the futures resolve
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)], operation_timeout=10)
    for f in futures.values():
        f.result(timeout=TIMEOUT_S)
    return name


def make_records(count, tag):
    """(key, value, headers) with headers on every 10th record, a null value every 101st."""
    out = []
    for i in range(count):
        value = None if i % 101 == 50 else f"{tag}-v{i}-{'y' * (i % 41)}".encode()
        headers = [("h", str(i).encode())] if i % 10 == 0 else []
        out.append((f"k{i}".encode(), value, headers))
    return out


def reference_read(broker, topic, total, partitions=PARTITIONS):
    """Everything in the topic via confluent-kafka with assigned partitions:
    {partition: [(offset, key, value, headers)]}."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_topic("ref"),
                  "enable.auto.commit": False, "logger": logging.getLogger("librdkafka")})
    got = {}
    try:
        c.assign([CTopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + 60
        while sum(len(v) for v in got.values()) < total:
            assert time.monotonic() < deadline, \
                f"reference consumer: {sum(len(v) for v in got.values())} of {total} records"
            for m in c.consume(5000, timeout=0.5):
                assert m.error() is None, m.error()
                got.setdefault(m.partition(), []).append(
                    (m.offset(), m.key(), m.value(), list(m.headers() or [])))
    finally:
        c.close()
    return got


def assert_in_order_per_partition(by_partition, records, what):
    """Each partition holds offsets 0..n-1 whose records appear in produce
    order, and all records are present exactly once, byte-exact."""
    index = {r[0]: i for i, r in enumerate(records)}
    seen = []
    for p, rows in by_partition.items():
        assert [r[0] for r in rows] == list(range(len(rows))), f"{what}: partition {p} offsets not 0..n-1"
        order = [index[r[1]] for r in rows]
        assert order == sorted(order), f"{what}: partition {p} out of produce order"
        for offset, key, value, headers in rows:
            want = records[index[key]]
            assert (key, value, headers) == want, \
                f"{what}: partition {p} offset {offset}: {(key, value, headers)!r} != {want!r}"
        seen += order
    assert sorted(seen) == list(range(len(records))), f"{what}: records missing or repeated"


def by_partition_from_kafka_python(records):
    out = {}
    for r in records:
        out.setdefault(r.partition, []).append(
            (r.offset, r.key, r.value, [(k, v) for k, v in (r.headers or [])]))
    for rows in out.values():
        rows.sort(key=lambda x: x[0])
    return out


@pytest.fixture(scope="module")
def cl_broker(tmp_path_factory):
    b = _start_broker(tmp_path_factory, extra_args=BROKER_ARGS)
    yield b
    _finish(b)


# ---------------------------------------------------------------------------
# kafka-python


def kp_consume(consumer, total, timeout=60):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < total:
        assert time.monotonic() < deadline, f"kafka-python consumer: {len(got)} of {total} records"
        for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
            got.extend(batch)
    return got


def test_kafka_python_default_producer_and_assigned_consumer(cl_broker):
    """kafka-python's default producer (acks=all, idempotent, no compression)
    writes 3,000 keyed records; its consumer with assigned partitions and
    confluent-kafka read them back in order; ListOffsets answers
    beginning/end offsets and offsets_for_times; seek to a middle offset."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = create_topic(cl_broker)
    records = make_records(3000, "kp")
    producer = KafkaProducer(bootstrap_servers=cl_broker.bootstrap)
    try:
        futures = [producer.send(topic, key=k, value=v, headers=h, timestamp_ms=1_650_000_000_000 + i)
                   for i, (k, v, h) in enumerate(records)]
        producer.flush(timeout=TIMEOUT_S)
        metas = [f.get(timeout=TIMEOUT_S) for f in futures]
    finally:
        producer.close(timeout=10)
    per_partition = {}
    for i, m in enumerate(metas):
        per_partition.setdefault(m.partition, []).append(m.offset)
    for p, offsets in per_partition.items():
        assert offsets == list(range(len(offsets))), f"partition {p}: acknowledged offsets not 0..n-1"
    assert len(per_partition) == PARTITIONS, "keys did not spread over the partitions"

    consumer = KafkaConsumer(bootstrap_servers=cl_broker.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=1000)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        got = by_partition_from_kafka_python(kp_consume(consumer, len(records)))
        assert_in_order_per_partition(got, records, "kafka-python consumer")
        assert consumer.beginning_offsets(tps) == {tp: 0 for tp in tps}
        assert consumer.end_offsets(tps) == {TopicPartition(topic, p): len(o) for p, o in per_partition.items()}

        # offsets_for_times: record i has timestamp base + i
        p0 = per_partition[0]
        idx0 = [i for i, m in enumerate(metas) if m.partition == 0]
        target = idx0[len(idx0) // 2]
        found = consumer.offsets_for_times({TopicPartition(topic, 0): 1_650_000_000_000 + target})
        ot = found[TopicPartition(topic, 0)]
        assert ot.offset == len(p0) // 2 and ot.timestamp == 1_650_000_000_000 + target
        assert consumer.offsets_for_times({TopicPartition(topic, 0): 1_650_000_000_000 + 10**6}) == \
            {TopicPartition(topic, 0): None}

        # seek to a middle offset of partition 0
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek(TopicPartition(topic, 0), 123)
        tail = kp_consume(consumer, len(p0) - 123)
        assert [r.offset for r in tail] == list(range(123, len(p0)))
        assert tail[0].key == records[idx0[123]][0]
    finally:
        consumer.close()

    ref = reference_read(cl_broker, topic, len(records))
    assert_in_order_per_partition(ref, records, "confluent-kafka reading kafka-python's records")


def test_kafka_python_gzip_producer_and_subscribing_consumer(cl_broker):
    """kafka-python with gzip; a kafka-python consumer that subscribes (group) reads it all."""
    require_groups(cl_broker, "kafka-python's subscribing consumer")
    from kafka import KafkaConsumer, KafkaProducer

    topic = create_topic(cl_broker)
    records = make_records(3000, "kpg")
    producer = KafkaProducer(bootstrap_servers=cl_broker.bootstrap, compression_type="gzip", linger_ms=20)
    try:
        for k, v, h in records:
            producer.send(topic, key=k, value=v, headers=h)
        producer.flush(timeout=TIMEOUT_S)
    finally:
        producer.close(timeout=10)
    consumer = KafkaConsumer(topic, bootstrap_servers=cl_broker.bootstrap, group_id=unique_topic("kpg"),
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        got = by_partition_from_kafka_python(kp_consume(consumer, len(records)))
    finally:
        consumer.close()
    assert_in_order_per_partition(got, records, "kafka-python subscribing consumer")


# ---------------------------------------------------------------------------
# aiokafka


async def aio_consume(consumer, total, timeout=60):
    got = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(got) < total:
        assert loop.time() < deadline, f"aiokafka consumer: {len(got)} of {total} records"
        for batch in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
            got.extend(batch)
    return got


def test_aiokafka_producer_and_assigned_consumer(cl_broker):
    """aiokafka's idempotent gzip producer writes 5,000 keyed records; its
    consumer with assigned partitions reads them back in order (also after
    seek_to_end + new records, and from a middle offset)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition

    topic = create_topic(cl_broker)
    records = make_records(5000, "aio")

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=cl_broker.bootstrap, enable_idempotence=True,
                                    acks="all", compression_type="gzip", linger_ms=10)
        await producer.start()
        try:
            futures = [await producer.send(topic, key=k, value=v, headers=h) for k, v, h in records]
            metas = await asyncio.gather(*futures)
        finally:
            await producer.stop()
        per_partition = {}
        for m in metas:
            per_partition.setdefault(m.partition, []).append(m.offset)
        for p, offsets in per_partition.items():
            assert offsets == list(range(len(offsets))), f"partition {p}: acknowledged offsets not 0..n-1"

        consumer = AIOKafkaConsumer(bootstrap_servers=cl_broker.bootstrap, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            got = by_partition_from_kafka_python(await aio_consume(consumer, len(records)))
            assert_in_order_per_partition(got, records, "aiokafka consumer")
            ends = await consumer.end_offsets(tps)
            assert ends == {TopicPartition(topic, p): len(o) for p, o in per_partition.items()}

            consumer.seek(tps[1], 7)
            await consumer.seek_to_end(tps[0], tps[2])
            tail = await aio_consume(consumer, len(per_partition[1]) - 7)
            assert [(r.partition, r.offset) for r in tail] == \
                [(1, o) for o in range(7, len(per_partition[1]))]
            # after seek_to_end only new records arrive
            for p in (0, 2):
                assert await consumer.position(tps[p]) == len(per_partition[p])
            producer2 = AIOKafkaProducer(bootstrap_servers=cl_broker.bootstrap, acks=1)
            await producer2.start()
            try:
                await producer2.send_and_wait(topic, key=b"late", value=b"late-value", partition=0)
            finally:
                await producer2.stop()
            (late,) = await aio_consume(consumer, 1)
            assert (late.partition, late.offset, late.key, late.value) == \
                (0, len(per_partition[0]), b"late", b"late-value")
        finally:
            await consumer.stop()
        return metas

    asyncio.run(run())
    ref = reference_read(cl_broker, topic, len(records) + 1)
    ref[0] = ref[0][:-1]  # the late record
    assert_in_order_per_partition(ref, records, "confluent-kafka reading aiokafka's records")


def test_aiokafka_subscribing_consumer(cl_broker):
    """An aiokafka consumer that subscribes (group) reads everything in order."""
    require_groups(cl_broker, "aiokafka's subscribing consumer")
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = create_topic(cl_broker)
    records = make_records(3000, "aios")

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=cl_broker.bootstrap, acks="all", linger_ms=10)
        await producer.start()
        try:
            futures = [await producer.send(topic, key=k, value=v, headers=h) for k, v, h in records]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=cl_broker.bootstrap,
                                    group_id=unique_topic("aios"), enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            return await aio_consume(consumer, len(records))
        finally:
            await consumer.stop()

    got = by_partition_from_kafka_python(asyncio.run(run()))
    assert_in_order_per_partition(got, records, "aiokafka subscribing consumer")


# ---------------------------------------------------------------------------
# kafkajs


def run_js(*args, timeout=180):
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (tests/run.sh expects node 20)", pytrace=False)
    if not os.path.isdir(os.path.join(JS_DIR, "node_modules", "kafkajs")):
        pytest.fail("kafkajs missing: run `npm ci` in tests/js (tests/run.sh does)", pytrace=False)
    proc = subprocess.run([node, JS_SCRIPT, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, \
        f"produce_consume.js {args[0]} exited {proc.returncode}\nstderr:\n{proc.stderr[-4000:]}"
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        pytest.fail(f"produce_consume.js printed no JSON ({exc}); stdout:\n{proc.stdout[-2000:]}\n"
                    f"stderr:\n{proc.stderr[-2000:]}")


def js_records(count):
    """What produce_consume.js writes, as (key, value, headers) bytes."""
    return [(f"k{i}".encode(), f"v{i}-{'x' * (i % 37)}".encode(),
             [("h", str(i).encode())] if i % 10 == 0 else []) for i in range(count)]


@pytest.mark.parametrize("codec", ["none", "gzip"])
def test_kafkajs_producer(cl_broker, codec):
    """kafkajs's idempotent producer (acks -1) writes 3,000 keyed records; the
    answers carry offsets; confluent-kafka reads them back in order."""
    topic = create_topic(cl_broker)
    n = 3000
    out = run_js("produce", cl_broker.bootstrap, topic, n, codec)
    for m in out["metadata"]:
        assert m["topicName"] == topic and m["errorCode"] == 0, m
    assert {m["partition"] for m in out["metadata"]} == set(range(PARTITIONS))
    ref = reference_read(cl_broker, topic, n)
    assert_in_order_per_partition(ref, js_records(n), f"confluent-kafka reading kafkajs's {codec} records")
    # each send's baseOffset is where its records start in that partition
    for m in out["metadata"]:
        rows = ref[m["partition"]]
        assert 0 <= int(m["baseOffset"]) < len(rows)


def test_kafkajs_consumer(cl_broker):
    """A kafkajs consumer (group, subscribe from beginning) reads what
    confluent-kafka wrote with gzip, byte-exact and in order per partition."""
    require_groups(cl_broker, "kafkajs's consumer (it only consumes in a group)")
    from confluent_kafka import Producer

    topic = create_topic(cl_broker)
    records = js_records(3000)
    p = Producer({"bootstrap.servers": cl_broker.bootstrap, "acks": "all", "enable.idempotence": True,
                  "compression.type": "gzip", "linger.ms": 10, "logger": logging.getLogger("librdkafka")})
    for k, v, h in records:
        p.produce(topic, key=k, value=v, headers=h or None)
    assert p.flush(TIMEOUT_S) == 0
    out = run_js("consume", cl_broker.bootstrap, topic, len(records), unique_topic("js"))
    got = {}
    for r in out["records"]:
        headers = [(k, v.encode()) for k, v in r["headers"].items()]
        got.setdefault(r["partition"], []).append(
            (r["offset"], r["key"].encode(), r["value"].encode(), headers))
    assert_in_order_per_partition(got, records, "kafkajs consumer")
