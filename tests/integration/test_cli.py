"""The `sluice` command-line tools (issue 7) against the real broker: topics,
produce, consume and groups, run as subprocesses of the real binary, checked
through their tables, their JSON and, where it matters, a second client
(confluent-kafka)."""

import json
import logging
import os
import subprocess
import time

import pytest

from conftest import confluent_admin, unique_topic, wait_until

CLI_TIMEOUT_S = 60


def sluice(broker, *args, stdin=None, check=True):
    """Runs `sluice ARGS --bootstrap-server B`; returns the CompletedProcess."""
    binary = os.environ["SLUICE_BIN"]
    command = [binary, *args, "--bootstrap-server", broker.bootstrap]
    result = subprocess.run(command, input=stdin, capture_output=True, text=True,
                            timeout=CLI_TIMEOUT_S)
    if check:
        assert result.returncode == 0, (
            f"{' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def sluice_json(broker, *args, stdin=None):
    return json.loads(sluice(broker, *args, "--output", "json", stdin=stdin).stdout)


def table(text):
    """Rows of an aligned table (first line the header) as dicts."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0].split()
    return [dict(zip(header, line.split())) for line in lines[1:]]


def offsets_table(text):
    """The offsets table of `groups describe` (the one headed by GROUP)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("GROUP "))
    return table("\n".join(lines[start:]))


# ---------------------------------------------------------------- topics

def test_topics_create_list_describe_alter_delete(shared_broker):
    b = shared_broker
    topic = unique_topic("cli")
    out = sluice(b, "topics", "create", "--topic", topic, "--partitions", "3",
                 "--replication-factor", "1", "--config", "retention.ms=86400000",
                 "--config", "cleanup.policy=delete").stdout
    assert out == f"Created topic '{topic}'.\n"

    rows = {row["TOPIC"]: row for row in table(sluice(b, "topics", "list").stdout)}
    assert rows[topic] == {"TOPIC": topic, "PARTITIONS": "3", "REPLICATION-FACTOR": "1"}
    listed = {t["topic"]: t for t in sluice_json(b, "topics", "list")}
    assert listed[topic]["partitions"] == 3 and not listed[topic]["internal"]
    assert len(listed[topic]["topic_id"]) == 22

    text = sluice(b, "topics", "describe", "--topic", topic).stdout
    first, *rest = text.splitlines()
    assert first.startswith(f"Topic: {topic}  TopicId: ")
    assert "PartitionCount: 3  ReplicationFactor: 1" in first
    assert "cleanup.policy=delete" in first and "retention.ms=86400000" in first
    partitions = table("\n".join(rest))
    node = str(b.node_id)
    assert partitions == [
        {"PARTITION": str(p), "LEADER": node, "REPLICAS": node, "ISR": node} for p in range(3)
    ]

    [described] = sluice_json(b, "topics", "describe", "--topic", topic)
    assert described["topic"] == topic
    assert described["topic_id"] == listed[topic]["topic_id"]
    assert described["configs"] == {"retention.ms": "86400000", "cleanup.policy": "delete"}
    assert [p["partition"] for p in described["partitions"]] == [0, 1, 2]
    assert all(p["leader"] == b.node_id and p["isr"] == [b.node_id]
               for p in described["partitions"])
    [everything] = sluice_json(b, "topics", "describe", "--topic", topic, "--all-configs")
    assert "segment.bytes" in everything["configs"]

    out = sluice(b, "topics", "alter", "--topic", topic, "--partitions", "5").stdout
    assert "partitions=5" in out
    [described] = sluice_json(b, "topics", "describe", "--topic", topic)
    assert described["partition_count"] == 5

    out = sluice(b, "topics", "delete", "--topic", topic).stdout
    assert out == f"Deleted topic '{topic}'.\n"
    assert topic not in {t["topic"] for t in sluice_json(b, "topics", "list")}


def test_topics_alter_configs(shared_broker):
    """`--config` and `--delete-config` go through IncrementalAlterConfigs (or
    AlterConfigs); a broker without either is named in the error."""
    b = shared_broker
    topic = unique_topic("cli-cfg")
    sluice(b, "topics", "create", "--topic", topic, "--partitions", "1")
    result = sluice(b, "topics", "alter", "--topic", topic, "--config", "retention.ms=1234",
                    check=False)
    if result.returncode != 0:
        assert "UNSUPPORTED_VERSION" in result.stderr and "AlterConfigs" in result.stderr
        pytest.skip("the broker serves neither IncrementalAlterConfigs nor AlterConfigs yet")
    [described] = sluice_json(b, "topics", "describe", "--topic", topic)
    assert described["configs"].get("retention.ms") == "1234"
    sluice(b, "topics", "alter", "--topic", topic, "--delete-config", "retention.ms")
    [described] = sluice_json(b, "topics", "describe", "--topic", topic)
    assert "retention.ms" not in described["configs"]


