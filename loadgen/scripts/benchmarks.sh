#!/usr/bin/env bash
# The benchmark scenarios of BENCHMARKS.md, against Sluice and against another
# Kafka-compatible broker, side by side in one session. Each scenario runs
# RUNS times per broker on a freshly started broker; summarize.py prints the
# medians.
#
# Usage: loadgen/scripts/benchmarks.sh [scenario...]   (default: all)
#   scenarios: limits s1 s1b s2 s3 s4 tail_latency cost cold_read read_ahead scale tls
# Environment:
#   LOADGEN     loadgen binary        (default target/release/loadgen)
#   SLUICE_BIN  Sluice binary         (default target/release/sluice)
#   TANSU_BIN   tansu binary; unset or missing: Sluice only
#   BROKERS     brokers to run (default: sluice, and tansu with TANSU_BIN)
#   OUT         results directory     (default /tmp/loadgen-bench)
#   RUNS        runs per scenario     (default 3)
#   DATA        Sluice data directory parent (default /tmp/loadgen-bench-data)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOADGEN="${LOADGEN:-$ROOT/target/release/loadgen}"
SLUICE_BIN="${SLUICE_BIN:-$ROOT/target/release/sluice}"
TANSU_BIN="${TANSU_BIN:-}"
OUT="${OUT:-/tmp/loadgen-bench}"
RUNS="${RUNS:-3}"
DATA="${DATA:-/tmp/loadgen-bench-data}"
PORT_SLUICE=29092
PORT_TANSU=29093
PORT_METRICS=29094
mkdir -p "$OUT" "$DATA"

BROKER_PID=""
stop_broker() {
    if [ -n "$BROKER_PID" ]; then
        kill "$BROKER_PID" 2>/dev/null || true
        # A broker that does not stop in 10 s (say, on a full disk) is killed.
        for _ in $(seq 100); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
    fi
}
cleanup() { stop_broker; rm -rf "$DATA/sluice"; }
trap cleanup EXIT

wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "broker did not listen on $1" >&2
    return 1
}

# start_broker NAME [fresh|keep] [extra sluice flags...]
start_broker() {
    local name=$1 mode=${2:-fresh}
    shift 2 || shift $#
    stop_broker
    case $name in
    sluice)
        [ "$mode" = fresh ] && rm -rf "$DATA/sluice"
        mkdir -p "$DATA/sluice"
        (cd "$DATA" && exec "$SLUICE_BIN" --listen 127.0.0.1:$PORT_SLUICE --advertise 127.0.0.1:$PORT_SLUICE \
            --data-dir "$DATA/sluice" "$@" >"$OUT/sluice.log" 2>&1) &
        BROKER_PID=$!
        wait_port $PORT_SLUICE
        BOOTSTRAP=127.0.0.1:$PORT_SLUICE
        ;;
    tansu)
        "$TANSU_BIN" broker --listener-url tcp://127.0.0.1:$PORT_TANSU \
            --advertised-listener-url tcp://127.0.0.1:$PORT_TANSU \
            --storage-engine memory://tansu/ >"$OUT/tansu.log" 2>&1 &
        BROKER_PID=$!
        wait_port $PORT_TANSU
        BOOTSTRAP=127.0.0.1:$PORT_TANSU
        ;;
    esac
    sleep 1
}

brokers() { # BROKERS="tansu" (say) runs only those
    if [ -n "${BROKERS:-}" ]; then echo $BROKERS; return; fi
    echo sluice
    if [ -n "$TANSU_BIN" ] && [ -x "$TANSU_BIN" ]; then echo tansu; fi
}

lg() { # lg NAME ARGS... : one loadgen run, report in $OUT/NAME.json
    local name=$1
    shift
    echo "== $name: loadgen $*" | tee -a "$OUT/commands.txt"
    "$LOADGEN" "$@" --bootstrap "$BOOTSTRAP" --label "$name" --report "$OUT/$name.json" \
        --hdr-log "$OUT/$name.hlog" --quiet >"$OUT/$name.txt" 2>&1 || echo "   (exit $?; see $OUT/$name.txt)"
    tail -n +2 "$OUT/$name.txt" | grep -E "produce|consume|end to end|verify|failure" | sed 's/^/   /' || true
}

