"""Partition replication with real processes and real faults (kill -9,
SIGSTOP): three `sluice` brokers on 127.0.0.1, driven with confluent-kafka
(librdkafka) and kafka-python.

What is checked is what Kafka users rely on: acks=all is refused below
min.insync.replicas and nothing is acknowledged then; acknowledged records
survive the loss of their leader; a follower whose log diverged (records
its old leadership appended that no one else has) is truncated to the new
leader's epoch boundary, so a divergent record is never served; clients
keep producing and consuming through a leader kill, with committed offsets
intact.
"""

import os
import signal
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import _binary, free_port, unique_topic, wait_until

SESSION_TIMEOUT_MS = 3000
HEARTBEAT_MS = 500


class Node:
    def __init__(self, cluster, node_id, data_dir, port, controller_port):
        self.cluster = cluster
        self.node_id = node_id
        self.data_dir = data_dir
        self.port = port
        self.controller_port = controller_port
        self.proc = None
        self.log_path = os.path.join(os.path.dirname(data_dir), f"node{node_id}.log")

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self, extra=()):
        command = [
            self.cluster.binary, "--node-id", str(self.node_id), "--data-dir", self.data_dir,
            "--listen", self.address, "--controller-listen", f"127.0.0.1:{self.controller_port}",
            "--controller-quorum-voters", self.cluster.voters, "--shards", "1",
            "--set", f"broker.session.timeout.ms={SESSION_TIMEOUT_MS}",
            "--set", f"broker.heartbeat.interval.ms={HEARTBEAT_MS}",
            *self.cluster.extra, *extra,
        ]
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def signal(self, sig):
        self.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Cluster:
    def __init__(self, tmp_path, size=3, extra=()):
        self.binary = _binary()
        self.extra = list(extra)
        ports = [(free_port(), free_port()) for _ in range(size)]
        self.voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        self.nodes = {}
        for i, (port, controller) in enumerate(ports):
            node_id = i + 1
            data_dir = str(tmp_path / f"d{node_id}")
            self.nodes[node_id] = Node(self, node_id, data_dir, port, controller)

    def start(self):
        for node in self.nodes.values():
            node.start()
        wait_until(lambda: len(self.admin().list_topics(timeout=2).brokers) == len(self.nodes),
                   timeout=30, what="every broker registered")

    def stop(self):
        for node in self.nodes.values():
            node.stop()

    def bootstrap(self, exclude=()):
        return ",".join(n.address for i, n in self.nodes.items() if i not in exclude)

    def admin(self, exclude=()):
        return AdminClient({"bootstrap.servers": self.bootstrap(exclude)})

    def create_topic(self, name, partitions=3, replication=3, **configs):
        admin = self.admin()
        configs = {k.replace("_", "."): str(v) for k, v in configs.items()}
        admin.create_topics([NewTopic(name, partitions, replication, config=configs)])[name].result(30)
        wait_until(lambda: all(len(p.isrs) == replication for p in
                               admin.list_topics(name, timeout=2).topics[name].partitions.values()),
                   timeout=20, what=f"{name} fully replicated")

    def partition(self, topic, index, exclude=()):
        metadata = self.admin(exclude).list_topics(topic, timeout=5)
        return metadata.topics[topic].partitions[index]

    def logs(self):
        out = []
        for node in self.nodes.values():
            if os.path.exists(node.log_path):
                with open(node.log_path) as f:
                    out.append(f"=== node {node.node_id}\n" + "".join(f.readlines()[-40:]))
        return "\n".join(out)


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path)
    cluster.start()
    yield cluster
    cluster.stop()
    print(cluster.logs())


def produce(bootstrap, topic, values, partition=None, **config):
    """Produces `values`; returns (acknowledged values, delivery errors)."""
    acked, errors = [], []

    def report(error, message):
        if error is None:
            acked.append(message.value().decode())
        else:
            errors.append(error)

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, **config})
    for value in values:
        if partition is None:
            producer.produce(topic, value.encode(), on_delivery=report)
        else:
            producer.produce(topic, value.encode(), partition=partition, on_delivery=report)
        producer.poll(0)
    producer.flush(60)
    return acked, errors


