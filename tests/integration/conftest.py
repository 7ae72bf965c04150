"""Fixtures for the integration tests: a real `sluice` broker process.

The broker binary comes from $SLUICE_BIN (tests/run.sh sets it to
target/debug/sluice). Each broker gets a free 127.0.0.1 port and a temporary
data directory, and must shut down cleanly (exit status 0) on SIGTERM.

To point the tests at another Kafka-compatible broker while debugging the
tests themselves, set SLUICE_CMD to a command template; `{bin}`, `{port}`,
`{data_dir}` and `{node_id}` are substituted, e.g.
    SLUICE_CMD='{bin} --listen 127.0.0.1:{port} --advertise 127.0.0.1:{port} --data-dir {data_dir}'
SLUICE_NODE_ID overrides the node id the tests expect (default 1).
"""

import logging
import os
import random
import shlex
import signal
import socket
import struct
import subprocess
import time
import uuid

import pytest

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0

DEFAULT_CMD = (
    "{bin} --listen 127.0.0.1:{port} --advertise 127.0.0.1:{port} "
    "--data-dir {data_dir} --shards 2 --node-id {node_id}"
)


def _ephemeral_low():
    """The first port of the kernel's ephemeral range (32768 by default)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_PORT_LOW = 10000
_PORT_HIGH = max(_PORT_LOW + 1000, _ephemeral_low() - 1)
_PORTS_GIVEN = set()


def bindable(port):
    """Whether `port` binds on both 127.0.0.1 and 0.0.0.0 without
    SO_REUSEADDR (so no listener and no TIME-WAIT connection holds it)."""
    for host in ("127.0.0.1", "0.0.0.0"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def claim_ports(*ports):
    """Record ports a test took by other means, so free_port never gives them.
    False (and nothing recorded) when one of them was given out already."""
    if _PORTS_GIVEN.intersection(ports):
        return False
    _PORTS_GIVEN.update(ports)
    return True


def free_port():
    """A port nothing listens on right now, never given out twice in a run.

    It is picked at random below the kernel's ephemeral range: ports taken by
    binding port 0 come from that range, which is also where the kernel picks
    the source port of every outgoing connection. A broker restarted on such a
    port (kill -9 and restart) can find it taken, in the moment between stop
    and start, by a probe's or a peer's connection, and fail to listen."""
    for _ in range(1000):
        port = random.randint(_PORT_LOW, _PORT_HIGH)
        if port not in _PORTS_GIVEN and bindable(port):
            _PORTS_GIVEN.add(port)
            return port
    raise AssertionError(f"no free port in {_PORT_LOW}..{_PORT_HIGH}")


def wait_until(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Poll `predicate` until it returns a truthy value; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - reported below
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


def recv_exact(sock, n):
    """Exactly `n` bytes from `sock` (raw-protocol tests)."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        data += chunk
    return data


def confluent_admin(broker, **config):
    """A confluent-kafka AdminClient for `broker`. librdkafka's log lines go to
    Python logging (shown by pytest on failure) instead of the process's stderr,
    so clients outliving their broker do not flood the output."""
    from confluent_kafka.admin import AdminClient

    conf = {"bootstrap.servers": broker.bootstrap, "socket.timeout.ms": 10000,
            "logger": logging.getLogger("librdkafka")}
    conf.update(config)
    return AdminClient(conf)