limits() {
    mkdir -p "$DATA/limits"
    "$LOADGEN" limits --dir "$DATA/limits" --duration 3s --report "$OUT/limits-$1.json" 2>&1 | sed 's/^/   /'
}

s1() { # maximum produce throughput, 1 KiB records, acks=1 and acks=all
    for broker in $(brokers); do
        for acks in 1 all; do
            for run in $(seq "$RUNS"); do
                start_broker "$broker" fresh
                lg "s1-$broker-acks$acks-$run" produce --topic s1 --partitions 2 \
                    --record-size 1024 --batch-size 65536 --linger-ms 5 --acks $acks \
                    --duration 15s --warmup 5s
            done
        done
    done
}

s1b() { # acks=all with more in flight: 2 producers x 2 connections x 5 requests
    for broker in $(brokers); do
        for run in $(seq "$RUNS"); do
            start_broker "$broker" fresh
            lg "s1b-$broker-acksall-4conn-$run" produce --topic s1 --partitions 2 \
                --record-size 1024 --batch-size 65536 --linger-ms 5 --acks all \
                --producers 2 --connections 2 --duration 15s --warmup 5s
        done
    done
}

s2() { # fixed 50 MB/s, acks=all, produce and end-to-end percentiles
    for broker in $(brokers); do
        for run in $(seq "$RUNS"); do
            start_broker "$broker" fresh
            lg "s2-$broker-$run" e2e --topic s2 --partitions 2 --record-size 1024 \
                --batch-size 65536 --rate 50MB/s --acks all --duration 20s --warmup 5s
        done
    done
}

s3() { # consume from the broker's cache, and from disk (Sluice restarted: cache empty)
    # 1.5 GB in 2 partitions (one per shard): 750 MB per shard fits a 1 GiB
    # cache, so the first read is served from Sluice's cache; after a restart
    # (and dropping the page cache) the same read comes from disk.
    for broker in $(brokers); do
        for run in $(seq "$RUNS"); do
            if [ "$broker" = sluice ]; then
                start_broker sluice fresh --set cache.bytes=1073741824
            else
                start_broker "$broker" fresh
            fi
            lg "s3-$broker-fill-$run" produce --topic s3 --partitions 2 --record-size 1024 \
                --batch-size 65536 --acks 1 --records 1500000 --duration 300s --warmup 0s
            lg "s3-$broker-cache-$run" consume --topic s3 --from earliest --until-end \
                --consumers 2 --warmup 0s --duration 120s
            if [ "$broker" = sluice ]; then
                start_broker sluice keep
                sync
                echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || echo "   (page cache not dropped: not root)"
                lg "s3-$broker-disk-$run" consume --topic s3 --from earliest --until-end \
                    --consumers 2 --warmup 0s --duration 120s
            fi
        done
    done
}

s4() { # 1,000 partitions: keyed produce at full speed, and end to end at 10 MB/s
    for broker in $(brokers); do
        local partitions=${S4_PARTITIONS:-1000}
        if [ "$broker" = sluice ]; then
            # Sluice preallocates each active segment in steps (8 MiB since
            # cb3d802, 64 MiB before): two topics of N partitions need
            # 2 * N * step of free disk. Fewer partitions if they do not fit.
            local step_mib=${SLUICE_PREALLOCATE_MIB:-8}
            local free_mib=$(($(df --output=avail -k "$DATA" | tail -1) / 1024))
            local fit=$((free_mib / 2 / step_mib * 8 / 10))
            if [ "$fit" -lt "$partitions" ]; then
                echo "   sluice: $partitions partitions need $((2 * partitions * step_mib)) MiB preallocated, $free_mib MiB free: using $fit"
                partitions=$fit
            fi
        fi
        for run in $(seq "$RUNS"); do
            start_broker "$broker" fresh
            lg "s4-$broker-p$partitions-produce-$run" produce --topic s4 --partitions "$partitions" --keys uniform \
                --record-size 1024 --acks 1 --duration 15s --warmup 5s
            lg "s4-$broker-p$partitions-e2e-$run" e2e --topic s4e --partitions "$partitions" --keys uniform \
                --record-size 1024 --acks all --rate 10MB/s --duration 15s --warmup 5s
        done
    done
}

