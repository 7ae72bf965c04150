"""Topic configs Kafka 3.x/4.x accepts (issue 14), through confluent-kafka's
AdminClient: created, described with source DYNAMIC_TOPIC_CONFIG, altered and
deleted; unknown names and values Kafka refuses answer INVALID_CONFIG."""

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)

from conftest import confluent_admin, unique_topic

TIMEOUT_S = 15

# The examples: names Kafka accepts that Sluice once refused.
KAFKA_CONFIGS = {
    "message.format.version": "3.0-IV1",
    "message.downconversion.enable": "false",
    "preallocate": "true",
    "unclean.leader.election.enable": "true",
    "leader.replication.throttled.replicas": "0:1",
    "follower.replication.throttled.replicas": "*",
    "remote.storage.enable": "false",
    "local.retention.ms": "86400000",
    "local.retention.bytes": "1073741824",
}


@pytest.fixture(scope="module")
def admin(shared_broker):
    return confluent_admin(shared_broker)


def create(admin, topic, config):
    """None on success, else the KafkaError."""
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=config)],
                                  operation_timeout=10, request_timeout=TIMEOUT_S)
    try:
        futures[topic].result(timeout=TIMEOUT_S)
        return None
    except KafkaException as exc:
        return exc.args[0]


def describe(admin, topic):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([resource], request_timeout=TIMEOUT_S)[resource].result(timeout=TIMEOUT_S)


def alter(admin, topic, *entries):
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(key, value, incremental_operation=operation) for key, value, operation in entries
    ])
    return admin.incremental_alter_configs([resource], request_timeout=TIMEOUT_S)[resource].result(
        timeout=TIMEOUT_S)


def test_create_with_kafka_topic_configs_then_describe(admin):
    """CreateTopics with each example config succeeds; DescribeConfigs reports it as a topic override."""
    topic = unique_topic("kafkaconf")
    assert create(admin, topic, KAFKA_CONFIGS) is None
    configs = describe(admin, topic)
    for name, value in KAFKA_CONFIGS.items():
        entry = configs[name]
        assert entry.value == value, f"{name}: {entry.value!r}"
        assert entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, f"{name}: source {entry.source}"
        assert entry.is_default is False, name
    # Kafka's other topic configs are described with their defaults.
    for name, value in [("compression.gzip.level", "-1"), ("compression.lz4.level", "9"),
                        ("compression.zstd.level", "3"), ("remote.log.copy.disable", "false"),
                        ("remote.log.delete.on.disable", "false")]:
        assert configs[name].value == value, f"{name}: {configs[name].value!r}"
        assert configs[name].source == ConfigSource.DEFAULT_CONFIG.value, name


def test_incremental_alter_sets_and_deletes(admin):
    """IncrementalAlterConfigs sets one of them, then deletes it back to the default."""
    topic = unique_topic("kafkaconf")
    assert create(admin, topic, {}) is None
    alter(admin, topic, ("leader.replication.throttled.replicas", "0:1,0:2", AlterConfigOpType.SET),
          ("compression.zstd.level", "-5", AlterConfigOpType.SET))
    configs = describe(admin, topic)
    entry = configs["leader.replication.throttled.replicas"]
    assert (entry.value, entry.source) == ("0:1,0:2", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert configs["compression.zstd.level"].value == "-5"
    alter(admin, topic, ("leader.replication.throttled.replicas", None, AlterConfigOpType.DELETE))
    entry = describe(admin, topic)["leader.replication.throttled.replicas"]
    assert (entry.value, entry.source) == ("", ConfigSource.DEFAULT_CONFIG.value)


@pytest.mark.parametrize("name,value", [
    ("no.such.config", "1"),                          # unknown name, as in Kafka
    ("leader.replication.throttled.replicas", "0-1"),  # not PARTITION:BROKER
    ("compression.gzip.level", "10"),                  # gzip: 1 to 9, or -1
    ("remote.storage.enable", "true"),                 # no tiered storage
])
def test_refused_configs_are_invalid_config(admin, name, value):
    """Unknown names and values Kafka refuses answer INVALID_CONFIG on create and on alter."""
    topic = unique_topic("kafkaconf")
    error = create(admin, topic, {name: value})
    assert error is not None and error.code() == KafkaError.INVALID_CONFIG, f"{name}={value}: {error}"
    assert create(admin, topic, {}) is None
    with pytest.raises(KafkaException) as raised:
        alter(admin, topic, (name, value, AlterConfigOpType.SET))
    assert raised.value.args[0].code() == KafkaError.INVALID_CONFIG, f"{name}={value}: {raised.value}"
