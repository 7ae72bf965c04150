"""Authentication (issue 17): named listeners, TLS (rustls), SASL PLAIN and
SCRAM, connection limits, with real clients (confluent-kafka, kcat,
kafka-python, kafkajs) against the real broker.

Certificates come from scripts/make-certs.sh (the one the README uses).
Hand-encoded frames only where the input is meant to be malformed or the
exchange must be driven step by step (the fuzz-style and gate tests).
"""

import json
import os
import random
import shutil
import socket
import ssl
import struct
import subprocess
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from cluster import make_cluster  # noqa: F401 - a fixture
from conftest import free_port, unique_topic, wait_until
from test_wire import (
    api_versions_v0,
    assert_api_versions_ok,
    assert_closed_by_peer,
    frame,
    metadata_v1_all_topics,
    read_response,
    request_header_v1,
    send_bad,
)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MAKE_CERTS = os.path.join(ROOT, "scripts", "make-certs.sh")
JS_SASL = os.path.join(ROOT, "tests", "js", "sasl_plain.js")
SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
SASL_AUTHENTICATION_FAILED = 58
IDLE_MS = 4000
USERS = {"alice": ("alice-secret", "SCRAM-SHA-512"), "bob": ("bob-secret", "SCRAM-SHA-256")}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("certs"))
    subprocess.run(["bash", MAKE_CERTS, directory], check=True, capture_output=True)
    return directory


def sluice(broker, *args):
    return subprocess.run([broker.binary, *args], capture_output=True, text=True, timeout=60)


def secure_args(certs, ports, *more):
    listeners = ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items())
    args = [
        "--set", f"listeners={listeners}",
        "--set", f"ssl.keystore.location={certs}/server.pem",
        "--set", f"ssl.key.location={certs}/server.key",
        "--set", f"ssl.truststore.location={certs}/ca.pem",
        "--set", "ssl.client.auth=required",
        "--set", "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
    ]
    for setting in more:
        args += ["--set", setting]
    return args


def start_secure(tmp_path_factory, certs, *more, metrics=False):
    """A broker with PLAINTEXT (its fixture port), SSL, SASL_SSL and
    SASL_PLAINTEXT listeners; the users of USERS created over PLAINTEXT."""
    from conftest import _start_broker

    plain = free_port()
    ports = {"PLAINTEXT": plain, "SSL": free_port(), "SASL_SSL": free_port(), "SASL_PLAINTEXT": free_port()}
    extra = secure_args(certs, ports, *more)
    metrics_port = free_port() if metrics else None
    if metrics_port:
        extra += ["--metrics", f"127.0.0.1:{metrics_port}"]
    broker = _start_broker(tmp_path_factory, port=plain, extra_args=extra)
    broker.ports = ports
    broker.metrics_port = metrics_port
    for user, (password, mechanism) in USERS.items():
        done = sluice(broker, "users", "create", "--bootstrap-server", broker.bootstrap,
                      "--user", user, "--password", password, "--mechanism", mechanism)
        assert done.returncode == 0, done.stderr
    return broker


@pytest.fixture(scope="module")
def secure(tmp_path_factory, certs):
    from conftest import _finish

    broker = start_secure(tmp_path_factory, certs, f"connections.max.idle.ms={IDLE_MS}", metrics=True)
    yield broker
    _finish(broker)


def sasl_ssl_config(broker, certs, user="alice", mechanism=None, password=None):
    secret, default_mechanism = USERS.get(user, ("x", "SCRAM-SHA-512"))
    return {
        "bootstrap.servers": f"127.0.0.1:{broker.ports['SASL_SSL']}",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": mechanism or default_mechanism,
        "sasl.username": user,
        "sasl.password": password if password is not None else secret,
        "ssl.ca.location": f"{certs}/ca.pem",
    }