def consume_all(bootstrap, topic, partitions, expected=None, timeout=30):
    """Every record of the topic's partitions from the beginning, as
    (partition, offset, value)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("reader"),
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    records = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            if expected is not None and len(records) >= expected:
                break
            if expected is None and time.monotonic() - quiet_since > 3:
                break
            continue
        if message.error():
            continue
        quiet_since = time.monotonic()
        records.append((message.partition(), message.offset(), message.value().decode()))
    consumer.close()
    return records


def test_acks_all_is_refused_below_min_insync_replicas_and_acks_1_still_works(tmp_path):
    """Two of a partition's three brokers die. Five brokers, so that the
    metadata quorum (every broker is a voter) survives losing two and can
    shrink the ISR; with three combined brokers, losing two loses the
    quorum, and acks=all then times out instead (nothing changes the ISR)."""
    cluster = Cluster(tmp_path, size=5)
    try:
        cluster.start()
        topic = unique_topic("minisr")
        admin = cluster.admin()
        new = NewTopic(topic, num_partitions=1, replica_assignment=[[1, 2, 3]], config={"min.insync.replicas": "2"})
        admin.create_topics([new])[topic].result(30)
        wait_until(lambda: sorted(cluster.partition(topic, 0).isrs) == [1, 2, 3], timeout=20,
                   what="the partition fully replicated")
        for node_id in (2, 3):
            cluster.nodes[node_id].signal(signal.SIGKILL)
        wait_until(lambda: cluster.partition(topic, 0, exclude=[2, 3]).isrs == [1],
                   timeout=SESSION_TIMEOUT_MS / 1000 + 10, what="the ISR shrinks to the leader")
        bootstrap = cluster.nodes[1].address
        # No retries, so that the broker's error is what the client reports
        # (librdkafka retries NOT_ENOUGH_REPLICAS until the message times out).
        acked, errors = produce(bootstrap, topic, [f"all-{i}" for i in range(5)],
                                acks="all", retries=0, **{"message.timeout.ms": 5000})
        assert acked == [], "nothing may be acknowledged to acks=all"
        assert errors and all(e.code() == KafkaError.NOT_ENOUGH_REPLICAS for e in errors), errors
        acked, errors = produce(bootstrap, topic, [f"one-{i}" for i in range(5)], acks=1)
        assert errors == [] and len(acked) == 5
        values = [value for _, _, value in consume_all(bootstrap, topic, 1, expected=5)]
        assert values == [f"one-{i}" for i in range(5)], "no acks=all record was appended"
    finally:
        cluster.stop()
        print(cluster.logs())


def test_acknowledged_records_survive_a_leader_kill(cluster):
    topic = unique_topic("survive")
    cluster.create_topic(topic, partitions=3, min_insync_replicas=2)
    values = [f"v{i}" for i in range(3000)]
    acked, errors = produce(cluster.bootstrap(), topic, values, acks="all",
                            **{"enable.idempotence": True})
    assert errors == [] and len(acked) == len(values)
    leader = cluster.partition(topic, 0).leader
    cluster.nodes[leader].signal(signal.SIGKILL)
    survivors = cluster.bootstrap(exclude=[leader])
    wait_until(lambda: cluster.partition(topic, 0, exclude=[leader]).leader not in (leader, -1),
               timeout=SESSION_TIMEOUT_MS / 1000 + 10, what="a new leader for partition 0")
    records = consume_all(survivors, topic, 3, expected=len(acked))
    consumed = sorted(value for _, _, value in records)
    assert consumed == sorted(acked), "every acknowledged record, once"
    # The old leader comes back, catches up and rejoins every ISR.
    cluster.nodes[leader].start()
    wait_until(lambda: all(leader in p.isrs for p in
                           cluster.admin().list_topics(topic, timeout=2).topics[topic].partitions.values()),
               timeout=30, what="the restarted broker back in every ISR")


def test_a_divergent_follower_is_truncated_to_the_new_leaders_epoch(tmp_path):
    """The old leader appends records (acks=1) that its follower never gets,
    dies, and the follower leads; when the old leader comes back it must cut
    those records, so no consumer ever reads them."""
    # Three brokers (the metadata quorum outlives one), the partition on two.
    cluster = Cluster(tmp_path, size=3, extra=["--set", "broker.session.timeout.ms=6000"])
    try:
        cluster.start()
        topic = unique_topic("diverge")
        admin = cluster.admin()
        admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[1, 2]])])[topic].result(30)
        wait_until(lambda: sorted(cluster.partition(topic, 0).isrs) == [1, 2], timeout=20,
                   what="the partition replicated")
        old, new = 1, 2
        assert cluster.partition(topic, 0).leader == old
        base, _ = produce(cluster.bootstrap(), topic, [f"base-{i}" for i in range(50)], acks="all")
        assert len(base) == 50
        # The follower stops fetching; the leader appends what only it has.
        cluster.nodes[new].signal(signal.SIGSTOP)
        # Its fetch parked at the leader times out (replica.fetch.wait.max.ms)
        # and is answered empty: the follower gets nothing of what follows.
        time.sleep(1.5)
        lost, errors = produce(cluster.nodes[old].address, topic, [f"old-{i}" for i in range(30)], acks=1)
        assert len(lost) == 30 and errors == []
        time.sleep(1)  # synced on the old leader: a real divergence, not a torn tail
        cluster.nodes[old].signal(signal.SIGKILL)
        cluster.nodes[new].signal(signal.SIGCONT)
        wait_until(lambda: cluster.partition(topic, 0, exclude=[old]).leader == new,
                   timeout=20, what="the follower leads")
        fresh, errors = produce(cluster.nodes[new].address, topic, [f"new-{i}" for i in range(20)], acks=1)
        assert len(fresh) == 20 and errors == []
        cluster.nodes[old].start()
        wait_until(lambda: sorted(cluster.partition(topic, 0).isrs) == [1, 2],
                   timeout=30, what="the old leader back in the ISR")
        # Make the old leader lead again and read everything from it.
        cluster.nodes[new].signal(signal.SIGKILL)
        wait_until(lambda: cluster.partition(topic, 0, exclude=[new]).leader == old,
                   timeout=20, what="the old leader leads again")
        records = consume_all(cluster.nodes[old].address, topic, 1, expected=70)
        values = [value for _, _, value in records]
        assert not [v for v in values if v.startswith("old-")], "a divergent record was served"
        assert values == [f"base-{i}" for i in range(50)] + [f"new-{i}" for i in range(20)]
        assert [offset for _, offset, _ in records] == list(range(70))
        with open(cluster.nodes[old].log_path) as log:
            assert "truncated to the leader's epoch boundary" in log.read()
    finally:
        cluster.stop()
        print(cluster.logs())


def test_clients_keep_working_through_a_leader_kill_with_committed_offsets_intact(cluster):
    from kafka import KafkaProducer

    topic = unique_topic("clients")
    cluster.create_topic(topic, partitions=3, min_insync_replicas=2)
    group = unique_topic("group")
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    confluent = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all",
                          "enable.idempotence": True, "linger.ms": 2})
    python = KafkaProducer(bootstrap_servers=cluster.bootstrap(), acks="all", retries=20,
                           retry_backoff_ms=200, request_timeout_ms=10000)
    acked, seen = set(), []

    def report(error, message):
        if error is None:
            acked.add(message.value().decode())

    def produce_round(tag, count):
        futures = []
        for i in range(count):
            confluent.produce(topic, f"c-{tag}-{i}".encode(), on_delivery=report)
            futures.append((f"p-{tag}-{i}", python.send(topic, f"p-{tag}-{i}".encode())))
            confluent.poll(0)
        confluent.flush(60)
        for value, future in futures:
            future.get(timeout=60)
            acked.add(value)

    def drain(until):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not until():
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                seen.append(message.value().decode())
                consumer.commit(message=message, asynchronous=False)

    produce_round("before", 200)
    drain(lambda: set(seen) >= acked)
    leader = cluster.partition(topic, 0).leader
    cluster.nodes[leader].signal(signal.SIGKILL)
    produce_round("after", 200)
    drain(lambda: set(seen) >= acked)
    assert set(seen) >= acked, f"{len(acked - set(seen))} acknowledged records not consumed"
    positions = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    consumer.close()
    python.close()
    # A new member of the group starts from the committed offsets: nothing
    # already consumed comes again.
    cluster.nodes[leader].start()
    again = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": group,
                      "auto.offset.reset": "earliest"})
    committed = again.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    assert [c.offset for c in committed] == [p.offset for p in positions]
    again.subscribe([topic])
    extra = []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        message = again.poll(0.5)
        if message is not None and not message.error():
            extra.append(message.value().decode())
    again.close()
    assert extra == [], "records consumed before were delivered again"


def test_kafkajs_producer_and_group_through_a_leader_kill(cluster):
    """kafkajs (its idempotent producer, then a consumer group) through a
    kill -9 of a partition leader: every record exactly once."""
    import json
    import shutil

    node = shutil.which("node")
    script = os.path.join(os.path.dirname(__file__), "..", "js", "produce_consume.js")
    if node is None or not os.path.isdir(os.path.join(os.path.dirname(script), "node_modules", "kafkajs")):
        pytest.fail("kafkajs is not installed (tests/run.sh installs it)", pytrace=False)
    topic = unique_topic("kafkajs")
    cluster.create_topic(topic, partitions=3, min_insync_replicas=2)
    leader = cluster.partition(topic, 0).leader
    survivor = next(n for i, n in cluster.nodes.items() if i != leader)
    count = 10000
    producer = subprocess.Popen([node, script, "produce", survivor.address, topic, str(count), "none"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    cluster.nodes[leader].signal(signal.SIGKILL)
    out, err = producer.communicate(timeout=180)
    assert producer.returncode == 0, err[-3000:]
    consumer = subprocess.run([node, script, "consume", survivor.address, topic, str(count),
                               unique_topic("jsgroup")], capture_output=True, text=True, timeout=180)
    assert consumer.returncode == 0, consumer.stderr[-3000:]
    records = json.loads(consumer.stdout.strip().splitlines()[-1])["records"]
    keys = [r["key"] for r in records]
    assert len(keys) == count and set(keys) == {f"k{i}" for i in range(count)}, \
        f"{count - len(set(keys))} missing, {len(keys) - len(set(keys))} duplicated"
