"""Operating Sluice: configs altered at runtime, DescribeCluster,
DeleteRecords, DescribeLogDirs, and the Prometheus metrics endpoint, driven
by confluent-kafka (librdkafka) against the real broker."""

import re
import time
import urllib.error
import urllib.request

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)

from conftest import confluent_admin, free_port, unique_topic, wait_until


def create(admin, topic, partitions=1, **config):
    admin.create_topics([NewTopic(topic, partitions, 1, config=config)])[topic].result()


def produce_one_by_one(broker, topic, count, size=500):
    """One request per record, so that small segments roll between them."""
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for _ in range(count):
        producer.produce(topic, value=b"x" * size, partition=0)
        assert producer.flush(10) == 0
    return producer


def watermarks(broker, topic, partition=0):
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_topic("g")})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        consumer.close()


def topic_config(admin, topic):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([resource])[resource].result()


def broker_config(admin, broker):
    resource = ConfigResource(ResourceType.BROKER, str(broker.node_id))
    return admin.describe_configs([resource])[resource].result()


def alter(admin, resource_type, name, *entries):
    resource = ConfigResource(resource_type, name, incremental_configs=[
        ConfigEntry(key, value, incremental_operation=operation) for key, value, operation in entries
    ])
    return admin.incremental_alter_configs([resource])[resource].result()


