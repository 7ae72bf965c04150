"""Admin operations through kafkajs (tests/js/admin.js), asserted on its JSON output."""

import json
import os
import shutil
import subprocess

import pytest

from conftest import unique_topic

JS_DIR = os.path.join(os.path.dirname(__file__), "..", "js")
SCRIPT = os.path.join(JS_DIR, "admin.js")

TOPIC_SOURCE_DYNAMIC = 1  # DescribeConfigs config_source DYNAMIC_TOPIC_CONFIG
DEFAULT_SOURCES = {3, 4, 5}  # DYNAMIC_DEFAULT_BROKER, STATIC_BROKER, DEFAULT


def run_admin_js(bootstrap, prefix):
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (tests/run.sh expects node 20)", pytrace=False)
    if not os.path.isdir(os.path.join(JS_DIR, "node_modules", "kafkajs")):
        pytest.fail("kafkajs missing: run `npm ci` in tests/js (tests/run.sh does)", pytrace=False)
    proc = subprocess.run([node, SCRIPT, bootstrap, prefix], capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"admin.js exited {proc.returncode}\nstderr:\n{proc.stderr[-4000:]}"
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])["steps"], proc.stderr
    except (ValueError, IndexError) as exc:
        pytest.fail(f"admin.js printed no JSON ({exc}); stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")


@pytest.fixture(scope="module")
def kafkajs_run(shared_broker):
    prefix = unique_topic("js")
    steps, stderr = run_admin_js(shared_broker.bootstrap, prefix)
    return {"steps": steps, "stderr": stderr, "configured": f"{prefix}-configured",
            "plain": f"{prefix}-plain", "prefix": prefix, "broker": shared_broker}


def ok(run, name):
    s = run["steps"][name]
    assert s["ok"], f"kafkajs {name} failed: {json.dumps(s['error'])}\nkafkajs log:\n{run['stderr'][-3000:]}"
    return s["value"]


def configs_of(describe_result, resource_name):
    (res,) = [r for r in describe_result["resources"] if r["resourceName"] == resource_name]
    assert res["errorCode"] == 0, res
    return {e["configName"]: e for e in res["configEntries"]}


def test_describe_cluster(kafkajs_run):
    """describeCluster lists this broker as the only one and as controller."""
    b = kafkajs_run["broker"]
    cluster = ok(kafkajs_run, "describeCluster")
    assert [(x["nodeId"], x["host"], x["port"]) for x in cluster["brokers"]] == \
        [(b.node_id, "127.0.0.1", b.port)]
    assert cluster["controller"] == b.node_id


def test_create_and_list_topics(kafkajs_run):
    """createTopics (with configEntries, waiting for leaders) succeeds; listTopics shows the topics."""
    assert ok(kafkajs_run, "createTopics") is True
    listed = ok(kafkajs_run, "listTopics")
    assert kafkajs_run["configured"] in listed and kafkajs_run["plain"] in listed


def test_fetch_topic_metadata(kafkajs_run):
    """fetchTopicMetadata shows the partitions, each led by this broker."""
    node = kafkajs_run["broker"].node_id
    md = {t["name"]: t for t in ok(kafkajs_run, "fetchTopicMetadata")["topics"]}
    for name, count in [(kafkajs_run["configured"], 3), (kafkajs_run["plain"], 1)]:
        parts = md[name]["partitions"]
        assert sorted(p["partitionId"] for p in parts) == list(range(count))
        for p in parts:
            assert p["partitionErrorCode"] == 0
            assert p["leader"] == node and p["replicas"] == [node] and p["isr"] == [node]


def test_describe_configs_topic(kafkajs_run):
    """describeConfigs on a topic: configEntries overrides are non-default, the rest defaults."""
    configs = configs_of(ok(kafkajs_run, "describeConfigsTopic"), kafkajs_run["configured"])
    assert configs["retention.ms"]["configValue"] == "3600000"
    assert configs["cleanup.policy"]["configValue"] == "compact"
    for name in ("retention.ms", "cleanup.policy"):
        assert configs[name]["isDefault"] is False
        assert configs[name]["configSource"] == TOPIC_SOURCE_DYNAMIC
        assert configs[name]["readOnly"] is False
    assert {"segment.bytes", "retention.bytes", "max.message.bytes"} <= set(configs)
    for name, e in configs.items():
        if name not in ("retention.ms", "cleanup.policy"):
            assert e["configSource"] in DEFAULT_SOURCES, (name, e)
    filtered = configs_of(ok(kafkajs_run, "describeConfigsTopicFiltered"), kafkajs_run["plain"])
    assert list(filtered) == ["cleanup.policy"]
    assert filtered["cleanup.policy"]["configValue"] == "delete"
    assert filtered["cleanup.policy"]["isDefault"] is True


def test_describe_configs_broker(kafkajs_run):
    """describeConfigs on the broker resource lists broker configs."""
    node = str(kafkajs_run["broker"].node_id)
    configs = configs_of(ok(kafkajs_run, "describeConfigsBroker"), node)
    assert configs["socket.request.max.bytes"]["configValue"] == str(100 * 1024 * 1024)
    assert "auto.create.topics.enable" in configs


def test_create_partitions(kafkajs_run):
    """createPartitions grows the topic to 5 partitions."""
    ok(kafkajs_run, "createPartitions")  # resolves undefined on success, rejects on error
    (topic,) = ok(kafkajs_run, "fetchTopicMetadataAfterCreatePartitions")["topics"]
    assert sorted(p["partitionId"] for p in topic["partitions"]) == [0, 1, 2, 3, 4]


def test_create_errors(kafkajs_run):
    """Duplicate create resolves false (TOPIC_ALREADY_EXISTS); bad name / bad config are rejected."""
    assert ok(kafkajs_run, "createTopicsDuplicate") is False
    bad_name = kafkajs_run["steps"]["createTopicsInvalidName"]
    assert not bad_name["ok"], "creating 'bad/name' succeeded"
    assert "INVALID_TOPIC_EXCEPTION" in json.dumps(bad_name["error"]), bad_name["error"]
    bad_config = kafkajs_run["steps"]["createTopicsInvalidConfig"]
    assert not bad_config["ok"], "creating a topic with retention.ms=forever succeeded"
    assert "INVALID_CONFIG" in json.dumps(bad_config["error"]), bad_config["error"]


def test_delete_topics(kafkajs_run):
    """deleteTopics removes both topics from listTopics."""
    ok(kafkajs_run, "deleteTopics")
    listed = ok(kafkajs_run, "listTopicsAfterDelete")
    assert kafkajs_run["configured"] not in listed and kafkajs_run["plain"] not in listed