def unique_topic(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def record_batch(values, keys=None, timestamps=None):
    """A v2 record batch (no compression, no producer id) built by kafka-python;
    `keys` (default: all None) gives each record's key, `timestamps` (default:
    all now) each record's timestamp in ms."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 22)
    now = int(time.time() * 1000)
    keys = keys if keys is not None else [None] * len(values)
    timestamps = timestamps if timestamps is not None else [now] * len(values)
    for i, (k, v, ts) in enumerate(zip(keys, values, timestamps)):
        assert builder.append(i, timestamp=ts, key=k, value=v, headers=[]) is not None
    return bytes(builder.build())


# --- hand-encoded Kafka responses (test_wire.py, cluster.py) ---------------

def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


class Reader:
    def __init__(self, data, off=0):
        self.data, self.off = data, off

    def unpack(self, fmt):
        vals = struct.unpack_from(fmt, self.data, self.off)
        self.off += struct.calcsize(fmt)
        return vals if len(vals) > 1 else vals[0]

    def string(self):
        n = self.unpack(">h")
        if n < 0:
            return None
        s = self.data[self.off:self.off + n].decode()
        self.off += n
        return s

    def array(self, item):
        n = self.unpack(">i")
        return [item() for _ in range(max(n, 0))]


class Broker:
    """A running broker process with a fixed port and data directory."""

    def __init__(self, binary, data_dir, port=None, node_id=None, extra_args=(), template=None):
        self.binary = binary
        self.extra_args = list(extra_args)
        self.template = template
        self.data_dir = data_dir
        self.port = port or free_port()
        self.node_id = int(node_id if node_id is not None else os.environ.get("SLUICE_NODE_ID", "1"))
        self.host = "127.0.0.1"
        self.proc = None
        self.log_path = os.path.join(os.path.dirname(data_dir), f"broker-{self.port}.log")
        self._log_offset = 0  # start of the current run's output in the log file
        self._log_file = None

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}"

    def command(self):
        template = os.environ.get("SLUICE_CMD") or self.template or DEFAULT_CMD
        return shlex.split(
            template.format(
                bin=shlex.quote(self.binary),
                port=self.port,
                data_dir=shlex.quote(self.data_dir),
                node_id=self.node_id,
            )
        ) + self.extra_args

    def start(self):
        """Starts the process and waits until it accepts connections."""
        self.spawn()
        return self.wait_accepting()

    def spawn(self):
        """Starts the process without waiting for it."""
        assert self.proc is None, "broker already running"
        self._log_file = open(self.log_path, "ab")
        self._log_offset = self._log_file.tell()
        header = f"\n=== start: {shlex.join(self.command())}\n".encode()
        self._log_file.write(header)
        self._log_file.flush()
        self._log_offset += len(header)
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            # not the repo root: the broker must not pick up config/sluice.toml
            cwd=os.path.dirname(self.data_dir),
        )
        return self

    def wait_accepting(self):
        """Waits until the Kafka listener accepts; fails the test if the
        process exits first or START_TIMEOUT_S passes."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            code = self.proc.poll()
            if code is not None:
                self.proc = None
                self._close_log()
                pytest.fail(
                    f"broker exited with status {code} during startup; log tail:\n{self.log_tail()}",
                    pytrace=False,
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0) as probe:
                    # With nothing listening, a connect to an ephemeral-range port
                    # can "succeed" by connecting to itself (TCP simultaneous open).
                    if probe.getsockname() != probe.getpeername() and self.proc.poll() is None:
                        return self
            except OSError:
                pass
            if time.monotonic() >= deadline:
                self.kill()
                pytest.fail(
                    f"broker did not accept connections on {self.bootstrap} within "
                    f"{START_TIMEOUT_S}s; log tail:\n{self.log_tail()}",
                    pytrace=False,
                )
            time.sleep(0.05)

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, check=True):
        """SIGTERM, wait (SIGKILL after STOP_TIMEOUT_S); assert a clean exit."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        killed = False
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                killed = True
                proc.kill()
                proc.wait()
        self._close_log()
        self.wait_port_released()
        if check:
            assert not killed, (
                f"broker did not exit within {STOP_TIMEOUT_S}s of SIGTERM (killed); "
                f"log tail:\n{self.log_tail()}"
            )
            assert proc.returncode == 0, (
                f"broker exited with status {proc.returncode} after SIGTERM "
                f"(expected a clean shutdown, 0); log tail:\n{self.log_tail()}"
            )
        return proc.returncode

    def wait_port_released(self, timeout=10.0):
        """Wait until nothing accepts connections on the port any more. An exited
        process's io_uring is torn down asynchronously by the kernel, so its
        listening socket can outlive it briefly (notably after SIGKILL)."""
        def refused():
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0) as c:
                    return c.getsockname() == c.getpeername()  # self-connect: no listener
            except OSError:
                return True
        wait_until(refused, timeout=timeout, what=f"the broker's port {self.port} to be released")

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            self.wait_port_released()
        self._close_log()

    def restart(self):
        """Clean stop, then start again with the same port and data directory."""
        self.stop()
        self.start()
        return self

    def _close_log(self):
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log(self, all_runs=False):
        """The broker's stderr/stdout for the current (or last) run."""
        try:
            with open(self.log_path, "rb") as f:
                if not all_runs:
                    f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log(all_runs=True).splitlines()[-lines:])

    def partition_dir(self, topic, partition):
        return os.path.join(self.data_dir, f"{topic}-{partition}")