# Broker CPU-seconds so far (all its threads, io_uring workers included).
broker_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$BROKER_PID/stat"
}

scrape() { # scrape NAME: the broker's metrics into $OUT/NAME.metrics
    curl -s "http://127.0.0.1:$PORT_METRICS/metrics" >"$OUT/$1.metrics" || true
}

tail_latency() { # acks=1 against acks=all at a fixed rate, default client batching
    # Each run: a fresh broker, one e2e run, then the broker's produce stage
    # histograms (sluice_produce_stage_seconds) and its CPU time.
    # TAIL_RATES overrides the rates (default "20MB/s 200MB/s"); TAIL_ARGS
    # adds loadgen flags (e.g. "--producers 2 --connections 2").
    # With TANSU_BIN, tansu runs the same (its CPU time too; no stages), as
    # `produce` rather than `e2e`: loadgen cannot decode tansu 0.6's Fetch
    # v12 responses ("Tag 0 is not valid for version 12"). TAIL_MODE=produce
    # runs Sluice that way too, for the same load on both.
    limits "tail-$(date -u +%H%M%S)"
    for broker in $(brokers); do
        for rate in ${TAIL_RATES:-20MB/s 200MB/s}; do
            for acks in 1 all; do
                for run in $(seq "$RUNS"); do
                    local name="tail-$broker-${rate%%/s}-acks$acks-$run"
                    if [ "$broker" = sluice ]; then
                        start_broker sluice fresh --metrics 127.0.0.1:$PORT_METRICS
                    else
                        start_broker "$broker" fresh
                    fi
                    local cpu_before
                    cpu_before=$(broker_cpu)
                    local mode=${TAIL_MODE:-e2e}
                    [ "$broker" = sluice ] || mode=produce
                    # shellcheck disable=SC2086 # TAIL_ARGS: extra loadgen flags
                    lg "$name" "$mode" --topic tail --partitions 2 --record-size 1024 \
                        --rate "$rate" --acks $acks --duration 20s --warmup 5s ${TAIL_ARGS:-}
                    echo "$(broker_cpu) - $cpu_before" | bc >"$OUT/$name.cpu"
                    echo "   broker CPU-s: $(cat "$OUT/$name.cpu")"
                    [ "$broker" = sluice ] && scrape "$name"
                done
            done
        done
    done
    python3 "$ROOT/loadgen/scripts/stages.py" "$OUT" tail-sluice
}

# broker_memory: the broker's peak resident memory in MiB (VmHWM).
broker_memory() {
    awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$BROKER_PID/status"
}

scale() { # how the cost grows: partitions, then connections, at a fixed aggregate rate
    # Each run (each broker of `brokers`; `sluice topics create` makes the
    # topic on tansu too): a fresh broker, `loadgen produce` at SCALE_RATE (default
    # 20MB/s) with acks=1 and keys spread uniformly over the partitions;
    # then the broker's CPU-seconds and peak memory beside loadgen's report.
    # Partitions 1..10,000 over one connection; then 1..1,000 connections
    # (up to 100 per producer thread) over 100 partitions, so that every
    # connection carries batches (each partition keeps to one connection).
    local rate=${SCALE_RATE:-20MB/s} row=()
    echo "| run | partitions | connections | broker CPU-s | broker peak MiB |" >"$OUT/scale.md"
    echo "|---|---|---|---|---|" >>"$OUT/scale.md"
    scale_run() { # BROKER NAME PARTITIONS PRODUCERS CONNECTIONS_PER_PRODUCER
        local broker=$1 name=$2 partitions=$3 producers=$4 connections=$5
        start_broker "$broker" fresh
        # The topic first, so that opening its partitions is not measured.
        local created_at=$SECONDS
        "$SLUICE_BIN" topics create --topic scale --partitions "$partitions" \
            --bootstrap-server "$BOOTSTRAP" --request-timeout-ms 300000 >/dev/null
        echo "   topic of $partitions partitions created in $((SECONDS - created_at)) s"
        local cpu_before
        cpu_before=$(broker_cpu)
        lg "$name" produce --topic scale --partitions "$partitions" --keys uniform --record-size 1024 \
            --rate "$rate" --acks 1 --producers "$producers" --connections "$connections" \
            --duration 15s --warmup 5s
        row=("$name" "$partitions" "$((producers * connections))" "$(echo "$(broker_cpu) - $cpu_before" | bc)" "$(broker_memory)")
        (IFS='|'; echo "|${row[*]}|") >>"$OUT/scale.md"
    }
    for broker in $(brokers); do
        for run in $(seq "$RUNS"); do
            for partitions in ${SCALE_PARTITIONS:-1 100 1000 10000}; do
                scale_run "$broker" "scale-$broker-p$partitions-$run" "$partitions" 1 1
            done
            for connections in ${SCALE_CONNECTIONS:-1 10 100 1000}; do
                local producers=$(((connections + 99) / 100))
                scale_run "$broker" "scale-$broker-c$connections-$run" 100 "$producers" "$((connections / producers))"
            done
        done
    done
    cat "$OUT/scale.md"
}

