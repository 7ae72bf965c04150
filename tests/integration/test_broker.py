"""Broker process behaviour: node id, config flags, shutdown, crash recovery, concurrency."""

import os
import socket
import struct
import threading

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import ConfigResource, ConfigSource, NewTopic, ResourceType

from conftest import confluent_admin, free_port, unique_topic, wait_until
from test_wire import assert_api_versions_ok, assert_closed_by_peer, connect, metadata_v4, send_bad

TIMEOUT_S = 15


def admin_for(broker):
    return confluent_admin(broker)


def create_ok(admin, topics):
    for name, fut in admin.create_topics(topics, operation_timeout=10, request_timeout=TIMEOUT_S).items():
        fut.result(timeout=TIMEOUT_S)


def topic_ids(admin, names):
    futs = admin.describe_topics(TopicCollection(list(names)), request_timeout=TIMEOUT_S)
    return {n: str(f.result(timeout=TIMEOUT_S).topic_id) for n, f in futs.items()}


def broker_configs(admin, node_id):
    res = ConfigResource(ResourceType.BROKER, str(node_id))
    return admin.describe_configs([res], request_timeout=TIMEOUT_S)[res].result(timeout=TIMEOUT_S)


@pytest.mark.skipif(bool(os.environ.get("SLUICE_CMD")), reason="SLUICE_CMD overrides the command line")
def test_default_node_id_is_1(make_broker):
    """Without --node-id the broker is node 1."""
    b = make_broker(node_id=1, template=(
        "{bin} --listen 127.0.0.1:{port} --advertise 127.0.0.1:{port} --data-dir {data_dir} --shards 2"))
    md = admin_for(b).list_topics(timeout=TIMEOUT_S)
    assert list(md.brokers) == [1]
    assert md.controller_id == 1


@pytest.mark.skipif(bool(os.environ.get("SLUICE_CMD")), reason="SLUICE_CMD overrides the command line")
def test_node_id_flag(make_broker):
    """--node-id 7 shows in Metadata (broker and controller) and names the broker config resource."""
    b = make_broker(node_id=7)
    admin = admin_for(b)
    md = admin.list_topics(timeout=TIMEOUT_S)
    assert list(md.brokers) == [7] and md.controller_id == 7
    topic = unique_topic()
    create_ok(admin, [NewTopic(topic, num_partitions=2, replication_factor=1)])
    parts = wait_until(lambda: admin.list_topics(timeout=TIMEOUT_S).topics[topic].partitions,
                       what="topic in metadata")
    assert all(p.leader == 7 and p.replicas == [7] for p in parts.values())
    assert broker_configs(admin, 7)["socket.request.max.bytes"].value == str(100 * 1024 * 1024)


def test_sigterm_with_open_connections_exits_cleanly_and_restarts(broker):
    """SIGTERM while clients are connected (idle, mid-frame, admin) still exits 0 promptly,
    and the broker starts again at once on the same port (connections it closed itself
    leave TIME_WAIT sockets behind, so the listener needs SO_REUSEADDR)."""
    admin = admin_for(broker)
    create_ok(admin, [NewTopic(unique_topic(), num_partitions=4, replication_factor=1)])
    idle = connect(broker)
    assert_api_versions_ok(idle, 1)
    half = connect(broker)
    half.sendall(struct.pack(">i", 64) + b"\x00\x12")  # frame promised 64 bytes, sent 2
    try:
        broker.stop()  # asserts exit status 0 within 10 s
        assert_closed_by_peer(idle)
    finally:
        idle.close()
        half.close()
    broker.start()
    with connect(broker) as s:
        assert_api_versions_ok(s, 2)


def test_restart_after_sigkill_keeps_acknowledged_topics(broker):
    """Topics whose CreateTopics/CreatePartitions/DeleteTopics were acknowledged survive a SIGKILL."""
    from confluent_kafka.admin import NewPartitions

    admin = admin_for(broker)
    names = [unique_topic("crash") for _ in range(5)]
    create_ok(admin, [NewTopic(n, num_partitions=i + 1, replication_factor=1,
                               config={"retention.ms": str(1000 * (i + 1))})
                      for i, n in enumerate(names)])
    admin.create_partitions([NewPartitions(names[0], 3)])[names[0]].result(timeout=TIMEOUT_S)
    admin.delete_topics([names[4]])[names[4]].result(timeout=TIMEOUT_S)
    ids = topic_ids(admin, names[:4])
    del admin

    broker.kill()  # SIGKILL, then wait until the port is released
    # Restart on a fresh port: this test is about what survives a crash. Reusing
    # the port right away is test_sigterm_with_open_connections_exits_cleanly_and_restarts's job.
    broker.port = free_port()
    broker.start()

    admin = admin_for(broker)
    md = admin.list_topics(timeout=TIMEOUT_S).topics
    assert names[4] not in md, "deleted topic is back after a crash"
    counts = {n: len(md[n].partitions) for n in names[:4] if n in md}
    assert counts == {names[0]: 3, names[1]: 2, names[2]: 3, names[3]: 4}
    assert topic_ids(admin, names[:4]) == ids
    for i, n in enumerate(names[:4]):
        res = ConfigResource(ResourceType.TOPIC, n)
        cfg = admin.describe_configs([res])[res].result(timeout=TIMEOUT_S)
        assert cfg["retention.ms"].value == str(1000 * (i + 1))


