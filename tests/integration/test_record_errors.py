"""Per-record errors in Produce (KIP-467).

A batch refused because of some of its records (keyless records on a
compacted topic) is refused whole with INVALID_RECORD, and `record_errors`
names each offending record by its index within the batch, so that clients
fail only those records and retry the others.
"""

import socket
import struct
import time

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import NewTopic

from conftest import Reader, confluent_admin, record_batch, recv_exact, unique_topic

PRODUCE = 0
INVALID_RECORD = 87
RECORDS = 100
KEYLESS = [0, 7, 13, 21, 42, 50, 66, 77, 89, 99]


def create_compacted(broker, topic):
    admin = confluent_admin(broker)
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                            config={"cleanup.policy": "compact"})])
    for future in futures.values():
        future.result(timeout=30)


def consume_all(broker, topic, expected, timeout_s=30):
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_topic("g"),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            got.append((message.key(), message.value()))
        # Anything beyond `expected` would be a record that should not be there.
        extra = consumer.poll(1.0)
        while extra is not None:
            if not extra.error():
                got.append((extra.key(), extra.value()))
            extra = consumer.poll(0.5)
    finally:
        consumer.close()
    return got


def test_confluent_producer_names_the_keyless_records(broker):
    """librdkafka (2.x) fails the named records with INVALID_RECORD and the
    others of the batch with _INVALID_DIFFERENT_RECORD: it does not retry
    them itself (its test 0011, variation 1; the Java client does the same),
    but the application can tell them apart and produce them again."""
    topic = unique_topic("compacted")
    create_compacted(broker, topic)
    conf = {"bootstrap.servers": broker.bootstrap, "linger.ms": 100,
            "batch.num.messages": 1000, "message.timeout.ms": 30000}
    producer = Producer(conf)
    delivered, failed = [], []

    def report(error, message):
        index = int(message.value().decode().split("-")[1])
        if error is None:
            delivered.append(index)
        else:
            failed.append((index, error.code()))

    for i in range(RECORDS):
        key = None if i in KEYLESS else f"k{i}".encode()
        producer.produce(topic, value=f"v-{i}".encode(), key=key, partition=0, on_delivery=report)
    assert producer.flush(60) == 0
    # One batch, refused whole: exactly the keyless records are INVALID_RECORD.
    assert delivered == []
    invalid = sorted(i for i, code in failed if code == KafkaError.INVALID_RECORD)
    others = sorted(i for i, code in failed if code == KafkaError._INVALID_DIFFERENT_RECORD)
    assert invalid == KEYLESS
    assert others == [i for i in range(RECORDS) if i not in KEYLESS]
    assert len(failed) == RECORDS

    # The application retries the records that were not at fault.
    for i in others:
        producer.produce(topic, value=f"v-{i}".encode(), key=f"k{i}".encode(), partition=0,
                         on_delivery=report)
    assert producer.flush(60) == 0
    assert sorted(delivered) == others
    consumed = consume_all(broker, topic, len(others))
    assert sorted(int(v.decode().split("-")[1]) for _, v in consumed) == others
    assert all(k is not None for k, _ in consumed)


# --- a raw Produce v9 (flexible) request ----------------------------------

def uvarint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def compact_bytes(raw):
    return uvarint(len(raw) + 1) + raw


def read_uvarint(reader):
    shift = value = 0
    while True:
        byte = reader.unpack(">B")
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
        shift += 7


def read_compact_string(reader):
    n = read_uvarint(reader) - 1
    if n < 0:
        return None
    text = reader.data[reader.off:reader.off + n].decode()
    reader.off += n
    return text


def skip_tags(reader):
    for _ in range(read_uvarint(reader)):
        read_uvarint(reader)
        reader.off += read_uvarint(reader)


def read_compact_array(reader, item):
    return [item() for _ in range(read_uvarint(reader) - 1)]


def produce_v9(broker, topic, records, correlation_id=7):
    """One Produce v9 request (acks=1) for partition 0; returns that partition's answer."""
    client_id = b"record-errors-test"
    header = struct.pack(">hhih", PRODUCE, 9, correlation_id, len(client_id)) + client_id + b"\0"
    partition = struct.pack(">i", 0) + compact_bytes(records) + b"\0"
    topic_data = compact_bytes(topic.encode()) + uvarint(2) + partition + b"\0"
    body = b"\0" + struct.pack(">hi", 1, 10000) + uvarint(2) + topic_data + b"\0"
    request = header + body
    with socket.create_connection((broker.host, broker.port), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", recv_exact(sock, 4))
        reader = Reader(recv_exact(sock, size))
    assert reader.unpack(">i") == correlation_id
    skip_tags(reader)

    def record_error():
        batch_index = reader.unpack(">i")
        message = read_compact_string(reader)
        skip_tags(reader)
        return batch_index, message

    def partition_response():
        index, error_code, base_offset, _, _ = reader.unpack(">ihqqq")
        record_errors = read_compact_array(reader, record_error)
        error_message = read_compact_string(reader)
        skip_tags(reader)
        return {"index": index, "error_code": error_code, "base_offset": base_offset,
                "record_errors": record_errors, "error_message": error_message}

    def topic_response():
        name = read_compact_string(reader)
        partitions = read_compact_array(reader, partition_response)
        skip_tags(reader)
        return name, partitions

    responses = read_compact_array(reader, topic_response)
    assert [name for name, _ in responses] == [topic]
    (answer,) = responses[0][1]
    return answer


def values(keys):
    return [b"v%d" % i for i in range(len(keys))]


def test_raw_produce_v9_names_the_keyless_records(broker):
    topic = unique_topic("compacted")
    create_compacted(broker, topic)
    keys = [None if i in KEYLESS else b"k%d" % i for i in range(RECORDS)]
    answer = produce_v9(broker, topic, record_batch(values(keys), keys))
    assert answer["error_code"] == INVALID_RECORD
    assert answer["base_offset"] == -1
    assert [index for index, _ in answer["record_errors"]] == KEYLESS
    assert all("without key" in message for _, message in answer["record_errors"])
    assert answer["error_message"] and "10 record(s)" in answer["error_message"]
    # Nothing of the refused batch was appended: the good records alone go
    # in at offset 0.
    good = [key for key in keys if key is not None]
    answer = produce_v9(broker, topic, record_batch(values(good), good), correlation_id=8)
    assert (answer["error_code"], answer["base_offset"], answer["record_errors"]) == (0, 0, [])
