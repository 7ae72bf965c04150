"""A three-broker cluster (issue 12) with real processes and real clients:
topic administration through every broker, Metadata that agrees, the
controller and partition leaders moving when a process is killed -9, a data
dir of another cluster turned away, and replica placement errors.

The cluster comes from cluster.py (free ports, temporary data dirs, fencing
after FAST_SESSION_TIMEOUT_MS). Partition replication is not built yet:
followers do not copy data, so these tests check that leadership moves and
clients carry on with NEW records; where the "no acknowledged record lost"
check belongs once replication lands, a `TODO(replication)` marks the spot.
Nothing here asserts that data is lost.
"""

import logging
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from cluster import FENCING_MARGIN_S, metadata
from cluster import cluster, make_cluster, shared_cluster  # noqa: F401 (fixtures)
from conftest import confluent_admin, unique_topic, wait_until
from test_kafkajs import run_admin_js

PARTITIONS = 6


class Via:
    """What confluent_admin needs: one broker's address as the bootstrap."""

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap


def create_topics(bootstrap, topics, timeout=15):
    admin = confluent_admin(Via(bootstrap))
    for name, future in admin.create_topics(topics, operation_timeout=timeout).items():
        future.result(timeout=timeout)


def partitions_of(md, topic):
    t = md["topics"].get(topic)
    return t["partitions"] if t and t["error"] == 0 else {}


def wait_topic(cluster, topic, partitions=PARTITIONS, nodes=None, timeout=10):
    """Every (named) running node's Metadata shows `topic` with a leader for
    each partition; returns the first node's view of its partitions."""
    nodes = nodes or cluster.running()

    def ready():
        views = [partitions_of(n.metadata([topic]), topic) for n in nodes]
        if all(len(v) == partitions and all(p["leader"] >= 0 for p in v.values()) for v in views):
            return views[0]
        return None
    return wait_until(ready, timeout=timeout, what=f"{topic} with leaders on every node")


def producer(bootstrap, **config):
    conf = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
            "message.timeout.ms": 20000, "socket.timeout.ms": 5000,
            "topic.metadata.refresh.interval.ms": 1000, "logger": logging.getLogger("librdkafka")}
    conf.update(config)
    return Producer(conf)


def consumer(bootstrap, **config):
    conf = {"bootstrap.servers": bootstrap, "group.id": unique_topic("g"),
            "enable.auto.commit": False, "fetch.wait.max.ms": 100,
            "topic.metadata.refresh.interval.ms": 1000, "logger": logging.getLogger("librdkafka")}
    conf.update(config)
    return Consumer(conf)


