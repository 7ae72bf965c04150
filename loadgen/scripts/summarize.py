#!/usr/bin/env python3
"""Medians of loadgen JSON reports grouped by run name (the label without its
trailing -N run number): a Markdown table per group of figures.

Usage: summarize.py RESULTS_DIR
"""
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def fmt_us(us):
    if us is None:
        return "-"
    if us >= 10_000:
        return f"{us / 1000:.0f} ms"
    if us >= 1_000:
        return f"{us / 1000:.1f} ms"
    return f"{us:.0f} µs"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/loadgen-bench")
    groups = defaultdict(list)
    for path in sorted(out.glob("s*.json")):
        report = json.loads(path.read_text())
        name = re.sub(r"-\d+$", "", report["label"])
        groups[name].append(report)
    print("| run | n | produce MB/s | produce rec/s | consume MB/s | ack p50 | ack p99 | ack p99.9 | ack max | e2e p50 | e2e p99 | e2e p99.9 | e2e max | errors | MB/s of each run |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, reports in sorted(groups.items()):
        def pick(path):
            values = []
            for report in reports:
                node = report["results"]
                for key in path:
                    node = node.get(key) if isinstance(node, dict) else None
                values.append(node)
            return median(values)
        errors = 0
        for report in reports:
            for kind in ("produce", "consume"):
                section = report["results"].get(kind) or {}
                errors += sum((section.get("errors") or {}).values())
            errors += len(report["results"].get("failures") or [])
        mbps = pick(["produce", "megabytes_per_second"])
        recs = pick(["produce", "records_per_second"])
        cmbps = pick(["consume", "megabytes_per_second"])
        cells = [
            name,
            str(len(reports)),
            f"{mbps:.1f}" if mbps is not None else "-",
            f"{recs:,.0f}" if recs is not None else "-",
            f"{cmbps:.1f}" if cmbps is not None else "-",
        ]
        for kind in ("produce_latency", "e2e_latency"):
            for p in ("p50_us", "p99_us", "p999_us", "max_us"):
                cells.append(fmt_us(pick([kind, p])))
        cells.append(str(errors))
        each = []
        for report in reports:
            section = report["results"].get("produce") or report["results"].get("consume") or {}
            each.append(f"{section.get('megabytes_per_second', 0):.0f}")
        cells.append(" ".join(each))
        print("| " + " | ".join(cells) + " |")
    for path in sorted(out.glob("limits-*.json")):
        limits = json.loads(path.read_text())
        sync = limits.get("fdatasync_4k_latency") or {}
        print(
            f"\nlimits ({path.stem}): loopback TCP {limits['loopback_tcp_megabytes_per_second']:.0f} MB/s, "
            f"direct-I/O write {limits['direct_write_megabytes_per_second']:.0f} MB/s, "
            f"direct-I/O read {limits.get('direct_read_megabytes_per_second', 0):.0f} MB/s, "
            f"fdatasync 4 KiB p50 {fmt_us(sync.get('p50_us'))} p99 {fmt_us(sync.get('p99_us'))}"
        )


if __name__ == "__main__":
    main()
