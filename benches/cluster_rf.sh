#!/usr/bin/env bash
# RF=1 against RF=3 on three local brokers, same run, same commands: a
# release-built three-broker cluster on 127.0.0.1, two topics whose four
# partitions all lead on broker 1 (so that the load generator, which sends
# to the broker it bootstraps from, needs no leader routing), one with a
# replica on broker 1 only, one with followers on brokers 2 and 3
# (min.insync.replicas=2). For each: acks=all throughput with Kafka's
# default client batching, then end-to-end latency at a fixed rate.
#
# Usage: bash benches/cluster_rf.sh [OUT_DIR]   (builds nothing: run
#   cargo build --release -p sluice -p loadgen first)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/target/bench-cluster-rf}"
SLUICE="$ROOT/target/release/sluice"
LOADGEN="$ROOT/target/release/loadgen"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
DURATION="${DURATION:-15s}"
RATE="${RATE:-20MB/s}"
rm -rf "$OUT" && mkdir -p "$OUT"

voters="1@127.0.0.1:39191,2@127.0.0.1:39192,3@127.0.0.1:39193"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
for n in 1 2 3; do
    "$SLUICE" --node-id "$n" --data-dir "$OUT/d$n" --listen "127.0.0.1:3909$n" \
        --controller-listen "127.0.0.1:3919$n" --controller-quorum-voters "$voters" \
        >"$OUT/node$n.log" 2>&1 &
    pids+=($!)
done

"$PYTHON" - <<'EOF'
import time
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": "127.0.0.1:39091,127.0.0.1:39092,127.0.0.1:39093"})
deadline = time.time() + 60
while len(admin.list_topics(timeout=5).brokers) < 3:
    assert time.time() < deadline, "cluster did not form"
    time.sleep(0.5)
topics = [NewTopic("rf1", num_partitions=4, replica_assignment=[[1]] * 4),
          NewTopic("rf3", num_partitions=4, replica_assignment=[[1, 2, 3]] * 4,
                   config={"min.insync.replicas": "2"})]
for future in admin.create_topics(topics).values():
    future.result(30)
time.sleep(2)
for name, topic in admin.list_topics(timeout=5).topics.items():
    if name.startswith("rf"):
        print(name, [(p.leader, p.replicas, p.isrs) for p in topic.partitions.values()])
EOF

for topic in rf1 rf3; do
    echo "== $topic: produce, acks=all, as fast as possible"
    "$LOADGEN" produce --bootstrap 127.0.0.1:39091 --topic "$topic" --partitions 4 \
        --acks all --producers 2 --duration "$DURATION" --warmup 3s \
        --report "$OUT/$topic-produce.json" | tail -n 12
    echo "== $topic: end to end at $RATE, acks=all"
    "$LOADGEN" e2e --bootstrap 127.0.0.1:39091 --topic "$topic" --partitions 4 \
        --acks all --rate "$RATE" --duration "$DURATION" --warmup 3s \
        --report "$OUT/$topic-e2e.json" | tail -n 12
done
