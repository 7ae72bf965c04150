"""Authorization (ACLs) with real clients: ACLs added with `sluice acls`
while User:ANONYMOUS is a super user, kept in the metadata log across a
restart without super users, then enforced on confluent-kafka and
kafka-python (every PLAINTEXT client is User:ANONYMOUS)."""

import json
import os
import subprocess

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, NewTopic,
                                   ResourcePatternType, ResourceType)

from cluster import make_cluster  # noqa: F401 (fixture)
from conftest import confluent_admin, unique_topic, wait_until

AUTHORIZER = ["--set", "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"]
SUPER_ANONYMOUS = ["--set", "super.users=User:ANONYMOUS"]
CLI_TIMEOUT_S = 60

pytestmark = pytest.mark.skipif(bool(os.environ.get("SLUICE_CMD")),
                                reason="sluice-specific: ACLs in the metadata log")


def sluice(broker, *args, check=True):
    command = [os.environ["SLUICE_BIN"], *args, "--bootstrap-server", broker.bootstrap]
    result = subprocess.run(command, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    if check:
        assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def produce(broker, topic, values, **config):
    """Produces `values`; returns the delivery errors' codes (None for success)."""
    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 10000,
                         **config})
    outcomes = []
    for value in values:
        producer.produce(topic, value=value,
                         on_delivery=lambda err, _msg: outcomes.append(err.code() if err else None))
    producer.flush(20)
    assert len(outcomes) == len(values)
    return outcomes


def consume_all(broker, topic, group, count):
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    values, errors = [], []
    try:
        def done():
            msg = consumer.poll(0.5)
            if msg is not None:
                if msg.error():
                    errors.append(msg.error().code())
                else:
                    values.append(msg.value())
            return len(values) >= count or errors
        wait_until(done, timeout=30, what=f"{count} records of {topic}")
        if not errors:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return values, errors


@pytest.fixture
def secured(make_broker):
    """A broker with ACLs added while User:ANONYMOUS was a super user, then
    restarted without super users; returns (broker, topic names)."""
    broker = make_broker(extra_args=AUTHORIZER + SUPER_ANONYMOUS)
    names = {kind: unique_topic(kind) for kind in ("readable", "secret", "blocked")}
    names["prefix"] = unique_topic("pay") + "-"
    names["paid"] = names["prefix"] + "in"
    names["blocked"] = names["prefix"] + "blocked"
    admin = confluent_admin(broker)
    topics = [NewTopic(name, num_partitions=1, replication_factor=1)
              for key, name in names.items() if key != "prefix"]
    for future in admin.create_topics(topics).values():
        future.result(30)
    assert produce(broker, names["readable"], [b"a", b"b", b"c"]) == [None] * 3
    assert produce(broker, names["secret"], [b"s"]) == [None]
    sluice(broker, "acls", "add", "--allow-principal", "User:ANONYMOUS", "--operation", "Read",
           "--topic", names["readable"])
    sluice(broker, "acls", "add", "--allow-principal", "User:ANONYMOUS", "--operation", "Write",
           "--topic", names["prefix"], "--resource-pattern-type", "prefixed")
    sluice(broker, "acls", "add", "--deny-principal", "User:*", "--operation", "Write",
           "--topic", names["blocked"])
    sluice(broker, "acls", "add", "--allow-principal", "User:ANONYMOUS", "--operation", "Read",
           "--group", "readers")
    listed = json.loads(sluice(broker, "acls", "list", "--output", "json").stdout)
    assert len(listed) == 4, listed
    assert {"resource_type": "TOPIC", "resource_name": names["prefix"], "pattern_type": "PREFIXED",
            "principal": "User:ANONYMOUS", "host": "*", "operation": "WRITE",
            "permission": "ALLOW"} in listed
    broker.extra_args = list(AUTHORIZER)
    broker.restart()
    return broker, names


