#!/usr/bin/env python3
"""Produce and consume throughput over a PLAINTEXT and a TLS listener of one
broker, alternating, with confluent-kafka (librdkafka): `loadgen` speaks
PLAINTEXT only, and librdkafka's TLS (OpenSSL) is what most clients use.

Usage: tls_throughput.py PLAINTEXT_HOST:PORT SSL_HOST:PORT CA_PEM [RUNS] [MB] [BROKER_PID]

Each run and listener: a fresh 4-partition topic, MB megabytes of 4 KiB
records produced with acks=1 (librdkafka batching: linger.ms=5,
batch.size=1 MiB), timed from the first send to the last acknowledgement;
then read back from the beginning by one consumer (assigned partitions, no
group join), timed from the first record to the last; then read again by
kcat (librdkafka in C, so not limited by Python's per-record cost: about
110,000 records a second), timed from its start to its exit at the end of
every partition (-e). With BROKER_PID, the broker's CPU-seconds (user and
system, from /proc, every thread of the process) per GB produced and per GB
read by kcat tell the broker's share of the cost from the clients'. Prints a
Markdown table.
"""
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

RECORD = 4096
PARTITIONS = 4
BROKER_PID = None
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def broker_cpu():
    """CPU-seconds the broker process has used so far (0 without a pid)."""
    if BROKER_PID is None:
        return 0.0
    with open(f"/proc/{BROKER_PID}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15; fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


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
    cpu_before = broker_cpu()
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
    produce_cpu = broker_cpu() - cpu_before
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
    cpu_before = broker_cpu()
    kcat_s = kcat_consume(bootstrap, tls, ca, topic, records)
    kcat_cpu = broker_cpu() - cpu_before
    gigabytes = bytes_total / 1e9
    return (bytes_total / produce_s / 1e6,
            bytes_total / consume_s / 1e6 if seen == records else 0.0,
            bytes_total / kcat_s / 1e6 if kcat_s else 0.0,
            produce_cpu / gigabytes, kcat_cpu / gigabytes)


def kcat_consume(bootstrap, tls, ca, topic, records):
    """Seconds kcat takes to read the topic from the beginning to its end,
    or None when kcat is missing or read a different count."""
    if shutil.which("kcat") is None:
        return None
    command = ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
               "-f", "%o\n", "-X", "fetch.max.bytes=52428800",
               "-X", "max.partition.fetch.bytes=10485760"]
    if tls:
        command += ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={ca}"]
    if os.environ.get("KCAT_DEBUG"):
        command += ["-d", os.environ["KCAT_DEBUG"]]
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300, check=False)
    took = time.perf_counter() - started
    lines = done.stdout.count(b"\n")
    if done.returncode == 0 and lines == records:
        return took
    log = done.stderr.decode(errors="replace").splitlines()
    print(f"kcat read {lines} of {records} records in {took:.1f} s, exit status {done.returncode}; "
          f"its last lines:", *log[-40:], sep="\n  ", file=sys.stderr, flush=True)
    return None


def main():
    global BROKER_PID
    plain, ssl_bootstrap, ca = sys.argv[1:4]
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    megabytes = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    BROKER_PID = int(sys.argv[6]) if len(sys.argv) > 6 else None
    results = {"PLAINTEXT": [], "SSL": []}
    for run in range(runs):
        for name, bootstrap, tls in (("PLAINTEXT", plain, False), ("SSL", ssl_bootstrap, True)):
            figures = one_run(bootstrap, tls, ca, megabytes)
            results[name].append(figures)
            print(f"run {run + 1} {name}: produce {figures[0]:.0f} MB/s, consume {figures[1]:.0f} MB/s, "
                  f"kcat consume {figures[2]:.0f} MB/s; broker CPU-s per GB: produce "
                  f"{figures[3]:.2f}, kcat consume {figures[4]:.2f}", flush=True)
    print("\n| listener | produce MB/s | consume MB/s (confluent-kafka) | consume MB/s (kcat) "
          "| broker CPU-s/GB produce | broker CPU-s/GB kcat consume | runs (MB/s: produce / consume / kcat) |")
    print("|---|---|---|---|---|---|---|")
    for name, values in results.items():
        medians = [statistics.median(v[i] for v in values) for i in range(5)]
        each = "; ".join(" / ".join(f"{x:.0f}" for x in v[:3]) for v in values)
        print(f"| {name} | {medians[0]:.0f} | {medians[1]:.0f} | {medians[2]:.0f} "
              f"| {medians[3]:.2f} | {medians[4]:.2f} | {each} |")
    print(f"\nMedians of {runs} runs; a throughput of 0 means the run did not read every record back.")


if __name__ == "__main__":
    main()
