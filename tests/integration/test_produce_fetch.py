"""Produce, Fetch and ListOffsets end to end (issue 4) with confluent-kafka
(librdkafka) and kcat against the real broker.

Every codec carries 100,000 keyed records through an idempotent acks=all
producer into a 6-partition topic; they are read back byte-exact and in order
per partition by a consumer that assigns partitions and by one that
subscribes (the latter skips, saying why, when the broker does not advertise
JoinGroup). Then: offsets_for_times, watermarks, seeks, a restart in the middle
of consuming, a fetch at an offset inside a batch (over the wire, to see the
batch), reads of old data by sendfile, auto-creation, LogAppendTime topics,
MESSAGE_TOO_LARGE for one partition only, acks=0 and acks=1, and kcat's
producer and consumer. Every wait polls a condition with a bound.
"""

import json
import logging
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import time
import urllib.request

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import NewTopic

from conftest import _finish, _start_broker, confluent_admin, free_port, record_batch, unique_topic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
RECORDS_PER_CODEC = 100_000
PARTITIONS = 6
TIMEOUT_S = 30

API_JOIN_GROUP = 11
# Groups start at once instead of after Kafka's 3 s initial rebalance delay.
BROKER_ARGS = ["--set", "group.initial.rebalance.delay.ms=0"]

LOG = logging.getLogger("librdkafka")


# ---------------------------------------------------------------------------
# Helpers


def advertised_apis(bootstrap):
    """{api_key: (min, max)} from ApiVersions v0 over a raw socket."""
    host, port = bootstrap.split(":")
    client_id = b"sluice-produce-fetch-test"
    header = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(header)) + header)
        (size,) = struct.unpack(">i", recv_exact(s, 4))
        body = recv_exact(s, size)
    _correlation, error, count = struct.unpack(">ihi", body[:10])
    assert error == 0, f"ApiVersions error {error}"
    apis = {}
    for i in range(count):
        key, lo, hi = struct.unpack(">hhh", body[10 + 6 * i: 16 + 6 * i])
        apis[key] = (lo, hi)
    return apis


def require_groups(broker):
    if API_JOIN_GROUP not in advertised_apis(broker.bootstrap):
        pytest.skip("a subscribing consumer needs consumer groups; this broker's ApiVersions "
                    "does not advertise JoinGroup (key 11) yet")


def recv_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return bytes(data)


def create_topic(broker, partitions=PARTITIONS, config=None, name=None):
    name = name or unique_topic("pf")
    admin = confluent_admin(broker)
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                            config=config or {})], operation_timeout=10)
    for f in futures.values():
        f.result(timeout=TIMEOUT_S)
    return name


def producer(broker, **config):
    conf = {"bootstrap.servers": broker.bootstrap, "logger": LOG, "socket.timeout.ms": 10000,
            "message.timeout.ms": 60000}
    conf.update(config)
    return Producer(conf)