def mtls_config(broker, certs, name="alice"):
    return {
        "bootstrap.servers": f"127.0.0.1:{broker.ports['SSL']}",
        "security.protocol": "SSL",
        "ssl.ca.location": f"{certs}/ca.pem",
        "ssl.certificate.location": f"{certs}/{name}.pem",
        "ssl.key.location": f"{certs}/{name}.key",
    }


def produce_and_consume(config, topic, count=20):
    producer = Producer(config)
    for i in range(count):
        producer.produce(topic, value=f"{topic}-{i}".encode())
    assert producer.flush(30) == 0
    consumer = Consumer(dict(config, **{"group.id": f"{topic}-g", "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            got.append(message.value().decode())
    consumer.close()
    assert got == [f"{topic}-{i}" for i in range(count)]


def metadata_fails(config, timeout=8):
    admin = AdminClient(dict(config, **{"socket.timeout.ms": 3000}))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=timeout)


def assert_serving(broker, certs):
    """A good SASL_SSL client still gets metadata."""
    metadata = AdminClient(sasl_ssl_config(broker, certs)).list_topics(timeout=15)
    assert 1 in metadata.brokers


def metric(broker, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def kcat(*args, stdin=None):
    return subprocess.run(["kcat", *args], input=stdin, capture_output=True, text=True, timeout=60)


# --- Clients that authenticate -------------------------------------------------


def test_confluent_scram_sha_512_over_tls(secure, certs):
    produce_and_consume(sasl_ssl_config(secure, certs), unique_topic("scram512"))


def test_confluent_scram_sha_256_and_mutual_tls(secure, certs):
    produce_and_consume(sasl_ssl_config(secure, certs, user="bob"), unique_topic("scram256"))
    produce_and_consume(mtls_config(secure, certs), unique_topic("mtls"))
    # Kafka's default principal of a client certificate: RFC 2253 order.
    wait_until(lambda: "principal=User:CN=alice,OU=eng,O=Sluice" in secure.log(),
               what="the mTLS principal in the broker log")


def test_kcat_scram_sha_512_and_mutual_tls(secure, certs):
    topic = unique_topic("kcat")
    scram = ["-b", f"127.0.0.1:{secure.ports['SASL_SSL']}", "-X", "security.protocol=SASL_SSL",
             "-X", "sasl.mechanism=SCRAM-SHA-512", "-X", "sasl.username=alice",
             "-X", "sasl.password=alice-secret", "-X", f"ssl.ca.location={certs}/ca.pem"]
    produced = kcat(*scram, "-P", "-t", topic, stdin="one\ntwo\nthree\n")
    assert produced.returncode == 0, produced.stderr
    mtls = ["-b", f"127.0.0.1:{secure.ports['SSL']}", "-X", "security.protocol=SSL",
            "-X", f"ssl.ca.location={certs}/ca.pem", "-X", f"ssl.certificate.location={certs}/bob.pem",
            "-X", f"ssl.key.location={certs}/bob.key"]
    consumed = kcat(*mtls, "-C", "-t", topic, "-c", "3", "-e")
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.split() == ["one", "two", "three"]


def test_kafka_python_sasl_plain_over_tls(secure, certs):
    from kafka import KafkaConsumer, KafkaProducer

    topic = unique_topic("kpy")
    common = dict(bootstrap_servers=f"127.0.0.1:{secure.ports['SASL_SSL']}", security_protocol="SASL_SSL",
                  sasl_mechanism="PLAIN", sasl_plain_username="bob", sasl_plain_password="bob-secret",
                  ssl_cafile=f"{certs}/ca.pem")
    producer = KafkaProducer(**common)
    for i in range(10):
        producer.send(topic, f"py-{i}".encode())
    producer.flush(30)
    producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=15000, **common)
    values = [message.value.decode() for _, message in zip(range(10), consumer)]
    consumer.close()
    assert values == [f"py-{i}" for i in range(10)]


def test_kafkajs_sasl_plain_over_tls(secure, certs):
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (tests/run.sh expects node 20)", pytrace=False)
    topic = unique_topic("js")
    run = subprocess.run([node, JS_SASL, f"127.0.0.1:{secure.ports['SASL_SSL']}", f"{certs}/ca.pem",
                          "alice", "alice-secret", topic, "10"], capture_output=True, text=True, timeout=120)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert run.returncode == 0, (result, run.stderr[-2000:])
    assert result["consumed"] == [f"js-{i}" for i in range(10)]


def test_metadata_answers_each_listener_its_own_endpoint(secure, certs):
    configs = {
        "PLAINTEXT": {"bootstrap.servers": secure.bootstrap},
        "SASL_SSL": sasl_ssl_config(secure, certs),
        "SSL": mtls_config(secure, certs),
    }
    for name, config in configs.items():
        broker = AdminClient(config).list_topics(timeout=15).brokers[1]
        assert (broker.host, broker.port) == ("127.0.0.1", secure.ports[name]), name


def test_users_list_and_delete(secure):
    listed = sluice(secure, "users", "list", "--bootstrap-server", secure.bootstrap, "--output", "json")
    assert listed.returncode == 0, listed.stderr
    users = {(row["user"], row["mechanism"]) for row in json.loads(listed.stdout)}
    assert {("alice", "SCRAM-SHA-512"), ("bob", "SCRAM-SHA-256")} <= users
    made = sluice(secure, "users", "create", "--bootstrap-server", secure.bootstrap,
                  "--user", "carol", "--password", "c", "--iterations", "4096")
    assert made.returncode == 0, made.stderr
    gone = sluice(secure, "users", "delete", "--bootstrap-server", secure.bootstrap, "--user", "carol")
    assert gone.returncode == 0 and "Deleted SCRAM-SHA-512" in gone.stdout, gone.stderr
    again = sluice(secure, "users", "delete", "--bootstrap-server", secure.bootstrap,
                   "--user", "carol", "--mechanism", "SCRAM-SHA-512")
    assert again.returncode != 0 and "RESOURCE_NOT_FOUND" in again.stderr, again.stderr


# --- Failures: each clean, and the broker keeps serving ---------------------------


FAILURES = {
    "wrong password": lambda b, c: metadata_fails(sasl_ssl_config(b, c, password="wrong")),
    "unknown user": lambda b, c: metadata_fails(sasl_ssl_config(b, c, user="mallory")),
    "plain with wrong password": lambda b, c: metadata_fails(
        sasl_ssl_config(b, c, mechanism="PLAIN", password="wrong")),
    "expired certificate": lambda b, c: metadata_fails(mtls_config(b, c, name="expired")),
    "unknown CA": lambda b, c: metadata_fails(mtls_config(b, c, name="rogue")),
    "plaintext to a TLS port": lambda b, c: plaintext_to_tls(b),
    "TLS to a plaintext port": lambda b, c: tls_to_plaintext(b, c),
}


def plaintext_to_tls(broker):
    with socket.create_connection(("127.0.0.1", broker.ports["SSL"]), timeout=5) as sock:
        send_bad(sock, api_versions_v0(1))
        assert_closed_by_peer(sock)


def tls_to_plaintext(broker, certs):
    context = ssl.create_default_context(cafile=f"{certs}/ca.pem")
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError, socket.timeout, OSError)):
            context.wrap_socket(raw, server_hostname="localhost")


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_failure_is_clean_and_the_broker_keeps_serving(secure, certs, case):
    FAILURES[case](secure, certs)
    assert_serving(secure, certs)
    assert secure.is_running()


