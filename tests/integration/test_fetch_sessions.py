"""Incremental fetch sessions (KIP-227) with real clients: kafka-python
(sessions on by default), librdkafka (sessionless) and Sluice's own
followers, against brokers with `--metrics`.

What is checked is what users rely on: every record is consumed exactly
once while a session answers only the partitions with news; evicted
sessions (few `max.incremental.fetch.session.cache.slots`) and disabled
sessions (0 slots) still deliver everything; a sessionless client is
unaffected; followers replicate in sessions, through a leader's kill -9
and restart. The metrics prove which path served the fetches.
"""

import collections
import logging
import struct
import threading
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import NewTopic
from kafka import KafkaConsumer
from kafka import TopicPartition as PythonPartition

from cluster import make_cluster  # noqa: F401 (fixture)
from conftest import Reader, confluent_admin, free_port, unique_topic, wait_until
from test_operations import parse_prometheus, scrape, total
from test_replication import admin, bootstrap, create_topic, partition, restart
from test_wire import connect, frame, read_response, request_header_v1

# librdkafka's lines go to Python logging (shown on failure), not stderr.
LIBRDKAFKA_LOG = logging.getLogger("librdkafka")
INCREMENTAL = "sluice_fetch_requests_incremental_total"
FULL = "sluice_fetch_requests_full_total"


def metrics_broker(make_broker, *settings):
    """A broker with --metrics and `--set` for each of `settings`; returns
    (broker, metrics port)."""
    port = free_port()
    args = ["--metrics", f"127.0.0.1:{port}"]
    for setting in settings:
        args += ["--set", setting]
    return make_broker(extra_args=args), port


def numbers(port):
    return parse_prometheus(scrape(port))


def fetch_api(samples, name):
    return sum(value for (sample, labels), value in samples.items()
               if sample == name and 'api="Fetch"' in labels)


def create(broker, topic, partitions):
    client = confluent_admin(broker)  # kept: its futures die with it
    client.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)


class KeepProducing:
    """Produces `value-N` to partition N % partitions from a thread until
    stopped; `acked` holds what the broker acknowledged."""

    def __init__(self, servers, topic, partitions, **config):
        self.acked = set()
        self._stop = threading.Event()
        self._producer = Producer({"bootstrap.servers": servers, "linger.ms": 5,
                                   "logger": LIBRDKAFKA_LOG, **config})
        self._thread = threading.Thread(target=self._run, args=(topic, partitions), daemon=True)
        self._thread.start()

    def _report(self, error, message):
        if error is None:
            self.acked.add(message.value().decode())

    def _run(self, topic, partitions):
        index = 0
        while not self._stop.is_set():
            for _ in range(partitions):
                self._producer.produce(topic, f"value-{index}".encode(),
                                       partition=index % partitions, on_delivery=self._report)
                index += 1
            self._producer.poll(0)
            time.sleep(0.05)
        self._producer.flush(60)

    def stop(self):
        self._stop.set()
        self._thread.join(90)
        assert not self._thread.is_alive(), "the producer did not flush"
        return self.acked


def python_consumer(servers, topic, partitions, group=None, **config):
    """A kafka-python consumer: subscribed in `group`, or else assigned
    every partition from the beginning."""
    config.setdefault("fetch_max_wait_ms", 100)
    if group is not None:
        consumer = KafkaConsumer(topic, bootstrap_servers=servers, group_id=group,
                                 auto_offset_reset="earliest", enable_auto_commit=False, **config)
        return consumer
    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, **config)
    consumer.assign([PythonPartition(topic, p) for p in range(partitions)])
    consumer.seek_to_beginning()
    return consumer


def drain(consumer, seen, until, timeout=120):
    """Polls into `seen` (a list of values) until `until()` or `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until():
        for records in consumer.poll(timeout_ms=200).values():
            seen.extend(record.value.decode() for record in records)


def assert_exactly_once(seen, acked):
    duplicates = [value for value, count in collections.Counter(seen).items() if count > 1]
    assert not duplicates, f"{len(duplicates)} records delivered twice, e.g. {duplicates[:3]}"
    missing = acked - set(seen)
    assert not missing, f"{len(missing)} acknowledged records never consumed, e.g. {sorted(missing)[:3]}"


def idle_fetch_bytes(port, consumer, seconds=3.0):
    """(response, request) bytes per Fetch while `consumer` polls with
    nothing to read: the broker's own counters over `seconds`."""
    before = numbers(port)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert consumer.poll(timeout_ms=100) == {}, "the topic is idle"
    after = numbers(port)

    def grown(name):
        return fetch_api(after, name) - fetch_api(before, name)

    requests = grown("sluice_requests_total")
    assert requests >= 5, f"only {requests} idle fetches"
    return (grown("sluice_response_bytes_total") / requests,
            grown("sluice_request_bytes_total") / requests)