def consumer(broker, **config):
    conf = {"bootstrap.servers": broker.bootstrap, "logger": LOG, "group.id": unique_topic("g"),
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest", "enable.partition.eof": False}
    conf.update(config)
    return Consumer(conf)


class Delivery:
    """Collects delivery reports: (partition, offset, index) or the error per index."""

    def __init__(self):
        self.ok = {}
        self.errors = {}

    def callback(self, index):
        def cb(err, msg):
            if err is not None:
                self.errors[index] = err
            else:
                self.ok[index] = (msg.partition(), msg.offset(), msg.timestamp())
        return cb


def produce_all(p, topic, records, delivery, **kwargs):
    """Produce (key, value, headers) records; wait for every delivery report."""
    for i, (key, value, headers) in enumerate(records):
        while True:
            try:
                p.produce(topic, key=key, value=value, headers=headers,
                          on_delivery=delivery.callback(i), **kwargs)
                break
            except BufferError:
                p.poll(0.1)  # local queue full: serve delivery reports
        if i % 1000 == 0:
            p.poll(0)
    remaining = p.flush(TIMEOUT_S * 2)
    assert remaining == 0, f"{remaining} records not delivered within {TIMEOUT_S * 2}s"


def make_records(count, seed):
    """Keyed records with varied, partly compressible values, some null or
    empty values and some headers: what is read back must equal these bytes."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        key = f"key-{seed}-{i}".encode()
        if i % 997 == 0:
            value = None
        elif i % 991 == 0:
            value = b""
        elif i % 2:
            value = rng.randbytes(rng.randrange(1, 120))
        else:
            value = (f"value {i} " * rng.randrange(1, 12)).encode()
        headers = [("h", f"{i}".encode()), ("empty", b"")] if i % 10 == 0 else None
        out.append((key, value, headers))
    return out


def expected_by_partition(records, delivery):
    """{partition: [(offset, key, value, headers)]} in offset order, asserting the
    delivered offsets per partition are 0..n-1 in produce order."""
    assert not delivery.errors, f"delivery errors: {list(delivery.errors.items())[:5]}"
    assert len(delivery.ok) == len(records)
    parts = {}
    for i, (key, value, headers) in enumerate(records):
        partition, offset, _ts = delivery.ok[i]
        parts.setdefault(partition, []).append((offset, key, value, headers))
    for partition, rows in parts.items():
        offsets = [r[0] for r in rows]
        assert offsets == list(range(len(rows))), \
            f"partition {partition}: delivered offsets are not 0..{len(rows) - 1} in produce order"
    return parts


def norm_headers(headers):
    return [(k, v) for k, v in headers] if headers else None


def consume_into(c, want, timeout=60.0, batch=10000):
    """Consume until `want` (a callable returning True when done given the dict)
    or time out; returns {partition: [(offset, key, value, headers, ts)]}."""
    got = {}
    deadline = time.monotonic() + timeout
    while not want(got):
        assert time.monotonic() < deadline, \
            f"timed out after {timeout}s; have {({p: len(v) for p, v in got.items()})}"
        for m in c.consume(num_messages=batch, timeout=0.5):
            assert m.error() is None, f"consumer error: {m.error()}"
            got.setdefault(m.partition(), []).append(
                (m.offset(), m.key(), m.value(), norm_headers(m.headers()), m.timestamp()))
    return got


def counts_reached(expected_counts):
    return lambda got: all(len(got.get(p, ())) >= n for p, n in expected_counts.items())


def assert_same(got, expected, what):
    for partition, rows in expected.items():
        have = got.get(partition, [])
        assert len(have) == len(rows), f"{what}: partition {partition}: {len(have)} records, want {len(rows)}"
        for (offset, key, value, headers, _ts), (e_off, e_key, e_value, e_headers) in zip(have, rows):
            assert (offset, key, value, headers) == (e_off, e_key, e_value, norm_headers(e_headers)), \
                f"{what}: partition {partition} offset {e_off}: got {(offset, key, value, headers)!r}, " \
                f"want {(e_off, e_key, e_value, e_headers)!r}"
    extra = set(got) - set(expected)
    assert not extra, f"{what}: records from unexpected partitions {extra}"


# ---------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def pf_broker(tmp_path_factory):
    """One broker for the module's tests that do not restart it."""
    b = _start_broker(tmp_path_factory, extra_args=BROKER_ARGS)
    yield b
    _finish(b)


@pytest.fixture(scope="module", params=CODECS)
def codec_topic(request, pf_broker):
    """100,000 keyed records produced with one codec, acks=all, idempotence on."""
    codec = request.param
    topic = create_topic(pf_broker, name=unique_topic(f"codec-{codec}"))
    records = make_records(RECORDS_PER_CODEC, seed=CODECS.index(codec))
    p = producer(pf_broker, **{
        "acks": "all", "enable.idempotence": True, "compression.type": codec,
        "linger.ms": 20, "batch.num.messages": 10000, "batch.size": 1000000,
        "queue.buffering.max.messages": 200000,
    })
    delivery = Delivery()
    produce_all(p, topic, records, delivery)
    expected = expected_by_partition(records, delivery)
    assert sorted(expected) == list(range(PARTITIONS)), \
        f"keys went to partitions {sorted(expected)} only"
    return codec, topic, expected


# ---------------------------------------------------------------------------
# Codecs: 100,000 records each, two kinds of consumer


def test_codec_read_back_by_assigning_consumer(pf_broker, codec_topic):
    """All records of each codec come back byte-exact and in order per partition
    to a consumer that assigns the 6 partitions at the beginning; watermarks
    match what was delivered."""
    codec, topic, expected = codec_topic
    c = consumer(pf_broker)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        got = consume_into(c, counts_reached({p: len(r) for p, r in expected.items()}))
        assert_same(got, expected, f"codec {codec}, assign")
        for partition, rows in expected.items():
            assert c.get_watermark_offsets(TopicPartition(topic, partition), timeout=TIMEOUT_S) == \
                (0, len(rows))
    finally:
        c.close()
    # compression.type=producer (the default): batches are stored with the producer's codec
    _, _, record_set = fetch_v4(pf_broker.bootstrap, topic, 0, 0)
    (attributes,) = struct.unpack_from(">h", record_set, 21)
    assert attributes & 7 == CODECS.index(codec), \
        f"first batch stored with codec id {attributes & 7}, produced with {codec}"


def test_codec_read_back_by_subscribing_consumer(pf_broker, codec_topic):
    """The same records reach a consumer that subscribes (consumer group)."""
    require_groups(pf_broker)
    codec, topic, expected = codec_topic
    c = consumer(pf_broker, **{"group.id": unique_topic("sub"), "session.timeout.ms": 10000})
    try:
        c.subscribe([topic])
        got = consume_into(c, counts_reached({p: len(r) for p, r in expected.items()}), timeout=90)
        assert_same(got, expected, f"codec {codec}, subscribe")
        assert sorted(p.partition for p in c.assignment()) == list(range(PARTITIONS))
    finally:
        c.close()


# ---------------------------------------------------------------------------
# ListOffsets: times, watermarks; seeks


def test_offsets_for_times_and_watermarks(pf_broker):
    """offsets_for_times gives the first offset at or after a time (-1 past the
    end); watermarks are (0, count) and (0, 0) for an empty partition."""
    topic = create_topic(pf_broker, partitions=2)
    base = 1_600_000_000_000
    p = producer(pf_broker, **{"acks": "all", "linger.ms": 5})
    delivery = Delivery()
    records = [(f"k{i}".encode(), f"v{i}".encode(), None) for i in range(50)]
    # timestamps base, base+1000, ... in several batches (flush every 10)
    for start in range(0, 50, 10):
        for i in range(start, start + 10):
            key, value, _ = records[i]
            p.produce(topic, key=key, value=value, partition=0, timestamp=base + 1000 * i,
                      on_delivery=delivery.callback(i))
        assert p.flush(TIMEOUT_S) == 0
    assert not delivery.errors and [delivery.ok[i][1] for i in range(50)] == list(range(50))

    c = consumer(pf_broker)
    try:
        def lookup(ts):
            (tp,) = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=TIMEOUT_S)
            assert tp.error is None, tp.error
            return tp.offset
        assert lookup(base - 5000) == 0
        assert lookup(base) == 0
        assert lookup(base + 1) == 1
        assert lookup(base + 17_000) == 17
        assert lookup(base + 17_500) == 18
        assert lookup(base + 25_000) == 25  # first record of a batch in the middle
        assert lookup(base + 49_000) == 49
        assert lookup(base + 49_001) == -1  # later than every record: no offset (OFFSET_END)
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT_S) == (0, 50)
        assert c.get_watermark_offsets(TopicPartition(topic, 1), timeout=TIMEOUT_S) == (0, 0)

        # the offsets found are where a consumer starts: record 25 is at its time
        c.assign([TopicPartition(topic, 0, lookup(base + 25_000))])
        got = consume_into(c, counts_reached({0: 5}))
        first = got[0][0]
        assert (first[0], first[1], first[2]) == (25, b"k25", b"v25")
        assert first[4] == (TIMESTAMP_CREATE_TIME, base + 25_000)
    finally:
        c.close()