def test_lowered_retention_deletes_on_the_next_check(make_broker):
    broker = make_broker(extra_args=["--set", "log.retention.check.interval.ms=200"])
    admin = confluent_admin(broker)
    topic = unique_topic()
    create(admin, topic, **{"segment.bytes": "20000"})
    produce_one_by_one(broker, topic, 100)
    assert watermarks(broker, topic) == (0, 100)
    # 100 records of ~570 bytes in 20 kB segments: a log line per roll.
    rolls = [line for line in broker.log().splitlines() if "segment rolled" in line]
    assert len(rolls) >= 2 and all(f"{topic}-0" in line for line in rolls), broker.log()[-3000:]
    assert "reason=\"segment.bytes\"" in rolls[0], rolls[0]
    # Default retention (7 days) keeps everything across several checks.
    assert topic_config(admin, topic)["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    alter(admin, ResourceType.TOPIC, topic, ("retention.ms", "100", AlterConfigOpType.SET))
    entry = topic_config(admin, topic)["retention.ms"]
    assert (entry.value, entry.source) == ("100", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    low, high = wait_until(
        lambda: (lambda w: w if w[0] > 0 else None)(watermarks(broker, topic)),
        timeout=15, what="retention to advance the log start offset")
    assert high == 100 and 0 < low < 100, (low, high)


def test_incremental_operations_on_list_configs(shared_broker):
    admin = confluent_admin(shared_broker)
    topic = unique_topic()
    create(admin, topic, **{"cleanup.policy": "delete"})
    alter(admin, ResourceType.TOPIC, topic, ("cleanup.policy", "compact", AlterConfigOpType.APPEND))
    assert topic_config(admin, topic)["cleanup.policy"].value == "delete,compact"
    alter(admin, ResourceType.TOPIC, topic, ("cleanup.policy", "delete", AlterConfigOpType.SUBTRACT))
    assert topic_config(admin, topic)["cleanup.policy"].value == "compact"
    alter(admin, ResourceType.TOPIC, topic, ("cleanup.policy", None, AlterConfigOpType.DELETE))
    entry = topic_config(admin, topic)["cleanup.policy"]
    assert (entry.value, entry.is_default) == ("delete", True)
    # APPEND on a config that is not a list is refused.
    try:
        alter(admin, ResourceType.TOPIC, topic, ("retention.ms", "5", AlterConfigOpType.APPEND))
        raise AssertionError("APPEND on retention.ms was accepted")
    except KafkaException as error:
        assert error.args[0].name() == "INVALID_CONFIG"


def test_invalid_and_unknown_configs_are_refused_with_the_key(shared_broker):
    admin = confluent_admin(shared_broker)
    topic = unique_topic()
    create(admin, topic)
    for key, value in [("retention.ms", "soon"), ("no.such.config", "1")]:
        try:
            alter(admin, ResourceType.TOPIC, topic, (key, value, AlterConfigOpType.SET))
            raise AssertionError(f"{key}={value} was accepted")
        except KafkaException as error:
            assert error.args[0].name() == "INVALID_CONFIG"
            assert key in error.args[0].str()
    try:
        alter(admin, ResourceType.BROKER, str(shared_broker.node_id), ("node.id", "7", AlterConfigOpType.SET))
        raise AssertionError("node.id was changed at runtime")
    except KafkaException as error:
        assert error.args[0].name() == "INVALID_CONFIG"
        assert "node.id" in error.args[0].str()


def test_broker_config_at_runtime_is_inherited_and_survives_restart(broker):
    admin = confluent_admin(broker)
    topic = unique_topic()
    create(admin, topic)
    alter(admin, ResourceType.BROKER, str(broker.node_id), ("log.retention.ms", "3600000", AlterConfigOpType.SET))
    entry = broker_config(admin, broker)["log.retention.ms"]
    assert (entry.value, entry.source) == ("3600000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    inherited = topic_config(admin, topic)["retention.ms"]
    assert (inherited.value, inherited.source) == ("3600000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    broker.restart()
    admin = confluent_admin(broker)
    entry = broker_config(admin, broker)["log.retention.ms"]
    assert (entry.value, entry.source) == ("3600000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)


def test_describe_cluster(shared_broker):
    admin = confluent_admin(shared_broker)  # kept alive until the result arrives
    cluster = admin.describe_cluster().result()
    assert len(cluster.cluster_id) == 22
    assert [node.id for node in cluster.nodes] == [shared_broker.node_id]
    assert (cluster.nodes[0].host, cluster.nodes[0].port) == ("127.0.0.1", shared_broker.port)
    assert cluster.controller.id == shared_broker.node_id


def test_delete_records_advances_the_log_start(shared_broker):
    admin = confluent_admin(shared_broker)
    topic = unique_topic()
    create(admin, topic)
    produce_one_by_one(shared_broker, topic, 10, size=10)
    result = admin.delete_records([TopicPartition(topic, 0, 4)])
    deleted = list(result.values())[0].result()
    assert deleted.low_watermark == 4
    assert watermarks(shared_broker, topic) == (4, 10)
    consumer = Consumer({"bootstrap.servers": shared_broker.bootstrap, "group.id": unique_topic("g"),
                         "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, 0, 0)])  # below the log start
    offsets = []
    deadline = time.monotonic() + 20
    while len(offsets) < 6 and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None and not message.error():
            offsets.append(message.offset())
    consumer.close()
    assert offsets == list(range(4, 10))
    # Past the high watermark is out of range.
    result = admin.delete_records([TopicPartition(topic, 0, 50)])
    try:
        list(result.values())[0].result()
        raise AssertionError("delete_records past the end succeeded")
    except KafkaException as error:
        assert error.args[0].name() == "OFFSET_OUT_OF_RANGE"


def test_describe_log_dirs_reports_partition_sizes(shared_broker):
    from kafka import KafkaAdminClient

    admin = confluent_admin(shared_broker)
    topic = unique_topic()
    create(admin, topic, partitions=2)
    produce_one_by_one(shared_broker, topic, 5, size=1000)
    client = KafkaAdminClient(bootstrap_servers=shared_broker.bootstrap)
    try:
        response = client.describe_log_dirs()
    finally:
        client.close()
    dirs = response.to_object()["results"] if hasattr(response, "to_object") else None
    text = repr(response)
    assert topic in text
    if dirs is not None:
        [log_dir] = dirs
        sizes = {p["partition_index"]: p["partition_size"]
                 for t in log_dir["topics"] if t["name"] == topic for p in t["partitions"]}
        assert sizes[0] >= 5 * 1000 and sizes[1] == 0, sizes


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode()


def parse_prometheus(text):
    """Every sample as {(name, labels): value}; fails on a malformed line."""
    samples = {}
    line_format = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+]+)$')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            assert line == "" or line.startswith("# HELP ") or line.startswith("# TYPE "), line
            continue
        match = line_format.match(line)
        assert match, f"not Prometheus text: {line!r}"
        samples[(match.group(1), match.group(2) or "")] = float(match.group(3))
    return samples


def total(samples, name):
    return sum(value for (sample, _), value in samples.items() if sample == name)


def test_metrics_endpoint_parses_and_counters_move(make_broker):
    port = free_port()
    broker = make_broker(extra_args=["--metrics", f"127.0.0.1:{port}", "--set", "cache.bytes=1048576"])
    before = parse_prometheus(scrape(port))
    assert total(before, "sluice_partitions") == 0
    admin = confluent_admin(broker)
    topic = unique_topic()
    create(admin, topic, partitions=2)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    value = b"m" * 1024
    for index in range(6000):  # ~6 MB, well past the 1 MiB cache per shard
        producer.produce(topic, value=value, partition=index % 2)
        if index % 500 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_topic("g"),
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, partition, 0) for partition in range(2)])
    received = 0
    deadline = time.monotonic() + 60
    while received < 6000 and time.monotonic() < deadline:
        message = consumer.poll(0.1)
        if message is not None and not message.error():
            assert message.value() == value
            received += 1
    consumer.close()
    assert received == 6000
    after = parse_prometheus(scrape(port))
    # The topic, and __consumer_offsets once a consumer names a group.
    assert total(after, "sluice_partitions") >= 2
    assert total(after, "sluice_log_bytes") >= 6000 * 1024
    assert total(after, "sluice_read_disk_bytes_total") > 0, "old data was read from the disk"
    produced = sum(v for (name, labels), v in after.items()
                   if name == "sluice_requests_total" and 'api="Produce"' in labels)
    assert produced > 0
    assert total(after, "sluice_read_cache_misses_total") > total(before, "sluice_read_cache_misses_total")
    # Unknown paths are 404, and the broker keeps serving.
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=10)
        raise AssertionError("expected 404")
    except urllib.error.HTTPError as error:
        assert error.code == 404
    # Where produce time went, by stage: every stage of an acks=1 produce.
    stages = {labels for (name, labels), _ in after.items() if name == "sluice_produce_stage_seconds_count"}
    for stage in ("read", "decode", "route", "hop", "append", "reply", "encode", "in_order", "write", "total"):
        assert any(f'stage="{stage}"' in labels for labels in stages), (stage, stages)
    p99 = [v for (name, labels), v in after.items()
           if name == "sluice_produce_stage_seconds" and 'stage="total"' in labels and 'quantile="0.99"' in labels]
    assert p99 and all(0 < v < 60 for v in p99), p99
    # A restart right after a scrape binds the metrics port again (its
    # TIME-WAIT connection once made that fail with EADDRINUSE).
    broker.restart()
    assert total(parse_prometheus(scrape(port)), "sluice_partitions") >= 2


def sample(samples, name, **labels):
    """The value of the one sample of `name` whose labels include `labels`."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    found = [value for (sample_name, sample_labels), value in samples.items()
             if sample_name == name and all(label in sample_labels for label in wanted)]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_metrics_report_errors_bytes_groups_and_lag(make_broker):
    port = free_port()
    broker = make_broker(extra_args=["--metrics", f"127.0.0.1:{port}"])
    admin = confluent_admin(broker)
    topic = unique_topic()
    create(admin, topic, partitions=1)
    # A second CreateTopics of the same name answers TOPIC_ALREADY_EXISTS.
    try:
        create(admin, topic, partitions=1)
        raise AssertionError("creating an existing topic succeeded")
    except KafkaException as error:
        assert error.args[0].name() == "TOPIC_ALREADY_EXISTS"
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for index in range(25):
        producer.produce(topic, value=b"v" * 100, key=str(index).encode())
    assert producer.flush(10) == 0
    group = unique_topic("metrics-group")
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    received = 0
    deadline = time.monotonic() + 30
    while received < 10 and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None and not message.error():
            received += 1
    assert received == 10
    consumer.commit(offsets=[TopicPartition(topic, 0, 10)], asynchronous=False)

    samples = parse_prometheus(scrape(port))
    assert sample(samples, "sluice_request_errors_total",
                  api="CreateTopics", error="TOPIC_ALREADY_EXISTS") == 1
    produced_bytes = sum(v for (name, labels), v in samples.items()
                         if name == "sluice_request_bytes_total" and 'api="Produce"' in labels)
    assert produced_bytes >= 25 * 100
    fetched_bytes = sum(v for (name, labels), v in samples.items()
                        if name == "sluice_response_bytes_total" and 'api="Fetch"' in labels)
    assert fetched_bytes >= 10 * 100
    assert total(samples, "sluice_connections") >= 1
    # librdkafka's default acks=all: every append was synced, in timed rounds.
    assert total(samples, "sluice_log_syncs_total") > 0
    assert total(samples, "sluice_log_sync_round_seconds_count") > 0
    assert sample(samples, "sluice_partition_log_end_offset", topic=topic, partition=0) == 25
    assert sample(samples, "sluice_consumer_group_committed_offset",
                  group=group, topic=topic, partition=0) == 10
    assert sample(samples, "sluice_consumer_group_lag", group=group, topic=topic, partition=0) == 15
    assert sample(samples, "sluice_consumer_group_members", group=group) == 1
    assert sample(samples, "sluice_consumer_groups", state="Stable") >= 1

    # Lag follows new records; a closed consumer leaves an empty group.
    for _ in range(5):
        producer.produce(topic, value=b"w")
    assert producer.flush(10) == 0
    consumer.close()
    samples = parse_prometheus(scrape(port))
    assert sample(samples, "sluice_consumer_group_lag", group=group, topic=topic, partition=0) == 20
    assert sample(samples, "sluice_consumer_group_members", group=group) == 0
    assert sample(samples, "sluice_consumer_groups", state="Empty") >= 1
