"""Admin operations through kafka-python's KafkaAdminClient (pure-Python client)."""

import os

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import (
    InvalidConfigurationError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicIdError,
    UnknownTopicOrPartitionError,
)

from conftest import unique_topic, wait_until


@pytest.fixture(scope="module")
def admin(shared_broker):
    client = KafkaAdminClient(
        bootstrap_servers=shared_broker.bootstrap,
        client_id="sluice-kafka-python-test",
        request_timeout_ms=15000,
        bootstrap_timeout_ms=15000,
    )
    yield client
    client.close()


def partition_counts(admin, topics):
    return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(topics)}


def test_describe_cluster_lists_the_broker(shared_broker, admin):
    """describe_cluster shows one broker (this one) which is also the controller."""
    cluster = admin.describe_cluster()
    brokers = cluster["brokers"]
    assert [(b["broker_id"], b["host"], b["port"]) for b in brokers] == \
        [(shared_broker.node_id, "127.0.0.1", shared_broker.port)]
    assert cluster["controller_id"] == shared_broker.node_id


def test_create_list_describe_configs_partitions_delete(shared_broker, admin):
    """The whole topic lifecycle: create with configs, list, describe configs, add partitions, delete."""
    topic = unique_topic("kp")
    admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1,
                                 "configs": {"retention.ms": "7200000", "cleanup.policy": "compact"}}})
    wait_until(lambda: topic in admin.list_topics(), what="topic listed")
    meta = admin.describe_topics([topic])[0]
    assert meta["error_code"] == 0
    assert sorted(p["partition_index"] for p in meta["partitions"]) == [0, 1, 2]
    assert all(p["leader_id"] == shared_broker.node_id for p in meta["partitions"])
    assert all(p["replica_nodes"] == [shared_broker.node_id] for p in meta["partitions"])

    # describe_configs: modified only (the default filter) and everything
    res = ConfigResource(ConfigResourceType.TOPIC, topic)
    modified = admin.describe_configs([res])["topic"][topic]
    assert {k: v["value"] for k, v in modified.items()} == \
        {"retention.ms": "7200000", "cleanup.policy": "compact"}
    for entry in modified.values():
        assert entry["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert entry["read_only"] is False
    everything = admin.describe_configs([res], config_filter="all")["topic"][topic]
    assert {"retention.ms", "cleanup.policy", "segment.bytes", "retention.bytes"} <= set(everything)
    for name, entry in everything.items():
        if name not in modified:
            assert entry["config_source"] in ("DEFAULT_CONFIG", "STATIC_BROKER_CONFIG",
                                              "DYNAMIC_DEFAULT_BROKER_CONFIG"), (name, entry)
            assert entry["value"] is not None, f"{name} has no value"

    # filtering by name returns just those configs
    only = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, ["segment.bytes"])],
                                  config_filter="all")["topic"][topic]
    assert list(only) == ["segment.bytes"]

    admin.create_partitions({topic: 5})
    wait_until(lambda: partition_counts(admin, [topic])[topic] == 5, what="5 partitions")
    assert all(os.path.isdir(shared_broker.partition_dir(topic, p)) for p in range(5))

    admin.delete_topics([topic])
    wait_until(lambda: topic not in admin.list_topics(), what="topic deleted")
    wait_until(lambda: not any(os.path.exists(shared_broker.partition_dir(topic, p)) for p in range(5)),
               what="data dirs removed")


def test_describe_broker_configs(shared_broker, admin):
    """describe_configs on the broker resource returns its configs (all filter)."""
    node = str(shared_broker.node_id)
    configs = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, node)],
                                     config_filter="all")["broker"][node]
    assert configs["socket.request.max.bytes"]["value"] == str(100 * 1024 * 1024)
    assert "auto.create.topics.enable" in configs
    assert "num.partitions" in configs


