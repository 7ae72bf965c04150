"""A real multi-broker Sluice cluster on loopback, for tests and benchmarks.

`Cluster` starts N `sluice` processes (each broker and controller, the only
mode Sluice has) with free ports, one temporary data dir each, and the same
`--controller-quorum-voters`; `Node` is one of them, a conftest `Broker`
with the process handles a failure test needs: `pid`, `kill()` (SIGKILL),
`pause()`/`resume()` (SIGSTOP/SIGCONT), `stop()` (SIGTERM, clean exit
checked), `start()` again on the same ports and data dir.

`metadata(node_id)` asks ONE broker for Metadata (v7, hand-encoded over a
socket, so the answer is that broker's own, not whichever broker a client
library picked), with the controller, and per partition the leader, leader
epoch, replicas, ISR and offline replicas.

Fixtures (import them into a test module: `from cluster import cluster`):
`cluster` is a fresh three-node cluster per test with fencing lowered to
FAST_SESSION_TIMEOUT_MS; `shared_cluster` is one per module, for tests that
kill nothing; `make_cluster(size=..., **kwargs)` makes any number of
clusters. Every node is stopped at teardown and must exit 0 on SIGTERM,
and conftest's report hook appends every node's log tail to a failed test's
report (`log_sections`).

Outside pytest (benches/cluster_failover.py): `Cluster(binary, base_dir)`,
then `start()` and `stop()`.
"""

import os
import shlex
import signal
import socket
import struct

import pytest

from conftest import Broker, Reader, _binary, free_port, recv_exact, wait_until

FAST_SESSION_TIMEOUT_MS = 3000
FAST_HEARTBEAT_INTERVAL_MS = 500
READY_TIMEOUT_S = 30.0
# Kafka's default is 9000; a test that waits for fencing uses this margin.
FENCING_MARGIN_S = 4.0

NODE_CMD = (
    "{bin} --node-id {node_id} --data-dir {data_dir} --listen 127.0.0.1:{port} "
    "--advertise 127.0.0.1:{port} --shards 1"
)

METADATA = 3
METADATA_VERSION = 7  # the last one before flexible versions; has leader epoch and offline replicas


