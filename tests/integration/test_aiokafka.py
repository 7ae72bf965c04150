"""Admin operations through aiokafka's AIOKafkaAdminClient (asyncio client)."""

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from conftest import unique_topic


async def poll(predicate, timeout=10.0, what="condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def lifecycle(broker):
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        assert [(b["node_id"], b["host"], b["port"]) for b in cluster["brokers"]] == \
            [(broker.node_id, "127.0.0.1", broker.port)]
        assert cluster["controller_id"] == broker.node_id

        topic = unique_topic("aio")
        resp = await admin.create_topics([NewTopic(topic, 2, 1, topic_configs={"retention.ms": "60000"})])
        errors = {t[0]: t[1] for t in resp.topic_errors}
        assert errors == {topic: 0}, resp

        async def listed():
            return topic in await admin.list_topics()
        await poll(listed, what="topic listed")
        (meta,) = await admin.describe_topics([topic])
        assert meta["error_code"] == 0 and len(meta["partitions"]) == 2

        (cfg_resp,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        (res,) = cfg_resp.to_object()["resources"]
        assert res["error_code"] == 0, res
        entries = {e["config_names"]: e for e in res["config_entries"]}
        assert entries["retention.ms"]["config_value"] == "60000"
        assert entries["cleanup.policy"]["config_value"] == "delete"

        resp = await admin.create_topics([NewTopic(topic, 1, 1)])
        assert [t[1] for t in resp.topic_errors] == [36]  # TOPIC_ALREADY_EXISTS

        await admin.create_partitions({topic: NewPartitions(4)})

        async def four_partitions():
            (m,) = await admin.describe_topics([topic])
            return len(m["partitions"]) == 4
        await poll(four_partitions, what="4 partitions")

        resp = await admin.delete_topics([topic])
        assert [t[1] for t in resp.topic_error_codes] == [0], resp

        async def gone():
            return topic not in await admin.list_topics()
        await poll(gone, what="topic deleted")
    finally:
        await admin.close()


def test_aiokafka_admin_lifecycle(shared_broker):
    """describe_cluster, create_topics (configs), list, describe_configs, duplicate, create_partitions, delete."""
    asyncio.run(lifecycle(shared_broker))