def test_seek_to_beginning_end_and_middle(pf_broker):
    """Seek to a middle offset, the beginning and the end; after seeking to the
    end only records produced afterwards arrive."""
    topic = create_topic(pf_broker, partitions=1)
    p = producer(pf_broker, **{"acks": "all", "linger.ms": 5})
    for i in range(100):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=0)
    assert p.flush(TIMEOUT_S) == 0

    c = consumer(pf_broker)
    try:
        c.assign([TopicPartition(topic, 0, 37)])
        got = consume_into(c, counts_reached({0: 63}))
        assert [r[0] for r in got[0]] == list(range(37, 100))
        assert [r[2] for r in got[0]] == [f"v{i}".encode() for i in range(37, 100)]

        c.seek(TopicPartition(topic, 0, OFFSET_BEGINNING))
        got = consume_into(c, counts_reached({0: 100}))
        assert [r[0] for r in got[0]][:100] == list(range(100))

        c.seek(TopicPartition(topic, 0, 90))
        got = consume_into(c, counts_reached({0: 10}))
        assert [r[0] for r in got[0]][:10] == list(range(90, 100))

        c.seek(TopicPartition(topic, 0, OFFSET_END))
        first = first_new_record(c, p, topic, 100)
        assert first[0] >= 100, f"after seek(OFFSET_END) old record {first} arrived"
    finally:
        c.close()


def first_new_record(c, p, topic, end):
    """A consumer positioned at the logical end (resolved asynchronously by
    librdkafka): produce one record at a time until one arrives; it must not be
    older than `end`, and what follows it must arrive in order."""
    deadline = time.monotonic() + TIMEOUT_S
    i = 0
    while True:
        assert time.monotonic() < deadline, "nothing produced after the seek to the end arrived"
        p.produce(topic, value=f"new{i}".encode(), partition=0)
        assert p.flush(TIMEOUT_S) == 0
        i += 1
        msgs = [m for m in c.consume(10, timeout=0.5) if m.error() is None]
        if msgs:
            break
    first = (msgs[0].offset(), msgs[0].value())
    assert first[0] >= end, f"after positioning at the end ({end}) old record {first} arrived"
    j = int(first[1][3:])
    assert first[0] == end + j, f"record new{j} is at offset {first[0]}, want {end + j}"
    for k in range(i, i + 5):
        p.produce(topic, value=f"new{k}".encode(), partition=0)
    assert p.flush(TIMEOUT_S) == 0
    got = [(m.offset(), m.value()) for m in msgs]
    rest = consume_into(c, counts_reached({0: i + 5 - j - len(msgs)}))
    got += [(r[0], r[2]) for r in rest[0]]
    assert got == [(end + k, f"new{k}".encode()) for k in range(j, i + 5)]
    return first