def test_create_through_each_broker_metadata_agrees_and_one_bootstrap_suffices(shared_cluster):
    """CreateTopics RF=3 through each broker in turn (non-controllers forward
    to the controller); all three brokers' Metadata agree on brokers,
    controller and every partition; a producer and a consumer given ONE
    broker's address reach the leaders on the others."""
    c = shared_cluster
    topics = {}
    for node in c.nodes.values():
        name = unique_topic(f"via{node.node_id}")
        create_topics(node.bootstrap, [NewTopic(name, PARTITIONS, 3)])
        topics[name] = node.node_id
        # Answered only once the change is applied on the broker that took it.
        assert len(partitions_of(node.metadata([name]), name)) == PARTITIONS

    for name in topics:
        wait_topic(c, name)
    views = {n.node_id: n.metadata(sorted(topics)) for n in c.nodes.values()}
    first = views[1]
    assert sorted(first["brokers"]) == [1, 2, 3]
    assert {b: first["brokers"][b] for b in first["brokers"]} == \
        {n.node_id: ("127.0.0.1", n.port) for n in c.nodes.values()}
    assert first["controller_id"] in (1, 2, 3)
    for node_id, view in views.items():
        assert view["brokers"] == first["brokers"], (node_id, view["brokers"])
        assert view["controller_id"] == first["controller_id"], node_id
        assert view["cluster_id"] == first["cluster_id"] and first["cluster_id"], node_id
        assert view["topics"] == first["topics"], f"node {node_id} disagrees with node 1"
    leaders = set()
    for name in topics:
        for index, p in first["topics"][name]["partitions"].items():
            assert sorted(p["replicas"]) == [1, 2, 3], (name, index, p)
            assert sorted(p["isr"]) == [1, 2, 3], (name, index, p)
            assert p["leader"] == p["replicas"][0], (name, index, p)  # the preferred replica
            assert p["offline"] == [] and p["error"] == 0, (name, index, p)
            leaders.add(p["leader"])
    assert leaders == {1, 2, 3}, "leaders should be spread over the brokers"

    # Produce and consume with a bootstrap list naming node 1 only.
    name = next(iter(topics))
    by_leader = {i: p["leader"] for i, p in first["topics"][name]["partitions"].items()}
    only = c[1].bootstrap
    prod = producer(only)
    delivered, errors = [], []
    on_delivery = lambda err, msg: (errors if err else delivered).append(err or msg.partition())  # noqa: E731
    for i in range(600):
        prod.produce(name, value=f"m{i}".encode(), partition=i % PARTITIONS, on_delivery=on_delivery)
    assert prod.flush(30) == 0
    assert errors == [] and len(delivered) == 600, errors[:5]
    assert {by_leader[p] for p in delivered} == {1, 2, 3}

    cons = consumer(only)
    cons.assign([TopicPartition(name, p, 0) for p in range(PARTITIONS)])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 600 and time.monotonic() < deadline:
        msg = cons.poll(0.5)
        if msg is not None and not msg.error():
            got.append(msg.value().decode())
    cons.close()
    assert sorted(got) == sorted(f"m{i}" for i in range(600))


def test_controller_killed_new_one_elected_and_restarted_one_catches_up(cluster):
    """kill -9 the active controller: another is elected and CreateTopics
    works again within seconds (measured, printed); the old controller,
    restarted on its data dir, learns the topics created while it was down."""
    old = cluster.wait_controller()
    survivors = [n for n in cluster.nodes.values() if n.node_id != old]
    before = unique_topic("before")
    create_topics(survivors[0].bootstrap, [NewTopic(before, 3, 3)])

    t0 = time.monotonic()
    cluster[old].kill()
    created_while_down = [unique_topic("down")]

    def create_once():
        create_topics(survivors[0].bootstrap, [NewTopic(created_while_down[0], 3, 3)], timeout=3)
        return True
    wait_until(create_once, timeout=20, interval=0.1, what="CreateTopics after controller failover")
    failover_s = time.monotonic() - t0
    print(f"\ncontroller failover: node {old} killed; CreateTopics through node "
          f"{survivors[0].node_id} succeeded after {failover_s:.2f}s")
    new = cluster.wait_controller(exclude=(old,))
    assert new != old
    assert failover_s < 15, f"controller failover took {failover_s:.1f}s"

    created_while_down.append(unique_topic("down"))
    create_topics(survivors[1].bootstrap, [NewTopic(created_while_down[1], 2, 3)])
    for name in created_while_down:
        wait_topic(cluster, name, partitions=3 if name == created_while_down[0] else 2)

    cluster[old].start()
    cluster.wait_ready()

    def caught_up():
        md = cluster[old].metadata()
        return all(t in md["topics"] for t in [before, *created_while_down]) and md
    md = wait_until(caught_up, timeout=15, what=f"node {old} to learn the topics created while down")
    assert md["controller_id"] == cluster.controller_id(survivors[0].node_id)
    assert sorted(md["brokers"]) == [1, 2, 3]
    assert md["topics"] == survivors[0].metadata()["topics"]