def test_topics_errors_name_the_kafka_error(shared_broker):
    b = shared_broker
    topic = unique_topic("cli-err")
    sluice(b, "topics", "create", "--topic", topic)
    again = sluice(b, "topics", "create", "--topic", topic, check=False)
    assert again.returncode == 1
    assert again.stderr.startswith("Error: TOPIC_ALREADY_EXISTS: ")
    assert topic in again.stderr
    assert "panicked" not in again.stderr
    assert sluice(b, "topics", "create", "--topic", topic, "--if-not-exists").returncode == 0

    missing = unique_topic("cli-missing")
    result = sluice(b, "topics", "describe", "--topic", missing, check=False)
    assert result.returncode == 1
    assert f"UNKNOWN_TOPIC_OR_PARTITION: Topic '{missing}' does not exist." in result.stderr
    result = sluice(b, "topics", "delete", "--topic", missing, check=False)
    assert result.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in result.stderr
    assert sluice(b, "topics", "delete", "--topic", missing, "--if-exists").returncode == 0

    bad = sluice(b, "topics", "create", "--topic", unique_topic("cli-bad"), "--config",
                 "retention.ms=forever", check=False)
    assert bad.returncode == 1 and "INVALID_CONFIG" in bad.stderr

    shrink = sluice(b, "topics", "alter", "--topic", topic, "--partitions", "1", check=False)
    assert shrink.returncode == 1 and "INVALID_PARTITIONS" in shrink.stderr

    usage = sluice(b, "topics", "create", check=False)
    assert usage.returncode == 2 and "--topic" in usage.stderr


def test_unreachable_broker_is_a_clear_error(tmp_path):
    binary = os.environ["SLUICE_BIN"]
    result = subprocess.run([binary, "topics", "list", "--bootstrap-server", "127.0.0.1:1",
                             "--request-timeout-ms", "2000"],
                            capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert result.returncode == 1
    assert "connecting to 127.0.0.1:1" in result.stderr


# ---------------------------------------------------------------- produce / consume

def test_produce_then_consume_from_beginning(shared_broker):
    b = shared_broker
    topic = unique_topic("cli-rt")
    sluice(b, "topics", "create", "--topic", topic, "--partitions", "3")
    lines = [f"line-{i}" for i in range(500)]
    sluice(b, "produce", "--topic", topic, stdin="\n".join(lines) + "\n")
    out = sluice(b, "consume", "--topic", topic, "--from-beginning",
                 "--max-messages", "500").stdout
    assert sorted(out.splitlines()) == sorted(lines)


@pytest.mark.parametrize("compression", ["gzip", "snappy", "lz4", "zstd"])
def test_produce_keys_headers_and_codecs(shared_broker, compression):
    b = shared_broker
    topic = unique_topic(f"cli-{compression}")
    sluice(b, "topics", "create", "--topic", topic, "--partitions", "4")
    stdin = "".join(f"user-{i % 7}:event-{i}\n" for i in range(70)) + "no separator here\n"
    summary = sluice_json(b, "produce", "--topic", topic, "--key-separator", ":",
                          "--compression", compression, "--acks", "1",
                          "--header", "source=cli", stdin=stdin)
    assert summary["records"] == 71

    records = [json.loads(line) for line in sluice(
        b, "consume", "--topic", topic, "--from-beginning", "--max-messages", "71",
        "--output", "json").stdout.splitlines()]
    assert len(records) == 71
    by_key = {}
    for record in records:
        assert record["headers"] == {"source": "cli"}
        assert record["timestamp_type"] == "CreateTime"
        by_key.setdefault(record["key"], set()).add(record["partition"])
    assert by_key.pop(None) and all(len(parts) == 1 for parts in by_key.values()), \
        "records with one key share one partition"
    assert {r["value"] for r in records if r["key"] == "user-3"} == \
        {f"event-{i}" for i in range(3, 70, 7)}

    # The same keys land where Kafka's default partitioner (murmur2) puts them.
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": b.bootstrap, "partitioner": "murmur2_random",
                         "logger": logging.getLogger("librdkafka")})
    delivered = {}
    for key in ("user-0", "user-3", "user-6"):
        producer.produce(topic, key=key, value=b"x",
                         on_delivery=lambda err, msg: delivered.__setitem__(msg.key().decode(),
                                                                           msg.partition()))
    producer.flush(10)
    for key, partition in delivered.items():
        assert by_key[key] == {partition}