def test_consumer_starting_at_end_sees_only_new_records(pf_broker):
    """A consumer assigned at OFFSET_END receives only what is produced later."""
    topic = create_topic(pf_broker, partitions=1)
    p = producer(pf_broker, **{"acks": "all"})
    for i in range(20):
        p.produce(topic, value=f"old{i}".encode(), partition=0)
    assert p.flush(TIMEOUT_S) == 0
    c = consumer(pf_broker)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_END)])
        first_new_record(c, p, topic, 20)
    finally:
        c.close()


# ---------------------------------------------------------------------------
# A fetch at an offset inside a batch


def fetch_v4(bootstrap, topic, partition, offset, max_bytes=1 << 20):
    """A raw Fetch v4 for one partition: (error_code, high_watermark, record_set bytes)."""
    t = topic.encode()
    body = struct.pack(">iiiib", -1, 500, 1, max_bytes, 0)
    body += struct.pack(">ih", 1, len(t)) + t + struct.pack(">iiqi", 1, partition, offset, max_bytes)
    client_id = b"sluice-produce-fetch-test"
    header = struct.pack(">hhih", 1, 4, 7, len(client_id)) + client_id
    host, port = bootstrap.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
        (size,) = struct.unpack(">i", recv_exact(s, 4))
        resp = recv_exact(s, size)
    pos = 0
    correlation, _throttle, n_topics = struct.unpack_from(">iii", resp, pos)
    pos += 12
    assert correlation == 7 and n_topics == 1
    (tlen,) = struct.unpack_from(">h", resp, pos)
    pos += 2 + tlen
    (n_parts,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    assert n_parts == 1
    p, error, hw, _lso, n_aborted = struct.unpack_from(">ihqqi", resp, pos)
    pos += 4 + 2 + 8 + 8 + 4
    assert p == partition
    if n_aborted > 0:
        pos += 16 * n_aborted
    (rlen,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    records = resp[pos:pos + rlen] if rlen > 0 else b""
    return error, hw, records


def batches(record_set):
    """(base_offset, last_offset, record_count) of each whole batch in a record set."""
    out = []
    pos = 0
    while pos + 61 <= len(record_set):
        base, length = struct.unpack_from(">qi", record_set, pos)
        if pos + 12 + length > len(record_set):
            break  # a partial batch at the end is allowed
        magic = record_set[pos + 16]
        assert magic == 2, f"batch at {base}: magic {magic}"
        (last_delta,) = struct.unpack_from(">i", record_set, pos + 23)
        (count,) = struct.unpack_from(">i", record_set, pos + 57)
        out.append((base, base + last_delta, count))
        pos += 12 + length
    return out


def test_fetch_inside_a_batch_returns_that_batch(pf_broker):
    """Records 0-9 in one batch, 10-109 in a second, 110-119 in a third: a Fetch
    at offset 50 starts with the whole second batch (base 10), and a consumer
    assigned at 50 receives exactly 50 onwards."""
    topic = create_topic(pf_broker, partitions=1)
    p = producer(pf_broker, **{"acks": "all", "linger.ms": 200, "batch.num.messages": 1000})
    for size in (10, 100, 10):
        for _ in range(size):
            p.produce(topic, value=os.urandom(50), partition=0)
        assert p.flush(TIMEOUT_S) == 0
    error, hw, record_set = fetch_v4(pf_broker.bootstrap, topic, 0, 0)
    assert (error, hw) == (0, 120)
    assert batches(record_set) == [(0, 9, 10), (10, 109, 100), (110, 119, 10)], \
        "the producer's three flushes did not make three batches"

    error, hw, record_set = fetch_v4(pf_broker.bootstrap, topic, 0, 50)
    assert (error, hw) == (0, 120)
    assert batches(record_set)[0] == (10, 109, 100), f"fetch at 50 returned batches {batches(record_set)}"
    assert batches(record_set)[-1][1] == 119

    error, hw, record_set = fetch_v4(pf_broker.bootstrap, topic, 0, 119)
    assert batches(record_set) == [(110, 119, 10)]
    error, hw, record_set = fetch_v4(pf_broker.bootstrap, topic, 0, 120)
    assert (error, hw, record_set) == (0, 120, b"")
    error, _, _ = fetch_v4(pf_broker.bootstrap, topic, 0, 121)
    assert error == 1, f"fetch past the end: error {error}, want OFFSET_OUT_OF_RANGE (1)"

    c = consumer(pf_broker)
    try:
        c.assign([TopicPartition(topic, 0, 50)])
        got = consume_into(c, counts_reached({0: 70}))
        assert [r[0] for r in got[0]] == list(range(50, 120))
    finally:
        c.close()


# ---------------------------------------------------------------------------
# Topic configs on produce: auto-creation, LogAppendTime, max.message.bytes


def test_produce_auto_creates_topic(pf_broker):
    """Producing to an unknown topic creates it (auto.create.topics.enable is
    true by default) with num.partitions partitions; the records are there."""
    topic = unique_topic("auto")
    p = producer(pf_broker, **{"acks": "all"})
    delivery = Delivery()
    for i in range(10):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), on_delivery=delivery.callback(i))
    assert p.flush(TIMEOUT_S) == 0
    assert not delivery.errors, delivery.errors
    md = confluent_admin(pf_broker).list_topics(timeout=TIMEOUT_S).topics
    assert topic in md and md[topic].error is None
    n = len(md[topic].partitions)
    assert n >= 1
    c = consumer(pf_broker)
    try:
        c.assign([TopicPartition(topic, q, OFFSET_BEGINNING) for q in range(n)])
        got = consume_into(c, lambda g: sum(len(v) for v in g.values()) >= 10)
        values = sorted(r[2] for rows in got.values() for r in rows)
        assert values == sorted(f"v{i}".encode() for i in range(10))
    finally:
        c.close()


