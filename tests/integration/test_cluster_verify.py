"""loadgen verify through a leader failure on a real three-broker cluster.

Three `sluice` brokers on loopback (each with a pid file), a topic with
3 partitions, replication factor 3 and min.insync.replicas=2, and
`loadgen verify` at a fixed rate with acks=all for ~20 s whose fault
schedule kills -9 the leader of partition 0 at 5 s and restarts it at 10 s.
Every acknowledged record must be consumed once, in order: 0 lost,
0 duplicated, 0 reordered.

The fixture is this file's own (self-contained): $SLUICE_BIN is the broker
binary, $LOADGEN_BIN the load generator (default: next to $SLUICE_BIN).
"""

import json
import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import free_port

START_TIMEOUT_S = 30.0


def free_ports(count):
    return [free_port() for _ in range(count)]


def listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Cluster:
    """Three brokers started through `sh -c 'exec CMD'`, as loadgen restarts them."""

    def __init__(self, binary, root):
        self.binary = binary
        self.root = root
        ports = free_ports(6)
        self.ports = ports[:3]
        self.controller_ports = ports[3:]
        voters = ",".join(f"{n}@127.0.0.1:{p}" for n, p in zip((1, 2, 3), self.controller_ports))
        self.commands = {}
        for index, node in enumerate((1, 2, 3)):
            data_dir = root / f"d{node}"
            data_dir.mkdir()
            self.commands[node] = (
                f"{shlex.quote(binary)} --node-id {node} --data-dir {data_dir} "
                f"--listen 127.0.0.1:{self.ports[index]} "
                f"--controller-listen 127.0.0.1:{self.controller_ports[index]} "
                f"--controller-quorum-voters {voters} --shards 1 "
                "--set broker.session.timeout.ms=3000 --set broker.heartbeat.interval.ms=500 "
                f">>{root / f'n{node}.log'} 2>&1"
            )
        self.bootstrap = f"127.0.0.1:{self.ports[0]}"

    def pid_file(self, node):
        return self.root / f"n{node}.pid"

    def start(self):
        for node, command in self.commands.items():
            process = subprocess.Popen(["sh", "-c", f"exec {command}"], stdin=subprocess.DEVNULL)
            self.pid_file(node).write_text(f"{process.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(listening(port) for port in self.ports):
            assert time.monotonic() < deadline, f"brokers did not listen:\n{self.logs()}"
            time.sleep(0.1)

    def cli(self, *args, check=True):
        return subprocess.run([self.binary, *args, "--bootstrap-server", self.bootstrap],
                              capture_output=True, text=True, timeout=60, check=check)

    def stop(self):
        for node in self.commands:
            try:
                pid = int(self.pid_file(node).read_text().strip())
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass

    def logs(self):
        text = []
        for node in self.commands:
            log = self.root / f"n{node}.log"
            if log.exists():
                text.append(f"--- broker {node} ---\n" + "\n".join(log.read_text().splitlines()[-30:]))
        return "\n".join(text)


@pytest.fixture
def cluster(tmp_path):
    binary = os.environ.get("SLUICE_BIN")
    if not binary:
        pytest.skip("SLUICE_BIN is not set")
    cluster = Cluster(str(Path(binary).resolve()), tmp_path)
    cluster.start()
    yield cluster
    cluster.stop()


def loadgen_binary():
    explicit = os.environ.get("LOADGEN_BIN")
    if explicit:
        return str(Path(explicit).resolve())
    candidate = Path(os.environ["SLUICE_BIN"]).resolve().parent / "loadgen"
    if not candidate.exists():
        pytest.skip(f"no loadgen binary at {candidate} (cargo build -p loadgen, or set LOADGEN_BIN)")
    return str(candidate)


def test_verify_survives_killing_the_leader(cluster, tmp_path):
    loadgen = loadgen_binary()
    topic = "verify-faults"
    # The metadata quorum elects a controller shortly after start.
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        created = cluster.cli("topics", "create", "--topic", topic, "--partitions", "3",
                              "--replication-factor", "3", "--config", "min.insync.replicas=2",
                              check=False)
        if created.returncode == 0:
            break
        assert time.monotonic() < deadline, f"{created.stderr}\n{cluster.logs()}"
        time.sleep(0.5)
    report = tmp_path / "report.json"
    pids = ",".join(f"{node}={cluster.pid_file(node)}" for node in (1, 2, 3))
    command = [
        loadgen, "verify", "--bootstrap", cluster.bootstrap, "--topic", topic,
        "--partitions", "3", "--acks", "all", "--rate", "1000", "--record-size", "100",
        "--duration", "20s", "--warmup", "0s", "--fetch-max-wait-ms", "100",
        "--drain-timeout", "60s", "--quiet", "--report", str(report),
        "--fault", f"kill:leader-of={topic}/0@5s,restart@10s", "--broker-pids", pids,
    ]
    for node, broker_command in cluster.commands.items():
        command += ["--broker-cmd", f"{node}={broker_command}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    output = f"{result.stdout}\n{result.stderr}"
    assert report.exists(), f"{output}\n{cluster.logs()}"
    results = json.loads(report.read_text())["results"]
    faults = results["faults"]
    assert any("SIGKILL" in line for line in faults), faults
    assert any("restarted broker" in line for line in faults), faults
    verify = results["verify"]
    assert verify["acknowledged"] >= 10_000, output
    assert (verify["lost"], verify["duplicated"], verify["reordered"]) == (0, 0, 0), \
        f"{output}\n{cluster.logs()}"
    assert sorted(verify["partitions"]) == ["0", "1", "2"], verify["partitions"]
    assert result.returncode == 0, output