def test_consume_prints_fields_on_request(shared_broker):
    b = shared_broker
    topic = unique_topic("cli-print")
    sluice(b, "topics", "create", "--topic", topic, "--partitions", "1")
    sluice(b, "produce", "--topic", topic, "--key-separator", "=", "--header", "h=v",
           stdin="k1=v1\nk2=v2\n")
    out = sluice(b, "consume", "--topic", topic, "--from-beginning", "--max-messages", "2",
                 "--print-key", "--print-offset", "--print-partition", "--print-timestamp",
                 "--print-headers").stdout
    first, second = out.splitlines()
    fields = first.split("\t")
    assert fields[0].startswith("CreateTime:") and int(fields[0].split(":")[1]) > 0
    assert fields[1:] == ["Partition:0", "Offset:0", "h:v", "k1", "v1"]
    assert second.split("\t")[2:] == ["Offset:1", "h:v", "k2", "v2"]

    # --partition and --offset pick the start; --separator changes the glue.
    out = sluice(b, "consume", "--topic", topic, "--partition", "0", "--offset", "1",
                 "--max-messages", "1", "--print-key", "--separator", "|").stdout
    assert out == "k2|v2\n"
    # --timeout-ms ends a consumer that has nothing (more) to read.
    started = time.monotonic()
    out = sluice(b, "consume", "--topic", topic, "--timeout-ms", "1000").stdout
    assert out == "" and time.monotonic() - started < 20


def test_consume_reads_what_confluent_kafka_produced(shared_broker):
    from confluent_kafka import Producer
    b = shared_broker
    topic = unique_topic("cli-interop")
    sluice(b, "topics", "create", "--topic", topic, "--partitions", "2")
    producer = Producer({"bootstrap.servers": b.bootstrap, "compression.type": "zstd",
                         "logger": logging.getLogger("librdkafka")})
    for i in range(1000):
        producer.produce(topic, key=str(i), value=f"v{i}", headers=[("n", str(i))])
    producer.flush(10)
    records = [json.loads(line) for line in sluice(
        b, "consume", "--topic", topic, "--from-beginning", "--max-messages", "1000",
        "--output", "json").stdout.splitlines()]
    assert sorted(int(r["key"]) for r in records) == list(range(1000))
    assert all(r["value"] == f"v{r['key']}" and r["headers"] == {"n": r["key"]}
               for r in records)


# ---------------------------------------------------------------- groups

def produce_numbers(b, topic, count, partitions=2):
    sluice(b, "topics", "create", "--topic", topic, "--partitions", str(partitions))
    # One keyless batch per request goes to one partition; a key per line spreads them.
    stdin = "".join(f"{i}:{i}\n" for i in range(count))
    sluice(b, "produce", "--topic", topic, "--key-separator", ":", stdin=stdin)


def test_consume_with_group_commits_and_resumes(shared_broker):
    b = shared_broker
    topic, group = unique_topic("cli-grp"), unique_topic("g")
    produce_numbers(b, topic, 100)
    first = sluice(b, "consume", "--topic", topic, "--group", group, "--from-beginning",
                   "--max-messages", "40").stdout.splitlines()
    rest = sluice(b, "consume", "--topic", topic, "--group", group,
                  "--max-messages", "60").stdout.splitlines()
    assert len(first) == 40 and len(rest) == 60
    assert sorted(map(int, first + rest)) == list(range(100))
    [view] = sluice_json(b, "groups", "describe", "--group", group)
    assert sum(row["current_offset"] for row in view["offsets"]) == 100
    assert all(row["lag"] == 0 for row in view["offsets"])