def test_failed_authentication_is_counted_and_logged_without_a_hint(secure, certs):
    before = metric(secure, "sluice_sasl_authentication_failures_total")
    metadata_fails(sasl_ssl_config(secure, certs, password="wrong"))
    wait_until(lambda: metric(secure, "sluice_sasl_authentication_failures_total") > before,
               what="the failure counted")
    assert "SASL authentication failed" in secure.log()
    # Same answer for an unknown user as for a wrong password.
    wrong = raw_sasl_plain(secure, b"\0alice\0nope")
    unknown = raw_sasl_plain(secure, b"\0nobody\0nope")
    assert wrong[0] == unknown[0] == SASL_AUTHENTICATION_FAILED
    assert wrong[1] == unknown[1]
    assert metric(secure, "sluice_tls_handshake_failures_total") >= 0


# --- Hand-driven SASL exchanges: the gate, lifetimes, malformed input -------------


def string(text):
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def sasl_handshake(sock, mechanism, correlation_id=1):
    sock.sendall(frame(request_header_v1(SASL_HANDSHAKE, 1, correlation_id) + string(mechanism)))
    body = read_response(sock)
    (_, error_code) = struct.unpack_from(">ih", body, 0)
    return error_code


def sasl_authenticate(sock, token, correlation_id=2):
    """SaslAuthenticate v1: (error_code, error_message, auth_bytes, session_lifetime_ms)."""
    request = request_header_v1(SASL_AUTHENTICATE, 1, correlation_id) + struct.pack(">i", len(token)) + token
    sock.sendall(frame(request))
    body = read_response(sock)
    _, error_code, message_len = struct.unpack_from(">ihh", body, 0)
    offset = 8
    message = None
    if message_len >= 0:
        message = body[offset:offset + message_len].decode()
        offset += message_len
    (auth_len,) = struct.unpack_from(">i", body, offset)
    offset += 4
    auth = body[offset:offset + max(auth_len, 0)]
    offset += max(auth_len, 0)
    (lifetime_ms,) = struct.unpack_from(">q", body, offset)
    return error_code, message, auth, lifetime_ms


