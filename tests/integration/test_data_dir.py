"""The data directory (issue 11): a relative `data.dir` works like an absolute
one, and a partition whose directory cannot be opened is offline on its own
without stopping its shard from opening anything else.

Every other suite starts brokers on absolute temporary directories; these
start them in a temporary working directory with `./data`, as users do.
"""

import os
import struct

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import NewTopic

from conftest import confluent_admin, free_port, unique_topic, wait_until
from test_operations import parse_prometheus, scrape, total
from test_wire import Reader, connect, frame, read_response, request_header_v1

LIST_OFFSETS = 2

NO_DATA_DIR = "{bin} --listen 127.0.0.1:{port} --advertise 127.0.0.1:{port} --shards 2"


def produce(broker, topic, count, partition=None):
    """Produces `count` records with acks=all; returns the delivery errors."""
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all",
                         "message.timeout.ms": 15000})
    errors = []
    for i in range(count):
        kwargs = {} if partition is None else {"partition": partition}
        producer.produce(topic, f"{topic}-{i}".encode(),
                         on_delivery=lambda err, _msg: err and errors.append(err), **kwargs)
    assert producer.flush(30) == 0
    return errors


def consume_all(broker, topic, expected):
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_topic("g"),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    values = []
    try:
        def read():
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                values.append(message.value().decode())
            return len(values) >= expected
        wait_until(read, timeout=30, what=f"{expected} records of {topic}")
    finally:
        consumer.close()
    return values


def list_offsets_error(broker, topic, partition):
    """The error code of a ListOffsets v1 (latest) for one partition, by hand:
    clients wait for a leader and never ask an offline partition."""
    body = struct.pack(">ii", -1, 1) + struct.pack(">h", len(topic)) + topic.encode()
    body += struct.pack(">iiq", 1, partition, -1)
    with connect(broker) as sock:
        sock.sendall(frame(request_header_v1(LIST_OFFSETS, 1, 7) + body))
        r = Reader(read_response(sock))
    assert r.unpack(">i") == 7

    def partition_response():
        index, error, _timestamp, _offset = r.unpack(">ihqq")
        return index, error

    topics = r.array(lambda: (r.string(), r.array(partition_response)))
    assert topics[0][0] == topic and topics[0][1][0][0] == partition, topics
    return topics[0][1][0][1]


@pytest.mark.parametrize("data_dir_args", ["", "--data-dir data", "--data-dir ./data"],
                         ids=["default", "flag-data", "flag-dot-data"])
def test_relative_data_dir_works_like_an_absolute_one(make_broker, data_dir_args):
    broker = make_broker(template=f"{NO_DATA_DIR} {data_dir_args}")
    # The README's repro: an auto-created topic, then topics created after it.
    assert produce(broker, "numbers", 100) == []
    admin = confluent_admin(broker)
    for topic in ("x1", "x2"):
        admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(timeout=30)
        assert produce(broker, topic, 10) == []
    assert sorted(consume_all(broker, "x2", 10)) == sorted(f"x2-{i}" for i in range(10))
    assert os.path.isdir(broker.partition_dir("x1", 1))
    log = broker.log()
    assert f"data_dir={broker.data_dir}" in log  # the absolute path
    assert "partition log created" in log
    assert "recovered" not in log  # a new partition has nothing to recover

    broker.restart()
    assert len(consume_all(broker, "numbers", 100)) == 100
    assert "recovered" not in broker.log()  # clean shutdown, clean open


def test_partition_that_cannot_open_is_offline_and_the_shard_keeps_working(make_broker):
    metrics_port = free_port()
    broker = make_broker(extra_args=["--metrics", f"127.0.0.1:{metrics_port}"])
    admin = confluent_admin(broker)
    # The injected open failure: a file where partition 1's directory goes.
    with open(broker.partition_dir("blocked", 1), "w") as blocker:
        blocker.write("not a directory\n")

    admin.create_topics([NewTopic("blocked", 4, 1)])["blocked"].result(timeout=30)
    partitions = admin.list_topics("blocked", timeout=10).topics["blocked"].partitions
    offline = partitions[1]
    assert offline.error is not None and offline.error.code() == KafkaError.KAFKA_STORAGE_ERROR
    # No leader; the ISR is the controller's record (its last member stays,
    # as in Kafka), and the replica is listed offline.
    assert offline.leader == -1 and offline.isrs == [1] and offline.replicas == [1]
    for index in (0, 2, 3):
        assert partitions[index].error is None and partitions[index].leader == 1
        assert produce(broker, "blocked", 5, partition=index) == []
    assert list_offsets_error(broker, "blocked", 1) == KafkaError.KAFKA_STORAGE_ERROR
    assert list_offsets_error(broker, "blocked", 2) == 0

    # Every later topic, on every shard, still opens.
    for i in range(3):
        topic = f"after-{i}"
        admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(timeout=30)
        assert produce(broker, topic, 8) == []
    assert len(consume_all(broker, "after-2", 8)) == 8

    log = broker.log()
    assert "partition offline" in log and "blocked-1" in log, log
    assert total(parse_prometheus(scrape(metrics_port)), "sluice_partitions_offline") == 1

    # Deleting the topic forgets the offline partition; the name works again.
    admin.delete_topics(["blocked"])["blocked"].result(timeout=30)
    assert total(parse_prometheus(scrape(metrics_port)), "sluice_partitions_offline") == 0
    if os.path.isfile(broker.partition_dir("blocked", 1)):
        os.remove(broker.partition_dir("blocked", 1))

    def recreated():
        admin.create_topics([NewTopic("blocked", 4, 1)])["blocked"].result(timeout=30)
        return True
    wait_until(recreated, timeout=10, what="re-creating the deleted topic")
    assert produce(broker, "blocked", 4, partition=1) == []
