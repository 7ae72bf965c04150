"""Consumer groups on a three-broker cluster: the coordinator of a group is
the broker that leads the group's `__consumer_offsets` partition, every
broker names the same one, and when that broker dies the group re-forms on
the broker that takes the partition over.

Three real `sluice` processes, one shard each, form the cluster (a Raft
quorum of all three).
"""

import logging
import socket
import struct
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from cluster import make_cluster  # noqa: F401 (fixture)
from conftest import confluent_admin, recv_exact, wait_until

NODES = (1, 2, 3)
OFFSETS_PARTITIONS = 6
FIND_COORDINATOR = 10
NO_ERROR = 0
IO_TIMEOUT_S = 10.0


@pytest.fixture
def cluster(make_cluster):
    """Three brokers forming one cluster (`cluster.py`), with few offsets
    partitions; by node id."""
    extra = ["--set", f"offsets.topic.num.partitions={OFFSETS_PARTITIONS}"]
    return make_cluster(size=len(NODES), extra_args=extra).nodes


def find_coordinator(broker, group_id):
    """FindCoordinator v0 sent to `broker` itself: (error, node id)."""
    client_id = b"sluice-cluster-test"
    key = group_id.encode()
    body = (
        struct.pack(">hhih", FIND_COORDINATOR, 0, 1, len(client_id)) + client_id
        + struct.pack(">h", len(key)) + key
    )
    with socket.create_connection((broker.host, broker.port), timeout=IO_TIMEOUT_S) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", recv_exact(sock, 4))[0]
        response = recv_exact(sock, size)
    _correlation, error, node_id = struct.unpack(">ihi", response[:10])
    return error, node_id


def agreed_coordinator(brokers, group_id):
    """The coordinator every live broker names for `group_id`, or None while
    they disagree or one has none."""
    answers = {find_coordinator(b, group_id) for b in brokers if b.is_running()}
    if len(answers) != 1:
        return None
    error, node_id = answers.pop()
    return node_id if error == NO_ERROR and node_id >= 0 else None


def live_brokers_seen(broker, count):
    admin = confluent_admin(broker)
    return len(admin.list_topics(timeout=5).brokers) == count


def bootstrap(brokers):
    return ",".join(b.bootstrap for b in brokers if b.is_running())


def consumer(brokers, group_id):
    return Consumer({
        "bootstrap.servers": bootstrap(brokers),
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "topic.metadata.refresh.interval.ms": 1000,
        "logger": logging.getLogger("librdkafka"),
    })


def produce(brokers, topic, values):
    producer = Producer({
        "bootstrap.servers": bootstrap(brokers),
        "message.timeout.ms": 30000,
        "logger": logging.getLogger("librdkafka"),
    })
    failures = []
    for value in values:
        producer.produce(topic, value=value.encode(), partition=0,
                         on_delivery=lambda err, _msg: err and failures.append(err))
    assert producer.flush(60) == 0, "messages left undelivered"
    assert not failures, failures


def consume_until(c, wanted, timeout=60.0):
    """Polls `c` until every value in `wanted` arrived; returns all seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while not set(wanted) <= set(seen):
        assert time.monotonic() < deadline, f"consumed {seen}, still missing {set(wanted) - set(seen)}"
        msg = c.poll(0.5)
        if msg is None or msg.error():
            continue
        seen.append(msg.value().decode())
    return seen


def test_group_follows_the_offsets_partition_leader(cluster):
    brokers = list(cluster.values())
    wait_until(lambda: all(live_brokers_seen(b, 3) for b in brokers), timeout=60,
               what="all three brokers registered and unfenced")
    group_id = f"g-{uuid.uuid4().hex[:8]}"
    # The first FindCoordinator creates __consumer_offsets (RF 3 with three
    # live brokers); every broker then names the same coordinator.
    coordinator = wait_until(lambda: agreed_coordinator(brokers, group_id), timeout=60,
                             what="every broker naming one coordinator")
    assert coordinator in NODES
    # The data's partition is led by another broker, so it outlives the kill.
    survivors = [n for n in NODES if n != coordinator]
    topic = f"t-{uuid.uuid4().hex[:8]}"
    admin = confluent_admin(brokers[0])
    assignment = [[survivors[0], survivors[1], coordinator]]
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=assignment)])[topic].result(30)

    before = [f"before-{i}" for i in range(10)]
    produce(brokers, topic, before)
    c = consumer(brokers, group_id)
    try:
        c.subscribe([topic])
        consume_until(c, before)
        c.commit(asynchronous=False)
        committed = c.committed([TopicPartition(topic, 0)], timeout=10)[0]
        assert committed.offset == 10
        described = admin.describe_consumer_groups([group_id])[group_id].result(30)
        assert described.coordinator.id == coordinator
        assert len(described.members) == 1

        cluster[coordinator].kill()  # SIGKILL: no goodbye to the quorum
        live = [b for b in brokers if b.is_running()]
        # Named until the controller fences it (broker.session.timeout.ms).
        moved = wait_until(
            lambda: next((n for n in [agreed_coordinator(live, group_id)] if n in survivors), None),
            timeout=60, what="the surviving brokers naming a new coordinator")

        # The member's next heartbeat there is UNKNOWN_MEMBER_ID: it joins
        # again, and the group re-forms on the new coordinator.
        admin = confluent_admin(live[0])

        again = []  # what the member reads after the kill

        def reformed():
            msg = c.poll(0.2)
            if msg is not None and not msg.error():
                again.append(msg.value().decode())
            described = admin.describe_consumer_groups([group_id])[group_id].result(30)
            return (described.coordinator.id == moved and len(described.members) == 1
                    and str(described.state) == "ConsumerGroupState.STABLE")

        wait_until(reformed, timeout=90, interval=0.1, what="the group stable on the new coordinator")
        after = [f"after-{i}" for i in range(5)]
        produce(live, topic, after)
        again += consume_until(c, after)
        c.commit(asynchronous=False)
        committed = c.committed([TopicPartition(topic, 0)], timeout=10)[0]
        assert committed.offset == 15
        # __consumer_offsets is replicated: the new coordinator loaded the
        # commit of offset 10 made before the kill, so nothing consumed
        # before it comes again.
        assert not [v for v in again if v.startswith("before-")], again
    finally:
        c.close()
