"""The controller (Raft) listener over mutual TLS (issue 17): a three-node
cluster whose `controller.listener.names` listener is SSL forms its quorum,
serves a replicated topic to confluent-kafka, elects a new controller after
kill -9 of the active one, and closes a plaintext connection to a controller
port before reading any of it, without harm to the quorum.

Certificates come from scripts/make-certs.sh: server.pem (serverAuth and
clientAuth, for 127.0.0.1) is every node's keystore; ca.pem the truststore.
"""

import socket
import ssl
import struct
import subprocess

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import make_cluster  # noqa: F401 - a fixture
from conftest import unique_topic, wait_until
from test_security import certs  # noqa: F401 - a fixture


def ssl_controller_cluster(make_cluster, certs):
    common = [
        "--set", f"ssl.keystore.location={certs}/server.pem",
        "--set", f"ssl.key.location={certs}/server.key",
        "--set", f"ssl.truststore.location={certs}/ca.pem",
        "--set", "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:SSL",
        "--set", "controller.listener.names=CONTROLLER",
    ]
    cluster = make_cluster(size=3, start=False, extra_args=common)
    for node in cluster.nodes.values():
        node.extra_args += ["--set", f"listeners=PLAINTEXT://127.0.0.1:{node.port},"
                                     f"CONTROLLER://127.0.0.1:{node.controller_port}"]
    return cluster.start()


def create_topic(bootstrap, topic, replication_factor):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=replication_factor)],
                                  operation_timeout=30, request_timeout=30)
    futures[topic].result(timeout=60)


def produce_and_consume(bootstrap, topic, count=30):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    sent = [f"m-{i}".encode() for i in range(count)]
    for value in sent:
        producer.produce(topic, value=value)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("g"),
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got = []
    try:
        wait_until(lambda: got.extend(m.value() for m in consumer.consume(50, timeout=1) if not m.error())
                   or len(got) >= count, timeout=60, what=f"{count} messages from {topic}")
    finally:
        consumer.close()
    assert sorted(got) == sorted(sent)


def plaintext_hello(node_id):
    """A controller `Hello` frame as a plaintext peer would send it."""
    payload = f'{{"node_id":{node_id},"cluster_id":null}}'.encode()
    return struct.pack(">IB", len(payload) + 1, 0) + payload


def answer_of(sock):
    """What the peer sends before it closes (b"" when it closes at once)."""
    sock.settimeout(10)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return data
            data += chunk
    except (ConnectionResetError, ssl.SSLError, OSError):
        return data


def test_controllers_talk_mutual_tls_and_survive_losing_the_active_one(make_cluster, certs):
    cluster = ssl_controller_cluster(make_cluster, certs)
    for node in cluster.nodes.values():
        assert "tls=true" in node.log(), node.log()[-2000:]
    topic = unique_topic("ctls")
    create_topic(cluster.bootstrap, topic, 3)
    wait_until(lambda: all(sorted(p["isr"]) == [1, 2, 3]
                           for p in cluster.metadata(topics=[topic])["topics"][topic]["partitions"].values()),
               timeout=30, what="every replica in sync")
    produce_and_consume(cluster.bootstrap, topic)

    # A plaintext peer gets nothing: no Hello back, the connection closed.
    target = cluster[1]
    with socket.create_connection(("127.0.0.1", target.controller_port), timeout=5) as raw:
        raw.sendall(plaintext_hello(9) * 4)
        answer = answer_of(raw)
    assert b"node_id" not in answer, answer
    # TLS that verifies the server but shows no client certificate is refused too.
    context = ssl.create_default_context(cafile=f"{certs}/ca.pem")
    with socket.create_connection(("127.0.0.1", target.controller_port), timeout=5) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(plaintext_hello(9))
                answer = answer_of(tls)
        except (ssl.SSLError, OSError):
            answer = b""
    assert b"node_id" not in answer, answer
    wait_until(lambda: "TLS handshake failed" in target.log(), timeout=10, what="the refusal logged")
    cluster.wait_ready()
    assert cluster[1].is_running()

    # kill -9 of the active controller: the other two elect a new one and
    # create a topic through it.
    old = cluster.wait_controller()
    cluster[old].kill()
    new = cluster.wait_controller(exclude=(old,), timeout=30)
    assert new != old
    survivors = ",".join(n.bootstrap for n in cluster.running())
    later = unique_topic("ctls-after")
    create_topic(survivors, later, 2)
    produce_and_consume(survivors, later)