def test_kafka_python_reads_256_partitions_exactly_once_in_an_incremental_session(make_broker):
    broker, port = metrics_broker(make_broker)
    topic, partitions = unique_topic("sessions"), 256
    create(broker, topic, partitions)
    producer = KeepProducing(broker.bootstrap, topic, partitions)
    consumer = python_consumer(broker.bootstrap, topic, partitions)
    seen = []
    drain(consumer, seen, lambda: len(seen) >= 3 * partitions)
    acked = producer.stop()  # produced all along, while the consumer fetched
    drain(consumer, seen, lambda: set(seen) >= acked)
    assert_exactly_once(seen, acked)
    samples = numbers(port)
    assert total(samples, INCREMENTAL) > 0, "kafka-python's fetches were served in a session"
    assert total(samples, "sluice_fetch_sessions") == 1
    assert total(samples, "sluice_fetch_session_partitions") == partitions
    assert total(samples, "sluice_fetch_session_errors_total") == 0
    # An idle fetch costs the whole partition list without a session, and
    # next to nothing with one.
    incremental, incremental_request = idle_fetch_bytes(port, consumer)
    consumer.close()
    sessionless = python_consumer(broker.bootstrap, topic, partitions,
                                  enable_incremental_fetch_sessions=False)
    sessionless.seek_to_end()
    drain(sessionless, [], lambda: False, timeout=1)
    full, full_request = idle_fetch_bytes(port, sessionless)
    sessionless.close()
    print(f"\nidle Fetch, {partitions} partitions, bytes per response (request): "
          f"full {full:.0f} ({full_request:.0f}), incremental {incremental:.0f} "
          f"({incremental_request:.0f})")
    assert incremental * 20 < full, (incremental, full)


def test_evicted_sessions_still_deliver_everything(make_broker):
    """Two slots (one per shard) for four consumers, and every session
    stale as soon as it is not in use (eviction after 0 ms; equal sessions
    never evict each other otherwise, as in Kafka): a full fetch evicts the
    least recently used session of its shard, whose consumer then sees
    FETCH_SESSION_ID_NOT_FOUND and falls back to a full fetch. Each still
    reads every record once."""
    broker, port = metrics_broker(make_broker, "max.incremental.fetch.session.cache.slots=2",
                                  "min.incremental.fetch.session.eviction.ms=0")
    topic, partitions = unique_topic("evict"), 32
    create(broker, topic, partitions)
    producer = KeepProducing(broker.bootstrap, topic, partitions)
    results, errors = {}, []

    def consume(name):
        try:
            consumer = python_consumer(broker.bootstrap, topic, partitions, group=name,
                                       fetch_max_wait_ms=300)
            seen = results.setdefault(name, [])
            drain(consumer, seen, lambda: stopped.is_set() and set(seen) >= acked_box[0])
            consumer.close()
        except Exception as error:  # reported below, with its consumer
            errors.append((name, error))

    stopped, acked_box = threading.Event(), [set()]
    threads = [threading.Thread(target=consume, args=(unique_topic("group"),)) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(results) == 4 and all(len(s) >= 500 for s in results.values()),
               timeout=60, what="every consumer reading")
    acked_box[0] = producer.stop()
    stopped.set()
    for thread in threads:
        thread.join(150)
    assert not errors, errors
    for seen in results.values():
        assert_exactly_once(seen, acked_box[0])
    samples = numbers(port)
    assert total(samples, "sluice_fetch_session_evictions_total") > 0
    assert total(samples, "sluice_fetch_session_errors_total") > 0, "evicted sessions were asked for"
    assert total(samples, INCREMENTAL) > 0
    assert total(samples, "sluice_fetch_sessions") <= 2