class Traffic:
    """Producers (confluent-kafka and kafka-python) sending one record to
    each partition in turn, and a consumer reading every partition from its
    end, each in a thread, recording what succeeded and failed, and when."""

    def __init__(self, bootstrap, topic, interval=0.02):
        self.bootstrap, self.topic, self.interval = bootstrap, topic, interval
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.acked = {"confluent": [], "kafka-python": []}  # (time, partition, value)
        self.errors = {"confluent": [], "kafka-python": []}  # (time, error)
        self.consumed = []  # (time, partition, value)
        self.threads = [threading.Thread(target=f, daemon=True)
                        for f in (self._confluent, self._kafka_python, self._consume)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)

    def _record(self, client, err, partition, value):
        with self.lock:
            if err:
                self.errors[client].append((time.monotonic(), str(err)))
            else:
                self.acked[client].append((time.monotonic(), partition, value))

    def _confluent(self):
        prod = producer(self.bootstrap)
        i = 0
        while not self.stop_flag.is_set():
            value = f"c-{i}"
            prod.produce(self.topic, value=value.encode(), partition=i % PARTITIONS,
                         on_delivery=lambda err, msg, v=value:
                         self._record("confluent", err, msg.partition(), v))
            prod.poll(self.interval)
            i += 1
        prod.flush(25)

    def _kafka_python(self):
        from kafka import KafkaProducer
        prod = KafkaProducer(bootstrap_servers=self.bootstrap.split(","), acks="all", retries=10,
                             retry_backoff_ms=200, request_timeout_ms=5000,
                             metadata_max_age_ms=1000, max_block_ms=20000)
        i = 0
        while not self.stop_flag.is_set():
            value, partition = f"k-{i}", i % PARTITIONS
            future = prod.send(self.topic, value=value.encode(), partition=partition)
            future.add_callback(lambda md, v=value: self._record("kafka-python", None, md.partition, v))
            future.add_errback(lambda exc, v=value, p=partition: self._record("kafka-python", exc, p, v))
            time.sleep(self.interval)
            i += 1
        prod.flush(25)
        prod.close(5)

    def _consume(self):
        cons = consumer(self.bootstrap)
        cons.assign([TopicPartition(self.topic, p, -1) for p in range(PARTITIONS)])  # OFFSET_END
        while not self.stop_flag.is_set():
            msg = cons.poll(0.2)
            if msg is not None and not msg.error():
                with self.lock:
                    self.consumed.append((time.monotonic(), msg.partition(), msg.value().decode()))
        cons.close()

    def acked_after(self, client, t, partitions=None):
        with self.lock:
            return [a for a in self.acked[client]
                    if a[0] > t and (partitions is None or a[1] in partitions)]

    def consumed_after(self, t, partitions=None):
        with self.lock:
            return [c for c in self.consumed
                    if c[0] > t and (partitions is None or c[1] in partitions)]


