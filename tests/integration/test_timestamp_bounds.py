"""Produce timestamp bounds (KIP-937) and Kafka's compaction-lag rule.

With `message.timestamp.type=CreateTime`, a record whose timestamp is more
than `message.timestamp.after.max.ms` ahead of the broker's clock (Kafka
4.0's default: one hour) or more than `message.timestamp.before.max.ms`
behind it is refused: its batch answers INVALID_TIMESTAMP with per-record
`record_errors` (KIP-467) naming those records, and nothing of the batch is
written. LogAppendTime topics take any timestamp. A topic whose
`min.compaction.lag.ms` exceeds its `max.compaction.lag.ms` is refused.
"""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from conftest import confluent_admin, record_batch, unique_topic
from test_record_errors import produce_v9

INVALID_TIMESTAMP = 32
HOUR_MS = 3_600_000
RECORDS = 50
FUTURE = [3, 4, 17, 30, 49]
ONE_PER_BATCH = {"batch.num.messages": 1, "linger.ms": 0}


def create(admin, topic, **config):
    futures = admin.create_topics([NewTopic(topic, 1, 1, config=config)])
    futures[topic].result(timeout=30)


def produce(broker, topic, timestamps, **config):
    """Records `i` at `timestamps[i]` to partition 0 (by default one batch:
    linger); returns {index: error code or None}."""
    conf = {"bootstrap.servers": broker.bootstrap, "linger.ms": 200,
            "batch.num.messages": 1000, "message.timeout.ms": 30000}
    conf.update(config)
    producer = Producer(conf)
    outcome = {}

    def report(error, message):
        outcome[int(message.value())] = None if error is None else error.code()

    for index, timestamp in timestamps.items():
        producer.produce(topic, value=str(index).encode(), partition=0, timestamp=timestamp,
                         on_delivery=report)
    assert producer.flush(60) == 0
    return outcome


def read_all(broker, topic):
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_topic("g"),
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    got = []
    deadline = time.monotonic() + 30
    while len(got) < high and time.monotonic() < deadline:
        for message in consumer.consume(100, 0.5):
            if not message.error():
                got.append((int(message.value()), message.timestamp()[1]))
    consumer.close()
    return got


def future_timestamps():
    now = int(time.time() * 1000)
    return {i: now + 2 * HOUR_MS if i in FUTURE else now for i in range(RECORDS)}


def test_records_two_hours_ahead_fail_with_invalid_timestamp(broker):
    """Under the default after.max.ms (one hour), each record 2 hours ahead
    fails with INVALID_TIMESTAMP and every other one is written (one record
    per batch, so that a batch holds nothing but its own record)."""
    admin = confluent_admin(broker)
    topic = unique_topic("ts")
    create(admin, topic)
    timestamps = future_timestamps()
    outcome = produce(broker, topic, timestamps, **ONE_PER_BATCH)
    assert outcome == {i: KafkaError.INVALID_TIMESTAMP if i in FUTURE else None
                       for i in range(RECORDS)}
    others = [i for i in range(RECORDS) if i not in FUTURE]
    assert read_all(broker, topic) == [(i, timestamps[i]) for i in others]


def test_one_batch_names_the_records_ahead(broker):
    """A batch holding records 2 hours ahead is refused whole with
    INVALID_TIMESTAMP, `record_errors` naming exactly those records by index
    with Kafka's message. librdkafka fails the named records (with
    INVALID_RECORD when there are several: its mapping, not the broker's
    code) and the others with _INVALID_DIFFERENT_RECORD; it does not resend
    them itself."""
    admin = confluent_admin(broker)
    topic = unique_topic("ts")
    create(admin, topic)
    timestamps = future_timestamps()
    values = [str(i).encode() for i in range(RECORDS)]
    answer = produce_v9(broker, topic, record_batch(values, timestamps=list(timestamps.values())))
    assert answer["error_code"] == INVALID_TIMESTAMP
    assert answer["base_offset"] == -1
    assert [index for index, _ in answer["record_errors"]] == FUTURE
    for index, message in answer["record_errors"]:
        assert message.startswith(f"Timestamp {timestamps[index]} of message with offset {index} "
                                  "is out of range"), message
    assert "invalid timestamp" in answer["error_message"]

    outcome = produce(broker, topic, timestamps)
    named = sorted(i for i, code in outcome.items()
                   if code in (KafkaError.INVALID_RECORD, KafkaError.INVALID_TIMESTAMP))
    assert named == FUTURE
    others = [i for i in range(RECORDS) if i not in FUTURE]
    assert sorted(i for i, code in outcome.items()
                  if code == KafkaError._INVALID_DIFFERENT_RECORD) == others
    assert read_all(broker, topic) == []


def test_before_bound_and_log_append_time(broker):
    admin = confluent_admin(broker)
    now = int(time.time() * 1000)
    old = {0: now, 1: now - 2 * HOUR_MS, 2: now}
    bounded = unique_topic("before")
    create(admin, bounded, **{"message.timestamp.before.max.ms": str(HOUR_MS)})
    refused = {0: None, 1: KafkaError.INVALID_TIMESTAMP, 2: None}
    assert produce(broker, bounded, old, **ONE_PER_BATCH) == refused

    # The deprecated difference.max.ms bounds the past side too.
    deprecated = unique_topic("difference")
    create(admin, deprecated, **{"message.timestamp.difference.max.ms": str(HOUR_MS)})
    assert produce(broker, deprecated, old, **ONE_PER_BATCH) == refused

    # LogAppendTime: the broker's clock replaces the timestamps; no bound.
    append_time = unique_topic("append")
    create(admin, append_time, **{"message.timestamp.type": "LogAppendTime",
                                  "message.timestamp.before.max.ms": str(HOUR_MS)})
    future = {0: now + 2 * HOUR_MS, 1: now - 2 * HOUR_MS}
    assert produce(broker, append_time, future) == {0: None, 1: None}

    # Raised at runtime, the bound lets the same records in.
    resource = ConfigResource(ConfigResource.Type.TOPIC, bounded, incremental_configs=[
        ConfigEntry("message.timestamp.before.max.ms", str(3 * HOUR_MS),
                    incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)
    deadline = time.monotonic() + 10
    while produce(broker, bounded, old) != {0: None, 1: None, 2: None}:
        assert time.monotonic() < deadline, "the raised bound never reached the partition"


def test_min_compaction_lag_above_max_is_invalid_config(broker):
    admin = confluent_admin(broker)
    topic = unique_topic("lag")
    conflict = {"min.compaction.lag.ms": "60000", "max.compaction.lag.ms": "1000"}
    with pytest.raises(KafkaException) as refused:
        create(admin, topic, **conflict)
    error = refused.value.args[0]
    assert error.code() == KafkaError.INVALID_CONFIG
    assert "min.compaction.lag.ms (60000) > max.compaction.lag.ms (1000)" in error.str()
    assert topic not in admin.list_topics(timeout=10).topics

    create(admin, topic, **{"max.compaction.lag.ms": "1000"})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("min.compaction.lag.ms", "60000", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as refused:
        admin.incremental_alter_configs([resource])[resource].result(timeout=30)
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG
    described = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([described])[described].result(timeout=10)
    assert configs["min.compaction.lag.ms"].value == "0"