def sasl_plaintext_socket(broker):
    sock = socket.create_connection(("127.0.0.1", broker.ports["SASL_PLAINTEXT"]), timeout=5)
    sock.settimeout(5)
    return sock


def raw_sasl_plain(broker, token):
    with sasl_plaintext_socket(broker) as sock:
        assert sasl_handshake(sock, "PLAIN") == 0
        error_code, message, _, _ = sasl_authenticate(sock, token)
        return error_code, message


def test_only_the_sasl_exchange_is_served_before_authentication(secure):
    with sasl_plaintext_socket(secure) as sock:
        assert_api_versions_ok(sock, 7)
        send_bad(sock, metadata_v1_all_topics(8))
        assert_closed_by_peer(sock)
    with sasl_plaintext_socket(secure) as sock:
        assert sasl_handshake(sock, "GSSAPI") != 0  # not enabled: UNSUPPORTED_SASL_MECHANISM
        assert sasl_handshake(sock, "PLAIN", 2) == 0
        error_code, _, _, lifetime_ms = sasl_authenticate(sock, b"\0alice\0alice-secret", 3)
        assert (error_code, lifetime_ms) == (0, 0)
        sock.sendall(metadata_v1_all_topics(4))
        assert struct.unpack_from(">i", read_response(sock))[0] == 4


