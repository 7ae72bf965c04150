"""Fetch's `max_bytes` for the whole response (KIP-74).

The records of a Fetch response stay within the request's `max_bytes` summed
over all partitions; only the first batch of the first non-empty partition
may exceed it, so that a consumer always progresses.
"""

import logging
import time

import pytest

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from conftest import confluent_admin, unique_topic

PARTITIONS = 3
RECORDS_PER_PARTITION = 3
CONSUME_TIMEOUT_S = 30.0


@pytest.mark.parametrize("record_kib,cold", [(900, False), (500, False), (500, True)],
                         ids=["900KiB", "500KiB", "500KiB-cold"])
def test_consumer_with_small_fetch_max_bytes_gets_large_records(broker, record_kib, cold):
    """Issue 14's repro: three partitions of 900 KiB records and a librdkafka
    consumer whose `receive.message.max.bytes` is just above its
    `fetch.max.bytes`. A response holding more than one such record is too
    large for it to receive, so it would retry forever. With 500 KiB records,
    two batches fit a partition's `max.partition.fetch.bytes` but not the
    response's `fetch.max.bytes`."""
    record_bytes = record_kib * 1024
    topic = unique_topic("fetchmax")
    admin = confluent_admin(broker)
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1,
                  config={"max.message.bytes": str(4 * 1024 * 1024)})],
        operation_timeout=10, request_timeout=30)
    for future in futures.values():
        future.result()

    producer = Producer({
        "bootstrap.servers": broker.bootstrap,
        "message.max.bytes": 4 * 1024 * 1024,
        "acks": "all",
        "logger": logging.getLogger("librdkafka"),
    })
    errors = []

    def delivered(err, _msg):
        if err is not None:
            errors.append(err)

    expected = set()
    for partition in range(PARTITIONS):
        for i in range(RECORDS_PER_PARTITION):
            key = f"{partition}-{i}".encode()
            value = key + b"x" * (record_bytes - len(key))
            producer.produce(topic, value=value, key=key, partition=partition,
                             on_delivery=delivered)
            producer.poll(0)
            expected.add(key)
    assert producer.flush(30) == 0
    assert errors == []
    if cold:
        broker.restart()

    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": unique_topic("g"),
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.max.bytes": 1000000,
        "receive.message.max.bytes": 1000512,
        "max.partition.fetch.bytes": 1048576,
        "logger": logging.getLogger("librdkafka"),
    })
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        got = {}
        consume_errors = []
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while len(got) < len(expected) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error() is not None:
                # e.g. a response too large to receive: the client retries
                consume_errors.append(msg.error())
                continue
            assert len(msg.value()) == record_bytes
            assert msg.value().startswith(msg.key())
            got[msg.key()] = (msg.partition(), msg.offset())
        assert set(got) == expected, (
            f"got {len(got)} of {len(expected)} records in {CONSUME_TIMEOUT_S}s; "
            f"errors: {consume_errors[:3]}")
        assert consume_errors == []
        for key, (partition, offset) in got.items():
            assert key == f"{partition}-{offset}".encode()
    finally:
        consumer.close()