def test_produce_without_auto_creation_fails(make_broker):
    """With auto.create.topics.enable=false a produce to an unknown topic fails
    (unknown topic) and creates nothing."""
    b = make_broker(extra_args=["--set", "auto.create.topics.enable=false"])
    topic = unique_topic("noauto")
    p = producer(b, **{"acks": "all", "message.timeout.ms": 10000, "topic.metadata.propagation.max.ms": 1000})
    delivery = Delivery()
    p.produce(topic, value=b"x", on_delivery=delivery.callback(0))
    p.flush(TIMEOUT_S)
    assert 0 in delivery.errors, "produce to an unknown topic succeeded without auto-creation"
    assert delivery.errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC), \
        delivery.errors[0]
    assert topic not in confluent_admin(b).list_topics(timeout=TIMEOUT_S).topics


def test_log_append_time_topic_returns_broker_time(pf_broker):
    """On a LogAppendTime topic the broker's time replaces the producer's, in the
    produce response and in what consumers read; a CreateTime topic keeps it."""
    lat = create_topic(pf_broker, partitions=1, config={"message.timestamp.type": "LogAppendTime"})
    ct = create_topic(pf_broker, partitions=1)
    old = 1_000_000_000_000  # 2001
    p = producer(pf_broker, **{"acks": "all", "linger.ms": 5})
    delivery = Delivery()
    before = int(time.time() * 1000)
    for i in range(5):
        p.produce(lat, value=f"v{i}".encode(), timestamp=old + i, on_delivery=delivery.callback(i))
        p.produce(ct, value=f"v{i}".encode(), timestamp=old + i, on_delivery=delivery.callback(100 + i))
    assert p.flush(TIMEOUT_S) == 0
    after = int(time.time() * 1000)
    assert not delivery.errors, delivery.errors
    for i in range(5):
        kind, ts = delivery.ok[i][2]
        assert kind == TIMESTAMP_LOG_APPEND_TIME and before - 1000 <= ts <= after + 1000, \
            f"produce response of a LogAppendTime topic: timestamp {(kind, ts)}, want broker time " \
            f"in [{before}, {after}]"
    c = consumer(pf_broker)
    try:
        c.assign([TopicPartition(lat, 0, OFFSET_BEGINNING), TopicPartition(ct, 0, OFFSET_BEGINNING)])
        got = {}
        deadline = time.monotonic() + TIMEOUT_S
        while sum(len(v) for v in got.values()) < 10:
            assert time.monotonic() < deadline, f"timed out; have {got}"
            for m in c.consume(100, timeout=0.5):
                assert m.error() is None, m.error()
                got.setdefault(m.topic(), []).append((m.value(), m.timestamp()))
        for value, (kind, ts) in got[lat]:
            assert kind == TIMESTAMP_LOG_APPEND_TIME, f"{value}: timestamp type {kind}"
            assert before - 1000 <= ts <= after + 1000, f"{value}: LogAppendTime {ts} not in [{before}, {after}]"
        assert [(v, t) for v, t in got[ct]] == \
            [(f"v{i}".encode(), (TIMESTAMP_CREATE_TIME, old + i)) for i in range(5)]
    finally:
        c.close()


