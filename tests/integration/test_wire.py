"""Raw-socket tests of the framing layer: hand-encoded Kafka requests.

A frame is a 4-byte big-endian size followed by the request. Malformed and
oversized frames must close only their own connection; the broker keeps
serving every other connection.
"""

import socket
import struct
import time

import pytest

from conftest import Reader, recv_exact

API_VERSIONS = 18
METADATA = 3
UNSUPPORTED_VERSION = 35
IO_TIMEOUT_S = 5.0


def request_header_v1(api_key, api_version, correlation_id, client_id="sluice-wire-test"):
    """Request header v1: api_key i16, api_version i16, correlation_id i32, client_id nullable string."""
    cid = client_id.encode()
    return struct.pack(">hhih", api_key, api_version, correlation_id, len(cid)) + cid


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def api_versions_v0(correlation_id):
    return frame(request_header_v1(API_VERSIONS, 0, correlation_id))


def metadata_v1_all_topics(correlation_id):
    # Metadata v1 body: topics array, -1 = null = all topics.
    return frame(request_header_v1(METADATA, 1, correlation_id) + struct.pack(">i", -1))


def connect(broker):
    s = socket.create_connection((broker.host, broker.port), timeout=IO_TIMEOUT_S)
    s.settimeout(IO_TIMEOUT_S)
    return s


def read_response(sock):
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    assert 4 <= size <= 64 * 1024 * 1024, f"implausible response size {size}"
    return recv_exact(sock, size)


def parse_api_versions_v0(body):
    """ApiVersions response v0: correlation_id, error_code, [api_key, min, max]."""
    correlation_id, error_code, count = struct.unpack_from(">ihi", body, 0)
    off = 10
    apis = {}
    assert 0 <= count < 1000, f"implausible api count {count}"
    for _ in range(count):
        key, lo, hi = struct.unpack_from(">hhh", body, off)
        off += 6
        apis[key] = (lo, hi)
    return correlation_id, error_code, apis


def assert_api_versions_ok(sock, correlation_id):
    sock.sendall(api_versions_v0(correlation_id))
    got_cid, error_code, apis = parse_api_versions_v0(read_response(sock))
    assert got_cid == correlation_id
    assert error_code == 0, f"ApiVersions v0 error_code {error_code}"
    assert API_VERSIONS in apis, f"ApiVersions missing from its own response: {apis}"
    lo, hi = apis[API_VERSIONS]
    assert lo == 0 and hi >= 3, f"ApiVersions range {lo}..{hi}"
    return apis


def assert_closed_by_peer(sock, timeout=IO_TIMEOUT_S):
    """The peer closes the connection: recv returns b'' (or the socket is reset)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return
        except socket.timeout:
            pytest.fail(f"connection still open {timeout}s after the bad frame")
        if data == b"":
            return
        # Any bytes the broker sends first (e.g. an error response) are tolerated;
        # what matters is that the connection is then closed.
        if time.monotonic() >= deadline:
            pytest.fail("connection still open (and sending data) after the bad frame")


def send_bad(sock, data):
    try:
        sock.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        pass  # already closed by the broker: fine


def test_api_versions_v0_lists_supported_apis(shared_broker):
    """A hand-encoded ApiVersions v0 gets error 0 and the milestone's APIs."""
    with connect(shared_broker) as s:
        apis = assert_api_versions_ok(s, correlation_id=7)
    for key, name in [(3, "Metadata"), (18, "ApiVersions"), (19, "CreateTopics"),
                      (20, "DeleteTopics"), (32, "DescribeConfigs"), (37, "CreatePartitions")]:
        assert key in apis, f"{name} (api key {key}) not advertised: {sorted(apis)}"
        lo, hi = apis[key]
        assert 0 <= lo <= hi, f"{name}: bad version range {lo}..{hi}"