def test_partition_leader_killed_leaders_move_and_clients_keep_going(cluster):
    """kill -9 a broker (not the controller) that leads partitions: within
    broker.session.timeout.ms plus a margin every partition it led has a new
    leader from the ISR; running confluent-kafka and kafka-python producers
    succeed again without a restart, and a consumer gets the new records."""
    topic = unique_topic("failover")
    create_topics(cluster[1].bootstrap, [NewTopic(topic, PARTITIONS, 3)])
    before = wait_topic(cluster, topic)
    controller = cluster.wait_controller()
    victim = next(n for n in (1, 2, 3)
                  if n != controller and any(p["leader"] == n for p in before.values()))
    moved = {i for i, p in before.items() if p["leader"] == victim}

    traffic = Traffic(cluster.bootstrap, topic).start()
    try:
        wait_until(lambda: len(traffic.acked_after("confluent", 0)) > 20
                   and len(traffic.acked_after("kafka-python", 0)) > 20
                   and len(traffic.consumed_after(0)) > 20,
                   timeout=20, what="traffic to flow before the kill")
        t_kill = time.monotonic()
        cluster[victim].kill()
        survivors = [n for n in cluster.running()]
        limit = cluster.session_timeout_ms / 1000 + FENCING_MARGIN_S

        def moved_everywhere():
            views = [partitions_of(n.metadata([topic]), topic) for n in survivors]
            for view in views:
                for i in moved:
                    p = view[i]
                    if p["leader"] in (-1, victim) or p["leader"] not in p["isr"] or victim in p["isr"]:
                        return None
            return views[0]
        after = wait_until(moved_everywhere, timeout=limit, interval=0.05,
                           what=f"partitions {sorted(moved)} of fenced node {victim} to get new leaders")
        t_moved = time.monotonic()
        print(f"\nnode {victim} killed; partitions {sorted(moved)} had new leaders after "
              f"{t_moved - t_kill:.2f}s (broker.session.timeout.ms={cluster.session_timeout_ms})")
        for i in moved:
            assert after[i]["leader_epoch"] > before[i]["leader_epoch"], (i, before[i], after[i])
            assert after[i]["leader"] in before[i]["isr"], (i, before[i], after[i])
            assert after[i]["replicas"] == before[i]["replicas"], (i, before[i], after[i])
        for i in set(before) - moved:
            assert after[i]["leader"] == before[i]["leader"], (i, before[i], after[i])

        # The same producers and consumer, not restarted, carry on: new
        # records acknowledged on (and consumed from) the moved partitions.
        for client in ("confluent", "kafka-python"):
            wait_until(lambda: len(traffic.acked_after(client, t_moved, moved)) >= 3 * len(moved),
                       timeout=25, what=f"{client} producer to succeed on the new leaders")
        wait_until(lambda: len(traffic.consumed_after(t_moved, moved)) >= 3 * len(moved),
                   timeout=20, what="the consumer to receive records from the new leaders")
    finally:
        traffic.stop()
    for client in ("confluent", "kafka-python"):
        first_ok = min(a[0] for a in traffic.acked_after(client, t_kill, moved))
        print(f"{client}: {len(traffic.acked[client])} acknowledged, "
              f"{len(traffic.errors[client])} delivery errors "
              f"{sorted({e for _, e in traffic.errors[client]})[:3]}; first ack on a moved "
              f"partition {first_ok - t_kill:.2f}s after the kill")
        # A few records in flight to the dead leader may time out; most must not.
        assert len(traffic.errors[client]) <= len(traffic.acked[client]) // 4, traffic.errors[client][:5]
    # Nothing acknowledged (acks=all, both clients) is lost: every value is
    # there when each partition is read from the beginning through the new
    # leaders.
    acked = {value for client in traffic.acked.values() for _, _, value in client}
    reader = consumer(cluster.bootstrap)
    reader.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    read = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not acked <= read:
        msg = reader.poll(0.2)
        if msg is not None and not msg.error():
            read.add(msg.value().decode())
    reader.close()
    assert acked <= read, f"{len(acked - read)} acknowledged records lost"


def test_paused_broker_is_fenced_and_comes_back_on_sigcont(cluster):
    """SIGSTOP a non-controller broker: it is fenced (Metadata drops it);
    SIGCONT: it heartbeats again and is listed again."""
    controller = cluster.wait_controller()
    paused = next(n for n in (1, 2, 3) if n != controller)
    cluster[paused].pause()
    try:
        wait_until(lambda: paused not in cluster[controller].metadata()["brokers"],
                   timeout=cluster.session_timeout_ms / 1000 + FENCING_MARGIN_S,
                   what=f"paused node {paused} to be fenced")
    finally:
        cluster[paused].resume()
    wait_until(lambda: all(paused in n.metadata()["brokers"] for n in cluster.running()),
               timeout=10, what=f"node {paused} to be live again after SIGCONT")


def other_cluster_data_dir_single_node(make_cluster, make_broker):
    """A single-node cluster's data dir (node.id 3, one voter), stopped."""
    other = make_broker(node_id=3)
    wait_until(lambda: "cluster.id=" in open(f"{other.data_dir}/meta.properties").read(),
               timeout=10, what="the other cluster to record its id in meta.properties")
    cluster_id = metadata(other.host, other.port)["cluster_id"]
    other.stop()
    return other.data_dir, cluster_id


def other_cluster_data_dir_three_nodes(make_cluster, make_broker):
    """Node 3's data dir of another three-node cluster (same voter ids), stopped."""
    other = make_cluster(size=3)
    cluster_id = other.metadata()["cluster_id"]
    other.stop()
    return other[3].data_dir, cluster_id