def test_groups_list_describe_delete(shared_broker):
    b = shared_broker
    topic, group = unique_topic("cli-gl"), unique_topic("g")
    produce_numbers(b, topic, 50)
    sluice(b, "consume", "--topic", topic, "--group", group, "--from-beginning",
           "--max-messages", "30")

    listed = {row["GROUP"]: row for row in table(sluice(b, "groups", "list").stdout)}
    assert listed[group]["STATE"] == "Empty"
    assert group in {g["group"] for g in sluice_json(b, "groups", "list")}

    text = sluice(b, "groups", "describe", "--group", group).stdout
    assert text.startswith(f"Group: {group}  State: Empty")
    assert f"Consumer group '{group}' has no active members." in text
    rows = offsets_table(text)
    assert {row["PARTITION"] for row in rows} == {"0", "1"}
    assert sum(int(row["CURRENT-OFFSET"]) for row in rows) == 30
    assert sum(int(row["LOG-END-OFFSET"]) for row in rows) == 50
    assert sum(int(row["LAG"]) for row in rows) == 20

    assert sluice(b, "groups", "delete", "--group", group).stdout == \
        f"Deleted consumer group '{group}'.\n"
    assert group not in {g["group"] for g in sluice_json(b, "groups", "list")}
    missing = sluice(b, "groups", "describe", "--group", group, check=False)
    assert missing.returncode == 1 and "GROUP_ID_NOT_FOUND" in missing.stderr
    again = sluice(b, "groups", "delete", "--group", group, check=False)
    assert again.returncode == 1 and "GROUP_ID_NOT_FOUND" in again.stderr


def committed(b, group):
    [view] = sluice_json(b, "groups", "describe", "--group", group)
    return {(row["topic"], row["partition"]): row["current_offset"] for row in view["offsets"]}


def test_reset_offsets_dry_run_then_execute(shared_broker):
    b = shared_broker
    topic, group = unique_topic("cli-reset"), unique_topic("g")
    produce_numbers(b, topic, 100)
    sluice(b, "consume", "--topic", topic, "--group", group, "--from-beginning",
           "--max-messages", "100")
    before = committed(b, group)
    assert sum(before.values()) == 100
    ends = dict(before)

    # Default and --dry-run: the plan is shown, nothing changes.
    for extra in ([], ["--dry-run"]):
        result = sluice(b, "groups", "reset-offsets", "--group", group, "--topic", topic,
                        "--to-earliest", *extra)
        rows = table(result.stdout)
        assert {row["NEW-OFFSET"] for row in rows} == {"0"}
        assert {(topic, int(row["PARTITION"])): int(row["CURRENT-OFFSET"]) for row in rows} \
            == before
        assert "Dry run" in result.stderr
        assert committed(b, group) == before

    sluice(b, "groups", "reset-offsets", "--group", group, "--topic", topic,
           "--to-earliest", "--execute")
    assert set(committed(b, group).values()) == {0}

    # --to-offset is kept within each partition's log; --shift-by moves each.
    sluice(b, "groups", "reset-offsets", "--group", group, "--topic", f"{topic}:0",
           "--to-offset", "10", "--execute")
    after = committed(b, group)
    assert after[(topic, 0)] == min(10, ends[(topic, 0)]) and after[(topic, 1)] == 0
    plan = sluice_json(b, "groups", "reset-offsets", "--group", group, "--all-topics",
                       "--shift-by", "-4", "--execute")
    assert plan["executed"] is True
    assert {(r["topic"], r["partition"]): r["new_offset"] for r in plan["offsets"]} == {
        (topic, 0): max(after[(topic, 0)] - 4, 0), (topic, 1): 0}
    sluice(b, "groups", "reset-offsets", "--group", group, "--topic", topic,
           "--to-latest", "--execute")
    assert committed(b, group) == ends
    sluice(b, "groups", "reset-offsets", "--group", group, "--topic", topic,
           "--to-offset", "1000000", "--execute")
    assert committed(b, group) == ends

    # The consumer picks up from the reset offsets.
    sluice(b, "groups", "reset-offsets", "--group", group, "--topic", topic,
           "--shift-by", "-5", "--execute")
    out = sluice(b, "consume", "--topic", topic, "--group", group, "--max-messages", "10")
    assert len(out.stdout.splitlines()) == 10


