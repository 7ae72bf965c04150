#!/usr/bin/env bash
# A Sluice cluster on loopback: N brokers (each also a controller) in the
# background, one data dir, log and pid file each under one directory.
#
#   scripts/cluster.sh start|stop|status [--nodes 3] [--dir ./cluster-data] [--base-port 9091] [-- BROKER ARGS...]
#
# Node N (1..nodes) listens for Kafka clients on 127.0.0.1:(base-port + N - 1)
# and for the Raft quorum on 127.0.0.1:(base-port + 100 + N - 1): with the
# defaults, 9091-9093 and 9191-9193. Its data dir is DIR/nodeN, its log
# DIR/nodeN.log (appended to) and its pid DIR/nodeN.pid. Brokers run with
# DIR as their working directory, so no config/sluice.toml is read.
#
# start   starts every node that is not running (so it also restarts one
#         that was killed, on the same data dir), waits until each answers
#         Metadata listing every running node, and prints the bootstrap list.
#         Arguments after `--` go to every broker (e.g. --set KEY=VALUE).
# stop    SIGTERM to each node, waits for it to exit (SIGKILL after 15 s).
# status  each node's pid, address and whether it answers; the bootstrap list.
#
# Binary: $SLUICE_BIN, else target/release/sluice, else target/debug/sluice
# (under $CARGO_TARGET_DIR or this repository's target/), else `sluice` on PATH.
#
# Locked memory: every broker runs with --shards 1 --set io.memory.bytes=524288
# unless you pass --shards / io.memory.bytes after `--`; io_uring's locked
# memory counts against one `ulimit -l` for all of a user's processes (see
# README.md, "Run a three-broker cluster").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODES=3
DIR=./cluster-data
BASE_PORT=9091
WAIT_S=${CLUSTER_WAIT_S:-30}
EXTRA=()

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[ $# -ge 1 ] || usage
COMMAND=$1
shift
while [ $# -gt 0 ]; do
    case "$1" in
        --nodes) NODES=${2:?--nodes needs a number}; shift 2 ;;
        --dir) DIR=${2:?--dir needs a directory}; shift 2 ;;
        --base-port) BASE_PORT=${2:?--base-port needs a port}; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) usage ;;
        *) echo "cluster.sh: unknown argument '$1'" >&2; usage ;;
    esac
done
case "$NODES" in ''|*[!0-9]*|0) echo "cluster.sh: --nodes must be a positive number" >&2; exit 2 ;; esac
case "$BASE_PORT" in ''|*[!0-9]*) echo "cluster.sh: --base-port must be a number" >&2; exit 2 ;; esac

find_binary() {
    local target="${CARGO_TARGET_DIR:-$ROOT/target}"
    if [ -n "${SLUICE_BIN:-}" ]; then
        echo "$SLUICE_BIN"
    elif [ -x "$target/release/sluice" ]; then
        echo "$target/release/sluice"
    elif [ -x "$target/debug/sluice" ]; then
        echo "$target/debug/sluice"
    elif command -v sluice >/dev/null 2>&1; then
        command -v sluice
    else
        echo "cluster.sh: no sluice binary: build one (cargo build --release --bin sluice) or set SLUICE_BIN" >&2
        exit 1
    fi
}

kafka_port() { echo $((BASE_PORT + $1 - 1)); }
controller_port() { echo $((BASE_PORT + 100 + $1 - 1)); }
address() { echo "127.0.0.1:$(kafka_port "$1")"; }

voters() {
    local n
    for n in $(seq 1 "$NODES"); do echo "$n@127.0.0.1:$(controller_port "$n")"; done | paste -sd,
}

bootstrap() {
    local n
    for n in $(seq 1 "$NODES"); do address "$n"; done | paste -sd,
}

pid_of() {
    local file="$DIR/node$1.pid"
    [ -f "$file" ] && cat "$file"
}

running() {
    local pid state
    pid=$(pid_of "$1") || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # A killed broker whose parent has not reaped it yet is a zombie: not running.
    state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "$state" != Z ]
}