def _binary():
    binary = os.environ.get("SLUICE_BIN")
    if not binary:
        pytest.fail(
            "SLUICE_BIN is not set; build the broker (cargo build --bin sluice) and run "
            "SLUICE_BIN=target/debug/sluice pytest tests/integration (or use bash tests/run.sh)",
            pytrace=False,
        )
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.fail(f"SLUICE_BIN={binary!r} is not an executable file", pytrace=False)
    return os.path.abspath(binary)


def _start_broker(tmp_path_factory, **kwargs):
    binary = _binary()
    data_dir = str(tmp_path_factory.mktemp("sluice") / "data")
    os.mkdir(data_dir)
    return Broker(binary, data_dir, **kwargs).start()


def _finish(broker):
    try:
        broker.stop(check=True)
    finally:
        broker.kill()


@pytest.fixture
def broker(tmp_path_factory):
    """A fresh broker for one test (use when the test restarts or stops it)."""
    b = _start_broker(tmp_path_factory)
    yield b
    _finish(b)


@pytest.fixture
def make_broker(tmp_path_factory):
    """Factory for brokers with extra command-line arguments, e.g.
    make_broker(extra_args=["--set", "num.partitions=3"]); all are stopped (and
    checked for a clean exit) at teardown."""
    started = []

    def make(**kwargs):
        b = _start_broker(tmp_path_factory, **kwargs)
        started.append(b)
        return b

    make.started = started
    yield make
    errors = []
    for b in started:
        try:
            _finish(b)
        except AssertionError as exc:
            errors.append(str(exc))
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory):
    """One broker for all tests of a module; tests use unique topic names."""
    b = _start_broker(tmp_path_factory)
    yield b
    _finish(b)


@pytest.fixture
def topic_name():
    return unique_topic()


def pytest_configure(config):
    # kafka-python 3.0 loads its protocol schemas with a deprecated importlib API.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:kafka.protocol.schemas.load_json")
    config.addinivalue_line("filterwarnings", "ignore:.*is deprecated. Use files\\(\\) instead:DeprecationWarning")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the broker log of the test's broker(s) to the report."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        brokers = [(n, funcargs.get(n)) for n in ("broker", "shared_broker")]
        factory = funcargs.get("make_broker")
        brokers += [(f"make_broker #{i}", b) for i, b in enumerate(getattr(factory, "started", []))]
        for name, b in brokers:
            if isinstance(b, Broker):
                report.sections.append((f"{name} log tail ({b.log_path})", b.log_tail(60)))
        # Clusters (cluster.py): every node's log, of every cluster the test made.
        clusters = [funcargs.get("cluster"), funcargs.get("shared_cluster")]
        clusters += getattr(funcargs.get("make_cluster"), "made", [])
        for c in dict.fromkeys(c for c in clusters if hasattr(c, "log_sections")):
            report.sections.extend(c.log_sections())
    return report