def test_api_versions_unsupported_version_answers_error_35(shared_broker):
    """ApiVersions v99 answers UNSUPPORTED_VERSION (35) with the broker's ranges, in v0 format."""
    with connect(shared_broker) as s:
        # A client newer than the broker sends ApiVersions with header v2 (tagged
        # fields) and a flexible body; the broker must not parse the body and
        # answer with a v0 response.
        header = request_header_v1(API_VERSIONS, 99, 4242) + b"\x00"
        body = b"\x06sluice" + b"\x041.0" + b"\x00"
        s.sendall(frame(header + body))
        cid, error_code, apis = parse_api_versions_v0(read_response(s))
        assert cid == 4242
        assert error_code == UNSUPPORTED_VERSION
        assert API_VERSIONS in apis, "the error response must still list the ApiVersions range"
        assert apis[API_VERSIONS][0] == 0
        # The connection stays usable for a supported version afterwards.
        assert_api_versions_ok(s, correlation_id=4243)


def test_pipelined_requests_are_answered_in_order(shared_broker):
    """Several requests sent back to back on one connection get responses in request order."""
    with connect(shared_broker) as s:
        cids = list(range(100, 120))
        payload = b"".join(
            api_versions_v0(c) if c % 2 == 0 else metadata_v1_all_topics(c) for c in cids
        )
        s.sendall(payload)
        got = []
        for _ in cids:
            body = read_response(s)
            got.append(struct.unpack_from(">i", body, 0)[0])
        assert got == cids


BAD_FRAMES = {
    # size 10: unknown api key 0x7f7f and garbage
    "garbage_unknown_api_key": struct.pack(">i", 10) + b"\x7f\x7f\xde\xad\xbe\xef\x00\x01\x02\x03",
    # size 10: api key -1
    "negative_api_key": struct.pack(">i", 10) + b"\xff\xff\x00\x00\x00\x00\x00\x01\xff\xff",
    # size 2: too short to hold a request header
    "truncated_header": struct.pack(">i", 2) + b"\x00\x12",
    # Metadata v1 whose body is cut short (topics array length needs 4 bytes)
    "truncated_metadata_body": frame(request_header_v1(METADATA, 1, 9) + b"\x00"),
    # client id length larger than the frame
    "client_id_overruns_frame": frame(struct.pack(">hhih", API_VERSIONS, 0, 9, 500) + b"abc"),
    # negative frame size
    "negative_size": struct.pack(">i", -5) + b"\x00" * 8,
}

OVERSIZED_FRAMES = {
    "size_0x7fffffff": struct.pack(">i", 0x7FFFFFFF) + b"\x00\x12\x00\x00",
    # one byte over the default socket.request.max.bytes (100 MiB)
    "size_max_plus_1": struct.pack(">i", 100 * 1024 * 1024 + 1) + b"\x00\x12\x00\x00",
}


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
def test_malformed_frame_closes_only_its_connection(shared_broker, name):
    """A malformed frame closes its connection; others keep working and the broker keeps running."""
    _bad_frame_closes_only_its_connection(shared_broker, BAD_FRAMES[name])


@pytest.mark.parametrize("name", sorted(OVERSIZED_FRAMES))
def test_oversized_frame_closes_only_its_connection(shared_broker, name):
    """A frame larger than socket.request.max.bytes is refused from its size prefix alone."""
    _bad_frame_closes_only_its_connection(shared_broker, OVERSIZED_FRAMES[name])


def _bad_frame_closes_only_its_connection(broker, bad):
    with connect(broker) as before:
        assert_api_versions_ok(before, correlation_id=1)
        with connect(broker) as victim:
            assert_api_versions_ok(victim, correlation_id=1)  # a healthy connection first
            send_bad(victim, bad)
            assert_closed_by_peer(victim)
        assert broker.is_running(), f"broker died; log:\n{broker.log_tail()}"
        # the connection opened before the bad frame still works
        assert_api_versions_ok(before, correlation_id=2)
    # and new connections work too
    with connect(broker) as after:
        assert_api_versions_ok(after, correlation_id=3)


def test_bad_frame_on_fresh_connection_closes_it(shared_broker):
    """A garbage frame as the very first bytes of a connection also only closes that connection."""
    with connect(shared_broker) as other:
        with connect(shared_broker) as victim:
            send_bad(victim, BAD_FRAMES["garbage_unknown_api_key"])
            assert_closed_by_peer(victim)
        assert_api_versions_ok(other, correlation_id=11)
    assert shared_broker.is_running()