def test_too_large_batch_fails_only_its_partition(pf_broker):
    """A batch over the topic's max.message.bytes gets MESSAGE_TOO_LARGE for its
    partition; the other partitions of the same request are appended."""
    limited = create_topic(pf_broker, partitions=2, config={"max.message.bytes": "10000"})
    other = create_topic(pf_broker, partitions=1)
    p = producer(pf_broker, **{"acks": "all", "linger.ms": 300, "compression.type": "none",
                               "enable.idempotence": False, "retries": 0})
    delivery = Delivery()
    p.produce(limited, value=b"small-0", partition=0, on_delivery=delivery.callback(0))
    p.produce(limited, value=os.urandom(20000), partition=1, on_delivery=delivery.callback(1))
    p.produce(other, value=os.urandom(20000), partition=0, on_delivery=delivery.callback(2))
    p.produce(limited, value=b"small-1", partition=0, on_delivery=delivery.callback(3))
    p.flush(TIMEOUT_S)
    assert set(delivery.errors) == {1}, \
        f"errors {delivery.errors}; want only the 20000-byte batch to the limited topic to fail"
    assert delivery.errors[1].code() == KafkaError.MSG_SIZE_TOO_LARGE, delivery.errors[1]
    assert [delivery.ok[i][:2] for i in (0, 3)] == [(0, 0), (0, 1)]
    assert delivery.ok[2][:2] == (0, 0)
    c = consumer(pf_broker)
    try:
        assert c.get_watermark_offsets(TopicPartition(limited, 1), timeout=TIMEOUT_S) == (0, 0)
        assert c.get_watermark_offsets(TopicPartition(limited, 0), timeout=TIMEOUT_S) == (0, 2)
        # a batch under the limit still goes to the partition that refused one
        p.produce(limited, value=b"fits", partition=1, on_delivery=delivery.callback(4))
        assert p.flush(TIMEOUT_S) == 0
        assert delivery.ok[4][:2] == (1, 0)
    finally:
        c.close()


def produce_v3(bootstrap, topics, acks=-1):
    """One raw Produce v3 request: topics = {name: {partition: batch bytes}};
    returns {(name, partition): (error_code, base_offset)}."""
    body = struct.pack(">hhii", -1, acks, 10000, len(topics))
    for name, parts in topics.items():
        n = name.encode()
        body += struct.pack(">h", len(n)) + n + struct.pack(">i", len(parts))
        for partition, batch in parts.items():
            body += struct.pack(">ii", partition, len(batch)) + batch
    client_id = b"sluice-produce-fetch-test"
    header = struct.pack(">hhih", 0, 3, 11, len(client_id)) + client_id
    host, port = bootstrap.split(":")
    with socket.create_connection((host, int(port)), timeout=15) as s:
        s.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
        (size,) = struct.unpack(">i", recv_exact(s, 4))
        resp = recv_exact(s, size)
    correlation, n_topics = struct.unpack_from(">ii", resp, 0)
    assert correlation == 11
    pos = 8
    out = {}
    for _ in range(n_topics):
        (tlen,) = struct.unpack_from(">h", resp, pos)
        name = resp[pos + 2: pos + 2 + tlen].decode()
        pos += 2 + tlen
        (n_parts,) = struct.unpack_from(">i", resp, pos)
        pos += 4
        for _ in range(n_parts):
            partition, error, base, _append_time = struct.unpack_from(">ihqq", resp, pos)
            pos += 22
            out[(name, partition)] = (error, base)
    return out


def test_too_large_batch_in_one_request_fails_only_its_partition(pf_broker):
    """One Produce request (over the wire) with three partitions: the batch over
    max.message.bytes gets MESSAGE_TOO_LARGE (10), the others are appended."""
    limited = create_topic(pf_broker, partitions=2, config={"max.message.bytes": "10000"})
    other = create_topic(pf_broker, partitions=1)
    big = record_batch([os.urandom(20000)])
    small = record_batch([b"a", b"b", b"c"])
    answer = produce_v3(pf_broker.bootstrap, {limited: {0: small, 1: big}, other: {0: big}})
    assert answer == {(limited, 0): (0, 0), (limited, 1): (10, -1), (other, 0): (0, 0)}, answer
    _, hw, record_set = fetch_v4(pf_broker.bootstrap, limited, 0, 0)
    assert hw == 3 and batches(record_set) == [(0, 2, 3)]
    _, hw, record_set = fetch_v4(pf_broker.bootstrap, limited, 1, 0)
    assert (hw, record_set) == (0, b"")
    _, hw, record_set = fetch_v4(pf_broker.bootstrap, other, 0, 0)
    assert hw == 1 and batches(record_set) == [(0, 0, 1)]
    # stored as sent: everything from the magic byte on (the CRC covers the rest)
    assert len(record_set) == len(big) and record_set[16:] == big[16:]


