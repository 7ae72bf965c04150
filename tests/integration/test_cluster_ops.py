"""Operating a 3-node cluster (issue 12): `sluice cluster describe | quorum`,
`sluice topics reassign | elect-leaders`, ElectLeaders through confluent-kafka's
AdminClient, a reassignment that removes a replica (its directory leaves the
broker), the cluster gauges on `--metrics`, and a broker killed with SIGKILL
shown fenced once its session times out.

The three `sluice` processes share one module-scoped fixture; the test that
kills a broker runs last."""

import os
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import Broker, _binary, confluent_admin, free_port, unique_topic, wait_until
from test_cli import sluice, sluice_json, table

NODES = (1, 2, 3)
SESSION_TIMEOUT_MS = 3000
# Fast fencing; no automatic preferred-leader moves, so the tests decide them.
SETTINGS = (
    f"broker.session.timeout.ms={SESSION_TIMEOUT_MS}",
    "broker.heartbeat.interval.ms=500",
    "auto.leader.rebalance.enable=false",
)


class Cluster:
    def __init__(self, brokers, metrics):
        self.brokers = brokers  # node id -> Broker
        self.metrics = metrics  # node id -> metrics port

    def any(self):
        return next(b for b in self.brokers.values() if b.is_running())

    def gauges(self, node):
        url = f"http://127.0.0.1:{self.metrics[node]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return {name: int(value) for name, value in
                re.findall(r"^(sluice_[a-z_]+) (\d+)$", text, re.MULTILINE)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.environ.get("SLUICE_CMD"):
        pytest.skip("a three-node cluster needs sluice's own flags, not SLUICE_CMD")
    binary = _binary()
    controller_ports = {node: free_port() for node in NODES}
    voters = ",".join(f"{node}@127.0.0.1:{port}" for node, port in controller_ports.items())
    metrics = {node: free_port() for node in NODES}
    brokers = {}
    for node in NODES:
        data_dir = str(tmp_path_factory.mktemp(f"node{node}") / "data")
        os.mkdir(data_dir)
        template = (
            "{bin} --node-id {node_id} --data-dir {data_dir} --listen 127.0.0.1:{port} "
            f"--controller-listen 127.0.0.1:{controller_ports[node]} "
            f"--controller-quorum-voters {voters} --shards 1 "
            f"--metrics 127.0.0.1:{metrics[node]}"
        )
        extra = [arg for setting in SETTINGS for arg in ("--set", setting)]
        brokers[node] = Broker(binary, data_dir, node_id=node, extra_args=extra, template=template)
    try:
        # A node accepts clients only once the quorum registered it, so the
        # three start together.
        with ThreadPoolExecutor(len(brokers)) as pool:
            for started in [pool.submit(b.start) for b in brokers.values()]:
                started.result()
        cluster = Cluster(brokers, metrics)

        def formed(broker):
            described = sluice_json(broker, "cluster", "describe")
            live = [b for b in described["brokers"] if b["status"] == "live"]
            return (len(live) == 3 and described["controller_id"] in NODES
                    and described["cluster_id"])
        for broker in brokers.values():
            wait_until(lambda: formed(broker), timeout=30, interval=0.3,
                       what=f"node {broker.node_id} to see three live brokers and a controller")
        yield cluster
    finally:
        for broker in brokers.values():
            try:
                broker.stop(check=True)
            finally:
                broker.kill()


def create(cluster, topic, assignment):
    """A topic with one partition per replica list in `assignment`."""
    from confluent_kafka.admin import NewTopic
    admin = confluent_admin(cluster.any())
    futures = admin.create_topics([NewTopic(topic, num_partitions=len(assignment), replica_assignment=assignment)])
    futures[topic].result(timeout=30)


def partitions(cluster, topic):
    """`topics describe --output json`: partition index -> its description."""
    [described] = sluice_json(cluster.any(), "topics", "describe", "--topic", topic)
    return {p["partition"]: p for p in described["partitions"]}


def test_cluster_describe_lists_three_brokers_and_the_controller(cluster):
    text = sluice(cluster.brokers[2], "cluster", "describe").stdout
    summary, rest = text.split("\n", 1)
    assert re.fullmatch(r"ClusterId: \S{22}  Controller: [123]", summary), summary
    rows = table(rest)
    assert [row["BROKER"] for row in rows] == ["1", "2", "3"]
    assert all(row["STATUS"] == "live" and row["VOTER"] == "yes" for row in rows)
    assert [row["CONTROLLER"] for row in rows].count("yes") == 1
    ports = {str(node): b.port for node, b in cluster.brokers.items()}
    assert all(row["ENDPOINT"] == f"127.0.0.1:{ports[row['BROKER']]}" for row in rows)


def test_cluster_quorum_shows_three_voters_and_a_leader(cluster):
    status = sluice_json(cluster.brokers[3], "cluster", "quorum")
    assert status["current_voters"] == [1, 2, 3]
    assert status["leader_id"] in NODES
    assert status["leader_epoch"] >= 1
    assert status["high_watermark"] >= 1
    assert status["current_observers"] == []
    text = sluice(cluster.brokers[3], "cluster", "quorum").stdout
    fields = dict(line.split(":", 1) for line in text.splitlines())
    assert fields["LeaderId"].strip() == str(status["leader_id"])
    assert fields["CurrentVoters"].strip() == "[1,2,3]"
    rows = table(sluice(cluster.brokers[1], "cluster", "quorum", "--replication").stdout)
    assert sorted(row["NODE"] for row in rows) == ["1", "2", "3"]
    assert [row["STATUS"] for row in rows].count("Leader") == 1
    # Exactly one node says it is the active controller, and it is the leader.
    active = {node: cluster.gauges(node)["sluice_active_controller"] for node in NODES}
    assert active == {node: int(node == status["leader_id"]) for node in NODES}