tls() { # produce and consume throughput over PLAINTEXT and over TLS, one broker, alternating
    # loadgen speaks PLAINTEXT only: confluent-kafka (librdkafka, OpenSSL)
    # and kcat drive both listeners (loadgen/scripts/tls_throughput.py),
    # which also reads the broker's CPU from /proc.
    local certs="$OUT/certs" tls_port=$((PORT_SLUICE + 10))
    bash "$ROOT/scripts/make-certs.sh" "$certs" >/dev/null
    start_broker sluice fresh \
        --set "listeners=PLAINTEXT://127.0.0.1:$PORT_SLUICE,SSL://127.0.0.1:$tls_port" \
        --set "ssl.keystore.location=$certs/server.pem" --set "ssl.key.location=$certs/server.key"
    "${PYTHON:-$ROOT/.venv/bin/python}" "$ROOT/loadgen/scripts/tls_throughput.py" \
        "127.0.0.1:$PORT_SLUICE" "127.0.0.1:$tls_port" "$certs/ca.pem" "$RUNS" "${TLS_MB:-1000}" "$BROKER_PID" \
        | tee "$OUT/tls.md"
}

# same_shard_topic BASE NAME: prints a topic name whose partition 0 lands
# on the same shard as partition 0 of topic BASE, with 2 shards (Sluice puts
# partition p of topic t on shard (crc32c(t) + p) mod shards).
same_shard_topic() {
    python3 - "$1" "$2" <<'PY'
import sys
def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF
base, name = sys.argv[1], sys.argv[2]
for i in range(100):
    candidate = f"{name}{i}"
    if crc32c(candidate.encode()) % 2 == crc32c(base.encode()) % 2:
        print(candidate)
        break
PY
}

drop_page_cache() {
    sync
    echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || echo "   (cannot drop the page cache: not root?)"
}

cold_read() { # a cold read of COLD_GB (default 2) GB beside a 20 MB/s producer on the same shard
    # The producer's acknowledgement percentiles alone, then with a consumer
    # reading the cold partition from its start (broker restarted, page cache
    # dropped: every byte comes from the disk), then the consumer alone.
    local records=$(( ${COLD_GB:-2} * 1000 * 1000 ))
    local hot
    hot=$(same_shard_topic cold hot)
    limits "cold-$(date -u +%H%M%S)"
    start_broker sluice fresh
    lg "cold-fill" produce --topic cold --partitions 1 --record-size 1000 --acks 1 \
        --records "$records" --duration 600s
    for run in $(seq "$RUNS"); do
        start_broker sluice keep
        drop_page_cache
        lg "cold-producer-alone-$run" produce --topic "$hot" --partitions 1 --record-size 1024 \
            --rate 20MB/s --acks 1 --duration 8s --warmup 1s
        start_broker sluice keep
        drop_page_cache
        "$LOADGEN" consume --bootstrap "$BOOTSTRAP" --topic cold --from earliest --until-end --warmup 0s \
            --label "cold-consumer-beside-$run" --report "$OUT/cold-consumer-beside-$run.json" \
            --quiet >"$OUT/cold-consumer-beside-$run.txt" 2>&1 &
        local consumer=$!
        lg "cold-producer-beside-consumer-$run" produce --topic "$hot" --partitions 1 --record-size 1024 \
            --rate 20MB/s --acks 1 --duration 8s --warmup 1s
        wait "$consumer" || true
        grep -E "consume" "$OUT/cold-consumer-beside-$run.txt" | sed 's/^/   consumer beside: /' || true
        start_broker sluice keep
        drop_page_cache
        lg "cold-consumer-alone-$run" consume --topic cold --from earliest --until-end --warmup 0s
    done
}