@pytest.mark.parametrize("acks", ["0", "1"])
def test_acks_0_and_1(pf_broker, acks):
    """acks=0 (no response, offsets unknown) and acks=1 (offsets reported) both store every record."""
    topic = create_topic(pf_broker, partitions=2)
    p = producer(pf_broker, **{"acks": acks, "enable.idempotence": False, "linger.ms": 5})
    delivery = Delivery()
    n = 2000
    for i in range(n):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 2,
                  on_delivery=delivery.callback(i))
    assert p.flush(TIMEOUT_S) == 0
    assert not delivery.errors and len(delivery.ok) == n
    if acks == "1":
        for q in (0, 1):
            assert [delivery.ok[i][1] for i in range(q, n, 2)] == list(range(n // 2))
    c = consumer(pf_broker)
    try:
        c.assign([TopicPartition(topic, q, OFFSET_BEGINNING) for q in (0, 1)])
        got = consume_into(c, counts_reached({0: n // 2, 1: n // 2}))
        for q in (0, 1):
            assert [(r[0], r[2]) for r in got[q]] == \
                [(j, f"v{i}".encode()) for j, i in enumerate(range(q, n, 2))]
    finally:
        c.close()


# ---------------------------------------------------------------------------
# Restart; old data from the disk (io_uring reads with read-ahead, or sendfile)


def test_consumption_across_a_broker_restart(broker):
    """A consumer keeps its position across a broker restart: what was
    acknowledged before and produced after arrives once, in order."""
    topic = create_topic(broker, partitions=2)
    p = producer(broker, **{"acks": "all", "enable.idempotence": True, "linger.ms": 5})
    n = 4000
    for i in range(n):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 2)
    assert p.flush(TIMEOUT_S) == 0
    del p

    c = consumer(broker, **{"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500})
    try:
        c.assign([TopicPartition(topic, q, OFFSET_BEGINNING) for q in (0, 1)])
        got = consume_into(c, counts_reached({0: 1000, 1: 1000}), batch=100)
        broker.restart()
        p = producer(broker, **{"acks": "all", "enable.idempotence": True, "linger.ms": 5})
        for i in range(n, n + 2000):
            p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 2)
        assert p.flush(TIMEOUT_S) == 0
        total = (n + 2000) // 2
        deadline = time.monotonic() + 60
        while not all(len(got.get(q, ())) >= total for q in (0, 1)):
            assert time.monotonic() < deadline, f"timed out; have {({q: len(v) for q, v in got.items()})}"
            for m in c.consume(1000, timeout=0.5):
                if m.error() is not None:
                    # transport errors while the broker is down are reported, not fatal
                    assert m.error().code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN), m.error()
                    continue
                got.setdefault(m.partition(), []).append((m.offset(), m.key(), m.value()))
        for q in (0, 1):
            want = [(j, f"k{i}".encode(), f"v{i}".encode()) for j, i in enumerate(range(q, n + 2000, 2))]
            assert [r[:3] for r in got[q]] == want, f"partition {q}: records lost, repeated or out of order"
    finally:
        c.close()


def metrics_supported(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    return "--metrics" in out.stdout


def scrape(addr):
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = {}
    for line in text.splitlines():
        m = re.match(r"^(sluice_(?:fetch_sendfile|fetch_memory|read_disk|read_ahead)_bytes_total)"
                     r"(?:\{[^}]*\})?\s+([0-9.eE+]+)", line)
        if m:
            total[m.group(1)] = total.get(m.group(1), 0) + float(m.group(2))
    return total


@pytest.mark.parametrize("cold_read", ["read", "sendfile"])
def test_old_data_comes_back_from_the_disk(make_broker, cold_read):
    """With a 1 MiB read cache per shard, consuming 12 MiB written earlier comes
    back byte-exact: by default read from the disk into memory, partly ahead
    of the consumer; with fetch.cold.read=sendfile, (part of) it by sendfile.
    The counters and the shard's stop line show which."""
    binary = os.environ["SLUICE_BIN"]
    args = ["--set", "cache.bytes=1048576"]
    if cold_read == "sendfile":
        args += ["--set", "fetch.cold.read=sendfile"]
    metrics_addr = None
    if metrics_supported(binary):
        metrics_addr = f"127.0.0.1:{free_port()}"
        args += ["--metrics", metrics_addr]
    b = make_broker(extra_args=args)
    topic = create_topic(b, partitions=1)
    rng = random.Random(42)
    values = [rng.randbytes(1000) for _ in range(12_000)]
    p = producer(b, **{"acks": "all", "linger.ms": 10})
    for v in values:
        while True:
            try:
                p.produce(topic, value=v, partition=0)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(TIMEOUT_S * 2) == 0
    c = consumer(b, **{"fetch.max.bytes": 1048576, "max.partition.fetch.bytes": 262144})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = consume_into(c, counts_reached({0: len(values)}), batch=2000)
        assert [r[0] for r in got[0]] == list(range(len(values)))
        assert [r[2] for r in got[0]] == values, "old data came back changed"
    finally:
        c.close()
    if metrics_addr:
        totals = scrape(metrics_addr)
        if cold_read == "sendfile":
            assert totals.get("sluice_fetch_sendfile_bytes_total", 0) > 0, f"metrics: {totals}"
        else:
            assert totals.get("sluice_fetch_sendfile_bytes_total", 0) == 0, f"metrics: {totals}"
            assert totals.get("sluice_read_ahead_bytes_total", 0) > 0, f"metrics: {totals}"
    b.stop()
    lines = [line for line in b.log().splitlines() if "shard stopping" in line]
    assert lines, f"no 'shard stopping' lines in the broker log:\n{b.log()[-3000:]}"

    def logged(field):
        return sum(int(m.group(1)) for line in lines for m in [re.search(rf"{field}=(\d+)", line)] if m)
    if cold_read == "sendfile":
        assert logged("fetch_sendfile_bytes") > 0, "no fetch bytes went by sendfile:\n" + "\n".join(lines)
    else:
        # Most of the 12 MiB came from the disk (the cache holds 1 MiB),
        # and none by sendfile.
        assert logged("fetch_sendfile_bytes") == 0, "\n".join(lines)
        assert logged("disk_read_bytes") > 8_000_000, "\n".join(lines)


# ---------------------------------------------------------------------------
# kcat


def kcat():
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat is not installed (tests/run.sh installs it with apt-get)", pytrace=False)
    return path


def run_kcat(args, stdin=None, timeout=60):
    proc = subprocess.run([kcat()] + args, input=stdin, capture_output=True, timeout=timeout)
    assert proc.returncode == 0, f"kcat {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()[-3000:]}"
    return proc.stdout


def kcat_consume(broker, topic, offset="beginning", extra=()):
    """kcat -C -e -J: every message from `offset` until the end of all partitions."""
    out = run_kcat(["-C", "-b", broker.bootstrap, "-t", topic, "-e", "-J", "-o", str(offset), *extra])
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


@pytest.mark.parametrize("codec", ["none", "snappy"])
def test_kcat_produce_and_consume(pf_broker, codec):
    """kcat -P writes keyed lines; kcat -C -e and confluent-kafka read them back
    in order per partition."""
    topic = create_topic(pf_broker, partitions=3)
    n = 3000
    lines = "".join(f"k{i}:value {i} {'x' * (i % 50)}\n" for i in range(n)).encode()
    run_kcat(["-P", "-b", pf_broker.bootstrap, "-t", topic, "-K:", "-z", codec,
              "-X", "acks=all", "-X", "linger.ms=10"], stdin=lines)
    msgs = kcat_consume(pf_broker, topic)
    assert len(msgs) == n, f"kcat -C read {len(msgs)} messages, want {n}"
    by_partition = {}
    for m in msgs:
        by_partition.setdefault(m["partition"], []).append(m)
    for q, rows in by_partition.items():
        assert [m["offset"] for m in rows] == list(range(len(rows)))
        indices = [int(m["key"][1:]) for m in rows]
        assert indices == sorted(indices), f"partition {q}: kcat's records out of order"
        for m in rows:
            i = int(m["key"][1:])
            assert m["payload"] == f"value {i} {'x' * (i % 50)}"
    assert sorted(int(m["key"][1:]) for m in msgs) == list(range(n))

    c = consumer(pf_broker)
    try:
        c.assign([TopicPartition(topic, q, OFFSET_BEGINNING) for q in range(3)])
        got = consume_into(c, counts_reached({q: len(r) for q, r in by_partition.items()}))
        for q, rows in by_partition.items():
            assert [(r[0], r[1], r[2]) for r in got[q]] == \
                [(m["offset"], m["key"].encode(), m["payload"].encode()) for m in rows]
    finally:
        c.close()


def test_kcat_reads_confluent_records_and_offsets(pf_broker):
    """kcat -C reads zstd records written by confluent-kafka, from the
    beginning, from an offset inside a batch, and a count (-c)."""
    topic = create_topic(pf_broker, partitions=1)
    p = producer(pf_broker, **{"acks": "all", "compression.type": "zstd", "linger.ms": 50})
    values = [f"record {i} ".encode() * (i % 7 + 1) for i in range(500)]
    for i, v in enumerate(values):
        p.produce(topic, key=f"k{i}".encode(), value=v, partition=0, timestamp=1_700_000_000_000 + i)
    assert p.flush(TIMEOUT_S) == 0
    msgs = kcat_consume(pf_broker, topic)
    assert [(m["offset"], m["key"], m["payload"].encode()) for m in msgs] == \
        [(i, f"k{i}", v) for i, v in enumerate(values)]
    assert [m["ts"] for m in msgs] == [1_700_000_000_000 + i for i in range(500)]
    mid = kcat_consume(pf_broker, topic, 250, ["-p", "0", "-c", "5"])
    assert [m["offset"] for m in mid] == [250, 251, 252, 253, 254]
    tail = kcat_consume(pf_broker, topic, -3, ["-p", "0"])
    assert [m["offset"] for m in tail] == [497, 498, 499]