def test_reset_offsets_to_datetime(shared_broker):
    b = shared_broker
    topic, group = unique_topic("cli-dt"), unique_topic("g")
    sluice(b, "topics", "create", "--topic", topic, "--partitions", "1")
    sluice(b, "produce", "--topic", topic, stdin="old-1\nold-2\n")
    time.sleep(1.5)
    middle = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 0.5))
    sluice(b, "produce", "--topic", topic, stdin="new-1\nnew-2\nnew-3\n")
    sluice(b, "consume", "--topic", topic, "--group", group, "--from-beginning",
           "--max-messages", "5")
    sluice(b, "groups", "reset-offsets", "--group", group, "--topic", topic,
           "--to-datetime", middle, "--execute")
    assert committed(b, group) == {(topic, 0): 2}
    sluice(b, "groups", "reset-offsets", "--group", group, "--topic", topic,
           "--to-datetime", "2000-01-01T00:00:00Z", "--execute")
    assert committed(b, group) == {(topic, 0): 0}
    sluice(b, "groups", "reset-offsets", "--group", group, "--topic", topic,
           "--to-datetime", "2999-01-01T00:00:00Z", "--execute")
    assert committed(b, group) == {(topic, 0): 5}


def test_groups_with_an_active_member(shared_broker):
    """describe shows a confluent-kafka member and its assignment; reset-offsets
    and delete refuse while it is in the group, and work once it left."""
    from confluent_kafka import Consumer
    b = shared_broker
    topic, group = unique_topic("cli-active"), unique_topic("g")
    produce_numbers(b, topic, 20)
    consumer = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                         "client.id": "cli-test-member", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False,
                         "logger": logging.getLogger("librdkafka")})
    try:
        consumer.subscribe([topic])
        seen = []

        def consumed_all():
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                seen.append(msg)
            return len(seen) >= 20
        wait_until(consumed_all, timeout=30, what="the member to read 20 records")
        consumer.commit(asynchronous=False)

        text = sluice(b, "groups", "describe", "--group", group).stdout
        assert f"Group: {group}  State: Stable" in text and "Members: 1" in text
        assert "cli-test-member" in text and f"{topic}(0,1)" in text
        rows = offsets_table(text)
        assert all(row["CLIENT-ID"] == "cli-test-member" for row in rows)
        assert sum(int(row["CURRENT-OFFSET"]) for row in rows) == 20
        [view] = sluice_json(b, "groups", "describe", "--group", group)
        assert view["protocol_type"] == "consumer"
        assert view["members"][0]["assignment"] == [{"topic": topic, "partitions": [0, 1]}]

        refused = sluice(b, "groups", "reset-offsets", "--group", group, "--topic", topic,
                         "--to-earliest", "--execute", check=False)
        assert refused.returncode == 1
        assert "inactive" in refused.stderr and "Stable" in refused.stderr
        refused = sluice(b, "groups", "delete", "--group", group, check=False)
        assert refused.returncode == 1 and "NON_EMPTY_GROUP" in refused.stderr
        assert sum(committed(b, group).values()) == 20
    finally:
        consumer.close()

    wait_until(lambda: sluice_json(b, "groups", "describe", "--group", group)[0]["state"]
               == "Empty", timeout=20, what="the group to be empty")
    sluice(b, "groups", "reset-offsets", "--group", group, "--topic", topic,
           "--to-earliest", "--execute")
    assert set(committed(b, group).values()) == {0}


def test_quickstart_walkthrough(broker):
    """Kafka's quick start, done with `sluice` only, on a fresh broker."""
    b = broker
    sluice(b, "topics", "create", "--topic", "quickstart-events")
    assert "quickstart-events" in sluice(b, "topics", "describe", "--topic",
                                         "quickstart-events").stdout
    sluice(b, "produce", "--topic", "quickstart-events",
           stdin="This is my first event\nThis is my second event\n")
    out = sluice(b, "consume", "--topic", "quickstart-events", "--from-beginning",
                 "--max-messages", "2").stdout
    assert out == "This is my first event\nThis is my second event\n"
    sluice(b, "consume", "--topic", "quickstart-events", "--group", "quickstart",
           "--from-beginning", "--max-messages", "2")
    rows = offsets_table(sluice(b, "groups", "describe", "--group", "quickstart").stdout)
    assert [row["LAG"] for row in rows] == ["0"] * len(rows)
    sluice(b, "groups", "reset-offsets", "--group", "quickstart", "--all-topics",
           "--to-earliest", "--execute")
    out = sluice(b, "consume", "--topic", "quickstart-events", "--group", "quickstart",
                 "--max-messages", "2").stdout
    assert out.count("event") == 2

    # The topics survive a restart and the group's offsets with them.
    b.restart()
    rows = offsets_table(sluice(b, "groups", "describe", "--group", "quickstart").stdout)
    assert sum(int(row["CURRENT-OFFSET"]) for row in rows) == 2
    sluice(b, "groups", "delete", "--group", "quickstart")
    sluice(b, "topics", "delete", "--topic", "quickstart-events")
    assert "quickstart-events" not in sluice(b, "topics", "list").stdout