def test_zero_slots_serve_kafka_python_without_sessions(make_broker):
    broker, port = metrics_broker(make_broker, "max.incremental.fetch.session.cache.slots=0")
    topic, partitions = unique_topic("nosessions"), 64
    create(broker, topic, partitions)
    producer = KeepProducing(broker.bootstrap, topic, partitions)
    consumer = python_consumer(broker.bootstrap, topic, partitions)
    seen = []
    drain(consumer, seen, lambda: len(seen) >= 3 * partitions)
    acked = producer.stop()
    drain(consumer, seen, lambda: set(seen) >= acked)
    consumer.close()
    assert_exactly_once(seen, acked)
    samples = numbers(port)
    assert total(samples, FULL) > 0
    assert total(samples, INCREMENTAL) == 0
    assert total(samples, "sluice_fetch_sessions") == 0
    assert total(samples, "sluice_fetch_session_errors_total") == 0


def test_librdkafka_fetches_sessionless_and_is_unaffected(make_broker):
    broker, port = metrics_broker(make_broker)
    topic, partitions = unique_topic("librdkafka"), 200
    create(broker, topic, partitions)
    producer = KeepProducing(broker.bootstrap, topic, partitions)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_topic("g"),
                         "enable.auto.commit": False, "fetch.wait.max.ms": 100,
                         "logger": LIBRDKAFKA_LOG})
    consumer.assign([ConfluentPartition(topic, p, 0) for p in range(partitions)])
    seen = []

    def poll_until(done, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done():
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                seen.append(message.value().decode())

    poll_until(lambda: len(seen) >= 3 * partitions)
    acked = producer.stop()
    poll_until(lambda: set(seen) >= acked)
    consumer.close()
    assert_exactly_once(seen, acked)
    samples = numbers(port)
    assert total(samples, FULL) > 0
    assert total(samples, INCREMENTAL) == 0
    assert total(samples, "sluice_fetch_sessions") == 0
    errors = [labels for (name, labels), value in samples.items()
              if name == "sluice_request_errors_total" and 'api="Fetch"' in labels and value > 0]
    assert errors == [], errors


def test_followers_replicate_in_sessions_through_a_leader_kill(make_cluster):
    """Replication factor 3 on 60 partitions: each follower keeps one
    session per leader, holding the partitions it follows there. A leader
    is killed (-9) and restarted while an idempotent producer keeps going:
    replication goes on in sessions and every acknowledged record is there
    once."""
    cluster = make_cluster(size=3, start=False)
    ports = {}
    for node_id, node in cluster.nodes.items():
        ports[node_id] = free_port()
        node.extra_args += ["--metrics", f"127.0.0.1:{ports[node_id]}"]
    cluster.start()
    topic, partitions = unique_topic("replicated"), 60
    create_topic(cluster, topic, partitions=partitions, min_insync_replicas=2)

    def across(name, nodes=None):
        return sum(total(numbers(ports[n]), name) for n in (nodes or cluster.nodes))

    # Every partition has two followers, each fetching it in its session
    # with the leader (nothing else fetches yet).
    wait_until(lambda: across("sluice_fetch_session_partitions") == 2 * partitions,
               timeout=20, what="every follower's partitions in a session")
    assert across("sluice_fetch_sessions") == 6, "one session per (follower, leader) pair"
    producer = KeepProducing(bootstrap(cluster), topic, partitions, acks="all",
                             **{"enable.idempotence": True})
    wait_until(lambda: len(producer.acked) >= 1000, timeout=30, what="records acknowledged")
    leader = partition(cluster, topic, 0).leader
    others = [n for n in cluster.nodes if n != leader]
    served = across(INCREMENTAL, others)
    cluster[leader].kill()
    wait_until(lambda: partition(cluster, topic, 0, exclude=[leader]).leader not in (leader, -1),
               timeout=20, what="a new leader for partition 0")
    acked_during = len(producer.acked)
    wait_until(lambda: len(producer.acked) >= acked_during + 500, timeout=30,
               what="producing through the new leaders")
    # A new metrics port: the old one's last scrapes hold it in TIME_WAIT
    # (the endpoint closes first and binds without SO_REUSEADDR).
    args = cluster[leader].extra_args
    ports[leader] = free_port()
    args[args.index("--metrics") + 1] = f"127.0.0.1:{ports[leader]}"
    restart(cluster[leader])
    wait_until(lambda: all(len(p.isrs) == 3 for p in
                           admin(cluster).list_topics(topic, timeout=2).topics[topic].partitions.values()),
               timeout=40, what="the restarted broker back in every ISR")
    acked = producer.stop()
    assert across(INCREMENTAL, others) > served, "replication went on in sessions"
    consumer = Consumer({"bootstrap.servers": bootstrap(cluster), "group.id": unique_topic("check"),
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "logger": LIBRDKAFKA_LOG})
    consumer.assign([ConfluentPartition(topic, p, 0) for p in range(partitions)])
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not set(seen) >= acked:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            seen.append(message.value().decode())
    consumer.close()
    assert_exactly_once(seen, acked)


# --- the session's epochs and errors, on the wire ----------------------------

FETCH, FETCH_V7 = 1, 7
FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH = 70, 71


def fetch_v7(sock, correlation_id, session_id, epoch, partitions=(), forgotten=(), topic=""):
    """Fetch v7 (the first with sessions) of `partitions` of `topic` from
    offset 0, forgetting `forgotten`; answers (error_code, session_id,
    [partition indexes answered])."""
    name = topic.encode()

    def topics(parts, encode):
        if not parts:
            return struct.pack(">i", 0)
        return struct.pack(">ih", 1, len(name)) + name + struct.pack(">i", len(parts)) + b"".join(
            encode(p) for p in parts)

    body = struct.pack(">iiiibii", -1, 0, 1, 1 << 20, 0, session_id, epoch)
    body += topics(partitions, lambda p: struct.pack(">iqqi", p, 0, -1, 1 << 20))
    body += topics(forgotten, lambda p: struct.pack(">i", p))
    sock.sendall(frame(request_header_v1(FETCH, FETCH_V7, correlation_id) + body))
    reader = Reader(read_response(sock))
    assert reader.unpack(">i") == correlation_id
    _throttle, error_code, answered_session = reader.unpack(">ihi")

    def partition():
        index = reader.unpack(">ihqqq")[0]
        reader.array(lambda: reader.unpack(">qq"))
        size = reader.unpack(">i")
        reader.off += max(size, 0)
        return index

    answered = [index for _topic, indexes in reader.array(lambda: (reader.string(), reader.array(partition)))
                for index in indexes]
    return error_code, answered_session, answered


def test_session_epochs_and_errors_follow_kafka(shared_broker):
    """Kafka's FetchManager rules, request by request on one connection:
    epoch 0 opens a session (answered in full), the next epochs continue it
    (only partitions with news answered), a repeated epoch is
    INVALID_FETCH_SESSION_EPOCH, an unknown id FETCH_SESSION_ID_NOT_FOUND,
    and epoch -1 closes it."""
    topic = unique_topic("wire")
    create(shared_broker, topic, 3)
    with connect(shared_broker) as sock:
        call = iter(range(100))
        error, session, answered = fetch_v7(sock, next(call), 0, 0, [0, 1], topic=topic)
        assert (error, sorted(answered)) == (0, [0, 1]) and session > 0
        # Nothing changed: an incremental fetch answers no partition.
        assert fetch_v7(sock, next(call), session, 1) == (0, session, [])
        # Partition 2 joins: answered once (its high watermark is news).
        assert fetch_v7(sock, next(call), session, 2, [2], topic=topic) == (0, session, [2])
        assert fetch_v7(sock, next(call), session, 3) == (0, session, [])
        # The same epoch again, then one never handed out.
        assert fetch_v7(sock, next(call), session, 3) == (INVALID_FETCH_SESSION_EPOCH, 0, [])
        assert fetch_v7(sock, next(call), session, 9) == (INVALID_FETCH_SESSION_EPOCH, 0, [])
        # The session survived its errors; forgetting partition 0 is allowed.
        assert fetch_v7(sock, next(call), session, 4, forgotten=[0], topic=topic) == (0, session, [])
        assert fetch_v7(sock, next(call), session + 1, 1)[:2] == (FETCH_SESSION_ID_NOT_FOUND, 0)
        # Epoch -1 closes it and answers in full without a session.
        error, closed, answered = fetch_v7(sock, next(call), session, -1, [0, 1, 2], topic=topic)
        assert (error, closed, sorted(answered)) == (0, 0, [0, 1, 2])
        assert fetch_v7(sock, next(call), session, 5)[:2] == (FETCH_SESSION_ID_NOT_FOUND, 0)