def test_acls_survive_restart_and_are_enforced(secured):
    broker, names = secured

    # READ on the topic and the group: consume and commit.
    values, errors = consume_all(broker, names["readable"], "readers", 3)
    assert errors == [] and values == [b"a", b"b", b"c"]

    # READ is not WRITE: the producer sees TOPIC_AUTHORIZATION_FAILED.
    assert produce(broker, names["readable"], [b"x"]) == [KafkaError.TOPIC_AUTHORIZATION_FAILED]

    # Metadata hides what the principal may not DESCRIBE.
    listed = set(confluent_admin(broker).list_topics(timeout=10).topics)
    assert {names["readable"], names["paid"], names["blocked"]} <= listed
    assert names["secret"] not in listed

    # A prefixed ALLOW covers pay-...-in; the DENY on pay-...-blocked beats it.
    assert produce(broker, names["paid"], [b"p"]) == [None]
    assert produce(broker, names["blocked"], [b"q"]) == [KafkaError.TOPIC_AUTHORIZATION_FAILED]

    # No READ on the group: kafka-python cannot commit in it.
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="strangers",
                             enable_auto_commit=False, request_timeout_ms=15000)
    try:
        partition = TopicPartition(names["readable"], 0)
        consumer.assign([partition])
        with pytest.raises(GroupAuthorizationFailedError):
            consumer.commit({partition: OffsetAndMetadata(1, "", -1)})
    finally:
        consumer.close()

    # OffsetFetch of a topic without DESCRIBE, in a group it may read.
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="readers",
                             enable_auto_commit=False)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            consumer.committed(TopicPartition(names["secret"], 0))
        assert consumer.committed(TopicPartition(names["readable"], 0)) == 3
    finally:
        consumer.close()

    # A topic without READ (nor DESCRIBE): the consumer is told so.
    values, errors = consume_all(broker, names["secret"], "readers", 1)
    assert values == [] and KafkaError.TOPIC_AUTHORIZATION_FAILED in errors, errors

    # Cluster operations and topic administration are refused.
    admin = confluent_admin(broker)
    created = admin.create_topics([NewTopic(unique_topic("new"), 1, 1)])
    for future in created.values():
        with pytest.raises(Exception) as refused:
            future.result(30)
        assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    for future in admin.delete_topics([names["readable"]]).values():
        with pytest.raises(Exception) as refused:
            future.result(30)
        assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    grant = AclBinding(ResourceType.TOPIC, names["secret"], ResourcePatternType.LITERAL,
                       "User:ANONYMOUS", "*", AclOperation.READ, AclPermissionType.ALLOW)
    for future in admin.create_acls([grant]).values():
        with pytest.raises(Exception) as refused:
            future.result(30)
        assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    result = sluice(broker, "acls", "add", "--allow-principal", "User:ANONYMOUS",
                    "--operation", "All", "--cluster", check=False)
    assert result.returncode != 0 and "CLUSTER_AUTHORIZATION_FAILED" in result.stderr


def test_remove_takes_effect(secured):
    broker, names = secured
    # Back as a super user to manage ACLs, then remove the READ.
    broker.extra_args = AUTHORIZER + SUPER_ANONYMOUS
    broker.restart()
    removed = sluice(broker, "acls", "remove", "--topic", names["readable"], "--output", "json")
    assert [acl["operation"] for acl in json.loads(removed.stdout)] == ["READ"]
    broker.extra_args = list(AUTHORIZER)
    broker.restart()
    listed = set(confluent_admin(broker).list_topics(timeout=10).topics)
    assert names["readable"] not in listed


def test_authorizer_off_allows_everything_and_refuses_acl_apis(broker):
    topic = unique_topic("open")
    assert produce(broker, topic, [b"v"]) == [None]
    values, errors = consume_all(broker, topic, "anyone", 1)
    assert errors == [] and values == [b"v"]
    result = sluice(broker, "acls", "list", check=False)
    assert result.returncode != 0 and "SECURITY_DISABLED" in result.stderr


