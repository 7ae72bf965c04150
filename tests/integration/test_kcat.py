"""`kcat -L -J` (librdkafka metadata through the kcat CLI)."""

import json
import shutil
import subprocess

import pytest
from confluent_kafka.admin import NewTopic

from conftest import confluent_admin, unique_topic, wait_until


def kcat_metadata(broker, topic=None):
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.fail("kcat is not installed (tests/run.sh installs it with apt-get)", pytrace=False)
    cmd = [kcat, "-L", "-J", "-b", broker.bootstrap, "-m", "10", "-X", "allow.auto.create.topics=false"]
    if topic:
        cmd += ["-t", topic]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"kcat exited {proc.returncode}: {proc.stderr}"
    return json.loads(proc.stdout)


def create_topics(broker, specs):
    admin = confluent_admin(broker)
    futures = admin.create_topics([NewTopic(n, num_partitions=p, replication_factor=1) for n, p in specs])
    for f in futures.values():
        f.result(timeout=15)


def test_kcat_lists_broker_and_topics(shared_broker):
    """kcat -L -J shows the broker (id, address) and each topic with its partitions and leaders."""
    three, one = unique_topic("kcat3"), unique_topic("kcat1")
    create_topics(shared_broker, [(three, 3), (one, 1)])
    md = wait_until(lambda: (m := kcat_metadata(shared_broker))
                    and {three, one} <= {t["topic"] for t in m["topics"]} and m,
                    what="topics in kcat -L")
    node = shared_broker.node_id
    assert md["brokers"] == [{"id": node, "name": f"127.0.0.1:{shared_broker.port}"}]
    assert md["controllerid"] == node
    topics = {t["topic"]: t for t in md["topics"]}
    for name, count in [(three, 3), (one, 1)]:
        t = topics[name]
        assert "error" not in t, t
        assert [p["partition"] for p in sorted(t["partitions"], key=lambda p: p["partition"])] == \
            list(range(count))
        for p in t["partitions"]:
            assert p["leader"] == node
            assert p["replicas"] == [{"id": node}]
            assert p["isrs"] == [{"id": node}]


def test_kcat_single_topic_and_unknown_topic(shared_broker):
    """kcat -L -t TOPIC shows just that topic; an unknown topic is reported as an error, not created."""
    name = unique_topic("kcat")
    create_topics(shared_broker, [(name, 2)])
    md = wait_until(lambda: kcat_metadata(shared_broker, name), what="kcat -L -t")
    assert [t["topic"] for t in md["topics"]] == [name]
    assert len(md["topics"][0]["partitions"]) == 2
    missing = unique_topic("kcat-missing")
    md = kcat_metadata(shared_broker, missing)
    (t,) = md["topics"]
    assert t["topic"] == missing
    assert "error" in t and t["partitions"] == [], t
    assert missing not in {t["topic"] for t in kcat_metadata(shared_broker)["topics"]}