# The broker ids Metadata from node $1 lists, one line (e.g. "1 2 3"), and
# "controller N" if it names one; empty if it does not answer.
metadata_of() {
    "$BIN" topics list --bootstrap-server "$(address "$1")" --request-timeout-ms 2000 >/dev/null 2>&1 || return 1
    if command -v kcat >/dev/null 2>&1; then
        kcat -L -b "$(address "$1")" -m 2 2>/dev/null |
            awk '/^  broker [0-9]+ at/ { ids = ids (ids ? " " : "") $2; if (/\(controller\)/) c = $2 }
                 END { print ids; if (c) print "controller " c }'
    else
        echo "?"
    fi
}

start() {
    mkdir -p "$DIR"
    local n started=()
    for n in $(seq 1 "$NODES"); do
        if running "$n"; then
            echo "node $n already running (pid $(pid_of "$n"))"
            continue
        fi
        mkdir -p "$DIR/node$n"
        local args=(--node-id "$n" --data-dir "$DIR/node$n" --listen "$(address "$n")"
            --controller-listen "127.0.0.1:$(controller_port "$n")"
            --controller-quorum-voters "$(voters)")
        case " ${EXTRA[*]:-} " in *" --shards"*) ;; *) args+=(--shards 1) ;; esac
        case " ${EXTRA[*]:-} " in *io.memory.bytes*) ;; *) args+=(--set io.memory.bytes=524288) ;; esac
        args+=("${EXTRA[@]}")
        echo "=== $(date -u +%FT%TZ) start: $BIN ${args[*]}" >>"$DIR/node$n.log"
        # The brokers' working directory is DIR (no config/sluice.toml there).
        (cd "$DIR" && exec nohup "$BIN" "${args[@]}" >>"$DIR/node$n.log" 2>&1 </dev/null) &
        echo $! >"$DIR/node$n.pid"
        started+=("$n")
        echo "node $n starting (pid $!): Kafka $(address "$n"), controller 127.0.0.1:$(controller_port "$n"), log $DIR/node$n.log"
    done
    wait_ready
    echo "bootstrap: $(bootstrap)"
}

wait_ready() {
    local deadline=$((SECONDS + WAIT_S)) n want="" ok
    for n in $(seq 1 "$NODES"); do
        running "$n" && want+="${want:+ }$n"
    done
    while :; do
        ok=1
        for n in $(seq 1 "$NODES"); do
            if ! running "$n"; then
                if [ -f "$DIR/node$n.pid" ] && [[ " $want " == *" $n "* ]]; then
                    echo "cluster.sh: node $n exited; the end of $DIR/node$n.log:" >&2
                    tail -n 15 "$DIR/node$n.log" >&2
                    exit 1
                fi
                continue
            fi
            local md
            md=$(metadata_of "$n") || { ok=0; break; }
            local ids=${md%%$'\n'*}
            if [ "$ids" != "?" ] && { [ "$ids" != "$want" ] || [[ "$md" != *controller* ]]; }; then
                ok=0
                break
            fi
        done
        [ "$ok" = 1 ] && break
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "cluster.sh: brokers did not all answer with brokers [$want] and a controller within ${WAIT_S}s; see $DIR/node*.log" >&2
            exit 1
        fi
        sleep 0.3
    done
    echo "every broker answers: brokers $want"
}

stop() {
    local n pid
    for n in $(seq 1 "$NODES"); do
        if running "$n"; then
            pid=$(pid_of "$n")
            kill -TERM "$pid"
            local deadline=$((SECONDS + 15))
            while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                echo "node $n (pid $pid) did not stop within 15 s of SIGTERM: SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
            else
                echo "node $n stopped (pid $pid)"
            fi
        else
            echo "node $n not running"
        fi
        rm -f "$DIR/node$n.pid"
    done
}

status() {
    local n md state
    for n in $(seq 1 "$NODES"); do
        if running "$n"; then
            if md=$(metadata_of "$n"); then
                state="answers: brokers ${md%%$'\n'*}"
                [[ "$md" == *controller* ]] && state+=", ${md##*$'\n'}"
            else
                state="does not answer"
            fi
            echo "node $n pid $(pid_of "$n") $(address "$n") $state"
        else
            echo "node $n not running $(address "$n")"
        fi
    done
    echo "bootstrap: $(bootstrap)"
}

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)" # relative --dir: resolved once, against the caller's directory
case "$COMMAND" in
    start) BIN="$(find_binary)"; start ;;
    stop) stop ;;
    status) BIN="$(find_binary)"; status ;;
    *) usage ;;
esac