def test_preferred_election_through_confluent_admin(cluster):
    from confluent_kafka import ElectionType, TopicPartition
    topic = unique_topic("elect")
    create(cluster, topic, [[2, 3, 1]])
    assert partitions(cluster, topic)[0]["leader"] == 2
    # Reordering completes at once and keeps the leader: 1 is now preferred.
    sluice(cluster.brokers[1], "topics", "reassign", "--topic", topic, "--partition", "0",
           "--replicas", "1,2,3")
    wait_until(lambda: partitions(cluster, topic)[0]["replicas"] == [1, 2, 3],
               what="the reordered replicas")
    assert partitions(cluster, topic)[0]["leader"] == 2

    admin = confluent_admin(cluster.brokers[3])
    result = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0)]).result(timeout=30)
    assert list(result.values()) == [None], result
    assert partitions(cluster, topic)[0]["leader"] == 1
    # Again: nothing to do, which Kafka reports as ELECTION_NOT_NEEDED.
    result = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0)]).result(timeout=30)
    [error] = result.values()
    assert error is not None and error.name() == "ELECTION_NOT_NEEDED", result

    # The CLI: a topic's partitions, and an unknown partition.
    rows = table(sluice(cluster.brokers[2], "topics", "elect-leaders", "--topic", topic).stdout)
    assert [(r["PARTITION"], r["RESULT"]) for r in rows] == [("0", "ELECTION_NOT_NEEDED")]
    failed = sluice(cluster.brokers[2], "topics", "elect-leaders", "--topic", topic,
                    "--partition", "7", "--election-type", "unclean", check=False)
    assert failed.returncode == 1
    assert "UNKNOWN_TOPIC_OR_PARTITION" in failed.stdout + failed.stderr


def test_a_reassignment_that_removes_a_replica_completes(cluster):
    topic = unique_topic("move")
    create(cluster, topic, [[1, 2, 3], [2, 3, 1]])
    removed_dir = cluster.brokers[1].partition_dir(topic, 0)
    wait_until(lambda: os.path.isdir(removed_dir), what="the replica's directory on broker 1")

    out = sluice(cluster.brokers[3], "topics", "reassign", "--topic", topic, "--partition", "0",
                 "--replicas", "2,3").stdout
    assert out.startswith(f"Reassignment of {topic}-0 to replicas 2,3 started")
    wait_until(lambda: partitions(cluster, topic)[0]["replicas"] == [2, 3],
               what="the new replica list")
    after = partitions(cluster, topic)
    assert after[0]["leader"] == 2 and after[0]["isr"] == [2, 3]
    assert after[1]["replicas"] == [2, 3, 1]  # the other partition is untouched
    wait_until(lambda: not os.path.exists(removed_dir), what="broker 1 to delete its replica")
    assert os.path.isdir(cluster.brokers[1].partition_dir(topic, 1))
    assert sluice_json(cluster.any(), "topics", "reassign", "--list") == []

    # Nothing left to cancel; a broker that does not exist is refused.
    cancel = sluice(cluster.brokers[1], "topics", "reassign", "--topic", topic,
                    "--partition", "0", "--cancel", check=False)
    assert cancel.returncode == 1 and "NO_REASSIGNMENT_IN_PROGRESS" in cancel.stderr
    bad = sluice(cluster.brokers[1], "topics", "reassign", "--topic", topic,
                 "--partition", "1", "--replicas", "1,9", check=False)
    assert bad.returncode == 1 and "INVALID_REPLICA_ASSIGNMENT" in bad.stderr


def test_a_killed_broker_is_shown_fenced(cluster):
    """Runs last: broker 3 stays dead."""
    topic = unique_topic("fence")
    create(cluster, topic, [[3, 1, 2]])
    victim = cluster.brokers[3]
    victim.kill()  # SIGKILL

    def fenced():
        described = sluice_json(cluster.brokers[1], "cluster", "describe")
        return {b["id"]: b["status"] for b in described["brokers"]} == {
            1: "live", 2: "live", 3: "fenced"}
    wait_until(fenced, timeout=SESSION_TIMEOUT_MS / 1000 + 15, interval=0.3,
               what="broker 3 to be fenced")
    rows = table(sluice(cluster.brokers[2], "cluster", "describe").stdout.split("\n", 1)[1])
    assert [row["STATUS"] for row in rows] == ["live", "live", "fenced"]

    # Its leadership moved within the ISR, and it is shown offline.
    wait_until(lambda: partitions(cluster, topic)[0]["leader"] == 1, what="a new leader")
    moved = partitions(cluster, topic)[0]
    assert moved["offline_replicas"] == [3] and moved["isr"] == [1, 2]
    text = sluice(cluster.brokers[1], "topics", "describe", "--topic", topic).stdout
    assert table(text.split("\n", 1)[1])[0]["OFFLINE"] == "3"

    # The quorum still has three voters, one of them behind or unknown.
    status = sluice_json(cluster.brokers[1], "cluster", "quorum")
    assert status["current_voters"] == [1, 2, 3] and status["leader_id"] in (1, 2)
    controller = status["leader_id"]
    gauges = cluster.gauges(controller)
    assert gauges["sluice_active_controller"] == 1
    assert gauges["sluice_fenced_brokers"] == 1
    assert gauges["sluice_cluster_under_replicated_partitions"] >= 1
    assert gauges["sluice_cluster_offline_partitions"] == 0