def test_errors(admin):
    """Duplicate, bad name, bad config, bad partitions and replication factor raise the Kafka errors."""
    topic = unique_topic("kp")
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    with pytest.raises(InvalidTopicError):
        admin.create_topics({"bad/name": {"num_partitions": 1, "replication_factor": 1}})
    with pytest.raises(InvalidConfigurationError):
        admin.create_topics({unique_topic(): {"num_partitions": 1, "replication_factor": 1,
                                              "configs": {"retention.ms": "soon"}}})
    with pytest.raises(InvalidPartitionsError):
        admin.create_topics({unique_topic(): {"num_partitions": 0, "replication_factor": 1}})
    with pytest.raises(InvalidReplicationFactorError):
        admin.create_topics({unique_topic(): {"num_partitions": 1, "replication_factor": 0}})
    with pytest.raises(InvalidReplicationFactorError):
        admin.create_topics({unique_topic(): {"num_partitions": 1, "replication_factor": 2}})
    with pytest.raises(InvalidPartitionsError):
        admin.create_partitions({topic: 1})
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.delete_topics([unique_topic("missing")])


def test_validate_only(admin):
    """validate_only create answers per-topic results without creating anything."""
    good, bad = unique_topic("v"), unique_topic("v")
    resp = admin.create_topics({good: {"num_partitions": 2, "replication_factor": 1},
                                bad: {"num_partitions": 1, "replication_factor": 1,
                                      "configs": {"cleanup.policy": "nope"}}},
                               validate_only=True, raise_errors=False)
    codes = {t["name"]: t["error_code"] for t in resp["topics"]}
    assert codes == {good: 0, bad: InvalidConfigurationError.errno}
    listed = admin.list_topics()
    assert good not in listed and bad not in listed


def test_mixed_batch_reports_per_topic_errors(admin):
    """One CreateTopics request with good and bad topics creates the good ones only."""
    good, dup = unique_topic("ok"), unique_topic("dup")
    admin.create_topics({dup: {"num_partitions": 1, "replication_factor": 1}})
    resp = admin.create_topics({good: {"num_partitions": 1, "replication_factor": 1},
                                dup: {"num_partitions": 1, "replication_factor": 1},
                                "..": {"num_partitions": 1, "replication_factor": 1}},
                               raise_errors=False)
    codes = {t["name"]: t["error_code"] for t in resp["topics"]}
    assert codes == {good: 0, dup: TopicAlreadyExistsError.errno, "..": InvalidTopicError.errno}
    wait_until(lambda: good in admin.list_topics(), what="good topic listed")


def test_mixed_batches_for_partitions_and_deletes(admin):
    """CreatePartitions and DeleteTopics with good and bad topics in one request answer per topic."""
    a, b, missing = unique_topic("mix"), unique_topic("mix"), unique_topic("missing")
    admin.create_topics({a: {"num_partitions": 1, "replication_factor": 1},
                         b: {"num_partitions": 3, "replication_factor": 1}})
    resp = admin.create_partitions({a: 2, b: 2, missing: 4}, raise_errors=False)
    codes = {r.name: r.error_code for r in resp.results}
    assert codes == {a: 0, b: InvalidPartitionsError.errno, missing: UnknownTopicOrPartitionError.errno}
    wait_until(lambda: partition_counts(admin, [a, b]) == {a: 2, b: 3}, what="a grown, b unchanged")
    resp = admin.delete_topics([a, missing], raise_errors=False)
    codes = {t["name"]: t["error_code"] for t in resp["topics"]}
    assert codes == {a: 0, missing: UnknownTopicOrPartitionError.errno}
    wait_until(lambda: a not in admin.list_topics(), what="a deleted")
    assert b in admin.list_topics()


def test_delete_topic_by_id(shared_broker, admin):
    """DeleteTopics v6+ deletes by topic id (when the broker advertises v6+)."""
    import uuid

    from test_wire import assert_api_versions_ok, connect

    with connect(shared_broker) as s:
        apis = assert_api_versions_ok(s, 1)
    if apis[20][1] < 6:
        pytest.skip(f"broker's DeleteTopics max version is {apis[20][1]} (< 6): no delete by id")
    topic = unique_topic("byid")
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    topic_id = uuid.UUID(admin.describe_topics([topic])[0]["topic_id"])
    resp = admin.delete_topics([topic_id])
    assert [t["error_code"] for t in resp["topics"]] == [0]
    wait_until(lambda: topic not in admin.list_topics(), what="topic deleted by id")
    with pytest.raises(UnknownTopicIdError):
        admin.delete_topics([uuid.uuid4()])