@pytest.mark.parametrize("make_other", [
    pytest.param(other_cluster_data_dir_single_node, id="single-node"),
    pytest.param(other_cluster_data_dir_three_nodes, id="three-node"),
])
def test_data_dir_of_another_cluster_is_refused(make_cluster, make_broker, make_other):
    """Node 3 of a cluster (1 and 2 running) started on the data dir of a
    node 3 of another cluster exits non-zero and says why, naming both
    cluster ids or "another cluster", while nodes 1 and 2 carry on; on a
    fresh data dir node 3 then joins."""
    c = make_cluster(size=3, start=False)
    try:
        for n in (1, 2):
            c[n].spawn()
        for n in (1, 2):
            c[n].wait_accepting()
        c.wait_ready()
        ours = c[1].metadata()["cluster_id"]
        other_dir, theirs = make_other(make_cluster, make_broker)
        assert theirs and theirs != ours

        node3 = c[3]
        fresh_dir, node3.data_dir = node3.data_dir, other_dir
        node3.spawn()
        deadline = time.monotonic() + 20
        while node3.proc.poll() is None and time.monotonic() < deadline:
            for n in (1, 2):
                assert c[n].proc.poll() is None, (
                    f"node {n} of the healthy cluster exited ({c[n].proc.returncode}) when node 3 "
                    f"came with another cluster's data dir; its log:\n{c[n].log_tail(8)}\n"
                    f"node 3's log:\n{node3.log_tail(8)}")
            time.sleep(0.1)
        assert node3.proc.poll() is not None, f"node 3 did not exit; its log:\n{node3.log_tail(12)}"
        code, log = node3.wait_exit(), node3.log()
        assert code != 0, log
        assert "another cluster" in log or (ours in log and theirs in log), log
        assert sorted(c[1].metadata()["brokers"]) == [1, 2]

        node3.data_dir = fresh_dir
        node3.start()
        c.wait_ready()
    except BaseException:
        c.stop(check=False)
        raise


def test_replication_factor_above_brokers_is_invalid_and_explicit_assignment_works(shared_cluster):
    """RF 4 on 3 brokers: INVALID_REPLICATION_FACTOR; explicit replica
    assignments are kept as given (order too), first replica leading."""
    c = shared_cluster
    admin = confluent_admin(Via(c[2].bootstrap))
    too_many = unique_topic("rf4")
    with pytest.raises(KafkaException) as info:
        admin.create_topics([NewTopic(too_many, 3, 4)])[too_many].result(timeout=15)
    assert info.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR, info.value
    assert too_many not in c[1].metadata()["topics"]

    assigned = unique_topic("assigned")
    assignment = [[3, 1, 2], [2, 3], [1]]
    admin.create_topics([NewTopic(assigned, len(assignment), replica_assignment=assignment)])[assigned].result(timeout=15)
    wait_topic(c, assigned, partitions=3)
    for node in c.nodes.values():
        parts = partitions_of(node.metadata([assigned]), assigned)
        assert [parts[i]["replicas"] for i in range(3)] == assignment, (node.node_id, parts)
        assert [parts[i]["leader"] for i in range(3)] == [3, 2, 1], (node.node_id, parts)
        assert [sorted(parts[i]["isr"]) for i in range(3)] == [[1, 2, 3], [2, 3], [1]]


def test_kafkajs_admin_lists_three_brokers(shared_cluster):
    """kafkajs describeCluster through one broker lists all three and the
    controller the brokers' Metadata names."""
    c = shared_cluster
    steps, stderr = run_admin_js(c[3].bootstrap, unique_topic("js"))
    assert steps["describeCluster"]["ok"], (steps["describeCluster"], stderr[-3000:])
    described = steps["describeCluster"]["value"]
    assert sorted((b["nodeId"], b["host"], b["port"]) for b in described["brokers"]) == \
        [(n.node_id, "127.0.0.1", n.port) for n in c.nodes.values()]
    assert described["controller"] == c.controller_id(3)
