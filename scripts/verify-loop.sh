#!/usr/bin/env bash
# Runs issue 13's fault scenario N times in a row, each on a fresh
# three-broker cluster on loopback, and prints each run's verify result:
#   3 brokers, a topic with 6 partitions, RF=3, min.insync.replicas=2;
#   loadgen verify, acks=all, idempotent, at a fixed rate for 60 s;
#   kill -9 the leader of partition 0 at 15 s, restart it at 30 s;
#   SIGSTOP a follower of partition 0 other than the killed broker at 40 s,
#   SIGCONT at 50 s.
#
#   scripts/verify-loop.sh [RUNS]        (default 3)
# Environment: SLUICE_BIN, LOADGEN_BIN (default target/debug/...), RATE
# (records/s, default 2000), DURATION (default 60s), WORK (default
# /tmp/sluice-verify-loop; each run's logs and report stay in WORK/runN).
# Not part of CI. Exit status: 0 when every run passed.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${1:-3}
SLUICE_BIN=$(realpath "${SLUICE_BIN:-$ROOT/target/debug/sluice}")
LOADGEN_BIN=$(realpath "${LOADGEN_BIN:-$ROOT/target/debug/loadgen}")
RATE=${RATE:-2000}
DURATION=${DURATION:-60s}
WORK=${WORK:-/tmp/sluice-verify-loop}
TOPIC=verify
PORT_BASE=${PORT_BASE:-29390}

stop_all() {
    for node in 1 2 3; do
        pid=$(cat "$DIR/n$node.pid" 2>/dev/null) || continue
        kill -CONT "$pid" 2>/dev/null
        kill -KILL "$pid" 2>/dev/null
    done
}

failed=0
for run in $(seq 1 "$RUNS"); do
    DIR=$WORK/run$run
    rm -rf "$DIR" && mkdir -p "$DIR"
    trap stop_all EXIT
    voters=""
    for node in 1 2 3; do
        voters="$voters${voters:+,}$node@127.0.0.1:$((PORT_BASE + 10 + node))"
    done
    declare -A CMD
    for node in 1 2 3; do
        CMD[$node]="$SLUICE_BIN --node-id $node --data-dir $DIR/d$node \
--listen 127.0.0.1:$((PORT_BASE + node)) --controller-listen 127.0.0.1:$((PORT_BASE + 10 + node)) \
--controller-quorum-voters $voters --shards 1 \
--set broker.session.timeout.ms=3000 --set broker.heartbeat.interval.ms=500 >>$DIR/n$node.log 2>&1"
        sh -c "exec ${CMD[$node]}" </dev/null &
        echo $! >"$DIR/n$node.pid"
        disown
    done
    BOOTSTRAP=127.0.0.1:$((PORT_BASE + 1))
    for _ in $(seq 1 60); do
        "$SLUICE_BIN" topics create --topic $TOPIC --partitions 6 --replication-factor 3 \
            --config min.insync.replicas=2 --bootstrap-server "$BOOTSTRAP" >/dev/null 2>&1 && break
        sleep 0.5
    done
    "$LOADGEN_BIN" verify --bootstrap "$BOOTSTRAP" --topic $TOPIC --partitions 6 \
        --acks all --idempotence --rate "$RATE" --record-size 100 \
        --duration "$DURATION" --warmup 0s --fetch-max-wait-ms 100 --drain-timeout 60s --quiet \
        --report "$DIR/report.json" \
        --fault "kill:leader-of=$TOPIC/0@15s,restart@30s" \
        --fault "stop:follower-of=$TOPIC/0@40s,cont@50s" \
        --broker-pids "1=$DIR/n1.pid,2=$DIR/n2.pid,3=$DIR/n3.pid" \
        --broker-cmd "1=${CMD[1]}" --broker-cmd "2=${CMD[2]}" --broker-cmd "3=${CMD[3]}" \
        >"$DIR/loadgen.out" 2>"$DIR/loadgen.err"
    status=$?
    stop_all
    trap - EXIT
    result=$(grep '^verify: [0-9]' "$DIR/loadgen.out" || echo "verify: no result (loadgen exit $status, see $DIR/loadgen.err)")
    echo "run $run: $result"
    grep '^fault ' "$DIR/loadgen.out" | sed 's/^/    /'
    [ "$status" -eq 0 ] || failed=$((failed + 1))
done
echo "$((RUNS - failed)) of $RUNS runs passed"
[ "$failed" -eq 0 ]