cost() { # broker CPU-seconds per GB produced and consumed: 16 KiB and ~1 MB batches, acks=1 and all
    # Each run: a fresh broker, COST_GB (default 2) GB produced as fast as
    # the generator goes (2 partitions), then read back by one consumer;
    # the broker's CPU time (all threads) around each, and the MB moved.
    local records=$(( ${COST_GB:-2} * 1000 * 1000 ))
    echo "| broker | batch | acks | produce MB/s | CPU-s per GB produced | consume MB/s | CPU-s per GB consumed |" >"$OUT/cost.md"
    echo "|---|---|---|---|---|---|---|" >>"$OUT/cost.md"
    for broker in $(brokers); do
        # 1,000,000 rather than 1 MiB: a batch of 1 MiB of records and its
        # framing would pass the default max.message.bytes (1 MiB + 12).
        for batch in 16384 1000000; do
            for acks in 1 all; do
                for run in $(seq "$RUNS"); do
                    local name="cost-$broker-b$batch-acks$acks-$run" before produced consumed
                    start_broker "$broker" fresh
                    before=$(broker_cpu)
                    lg "$name-produce" produce --topic cost --partitions 2 --record-size 1000 \
                        --batch-size "$batch" --linger-ms 5 --acks "$acks" \
                        --records "$records" --duration 600s --warmup 0s
                    produced=$(echo "$(broker_cpu) - $before" | bc)
                    before=$(broker_cpu)
                    lg "$name-consume" consume --topic cost --from earliest --until-end --warmup 0s
                    consumed=$(echo "$(broker_cpu) - $before" | bc)
                    python3 - "$OUT" "$name" "$broker" "$batch" "$acks" "$produced" "$consumed" >>"$OUT/cost.md" <<'PY'
import json, sys
out, name, broker, batch, acks, produced, consumed = sys.argv[1:]
def cells(kind, cpu):
    # "MB/s | CPU-s per GB", or "n/a" where the run moved nothing.
    try:
        results = json.load(open(f"{out}/{name}-{kind}.json"))["results"]
        moved = results[kind]["bytes"]
        return f"{moved / 1e6 / results['measured_seconds']:.0f} | {float(cpu) / (moved / 1e9):.2f}"
    except (OSError, KeyError, TypeError, ValueError, ZeroDivisionError):
        return "n/a | n/a"
print(f"| {broker} | {batch} | {acks} | {cells('produce', produced)} | {cells('consume', consumed)} |")
PY
                    tail -1 "$OUT/cost.md" | sed 's/^/   /'
                done
            done
        done
    done
}

read_ahead() { # a cold consumer alone, for each read-ahead chunk in READ_AHEAD (bytes; 0: off)
    local records=$(( ${COLD_GB:-2} * 1000 * 1000 ))
    limits "ahead-$(date -u +%H%M%S)"
    start_broker sluice fresh
    lg "ahead-fill" produce --topic cold --partitions 1 --record-size 1000 --acks 1 \
        --records "$records" --duration 600s
    for run in $(seq "$RUNS"); do
        for bytes in ${READ_AHEAD:-0 1048576 4194304 8388608}; do
            start_broker sluice keep --set "fetch.read.ahead.bytes=$bytes"
            drop_page_cache
            local cpu_before
            cpu_before=$(broker_cpu)
            lg "ahead-$bytes-$run" consume --topic cold --from earliest --until-end --warmup 0s
            echo "   broker CPU-s: $(echo "$(broker_cpu) - $cpu_before" | bc)"
        done
    done
}

scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(limits s1 s2 s3 s4)
for scenario in "${scenarios[@]}"; do
    echo "#### $scenario ($(date -u +%H:%M:%S))"
    if [ "$scenario" = limits ]; then limits "$(date -u +%H%M%S)"; else $scenario; fi
    stop_broker
done
