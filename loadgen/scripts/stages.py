#!/usr/bin/env python3
"""Prints the tail-latency runs of benchmarks.sh: the client's acknowledgement
percentiles, the broker's CPU per GB, and where the broker's time went by
produce stage (sluice_produce_stage_seconds, the worst shard per quantile).

Usage: stages.py OUT_DIR NAME_PREFIX
"""
import glob
import json
import os
import re
import sys

SAMPLE = re.compile(
    r'^sluice_produce_stage_seconds\{shard="(\d+)",stage="(\w+)",quantile="([\d.]+)"\} (\S+)$'
)
STAGES = ["read", "decode", "route", "hop", "append", "durable", "replicated",
          "reply", "encode", "in_order", "write", "total"]
QUANTILES = ["0.5", "0.99", "0.999", "1"]


def ms(seconds):
    return f"{seconds * 1e3:.3f}"


def stages(path):
    """stage -> quantile -> worst value over shards, in seconds."""
    worst = {}
    if not os.path.exists(path):
        return worst
    with open(path) as metrics:
        for line in metrics:
            match = SAMPLE.match(line.strip())
            if match:
                _, stage, quantile, value = match.groups()
                slot = worst.setdefault(stage, {})
                slot[quantile] = max(slot.get(quantile, 0.0), float(value))
    return worst


def main():
    out, prefix = sys.argv[1], sys.argv[2]
    for limits in sorted(glob.glob(os.path.join(out, "limits-tail-*.json"))):
        with open(limits) as f:
            sync = json.load(f).get("fdatasync_4k_latency") or {}
        print(f"{os.path.basename(limits)}: fdatasync 4 KiB p50 {sync.get('p50_us')} us, "
              f"p99 {sync.get('p99_us')} us, max {sync.get('max_us')} us")
    print()
    print("| run | MB/s | ack p50 ms | ack p99 ms | ack p99.9 ms | broker CPU-s | CPU-s per GB produced |")
    print("|---|---|---|---|---|---|---|")
    runs = sorted(glob.glob(os.path.join(out, prefix + "*.json")))
    for report in runs:
        name = os.path.basename(report)[: -len(".json")]
        with open(report) as f:
            results = json.load(f)["results"]
        latency = results.get("produce_latency") or {}
        produce = results.get("produce") or {}
        cpu_path = os.path.join(out, name + ".cpu")
        cpu = float(open(cpu_path).read()) if os.path.exists(cpu_path) else float("nan")
        gigabytes = produce.get("bytes", 0) / 1e9
        per_gb = cpu / gigabytes if gigabytes else float("nan")
        print(f"| {name} | {produce.get('megabytes_per_second', 0):.1f} "
              f"| {latency.get('p50_us', 0) / 1e3:.2f} | {latency.get('p99_us', 0) / 1e3:.2f} "
              f"| {latency.get('p999_us', 0) / 1e3:.2f} | {cpu:.2f} | {per_gb:.2f} |")
    for report in runs:
        name = os.path.basename(report)[: -len(".json")]
        worst = stages(os.path.join(out, name + ".metrics"))
        if not worst:
            continue
        print(f"\n{name}: broker produce stages, ms (worst shard per quantile)\n")
        print("| stage | p50 | p99 | p99.9 | max |")
        print("|---|---|---|---|---|")
        for stage in STAGES:
            if stage in worst:
                values = " | ".join(ms(worst[stage].get(q, 0.0)) for q in QUANTILES)
                print(f"| {stage} | {values} |")


if __name__ == "__main__":
    main()