@pytest.mark.skipif(bool(os.environ.get("SLUICE_CMD")), reason="SLUICE_CMD overrides the command line")
def test_socket_request_max_bytes_is_enforced(make_broker):
    """With socket.request.max.bytes=2048 a 2049-byte frame closes its connection and a 2000-byte one is served."""
    b = make_broker(extra_args=["--set", "socket.request.max.bytes=2048"])
    configs = broker_configs(admin_for(b), b.node_id)
    assert configs["socket.request.max.bytes"].value == "2048"
    assert configs["socket.request.max.bytes"].is_default is False
    names = [("n%03d" % i) + "x" * 245 for i in range(7)]  # 7 x 249 chars: a frame of ~1.8 KB
    with connect(b) as s:
        topics, _ = metadata_v4(s, 1, names, allow_auto_create=False)
        assert set(topics) == set(names)
        assert all(err == 3 for err, _ in topics.values())
    with connect(b) as s:
        send_bad(s, struct.pack(">i", 2049) + b"\x00" * 2049)
        assert_closed_by_peer(s)
    with connect(b) as s:
        assert_api_versions_ok(s, 2)


@pytest.mark.skipif(bool(os.environ.get("SLUICE_CMD")), reason="SLUICE_CMD overrides the command line")
def test_num_partitions_and_auto_create_settings(make_broker):
    """--set num.partitions=3 and auto.create.topics.enable=false are described and obeyed."""
    b = make_broker(extra_args=["--set", "num.partitions=3", "--set", "auto.create.topics.enable=false"])
    admin = admin_for(b)
    configs = broker_configs(admin, b.node_id)
    assert configs["num.partitions"].value == "3"
    assert configs["auto.create.topics.enable"].value == "false"
    for name in ("num.partitions", "auto.create.topics.enable"):
        assert configs[name].is_default is False
        assert configs[name].source != ConfigSource.DEFAULT_CONFIG.value
    topic = unique_topic()
    create_ok(admin, [NewTopic(topic)])  # broker defaults
    parts = wait_until(lambda: admin.list_topics(timeout=TIMEOUT_S).topics[topic].partitions,
                       what="topic with default partition count")
    assert len(parts) == 3
    missing = unique_topic("noauto")
    with connect(b) as s:
        topics, _ = metadata_v4(s, 1, [missing], allow_auto_create=True)
        assert topics[missing] == (3, [])
    assert missing not in admin.list_topics(timeout=TIMEOUT_S).topics


def run_threads(n, target):
    results = [None] * n
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        try:
            results[i] = target(i)
        except Exception as exc:  # noqa: BLE001 - reported by the caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    return results


def test_concurrent_creates_of_one_name_have_one_winner(shared_broker):
    """8 clients (on separate connections) race to create one topic: exactly one succeeds."""
    topic = unique_topic("race")
    admins = [admin_for(shared_broker) for _ in range(8)]
    for a in admins:  # connect all before the race
        a.list_topics(timeout=TIMEOUT_S)

    def create(i):
        fut = admins[i].create_topics([NewTopic(topic, num_partitions=i + 1, replication_factor=1)],
                                      request_timeout=TIMEOUT_S)[topic]
        try:
            fut.result(timeout=TIMEOUT_S)
            return None
        except KafkaException as exc:
            return exc.args[0].code()

    results = run_threads(8, create)
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1, f"results: {results}"
    assert all(r == KafkaError.TOPIC_ALREADY_EXISTS for i, r in enumerate(results) if i not in winners), results
    for a in admins:  # every connection converges on the winner's partition count
        wait_until(lambda: len(a.list_topics(timeout=TIMEOUT_S).topics[topic].partitions) == winners[0] + 1,
                   what="winner's partition count")


def test_concurrent_creates_of_many_topics(shared_broker):
    """8 clients create 10 topics each at once: all 80 exist with distinct ids, seen from every connection."""
    names = [[unique_topic(f"many{i}") for _ in range(10)] for i in range(8)]
    admins = [admin_for(shared_broker) for _ in range(8)]

    def create(i):
        create_ok(admins[i], [NewTopic(n, num_partitions=2, replication_factor=1) for n in names[i]])

    results = run_threads(8, create)
    assert results == [None] * 8, results
    everything = [n for group in names for n in group]
    for a in admins:
        wait_until(lambda: set(everything) <= set(a.list_topics(timeout=TIMEOUT_S).topics),
                   what="all 80 topics listed")
    ids = topic_ids(admins[0], everything)
    assert len(set(ids.values())) == 80


def test_metadata_consistent_across_connections(shared_broker):
    """Creates, partition additions and deletes become visible on every connection (all shards)."""
    from confluent_kafka.admin import NewPartitions

    admin = admin_for(shared_broker)
    topic = unique_topic("consistent")
    create_ok(admin, [NewTopic(topic, num_partitions=2, replication_factor=1)])
    socks = [connect(shared_broker) for _ in range(12)]
    try:
        cid = [0]

        def seen(s):
            cid[0] += 1
            return metadata_v4(s, cid[0], [topic], allow_auto_create=False)[0][topic]

        for s in socks:
            wait_until(lambda: (v := seen(s))[0] == 0 and len(v[1]) == 2, what="topic on every connection")
        admin.create_partitions([NewPartitions(topic, 6)])[topic].result(timeout=TIMEOUT_S)
        for s in socks:
            wait_until(lambda: len(seen(s)[1]) == 6, what="6 partitions on every connection")
        admin.delete_topics([topic])[topic].result(timeout=TIMEOUT_S)
        for s in socks:
            wait_until(lambda: seen(s)[0] == 3, what="deletion on every connection")
    finally:
        for s in socks:
            s.close()


def test_many_idle_connections(shared_broker):
    """200 open connections do not stop the broker from serving a new one."""
    socks = []
    try:
        for _ in range(200):
            socks.append(socket.create_connection((shared_broker.host, shared_broker.port), timeout=5))
        with connect(shared_broker) as s:
            assert_api_versions_ok(s, 1)
        assert_api_versions_ok(socks[0], 2)
        assert_api_versions_ok(socks[-1], 3)
    finally:
        for s in socks:
            s.close()
