"""Client byte-rate quotas (quota.producer.default, quota.consumer.default):
a client over its quota is told to wait (throttle_time_ms, which librdkafka
reports to throttle_cb) and the broker reads nothing more from it until the
time has passed, so its rate comes down to the quota."""

import time

from confluent_kafka import Consumer, Producer

from conftest import unique_topic, wait_until

QUOTA_BYTES_PER_S = 50_000
VALUE = b"x" * 1000
COUNT = 1000  # 1 MB: twice what the first ten seconds allow


def quota_broker(make_broker, key):
    return make_broker(extra_args=["--set", f"{key}={QUOTA_BYTES_PER_S}"])


def test_producer_over_its_quota_is_throttled(make_broker):
    broker = quota_broker(make_broker, "quota.producer.default")
    topic = unique_topic("quota")
    throttles = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "client.id": "greedy",
                         "linger.ms": 5, "batch.size": 16384,
                         "throttle_cb": lambda event: throttles.append(event.throttle_time)})
    started = time.monotonic()
    for _ in range(COUNT):
        producer.produce(topic, VALUE)
        producer.poll(0)
    assert producer.flush(120) == 0
    elapsed = time.monotonic() - started
    producer.poll(1)
    assert throttles and max(throttles) > 0, throttles
    # 1 MB at 50 KB/s, the first ten seconds' worth (500 KB) at once: the
    # rest takes about ten seconds more. Without the quota it takes well
    # under one.
    assert elapsed >= 5, elapsed


def test_consumer_over_its_quota_is_throttled(make_broker):
    """Twice the producer test's bytes: the quota is kept per shard, and
    librdkafka's connections to one broker (bootstrap, then the broker by
    id) may land on both of the broker's shards."""
    broker = quota_broker(make_broker, "quota.consumer.default")
    topic = unique_topic("quota")
    count = 2 * COUNT
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for _ in range(count):
        producer.produce(topic, VALUE)
    assert producer.flush(60) == 0
    throttles = []
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "slow",
                         "client.id": "greedy-reader", "auto.offset.reset": "earliest",
                         "max.partition.fetch.bytes": 65536,
                         "throttle_cb": lambda event: throttles.append(event.throttle_time)})
    consumer.subscribe([topic])
    started = time.monotonic()
    received = []
    try:
        def done():
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                received.append(msg)
            return len(received) >= count
        wait_until(done, timeout=120, interval=0, what=f"{count} records")
    finally:
        consumer.close()
    elapsed = time.monotonic() - started
    assert throttles and max(throttles) > 0, throttles
    assert elapsed >= 5, elapsed