def test_two_group_consumers_share_the_partitions(shared_broker):
    """`consume --group` joins the group: two processes split a 4-partition
    topic (range assignor), read every record between them, commit, and leave."""
    b = shared_broker
    topic, group = unique_topic("cli-share"), unique_topic("g")
    produce_numbers(b, topic, 200, partitions=4)
    binary = os.environ["SLUICE_BIN"]
    command = [binary, "consume", "--topic", topic, "--group", group, "--from-beginning",
               "--timeout-ms", "8000", "--bootstrap-server", b.bootstrap]
    consumers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
    try:
        def shared():
            [view] = sluice_json(b, "groups", "describe", "--group", group)
            counts = sorted(sum(len(a["partitions"]) for a in m["assignment"])
                            for m in view["members"])
            return view["state"] == "Stable" and counts == [2, 2] and view
        view = wait_until(shared, timeout=30, what="two members with two partitions each")
        assert view["protocol"] == "range"
        assigned = sorted(p for m in view["members"] for a in m["assignment"]
                          for p in a["partitions"])
        assert assigned == [0, 1, 2, 3]
        outputs = [c.communicate(timeout=CLI_TIMEOUT_S) for c in consumers]
    finally:
        for c in consumers:
            c.kill()
    for c, (_, err) in zip(consumers, outputs):
        assert c.returncode == 0, err
    values = [int(line) for out, _ in outputs for line in out.splitlines()]
    assert set(values) == set(range(200))
    [view] = sluice_json(b, "groups", "describe", "--group", group)
    assert view["state"] == "Empty" and view["members"] == []
    assert sum(row["current_offset"] for row in view["offsets"]) == 200


def test_consume_one_partition_commits_without_joining(shared_broker):
    b = shared_broker
    topic, group = unique_topic("cli-manual"), unique_topic("g")
    produce_numbers(b, topic, 40)
    out = sluice(b, "consume", "--topic", topic, "--group", group, "--partition", "1",
                 "--from-beginning", "--timeout-ms", "1500").stdout
    assert committed(b, group) == {(topic, 1): len(out.splitlines())}


def test_interrupted_group_consumer_commits_and_leaves(shared_broker):
    """Ctrl-C ends `consume --group` cleanly: what it printed is committed and
    the group is empty at once, not after the session timeout."""
    import signal
    b = shared_broker
    topic, group = unique_topic("cli-int"), unique_topic("g")
    produce_numbers(b, topic, 30)
    consumer = subprocess.Popen(
        [os.environ["SLUICE_BIN"], "consume", "--topic", topic, "--group", group,
         "--from-beginning", "--bootstrap-server", b.bootstrap],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: sluice_json(b, "groups", "describe", "--group", group)[0]
                   ["state"] == "Stable", timeout=30, what="the consumer to join")
        wait_until(lambda: sum(committed(b, group).values()) == 30, timeout=30,
                   what="the consumer to commit 30 records")
        consumer.send_signal(signal.SIGINT)
        out, err = consumer.communicate(timeout=CLI_TIMEOUT_S)
    finally:
        consumer.kill()
    assert consumer.returncode == 0, err
    assert sorted(map(int, out.splitlines())) == list(range(30))
    [view] = sluice_json(b, "groups", "describe", "--group", group)
    assert view["state"] == "Empty" and view["members"] == []


def test_produce_sends_each_typed_line_at_once(shared_broker):
    """Lines typed into a still-open stdin reach the broker one by one, as
    with kafka-console-producer.sh, not when stdin closes."""
    b = shared_broker
    topic = unique_topic("cli-typed")
    sluice(b, "topics", "create", "--topic", topic, "--partitions", "1")
    producer = subprocess.Popen(
        [os.environ["SLUICE_BIN"], "produce", "--topic", topic,
         "--bootstrap-server", b.bootstrap],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for n, line in enumerate(["first", "second"], start=1):
            producer.stdin.write(line + "\n")
            producer.stdin.flush()
            wait_until(lambda: len(sluice(b, "consume", "--topic", topic, "--from-beginning",
                                          "--timeout-ms", "300").stdout.splitlines()) == n,
                       timeout=20, what=f"line {n} to arrive while stdin is open")
        producer.stdin.close()
        assert producer.wait(timeout=CLI_TIMEOUT_S) == 0
    finally:
        producer.kill()