def test_session_lifetime_closes_the_connection_unless_reauthenticated(tmp_path_factory, certs):
    from conftest import _finish

    broker = start_secure(tmp_path_factory, certs, "connections.max.reauth.ms=1500")
    try:
        with sasl_plaintext_socket(broker) as sock:
            assert sasl_handshake(sock, "PLAIN") == 0
            error_code, _, _, lifetime_ms = sasl_authenticate(sock, b"\0bob\0bob-secret")
            assert (error_code, lifetime_ms) == (0, 1500)
            time.sleep(0.8)
            # Re-authentication (KIP-368) before expiry extends the session.
            assert sasl_handshake(sock, "PLAIN", 5) == 0
            assert sasl_authenticate(sock, b"\0bob\0bob-secret", 6)[0] == 0
            time.sleep(0.9)  # past the first session's end, inside the second
            sock.sendall(metadata_v1_all_topics(7))
            assert struct.unpack_from(">i", read_response(sock))[0] == 7
            time.sleep(1.7)
            send_bad(sock, metadata_v1_all_topics(8))
            assert_closed_by_peer(sock)
        # librdkafka re-authenticates on its own (KIP-368): a producer outlives
        # several session lifetimes.
        config = {"bootstrap.servers": f"127.0.0.1:{broker.ports['SASL_PLAINTEXT']}",
                  "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
                  "sasl.username": "bob", "sasl.password": "bob-secret"}
        producer = Producer(config)
        topic = unique_topic("reauth")
        delivered = []
        for i in range(8):
            producer.produce(topic, value=b"x", on_delivery=lambda err, msg: delivered.append(err))
            producer.flush(15)
            time.sleep(0.5)
        assert delivered == [None] * 8
    finally:
        _finish(broker)


