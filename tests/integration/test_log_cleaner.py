"""The log cleaner's cadence (issue 14): a compacted topic is cleaned within
`log.cleaner.backoff.ms` once it is dirty enough, not only on the
retention timer (`log.retention.check.interval.ms`, 5 minutes by default),
and `max.compaction.lag.ms` bounds how long a superseded record stays, the
active segment included (it is rolled for it).

Real broker, confluent-kafka producer and consumer; the retention timer
stays at its 5-minute default, so only the cleaner can compact here.
"""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from conftest import confluent_admin, unique_topic, wait_until

CLEANER_BACKOFF_MS = 500
KEYS = 20
ROUNDS = 10


def produce_rounds(broker, topic, rounds, flush_each_round=True):
    """`rounds` values for each of KEYS keys; returns the last value per key."""
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    last = {}
    for round_ in range(rounds):
        for key in range(KEYS):
            value = f"k{key}-r{round_}"
            producer.produce(topic, key=f"k{key}".encode(), value=value.encode(), partition=0)
            last[f"k{key}"] = value
        if flush_each_round:
            producer.flush(30)
    producer.flush(30)
    return last


def read_all(broker, topic):
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_topic("g"),
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    records = []
    quiet = time.monotonic()
    while time.monotonic() - quiet < 2:
        message = consumer.poll(0.2)
        if message is not None and not message.error():
            records.append((message.key().decode(), message.value().decode()))
            quiet = time.monotonic()
    consumer.close()
    return records


def create(broker, topic, **configs):
    admin = confluent_admin(broker)
    configs = {"cleanup.policy": "compact", **configs}
    admin.create_topics([NewTopic(topic, 1, 1, config=configs)])[topic].result(30)


def test_a_dirty_compacted_log_is_cleaned_within_the_cleaner_backoff(make_broker):
    broker = make_broker(extra_args=["--set", f"log.cleaner.backoff.ms={CLEANER_BACKOFF_MS}"])
    topic = unique_topic("cleaned")
    # Small segments: every round rolls one, so superseded records sit in
    # closed segments, which the cleaner compacts.
    create(broker, topic, **{"segment.bytes": "1024", "min.cleanable.dirty.ratio": "0.1"})
    last = produce_rounds(broker, topic, ROUNDS)
    assert len(read_all(broker, topic)) >= KEYS * (ROUNDS - 1), "nothing compacted yet is fine"

    def compacted():
        records = read_all(broker, topic)
        # The active segment (about two rounds at this segment size) is never
        # compacted; the closed ones come down to one record per key.
        return len(records) <= 3 * KEYS and records
    records = wait_until(compacted, timeout=20, interval=0.5, what="the cleaner to compact the topic")
    final = {}
    for key, value in records:
        final[key] = value
    assert final == last, "the last value of every key survives"


def test_max_compaction_lag_rolls_and_cleans_the_active_segment(make_broker):
    broker = make_broker(extra_args=["--set", f"log.cleaner.backoff.ms={CLEANER_BACKOFF_MS}"])
    topic = unique_topic("lagged")
    # One big segment that never fills and a dirty ratio that is never met:
    # only max.compaction.lag.ms can get it cleaned.
    create(broker, topic, **{"max.compaction.lag.ms": "2000", "min.cleanable.dirty.ratio": "0.99"})
    last = produce_rounds(broker, topic, 5, flush_each_round=False)
    assert len(read_all(broker, topic)) == 5 * KEYS
    records = wait_until(lambda: (r := read_all(broker, topic)) and len(r) == KEYS and r,
                         timeout=20, interval=0.5, what="records older than max.compaction.lag.ms compacted")
    assert dict(records) == last


def test_min_compaction_lag_keeps_young_records(make_broker):
    broker = make_broker(extra_args=["--set", f"log.cleaner.backoff.ms={CLEANER_BACKOFF_MS}"])
    topic = unique_topic("young")
    # As in the first test, but every record is younger than the lag: the
    # cleaner passes several times and leaves every record in place.
    create(broker, topic, **{"segment.bytes": "1024", "min.cleanable.dirty.ratio": "0.1",
                             "min.compaction.lag.ms": "600000"})
    produce_rounds(broker, topic, ROUNDS)
    time.sleep(6 * CLEANER_BACKOFF_MS / 1000)
    assert len(read_all(broker, topic)) == KEYS * ROUNDS