def test_many_bad_connections_do_not_hurt_the_broker(shared_broker):
    """Twenty bad connections in a row leave the broker healthy (no leak or crash)."""
    frames = list(BAD_FRAMES.values()) + list(OVERSIZED_FRAMES.values())
    for i in range(20):
        with connect(shared_broker) as victim:
            send_bad(victim, frames[i % len(frames)])
            assert_closed_by_peer(victim)
    with connect(shared_broker) as s:
        assert_api_versions_ok(s, correlation_id=99)
    assert shared_broker.is_running()


def test_client_disconnect_mid_frame_is_harmless(shared_broker):
    """A client that disconnects halfway through a frame does not disturb the broker."""
    for _ in range(5):
        with connect(shared_broker) as s:
            s.sendall(struct.pack(">i", 100) + b"\x00\x12\x00")  # promised 100 bytes, sent 3
    with connect(shared_broker) as s:
        assert_api_versions_ok(s, correlation_id=5)
    assert shared_broker.is_running()


def metadata_v4(sock, correlation_id, topics, allow_auto_create):
    """Metadata v4 for the named topics; returns {name: (error_code, partition count)} and brokers."""
    body = struct.pack(">i", len(topics))
    for t in topics:
        body += struct.pack(">h", len(t)) + t.encode()
    body += struct.pack(">b", 1 if allow_auto_create else 0)
    sock.sendall(frame(request_header_v1(METADATA, 4, correlation_id) + body))
    r = Reader(read_response(sock))
    assert r.unpack(">i") == correlation_id
    r.unpack(">i")  # throttle_time_ms
    brokers = r.array(lambda: (r.unpack(">i"), r.string(), r.unpack(">i"), r.string()))
    r.string()  # cluster_id
    r.unpack(">i")  # controller_id

    def partition():
        err, index, leader = r.unpack(">hii")
        r.array(lambda: r.unpack(">i"))  # replicas
        r.array(lambda: r.unpack(">i"))  # isr
        return err, index, leader

    def topic():
        err = r.unpack(">h")
        name = r.string()
        r.unpack(">b")  # is_internal
        return name, err, r.array(partition)

    result = {name: (err, parts) for name, err, parts in r.array(topic)}
    return result, brokers


def test_metadata_auto_creation_follows_broker_config(shared_broker):
    """Metadata for an unknown topic: not created when the request disallows it; created
    (with num.partitions partitions) when allowed, iff auto.create.topics.enable=true."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    from conftest import confluent_admin, unique_topic, wait_until

    admin = confluent_admin(shared_broker)
    res = ConfigResource(ResourceType.BROKER, str(shared_broker.node_id))
    configs = admin.describe_configs([res])[res].result(timeout=15)
    auto_create = configs["auto.create.topics.enable"].value == "true"
    num_partitions = int(configs["num.partitions"].value)

    topic = unique_topic("auto")
    with connect(shared_broker) as s:
        topics, brokers = metadata_v4(s, 1, [topic], allow_auto_create=False)
        assert [b[:3] for b in brokers] == [(shared_broker.node_id, "127.0.0.1", shared_broker.port)]
        assert topics[topic] == (3, []), "unknown topic must answer UNKNOWN_TOPIC_OR_PARTITION (3)"
        cid = [10]

        def lookup():
            cid[0] += 1
            return metadata_v4(s, cid[0], [topic], allow_auto_create=True)[0][topic]

        if auto_create:
            # The first answer may be LEADER_NOT_AVAILABLE (5) while the topic is created.
            assert lookup()[0] in (0, 5)
            err, parts = wait_until(lambda: (v := lookup()) and v[0] == 0 and v, what="auto-created topic")
            assert sorted(p[1] for p in parts) == list(range(num_partitions))
            assert all(p[0] == 0 and p[2] == shared_broker.node_id for p in parts)
        else:
            assert lookup() == (3, [])
            topics, _ = metadata_v4(s, 99, [topic], allow_auto_create=False)
            assert topics[topic][0] == 3