class Node(Broker):
    """One broker (and controller) of a `Cluster`."""

    def __init__(self, binary, data_dir, node_id, port, controller_port, voters, extra_args=()):
        args = ["--controller-listen", f"127.0.0.1:{controller_port}",
                "--controller-quorum-voters", voters, *extra_args]
        super().__init__(binary, data_dir, port=port, node_id=node_id, extra_args=args,
                         template=NODE_CMD)
        self.controller_port = controller_port
        self.log_path = os.path.join(os.path.dirname(data_dir), f"node{node_id}.log")

    def command(self):
        # Not SLUICE_CMD: a cluster needs these flags whatever the template.
        return shlex.split(self.template.format(
            bin=shlex.quote(self.binary), port=self.port,
            data_dir=shlex.quote(self.data_dir), node_id=self.node_id)) + self.extra_args

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def pause(self):
        """SIGSTOP: the process stays, but answers nothing (no heartbeats)."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.pid, signal.SIGCONT)

    def wait_exit(self, timeout=30.0):
        """Waits for the process to exit on its own; returns its status."""
        proc, self.proc = self.proc, None
        try:
            return proc.wait(timeout=timeout)
        except Exception:
            self.proc = proc
            raise
        finally:
            if self.proc is None:
                self._close_log()

    def metadata(self, topics=None, timeout=5.0):
        return metadata(self.host, self.port, topics, timeout)


class Cluster:
    """N nodes with one quorum. `extra_args` go to every node."""

    def __init__(self, binary, base_dir, size=3, extra_args=(),
                 session_timeout_ms=FAST_SESSION_TIMEOUT_MS,
                 heartbeat_interval_ms=FAST_HEARTBEAT_INTERVAL_MS):
        self.base_dir = str(base_dir)
        self.session_timeout_ms = session_timeout_ms
        ports = distinct_free_ports(2 * size)
        kafka_ports, controller_ports = ports[:size], ports[size:]
        self.voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(controller_ports))
        timing = ["--set", f"broker.session.timeout.ms={session_timeout_ms}",
                  "--set", f"broker.heartbeat.interval.ms={heartbeat_interval_ms}"]
        self.nodes = {}
        for i in range(size):
            node_id = i + 1
            data_dir = os.path.join(self.base_dir, f"node{node_id}", "data")
            os.makedirs(data_dir, exist_ok=True)
            self.nodes[node_id] = Node(binary, data_dir, node_id, kafka_ports[i],
                                       controller_ports[i], self.voters,
                                       extra_args=[*timing, *extra_args])

    def __getitem__(self, node_id):
        return self.nodes[node_id]

    @property
    def bootstrap(self):
        return ",".join(n.bootstrap for n in self.nodes.values())

    def running(self):
        return [n for n in self.nodes.values() if n.is_running()]

    def start(self):
        """Starts every node at once (a quorum needs a majority to elect),
        then waits until each answers Metadata naming every node and a
        controller."""
        for node in self.nodes.values():
            node.spawn()
        for node in self.nodes.values():
            node.wait_accepting()
        self.wait_ready()
        return self

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        """Every running node lists every running node as a live broker,
        names a controller among them, and knows the cluster id."""
        live = sorted(n.node_id for n in self.running())

        def ready():
            for node in self.running():
                md = node.metadata()
                if sorted(md["brokers"]) != live or md["controller_id"] not in live \
                        or not md["cluster_id"]:
                    return False
            return True
        wait_until(ready, timeout=timeout, interval=0.1,
                   what=f"brokers {live} to see each other and a controller")

    def metadata(self, node_id=None, topics=None):
        """Metadata from one node (the first running one by default)."""
        node = self.nodes[node_id] if node_id is not None else self.running()[0]
        return node.metadata(topics)

    def controller_id(self, via=None):
        return self.metadata(via).get("controller_id")

    def wait_controller(self, exclude=(), timeout=15.0):
        """The controller id once every running node names the same live one
        (not in `exclude`)."""
        def agreed():
            ids = {n.node_id for n in self.running()}
            seen = {n.metadata()["controller_id"] for n in self.running()}
            (cid,) = seen if len(seen) == 1 else (None,)
            return cid if cid in ids and cid not in exclude else None
        return wait_until(agreed, timeout=timeout, interval=0.05, what="one agreed controller")

    def stop(self, check=True):
        """SIGTERM every node; with `check`, each must exit 0."""
        errors = []
        for node in self.nodes.values():
            try:
                node.stop(check=check)
            except AssertionError as exc:
                errors.append(f"node {node.node_id}: {exc}")
            finally:
                node.kill()
        assert not errors, "\n".join(errors)

    def log_sections(self, lines=60):
        return [(f"node {n.node_id} log tail ({n.log_path})", n.log_tail(lines))
                for n in self.nodes.values()]


def distinct_free_ports(count):
    ports = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


# --- Metadata v7 from one broker ----------------------------------------------

def metadata(host, port, topics=None, timeout=5.0):
    """Metadata v7 from the broker at host:port: {"brokers": {id: (host,
    port)}, "controller_id", "cluster_id", "topics": {name: {"error",
    "partitions": {index: {"error", "leader", "leader_epoch", "replicas",
    "isr", "offline"}}}}}. `topics` None asks for all topics."""
    client = b"sluice-cluster-test"
    header = struct.pack(">hhih", METADATA, METADATA_VERSION, 1, len(client)) + client
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        body = struct.pack(">i", len(topics))
        for t in topics:
            body += struct.pack(">h", len(t.encode())) + t.encode()
    body += struct.pack(">b", 0)  # allow_auto_topic_creation
    payload = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", recv_exact(sock, 4))
        r = Reader(recv_exact(sock, size))
    assert r.unpack(">i") == 1  # correlation id
    r.unpack(">i")  # throttle_time_ms
    brokers = {}
    for node_id, bhost, bport, _rack in r.array(
            lambda: (r.unpack(">i"), r.string(), r.unpack(">i"), r.string())):
        brokers[node_id] = (bhost, bport)
    cluster_id = r.string()
    controller_id = r.unpack(">i")
    ints = lambda: r.array(lambda: r.unpack(">i"))  # noqa: E731

    def partition():
        err, index, leader, epoch = r.unpack(">hiii")
        return index, {"error": err, "leader": leader, "leader_epoch": epoch,
                       "replicas": ints(), "isr": ints(), "offline": ints()}

    def topic():
        err = r.unpack(">h")
        name = r.string()
        r.unpack(">b")  # is_internal
        return name, {"error": err, "partitions": dict(r.array(partition))}

    return {"brokers": brokers, "cluster_id": cluster_id, "controller_id": controller_id,
            "topics": dict(r.array(topic))}


# --- fixtures ---------------------------------------------------------------------

@pytest.fixture
def make_cluster(tmp_path_factory):
    """make_cluster(size=3, **Cluster kwargs) -> a started Cluster; all are
    stopped (each node must exit 0 on SIGTERM) at teardown."""
    made = []

    def make(size=3, start=True, **kwargs):
        c = Cluster(_binary(), tmp_path_factory.mktemp("cluster"), size=size, **kwargs)
        made.append(c)
        return c.start() if start else c

    make.made = made
    yield make
    errors = []
    for c in made:
        try:
            c.stop(check=True)
        except AssertionError as exc:
            errors.append(str(exc))
    assert not errors, "\n".join(errors)


@pytest.fixture
def cluster(make_cluster):
    """A fresh, started three-node cluster, fencing after FAST_SESSION_TIMEOUT_MS."""
    return make_cluster(size=3)


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory):
    """One three-node cluster for the tests of a module that neither stop
    nor kill its nodes (they use unique topic names)."""
    c = Cluster(_binary(), tmp_path_factory.mktemp("cluster"), size=3).start()
    yield c
    c.stop(check=True)