def test_acls_created_on_one_broker_apply_on_every_broker(make_cluster):
    """Three nodes; ACLs added through node 1 are in every node's metadata,
    kept across a restart of the cluster without super users. Replication
    (followers' Fetch as User:ANONYMOUS) goes on because of the
    CLUSTER_ACTION ACL on the cluster."""
    cluster = make_cluster(size=3, extra_args=AUTHORIZER + SUPER_ANONYMOUS)
    node1 = cluster[1]
    writable, readonly, secret = (unique_topic(kind) for kind in ("rw", "ro", "secret"))
    admin = confluent_admin(node1)
    topics = [NewTopic(name, num_partitions=3, replication_factor=3)
              for name in (writable, readonly, secret)]
    for future in admin.create_topics(topics).values():
        future.result(30)
    sluice(node1, "acls", "add", "--allow-principal", "User:ANONYMOUS",
           "--operation", "ClusterAction", "--cluster")
    sluice(node1, "acls", "add", "--allow-principal", "User:ANONYMOUS",
           "--operation", "Write", "--topic", writable)
    sluice(node1, "acls", "add", "--allow-principal", "User:ANONYMOUS",
           "--operation", "Read", "--topic", readonly)
    cluster.stop()
    for node in cluster.nodes.values():
        at = node.extra_args.index(SUPER_ANONYMOUS[1])
        del node.extra_args[at - 1:at + 1]
    cluster.start()

    for node in cluster.nodes.values():
        def visible(node=node):
            return set(node.metadata()["topics"])
        seen = wait_until(lambda: visible() >= {writable, readonly} and visible(),
                          timeout=15, what=f"node {node.node_id} to list the topics")
        assert secret not in seen, f"node {node.node_id} shows {secret}"

    # Followers fetch as User:ANONYMOUS: with CLUSTER_ACTION they catch up
    # and rejoin every ISR after the restart.
    def full_isr():
        partitions = cluster.metadata(topics=[writable])["topics"][writable]["partitions"]
        return all(sorted(p["isr"]) == [1, 2, 3] for p in partitions.values())
    wait_until(full_isr, timeout=60, interval=0.5, what="every ISR to hold all three nodes")
    assert produce(cluster, writable, [b"%d" % i for i in range(30)], acks="all") == [None] * 30
    assert set(produce(cluster, readonly, [b"x"])) == {KafkaError.TOPIC_AUTHORIZATION_FAILED}
    assert full_isr()


def test_readme_authorization(tmp_path):
    """The README's "Authorization (ACLs)" blocks, run as written (with
    test_readme.py's substitutions): start with a super user, create and
    grant, restart without it, then use."""
    from test_readme import ROOT, Workdir, commands, fenced_blocks

    blocks = [text for headings, lang, text in fenced_blocks(os.path.join(ROOT, "README.md"))
              if lang == "sh" and headings.get(2) == "Securing Sluice"
              and headings.get(3) == "Authorization (ACLs)"]
    start_super, grant, start, use = blocks
    workdir = Workdir(tmp_path)
    try:
        (command,) = commands(start_super)
        workdir.start_broker(command)
        granted = [workdir.run(command) for command in commands(grant)]
        workdir.stop_broker()
        (command,) = commands(start)
        workdir.start_broker(command)
        used = {command: workdir.run(command) for command in commands(use)}
        workdir.stop_broker()
    finally:
        workdir.close()
    assert "PREFIXED" in granted[-1] and "pay-" in granted[-1], granted[-1]
    by_start = lambda prefix: next(out for c, out in used.items() if c.startswith(prefix))  # noqa: E731
    assert by_start("sluice consume").split() == ["1", "2", "3", "4", "5"]
    listed = by_start("sluice topics list")
    assert all(name in listed for name in ("orders", "pay-in", "pay-secret")), listed
    assert "audit" not in listed, listed
    assert by_start("echo refused | sluice produce --topic orders").strip() == "no WRITE on orders"
    assert "DENY beats" in by_start("echo refused | sluice produce --topic pay-secret")
    assert "needs ALTER or DESCRIBE" in by_start("sluice acls list")
