#!/usr/bin/env python3
"""Produce and consume throughput over a PLAINTEXT and a TLS listener of one
broker, alternating, with confluent-kafka (librdkafka): `loadgen` speaks
PLAINTEXT only, and librdkafka's TLS (OpenSSL) is what most clients use.

Usage: tls_throughput.py PLAINTEXT_HOST:PORT SSL_HOST:PORT CA_PEM [RUNS] [MB]

Each run and listener: a fresh 4-partition topic, MB megabytes of 4 KiB
records produced with acks=1 (librdkafka batching: linger.ms=5,
batch.size=1 MiB), timed from the first send to the last acknowledgement;
then read back from the beginning by one consumer (assigned partitions, no
group join), timed from the first record to the last. Prints a Markdown table.
"""
import statistics
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

RECORD = 4096
PARTITIONS = 4


def settings(bootstrap, tls, ca):
    config = {"bootstrap.servers": bootstrap}
    if tls:
        config.update({"security.protocol": "SSL", "ssl.ca.location": ca})
    return config


def one_run(bootstrap, tls, ca, megabytes):
    base = settings(bootstrap, tls, ca)
    topic = f"tls-bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(base)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    records = megabytes * 1_000_000 // RECORD
    value = b"x" * RECORD
    producer = Producer({**base, "acks": "1", "linger.ms": 5, "batch.size": 1 << 20,
                         "queue.buffering.max.kbytes": 1 << 20})
    started = time.perf_counter()
    for index in range(records):
        while True:
            try:
                producer.produce(topic, value, partition=index % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.001)
    producer.flush(120)
    produce_s = time.perf_counter() - started
    consumer = Consumer({**base, "group.id": topic, "enable.auto.commit": False,
                         "fetch.max.bytes": 50 << 20, "max.partition.fetch.bytes": 10 << 20})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen = 0
    first = None
    deadline = time.time() + 120
    while seen < records and time.time() < deadline:
        for message in consumer.consume(min(10000, records - seen), 1.0):
            if message.error() is None:
                first = first or time.perf_counter()
                seen += 1
    consume_s = time.perf_counter() - (first or time.perf_counter())
    consumer.close()
    bytes_total = records * RECORD
    return bytes_total / produce_s / 1e6, (bytes_total / consume_s / 1e6 if seen == records else 0.0)


def main():
    plain, ssl_bootstrap, ca = sys.argv[1:4]
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    megabytes = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    results = {"PLAINTEXT": [], "SSL": []}
    for run in range(runs):
        for name, bootstrap, tls in (("PLAINTEXT", plain, False), ("SSL", ssl_bootstrap, True)):
            produce, consume = one_run(bootstrap, tls, ca, megabytes)
            results[name].append((produce, consume))
            print(f"run {run + 1} {name}: produce {produce:.0f} MB/s, consume {consume:.0f} MB/s", flush=True)
    print(f"\n| listener | produce MB/s (median of {runs}) | consume MB/s (median of {runs}) | runs |")
    print("|---|---|---|---|")
    for name, values in results.items():
        produce = statistics.median(v[0] for v in values)
        consume = statistics.median(v[1] for v in values)
        each = "; ".join(f"{p:.0f} / {c:.0f}" for p, c in values)
        print(f"| {name} | {produce:.0f} | {consume:.0f} | {each} |")


if __name__ == "__main__":
    main()
