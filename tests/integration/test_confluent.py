"""Admin operations through confluent-kafka's AdminClient (librdkafka)."""

import os

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import (
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from conftest import confluent_admin, unique_topic, wait_until

TIMEOUT_S = 15

# Topic configs every Kafka-compatible broker describes; with Kafka's defaults.
CORE_TOPIC_CONFIG_DEFAULTS = {
    "cleanup.policy": "delete",
    "retention.ms": "604800000",
    "retention.bytes": "-1",
    "segment.bytes": "1073741824",
    "max.message.bytes": "1048588",
}


def admin_for(broker):
    return confluent_admin(broker)


@pytest.fixture(scope="module")
def admin(shared_broker):
    return admin_for(shared_broker)


def result(future):
    return future.result(timeout=TIMEOUT_S)


def create(admin, topics, **kwargs):
    """Create topics; returns {name: KafkaError or None}."""
    futures = admin.create_topics(topics, operation_timeout=10, request_timeout=TIMEOUT_S, **kwargs)
    out = {}
    for name, fut in futures.items():
        try:
            result(fut)
            out[name] = None
        except KafkaException as exc:
            out[name] = exc.args[0]
    return out


def create_ok(admin, topics, **kwargs):
    errors = create(admin, topics, **kwargs)
    assert all(e is None for e in errors.values()), f"create_topics failed: {errors}"


def expect_error(errors, name, code):
    err = errors[name]
    assert err is not None, f"{name!r}: expected {KafkaError(code).name()}, got success"
    assert err.code() == code, f"{name!r}: expected error {KafkaError(code).name()}, got {err}"


def topics_metadata(admin):
    return admin.list_topics(timeout=TIMEOUT_S).topics


def describe_topic_configs(admin, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    return result(admin.describe_configs([res], request_timeout=TIMEOUT_S)[res])


def describe_topic(admin, topic):
    futs = admin.describe_topics(TopicCollection([topic]), request_timeout=TIMEOUT_S)
    return result(futs[topic])


def partition_dirs_exist(broker, topic, count):
    return all(os.path.isdir(broker.partition_dir(topic, p)) for p in range(count))


def no_partition_dirs(broker, topic):
    prefix = f"{topic}-"
    return not [d for d in os.listdir(broker.data_dir)
                if d.startswith(prefix) and d[len(prefix):].isdigit()]


def test_list_topics_shows_the_broker(shared_broker, admin):
    """Metadata lists exactly this broker, at its advertised address, as controller."""
    md = admin.list_topics(timeout=TIMEOUT_S)
    assert list(md.brokers) == [shared_broker.node_id]
    b = md.brokers[shared_broker.node_id]
    assert (b.host, b.port) == ("127.0.0.1", shared_broker.port)
    assert md.controller_id == shared_broker.node_id


def test_create_topics_with_configs_then_list(shared_broker, admin):
    """Created topics (with configs and partition counts) are listed with leaders on this broker."""
    compacted, plain = unique_topic("compacted"), unique_topic("plain")
    create_ok(admin, [
        NewTopic(compacted, num_partitions=3, replication_factor=1,
                 config={"retention.ms": "3600000", "cleanup.policy": "compact"}),
        NewTopic(plain, num_partitions=1, replication_factor=1),
    ])
    topics = wait_until(lambda: (t := topics_metadata(admin)) and compacted in t and plain in t and t,
                        what="new topics in metadata")
    for name, count in [(compacted, 3), (plain, 1)]:
        tm = topics[name]
        assert tm.error is None, f"{name}: {tm.error}"
        assert sorted(tm.partitions) == list(range(count))
        for p in tm.partitions.values():
            assert p.error is None
            assert p.leader == shared_broker.node_id
            assert p.replicas == [shared_broker.node_id]
            assert p.isrs == [shared_broker.node_id]
        assert wait_until(lambda: partition_dirs_exist(shared_broker, name, count),
                          what=f"data dirs of {name}")


def test_describe_topic_configs_overrides_and_defaults(admin):
    """DescribeConfigs on a topic: overrides are DYNAMIC_TOPIC_CONFIG, the rest are defaults."""
    topic = unique_topic()
    create_ok(admin, [NewTopic(topic, num_partitions=1, replication_factor=1,
                               config={"retention.ms": "3600000", "cleanup.policy": "compact"})])
    configs = describe_topic_configs(admin, topic)
    missing = set(CORE_TOPIC_CONFIG_DEFAULTS) - set(configs)
    assert not missing, f"topic configs not described: {sorted(missing)}"
    for name, value in [("retention.ms", "3600000"), ("cleanup.policy", "compact")]:
        e = configs[name]
        assert e.value == value
        assert e.is_default is False, f"{name} is overridden but reported as default"
        assert e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, f"{name}: source {e.source}"
        assert e.is_read_only is False
    for name, e in configs.items():
        if name in ("retention.ms", "cleanup.policy"):
            continue
        assert e.source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value, f"{name} reported as overridden"
        assert e.source in (ConfigSource.DEFAULT_CONFIG.value,
                            ConfigSource.STATIC_BROKER_CONFIG.value,
                            ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value), f"{name}: source {e.source}"
        if e.source == ConfigSource.DEFAULT_CONFIG.value:
            assert e.is_default, f"{name}: DEFAULT_CONFIG source but is_default=False"
    for name in ("retention.bytes", "segment.bytes", "max.message.bytes"):
        assert configs[name].value == CORE_TOPIC_CONFIG_DEFAULTS[name], \
            f"{name}: default {configs[name].value!r}, Kafka's is {CORE_TOPIC_CONFIG_DEFAULTS[name]!r}"


def test_describe_configs_of_unknown_topic_fails(admin):
    """DescribeConfigs for a topic that does not exist answers UNKNOWN_TOPIC_OR_PART."""
    with pytest.raises(KafkaException) as exc:
        describe_topic_configs(admin, unique_topic("missing"))
    assert exc.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_describe_broker_configs(shared_broker, admin):
    """DescribeConfigs on BROKER '<node id>' lists broker configs with values and sources."""
    res = ConfigResource(ResourceType.BROKER, str(shared_broker.node_id))
    configs = result(admin.describe_configs([res], request_timeout=TIMEOUT_S)[res])
    assert configs, "no broker configs described"
    assert configs["socket.request.max.bytes"].value == str(100 * 1024 * 1024)
    assert configs["auto.create.topics.enable"].value in ("true", "false")
    for name, e in configs.items():
        assert e.name == name
        assert e.source in {s.value for s in ConfigSource if s != ConfigSource.UNKNOWN_CONFIG}, \
            f"{name}: source {e.source}"
        if e.source == ConfigSource.DEFAULT_CONFIG.value:
            assert e.is_default, f"{name}: DEFAULT_CONFIG source but is_default=False"


def test_create_partitions(shared_broker, admin):
    """CreatePartitions grows a topic from 3 to 5 partitions; shrinking or same count is refused."""
    topic = unique_topic()
    create_ok(admin, [NewTopic(topic, num_partitions=3, replication_factor=1)])
    result(admin.create_partitions([NewPartitions(topic, 5)], request_timeout=TIMEOUT_S)[topic])
    wait_until(lambda: len(topics_metadata(admin)[topic].partitions) == 5, what="5 partitions")
    parts = topics_metadata(admin)[topic].partitions
    assert sorted(parts) == [0, 1, 2, 3, 4]
    assert all(p.leader == shared_broker.node_id for p in parts.values())
    assert wait_until(lambda: partition_dirs_exist(shared_broker, topic, 5), what="5 data dirs")
    for count in (2, 5):
        with pytest.raises(KafkaException) as exc:
            result(admin.create_partitions([NewPartitions(topic, count)],
                                           request_timeout=TIMEOUT_S)[topic])
        assert exc.value.args[0].code() == KafkaError.INVALID_PARTITIONS, \
            f"create_partitions({count}): {exc.value}"
    assert len(topics_metadata(admin)[topic].partitions) == 5


def test_create_partitions_validate_only_and_unknown_topic(admin):
    """validate_only CreatePartitions changes nothing; an unknown topic is UNKNOWN_TOPIC_OR_PART."""
    topic = unique_topic()
    create_ok(admin, [NewTopic(topic, num_partitions=1, replication_factor=1)])
    result(admin.create_partitions([NewPartitions(topic, 4)], validate_only=True,
                                   request_timeout=TIMEOUT_S)[topic])
    assert len(topics_metadata(admin)[topic].partitions) == 1
    missing = unique_topic("missing")
    with pytest.raises(KafkaException) as exc:
        result(admin.create_partitions([NewPartitions(missing, 4)], request_timeout=TIMEOUT_S)[missing])
    assert exc.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_delete_topics_removes_topic_and_data_dirs(shared_broker, admin):
    """DeleteTopics removes the topic from metadata and its partition directories from disk."""
    topic, keep = unique_topic("doomed"), unique_topic("keep")
    create_ok(admin, [NewTopic(topic, num_partitions=2, replication_factor=1),
                      NewTopic(keep, num_partitions=1, replication_factor=1)])
    assert wait_until(lambda: partition_dirs_exist(shared_broker, topic, 2), what="data dirs")
    old_id = str(describe_topic(admin, topic).topic_id)
    result(admin.delete_topics([topic], operation_timeout=10, request_timeout=TIMEOUT_S)[topic])
    wait_until(lambda: topic not in topics_metadata(admin), what="topic gone from metadata")
    wait_until(lambda: no_partition_dirs(shared_broker, topic), what=f"data dirs of {topic} removed")
    assert keep in topics_metadata(admin)
    assert partition_dirs_exist(shared_broker, keep, 1)
    # the name can be reused, with a new topic id
    create_ok(admin, [NewTopic(topic, num_partitions=1, replication_factor=1)])
    assert wait_until(lambda: topic in topics_metadata(admin), what="re-created topic")
    assert str(describe_topic(admin, topic).topic_id) != old_id, "re-created topic kept the old id"
    assert wait_until(lambda: partition_dirs_exist(shared_broker, topic, 1), what="new data dir")


def test_delete_unknown_topic_fails(admin):
    """DeleteTopics of a topic that does not exist answers UNKNOWN_TOPIC_OR_PART."""
    missing = unique_topic("missing")
    with pytest.raises(KafkaException) as exc:
        result(admin.delete_topics([missing], request_timeout=TIMEOUT_S)[missing])
    assert exc.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_duplicate_create_is_topic_already_exists(admin):
    """Creating an existing topic answers TOPIC_ALREADY_EXISTS and leaves it unchanged."""
    topic = unique_topic()
    create_ok(admin, [NewTopic(topic, num_partitions=2, replication_factor=1)])
    errors = create(admin, [NewTopic(topic, num_partitions=4, replication_factor=1)])
    expect_error(errors, topic, KafkaError.TOPIC_ALREADY_EXISTS)
    assert len(topics_metadata(admin)[topic].partitions) == 2


@pytest.mark.parametrize("name", ["bad/name", "..", ".", "a" * 250, "with space", "caf\u00e9", "x:y"],
                         ids=["slash", "dotdot", "dot", "250chars", "space", "non_ascii", "colon"])
def test_bad_topic_name_is_invalid_topic_exception(shared_broker, admin, name):
    """Illegal topic names answer INVALID_TOPIC_EXCEPTION and create nothing."""
    errors = create(admin, [NewTopic(name, num_partitions=1, replication_factor=1)])
    expect_error(errors, name, KafkaError.TOPIC_EXCEPTION)
    assert name not in topics_metadata(admin)
    assert not os.path.exists(shared_broker.partition_dir(name, 0))


def test_longest_legal_topic_name(shared_broker, admin):
    """A 249-character name of legal characters ([a-zA-Z0-9._-]) is accepted."""
    name = ("Ab9._-" * 42)[:249]
    create_ok(admin, [NewTopic(name, num_partitions=1, replication_factor=1)])
    assert wait_until(lambda: name in topics_metadata(admin), what="249-char topic")
    assert wait_until(lambda: partition_dirs_exist(shared_broker, name, 1), what="its data dir")


def test_describe_configs_of_several_resources(shared_broker, admin):
    """One DescribeConfigs call for two topics and a missing one answers per resource."""
    a, b, missing = unique_topic(), unique_topic(), unique_topic("missing")
    create_ok(admin, [NewTopic(a, num_partitions=1, replication_factor=1, config={"retention.ms": "1000"}),
                      NewTopic(b, num_partitions=1, replication_factor=1)])
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in (a, b, missing)]
    futures = admin.describe_configs(resources, request_timeout=TIMEOUT_S)
    got = {}
    for res, fut in futures.items():
        try:
            got[res.name] = result(fut)
        except KafkaException as exc:
            got[res.name] = exc.args[0]
    assert got[a]["retention.ms"].value == "1000" and not got[a]["retention.ms"].is_default
    assert got[b]["retention.ms"].is_default
    assert isinstance(got[missing], KafkaError) and got[missing].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_validate_only_creates_nothing(shared_broker, admin):
    """validate_only=True validates (success or error) without creating the topic."""
    topic = unique_topic()
    errors = create(admin, [NewTopic(topic, num_partitions=3, replication_factor=1,
                                     config={"cleanup.policy": "compact"})], validate_only=True)
    assert errors[topic] is None, f"validate_only create failed: {errors[topic]}"
    bad = unique_topic()
    errors = create(admin, [NewTopic(bad, num_partitions=1, replication_factor=1,
                                     config={"retention.ms": "not-a-number"})], validate_only=True)
    expect_error(errors, bad, KafkaError.INVALID_CONFIG)
    existing = unique_topic()
    create_ok(admin, [NewTopic(existing, num_partitions=1, replication_factor=1)])
    errors = create(admin, [NewTopic(existing, num_partitions=1, replication_factor=1)], validate_only=True)
    expect_error(errors, existing, KafkaError.TOPIC_ALREADY_EXISTS)
    md = topics_metadata(admin)
    assert topic not in md and bad not in md
    assert no_partition_dirs(shared_broker, topic)
    # and the real create still works afterwards
    create_ok(admin, [NewTopic(topic, num_partitions=3, replication_factor=1)])


@pytest.mark.parametrize("config", [
    {"retention.ms": "not-a-number"},
    {"cleanup.policy": "bogus"},
    {"segment.bytes": "-5"},
    {"no.such.config": "1"},
], ids=["retention_ms_nan", "cleanup_policy_bogus", "segment_bytes_negative", "unknown_name"])
def test_invalid_config_is_invalid_config(admin, config):
    """An invalid topic config value or unknown config name answers INVALID_CONFIG."""
    topic = unique_topic()
    errors = create(admin, [NewTopic(topic, num_partitions=1, replication_factor=1, config=config)])
    expect_error(errors, topic, KafkaError.INVALID_CONFIG)
    assert topic not in topics_metadata(admin)


def test_replication_factor_above_broker_count_is_refused(admin):
    """Replication factor 3 on a single-node cluster answers INVALID_REPLICATION_FACTOR."""
    topic = unique_topic()
    errors = create(admin, [NewTopic(topic, num_partitions=1, replication_factor=3)])
    expect_error(errors, topic, KafkaError.INVALID_REPLICATION_FACTOR)
    assert topic not in topics_metadata(admin)


def test_broker_default_partitions_and_replication(shared_broker, admin):
    """num_partitions/replication_factor -1 use the broker's num.partitions and default RF."""
    res = ConfigResource(ResourceType.BROKER, str(shared_broker.node_id))
    broker_configs = result(admin.describe_configs([res], request_timeout=TIMEOUT_S)[res])
    default_partitions = int(broker_configs["num.partitions"].value)
    topic = unique_topic()
    create_ok(admin, [NewTopic(topic)])  # -1 / -1
    parts = wait_until(lambda: topics_metadata(admin)[topic].partitions, what="topic with defaults")
    assert len(parts) == default_partitions
    assert all(p.replicas == [shared_broker.node_id] for p in parts.values())


def test_describe_topics_has_topic_id(shared_broker, admin):
    """DescribeTopics reports a non-zero topic id and all partitions."""
    topic = unique_topic()
    create_ok(admin, [NewTopic(topic, num_partitions=3, replication_factor=1)])
    desc = wait_until(lambda: describe_topic(admin, topic), what="describe_topics")
    assert desc.name == topic
    assert str(desc.topic_id) not in ("", "AAAAAAAAAAAAAAAAAAAAAA")  # base64 of the zero UUID
    assert [p.id for p in desc.partitions] == [0, 1, 2]
    assert all(p.leader.id == shared_broker.node_id for p in desc.partitions)


def test_restart_keeps_topics_ids_partitions_and_configs(broker):
    """After a clean restart, topics keep their ids, partition counts and configs; deleted stay deleted."""
    admin = admin_for(broker)
    kept, grown, deleted = unique_topic("kept"), unique_topic("grown"), unique_topic("deleted")
    create_ok(admin, [
        NewTopic(kept, num_partitions=3, replication_factor=1,
                 config={"retention.ms": "3600000", "cleanup.policy": "compact"}),
        NewTopic(grown, num_partitions=1, replication_factor=1),
        NewTopic(deleted, num_partitions=1, replication_factor=1),
    ])
    result(admin.create_partitions([NewPartitions(grown, 4)], request_timeout=TIMEOUT_S)[grown])
    result(admin.delete_topics([deleted], request_timeout=TIMEOUT_S)[deleted])
    wait_until(lambda: deleted not in topics_metadata(admin), what="deleted topic gone")
    ids_before = {t: str(describe_topic(admin, t).topic_id) for t in (kept, grown)}
    del admin

    broker.restart()

    admin = admin_for(broker)
    md = topics_metadata(admin)
    assert kept in md and grown in md, f"topics lost in restart: {sorted(md)}"
    assert deleted not in md, "a deleted topic came back after restart"
    assert len(md[kept].partitions) == 3
    assert len(md[grown].partitions) == 4
    ids_after = {t: str(describe_topic(admin, t).topic_id) for t in (kept, grown)}
    assert ids_after == ids_before
    configs = describe_topic_configs(admin, kept)
    assert configs["retention.ms"].value == "3600000"
    assert configs["cleanup.policy"].value == "compact"
    assert configs["cleanup.policy"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert describe_topic_configs(admin, grown)["cleanup.policy"].is_default
    assert partition_dirs_exist(broker, kept, 3) and partition_dirs_exist(broker, grown, 4)
    assert no_partition_dirs(broker, deleted)
    # a topic created after the restart gets a fresh id
    fresh = unique_topic("fresh")
    create_ok(admin, [NewTopic(fresh, num_partitions=1, replication_factor=1)])
    assert str(describe_topic(admin, fresh).topic_id) not in ids_before.values()