def client_hello():
    """The first flight of a real TLS client, from Python's ssl module."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_fuzz_handshakes_no_panic_no_hang(secure, certs):
    seed = int(os.environ.get("SLUICE_FUZZ_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    hello = client_hello()
    inputs = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600))) for _ in range(12)]
    inputs += [hello[:cut] for cut in (1, 5, 40, len(hello) // 2, len(hello) - 1)]
    inputs += [hello[:5] + bytes(rng.randrange(256) for _ in range(len(hello) - 5))]
    for port_name in ("SSL", "SASL_SSL"):
        for data in inputs:
            with socket.create_connection(("127.0.0.1", secure.ports[port_name]), timeout=5) as sock:
                send_bad(sock, data)
                # Truncated input must not hold the connection past the idle timeout.
                assert_closed_by_peer(sock, timeout=IDLE_MS / 1000 + 5)
    scram_tokens = [b"", b"n", b"n,,", b"p=tls-unique,,n=a,r=x", b"n,,n=alice", b"\xff" * 300,
                    b"n,,n=alice,r=\x01" * 50, b"n,a=bob,n=alice,r=abc"]
    for token in scram_tokens:
        with sasl_plaintext_socket(secure) as sock:
            assert sasl_handshake(sock, "SCRAM-SHA-256") == 0
            assert sasl_authenticate(sock, token)[0] == SASL_AUTHENTICATION_FAILED, (seed, token)
    # A good first message, then a bad final one.
    with sasl_plaintext_socket(secure) as sock:
        assert sasl_handshake(sock, "SCRAM-SHA-512") == 0
        error_code, _, server_first, _ = sasl_authenticate(sock, b"n,,n=alice,r=clientnonce")
        assert error_code == 0 and server_first.startswith(b"r=clientnonce")
        nonce = server_first.split(b",")[0][2:]
        bad_final = b"c=biws,r=" + nonce + b",p=" + b"AAAA" * 22
        assert sasl_authenticate(sock, bad_final, 3)[0] == SASL_AUTHENTICATION_FAILED
    # Truncated frames on the SASL listener: closed, nothing else.
    with sasl_plaintext_socket(secure) as sock:
        send_bad(sock, struct.pack(">i", 100) + request_header_v1(SASL_AUTHENTICATE, 1, 1)[:5])
        assert_closed_by_peer(sock, timeout=IDLE_MS / 1000 + 5)
    assert_serving(secure, certs)
    assert secure.is_running(), f"seed {seed}"


# --- Connection limits ------------------------------------------------------------


def test_connection_limits(make_broker):
    broker = make_broker(extra_args=["--set", "max.connections.per.ip=3",
                                     "--set", "connections.max.idle.ms=3000"])
    time.sleep(0.5)  # the fixture's own probe connections have closed
    held = []
    for i in range(3):
        sock = socket.create_connection((broker.host, broker.port), timeout=5)
        assert_api_versions_ok(sock, i)
        held.append(sock)
    extra = socket.create_connection((broker.host, broker.port), timeout=5)
    send_bad(extra, api_versions_v0(9))
    assert_closed_by_peer(extra)
    extra.close()
    held.pop().close()
    time.sleep(0.3)
    again = socket.create_connection((broker.host, broker.port), timeout=5)
    assert_api_versions_ok(again, 10)
    held.append(again)
    # connections.max.idle.ms: a connection that sends nothing is closed.
    started = time.monotonic()
    assert_closed_by_peer(held[0], timeout=8)
    assert 2.0 <= time.monotonic() - started <= 8
    for sock in held:
        sock.close()
    assert "connection limit reached" in broker.log()


def test_bad_listener_config_names_the_key(tmp_path):
    from conftest import _binary

    cases = {
        "listeners=PLAINTEXT//127.0.0.1:1": "listeners",
        "listeners=FOO://127.0.0.1:0": "listeners",
        "listeners=SSL://127.0.0.1:0": "ssl.keystore.location",
        "advertised.listeners=NOPE://h:1": "advertised.listeners",
        "inter.broker.listener.name=NOPE": "inter.broker.listener.name",
    }
    for setting, key in cases.items():
        run = subprocess.run([_binary(), "--data-dir", str(tmp_path / "d"), "--set", setting],
                             capture_output=True, text=True, timeout=30)
        assert run.returncode != 0, setting
        assert f"'{key}'" in run.stderr or key in run.stderr, (setting, run.stderr)


# --- README "Securing Sluice" / "Authentication", run as written ------------------


def test_readme_authentication_example(tmp_path):
    """Every ```sh block of README "Securing Sluice" > "Authentication", in
    order, in a fresh directory with a copy of scripts/. Substitutions only:
    free ports for 127.0.0.1:9092 and :9094, and `--bootstrap-server` for
    `sluice users` (its default is 127.0.0.1:9092). The broker command runs in
    the background and must stop cleanly on SIGTERM."""
    import signal

    from conftest import _binary
    from test_readme import fenced_blocks

    blocks = [text for headings, lang, text in fenced_blocks(os.path.join(ROOT, "README.md"))
              if lang == "sh" and headings.get(2) == "Securing Sluice" and headings.get(3) == "Authentication"]
    assert len(blocks) >= 4, blocks
    shutil.copytree(os.path.join(ROOT, "scripts"), tmp_path / "scripts")
    plain, sasl = free_port(), free_port()
    env = dict(os.environ, PATH=os.path.dirname(_binary()) + os.pathsep + os.environ["PATH"])

    def adapt(text):
        text = text.replace("127.0.0.1:9092", f"127.0.0.1:{plain}").replace("127.0.0.1:9094", f"127.0.0.1:{sasl}")
        for verb in ("create", "list"):
            text = text.replace(f"sluice users {verb}", f"sluice users {verb} --bootstrap-server 127.0.0.1:{plain}")
        return text

    broker = None
    outputs = []
    try:
        for block in blocks:
            command = adapt(block)
            if command.startswith("sluice --"):
                log = open(tmp_path / "broker.log", "wb")
                broker = subprocess.Popen(["bash", "-c", "exec " + command], cwd=tmp_path, env=env,
                                          stdout=log, stderr=subprocess.STDOUT)
                wait_until(lambda: socket.create_connection(("127.0.0.1", sasl), timeout=1).close() or True,
                           timeout=20, what="the README broker's SASL_SSL listener")
                continue
            run = subprocess.run(["bash", "-ec", command], cwd=tmp_path, env=env, capture_output=True,
                                 text=True, timeout=120)
            assert run.returncode == 0, (command, run.stdout, run.stderr)
            outputs.append(run.stdout)
        assert "alice" in outputs[1] and "SCRAM-SHA-512" in outputs[1], outputs[1]
        assert outputs[-1].strip() == "hello, securely", outputs[-1]
    finally:
        if broker is not None:
            broker.send_signal(signal.SIGTERM)
            assert broker.wait(timeout=20) == 0, (tmp_path / "broker.log").read_text()


# --- Replication over a SASL_SSL inter-broker listener ----------------------------


def test_replication_over_a_sasl_ssl_inter_broker_listener(make_cluster, certs):
    """Two brokers replicate through their SASL_SSL listeners: TLS verified
    against the truststore, SASL/PLAIN as the `broker` user, created (like
    every user) over the PLAINTEXT listener."""
    from cluster import metadata as raw_metadata

    common = [
        "--set", f"ssl.keystore.location={certs}/server.pem",
        "--set", f"ssl.key.location={certs}/server.key",
        "--set", f"ssl.truststore.location={certs}/ca.pem",
        "--set", "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512",
        "--set", "inter.broker.listener.name=SASL_SSL",
        "--set", "inter.broker.sasl.username=broker",
        "--set", "inter.broker.sasl.password=broker-secret",
    ]
    cluster = make_cluster(size=2, start=False, extra_args=common)
    for node in cluster.nodes.values():
        node.sasl_port = free_port()
        node.extra_args += ["--set", f"listeners=PLAINTEXT://127.0.0.1:{node.port},"
                                     f"SASL_SSL://127.0.0.1:{node.sasl_port}"]
    cluster.start()
    first = cluster[1]
    made = sluice(first, "users", "create", "--bootstrap-server", first.bootstrap,
                  "--user", "broker", "--password", "broker-secret")
    assert made.returncode == 0, made.stderr
    topic = unique_topic("interbroker")
    created = sluice(first, "topics", "create", "--bootstrap-server", first.bootstrap, "--topic", topic,
                     "--partitions", "2", "--replication-factor", "2")
    assert created.returncode == 0, created.stderr
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    # Name the partition: librdkafka's sticky partitioner may put all 50
    # unkeyed records into one partition, leaving the other empty everywhere.
    for i in range(50):
        producer.produce(topic, value=f"r-{i}".encode(), partition=i % 2)
    assert producer.flush(30) == 0

    def log_bytes(node, partition):
        directory = node.partition_dir(topic, partition)
        if not os.path.isdir(directory):
            return 0
        return sum(os.path.getsize(os.path.join(directory, name))
                   for name in os.listdir(directory) if name.endswith(".log"))

    partitions = raw_metadata("127.0.0.1", first.port, [topic])["topics"][topic]["partitions"]
    assert all(sorted(p["isr"]) == [1, 2] for p in partitions.values()), partitions
    # A clean stop writes every log out; each broker leads one partition and
    # follows the other, so each must hold both.
    cluster.stop(check=True)
    for node in cluster.nodes.values():
        for partition in (0, 1):
            assert log_bytes(node, partition) > 0, (node.node_id, partition)
    logs = first.log() + cluster[2].log()
    assert 'user="broker"' in logs and "SASL authenticated" in logs
    # Brokers register their SASL_SSL endpoint for replication.
    for node in cluster.nodes.values():
        assert f"port={node.sasl_port}" in logs


# --- Certificate reload -------------------------------------------------------------


def test_large_fetches_over_tls_arrive_whole(secure, certs):
    """Fetch responses of megabytes over TLS, read whole by confluent-kafka
    and by kcat, with no request timing out (socket.timeout.ms 5 s).

    The bug this guards against: when the socket was full as the broker
    wrote a response's last bytes into TLS, rustls kept them until a flush,
    and there was none, so the client waited for the rest of its response
    until its request timed out (60 s in librdkafka). The TLS benchmark hit
    it in about half its runs of 200 MB to 1 GB on a release build. This
    test did not reproduce it on the build before the fix (the timing it
    needs is rare at this size, and rarer on a debug build): it checks large
    TLS fetches end to end; the benchmark is what showed the fix."""
    topic = unique_topic("tls-large-fetch")
    config = mtls_config(secure, certs)
    admin = AdminClient(config)
    from confluent_kafka.admin import NewTopic
    admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(30)
    records, value = 24_000, b"x" * 4096  # about 100 MB
    producer = Producer({**config, "linger.ms": 5, "batch.size": 1 << 20,
                         "queue.buffering.max.kbytes": 1 << 20})
    for index in range(records):
        while True:
            try:
                producer.produce(topic, value, partition=index % 4)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(120) == 0
    fetch = {"fetch.max.bytes": 50 << 20, "max.partition.fetch.bytes": 10 << 20,
             "socket.timeout.ms": 5000}
    for round_ in range(3):
        errors = []
        consumer = Consumer({**config, **fetch, "group.id": f"{topic}-{round_}",
                             "enable.auto.commit": False, "error_cb": errors.append})
        consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
        seen, deadline = 0, time.time() + 120
        while seen < records and time.time() < deadline and not errors:
            seen += sum(1 for m in consumer.consume(1000, 1.0) if m.error() is None)
        consumer.close()
        assert (seen, errors) == (records, []), f"round {round_}: {seen} of {records} records"
        done = kcat("-C", "-b", config["bootstrap.servers"], "-t", topic, "-o", "beginning", "-e",
                    "-q", "-f", "%o\\n", "-X", "security.protocol=SSL",
                    "-X", f"ssl.ca.location={certs}/ca.pem",
                    "-X", f"ssl.certificate.location={certs}/alice.pem",
                    "-X", f"ssl.key.location={certs}/alice.key",
                    *[arg for key, v in fetch.items() for arg in ("-X", f"{key}={v}")])
        assert done.returncode == 0, f"round {round_}: kcat: {done.stderr[-2000:]}"
        assert done.stdout.count("\n") == records, f"round {round_}: kcat read {done.stdout.count(chr(10))}"


def peer_common_name(port, certs):
    context = ssl.create_default_context(cafile=f"{certs}/ca.pem")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            subject = dict(item[0] for item in tls.getpeercert()["subject"])
            return subject["commonName"]


def test_certificate_is_reloaded_when_its_files_change(make_broker, certs, tmp_path):
    """A new certificate written over the keystore files (write, then rename)
    is served to new handshakes without a restart."""
    keystore, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(f"{certs}/server.pem", keystore)
    shutil.copy(f"{certs}/server.key", key)
    plain, tls_port = free_port(), free_port()
    broker = make_broker(port=plain, extra_args=[
        "--set", f"listeners=PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{tls_port}",
        "--set", f"ssl.keystore.location={keystore}", "--set", f"ssl.key.location={key}"])
    assert peer_common_name(tls_port, certs) == "localhost"
    # A second certificate from the same CA, CN=reloaded, same names.
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/O=Sluice/CN=reloaded",
                    "-keyout", tmp_path / "new.key", "-out", tmp_path / "new.csr"], check=True, capture_output=True)
    (tmp_path / "new.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    subprocess.run(["openssl", "x509", "-req", "-in", tmp_path / "new.csr", "-CA", f"{certs}/ca.pem",
                    "-CAkey", f"{certs}/ca.key", "-CAcreateserial", "-CAserial", tmp_path / "ca.srl",
                    "-extfile", tmp_path / "new.ext", "-days", "30", "-out", tmp_path / "new.pem"],
                   check=True, capture_output=True)
    time.sleep(1.1)  # a later mtime than the first files'
    os.replace(tmp_path / "new.key", key)
    os.replace(tmp_path / "new.pem", keystore)
    wait_until(lambda: peer_common_name(tls_port, certs) == "reloaded", timeout=10,
               what="the reloaded certificate on a new handshake")
    assert "reloaded" in broker.log()
