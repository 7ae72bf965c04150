"""KIP-848's consumer group protocol (`group.protocol=consumer`) with real
librdkafka consumers: ConsumerGroupHeartbeat, server-side assignors
(`group.remote.assignor`), incremental reconciliation, offset commits with
member epochs, ConsumerGroupDescribe, and coexistence with classic groups.

The broker runs with a short consumer session timeout and heartbeat
interval so membership changes take seconds. Consumers of the consumer
protocol must not be given `session.timeout.ms`, `heartbeat.interval.ms` or
`partition.assignment.strategy` (librdkafka refuses them). Every wait polls
a condition; none is a bare sleep.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupType,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import NewTopic

from cluster import make_cluster  # noqa: F401 (fixture)
from conftest import confluent_admin, unique_topic, wait_until

PARTITIONS = 6
CONSUMER_SESSION_TIMEOUT_MS = 6000
BROKER_ARGS = [
    "--set", "group.initial.rebalance.delay.ms=0",
    "--set", "group.min.session.timeout.ms=1000",
    "--set", f"group.consumer.session.timeout.ms={CONSUMER_SESSION_TIMEOUT_MS}",
    "--set", "group.consumer.heartbeat.interval.ms=500",
]
WAIT_S = 45


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory):
    """One broker for the module (unique topic and group names), with the
    group settings above; named like conftest's fixture so failures carry
    its log."""
    from conftest import _finish, _start_broker

    b = _start_broker(tmp_path_factory, extra_args=BROKER_ARGS)
    yield b
    _finish(b)


@pytest.fixture(scope="module")
def admin(shared_broker):
    return confluent_admin(shared_broker)


def create_topic(admin, partitions=PARTITIONS):
    name = unique_topic("kip848")
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(timeout=30)
    return name


def produce(broker, topic, start, count):
    """Values start..start+count, round robin over the partitions."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(start, start + count):
        p.produce(topic, value=str(i).encode(), partition=i % PARTITIONS)
    assert p.flush(30) == 0


def new_consumer(broker, group, assignor=None, **extra):
    config = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    if assignor:
        config["group.remote.assignor"] = assignor
    config.update(extra)
    return Consumer(config)


def classic_consumer(broker, group):
    return Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })


class Reader:
    """A subscribed consumer that commits every record it reads, at once."""

    def __init__(self, consumer, topic, also=(), errors_ok=False, refused_commits_ok=False):
        self.consumer = consumer
        self.seen = []  # (partition, offset, value)
        # A deleted topic's partitions report errors until they are
        # taken away: a test that deletes one lets them be.
        self.errors_ok = errors_ok
        # Commits the coordinator refused (the record is read again).
        self.refused_commits_ok = refused_commits_ok
        self.refused = []
        consumer.subscribe([topic, *also])

    def poll(self, timeout=0.05):
        message = self.consumer.poll(timeout)
        if message is None or (message.error() and self.errors_ok):
            return
        assert message.error() is None, message.error()
        # Recorded before the commit: what is committed was seen.
        self.seen.append((message.partition(), message.offset(), int(message.value())))
        try:
            self.consumer.commit(message=message, asynchronous=False)
        except KafkaException as exc:
            if not self.refused_commits_ok:
                raise
            self.refused.append(exc.args[0].code())

    def partitions(self):
        return sorted(p.partition for p in self.consumer.assignment())


def poll_until(readers, predicate, what, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while not predicate():
        for reader in readers:
            reader.poll()
        if time.monotonic() >= deadline:
            state = [r.partitions() for r in readers]
            raise AssertionError(f"timed out waiting for {what}; assignments {state}")


def describe(admin, group):
    return admin.describe_consumer_groups([group])[group].result(timeout=30)


def member_partitions(description):
    """Each member's assigned partitions, by member id."""
    return {m.member_id: sorted(tp.partition for tp in m.assignment.topic_partitions)
            for m in description.members}


def converged(admin, group, members):
    """The group is Stable with `members` members whose assignments split
    the topic's partitions between them."""
    described = describe(admin, group)
    owned = member_partitions(described)
    flat = sorted(p for ps in owned.values() for p in ps)
    return (described.state == ConsumerGroupState.STABLE and len(owned) == members
            and flat == list(range(PARTITIONS)) and all(owned.values()))


def committed(admin, group, topic):
    request = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    from confluent_kafka import ConsumerGroupTopicPartitions

    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, request)])
    result = futures[group].result(timeout=30)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def sluice(broker, *args):
    binary = os.environ["SLUICE_BIN"]
    result = subprocess.run([binary, *args, "--bootstrap-server", broker.bootstrap],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


# ---------------------------------------------------------------------------


def test_two_consumers_share_a_topic_once_and_commit(shared_broker, admin):
    b = shared_broker
    topic, group = create_topic(admin), unique_topic("g")
    produce(b, topic, 0, 120)
    readers = [Reader(new_consumer(b, group), topic) for _ in range(2)]
    try:
        poll_until(readers, lambda: sum(len(r.seen) for r in readers) >= 120
                   and all(r.partitions() for r in readers), "120 records and two owners")
        values = sorted(v for r in readers for (_, _, v) in r.seen)
        assert values == list(range(120)), "every record consumed exactly once"
        owned = [set(r.partitions()) for r in readers]
        assert owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == set(range(PARTITIONS))

        assert committed(admin, group, topic) == {p: 20 for p in range(PARTITIONS)}
        [view] = json.loads(sluice(b, "groups", "describe", "--group", group,
                                   "--output", "json"))
        assert view["state"] == "Stable" and view["protocol"] == "uniform"
        assert view["type"] == "consumer"
        assert len(view["members"]) == 2
        by_member = sorted(sorted(p for a in m["assignment"] for p in a["partitions"])
                           for m in view["members"])
        assert by_member == sorted(sorted(o) for o in owned)
        assert all(row["current_offset"] == 20 and row["lag"] == 0 for row in view["offsets"])
        listed = {g["group"]: g for g in json.loads(sluice(b, "groups", "list",
                                                           "--output", "json"))}
        assert listed[group]["type"] == "consumer"
        text = sluice(b, "groups", "describe", "--group", group)
        assert text.startswith(f"Group: {group}  State: Stable  Type: consumer  Protocol: uniform")
    finally:
        for r in readers:
            r.consumer.close()


# A consumer in a subprocess, so that it can be killed with SIGKILL. It
# prints each record before committing it.
KILLABLE = textwrap.dedent("""
    import sys
    from confluent_kafka import Consumer
    bootstrap, group, topic, assignor = sys.argv[1:5]
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "group.protocol": "consumer", "group.remote.assignor": assignor,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    while True:
        m = c.poll(0.1)
        if m is None or m.error():
            continue
        print(m.partition(), m.offset(), int(m.value()), flush=True)
        c.commit(message=m, asynchronous=False)
""")


@pytest.mark.parametrize("assignor", ["range", "uniform"])
def test_members_join_leave_and_die_and_no_committed_record_is_lost(
        shared_broker, admin, assignor):
    b = shared_broker
    topic, group = create_topic(admin), unique_topic("g")
    produce(b, topic, 0, 60)
    first, second = (Reader(new_consumer(b, group, assignor), topic) for _ in range(2))
    readers = [first, second]
    killable = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, b.bootstrap, group, topic, assignor],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        poll_until(readers, lambda: converged(admin, group, 3), "three members")
        described = describe(admin, group)
        assert described.type == ConsumerGroupType.CONSUMER
        assert described.partition_assignor == assignor
        assert sorted(len(p) for p in member_partitions(described).values()) == [2, 2, 2]

        produce(b, topic, 60, 60)
        first.consumer.close()
        readers = [second]
        poll_until(readers, lambda: converged(admin, group, 2), "two members after a close")
        owned = sorted(member_partitions(describe(admin, group)).values())
        if assignor == "range":
            assert owned == [[0, 1, 2], [3, 4, 5]]
        else:
            assert sorted(len(p) for p in owned) == [3, 3]

        killable.send_signal(signal.SIGKILL)
        killable.wait(timeout=10)
        poll_until(readers, lambda: converged(admin, group, 1) and
                   second.partitions() == list(range(PARTITIONS)),
                   "the survivor owning everything after the session timeout")
        produce(b, topic, 120, 60)
        poll_until(readers, lambda: committed(admin, group, topic) ==
                   {p: 30 for p in range(PARTITIONS)}, "every record committed")
    finally:
        if killable.poll() is None:
            killable.kill()
        killed_lines = killable.stdout.read().split("\n")
        second.consumer.close()
    consumed = {v for r in (first, second) for (_, _, v) in r.seen}
    consumed |= {int(line.split()[2]) for line in killed_lines if line.strip()}
    assert consumed == set(range(180)), "no record lost"
    assert killed_lines, "the killed consumer had read records"


def test_describe_consumer_groups_shows_the_consumer_type_and_assignments(
        shared_broker, admin):
    b = shared_broker
    topic, group = create_topic(admin), unique_topic("g")
    readers = [Reader(new_consumer(b, group, "range"), topic) for _ in range(2)]
    try:
        poll_until(readers, lambda: all(r.partitions() for r in readers)
                   and converged(admin, group, 2), "two members")
        described = describe(admin, group)
        assert described.type == ConsumerGroupType.CONSUMER
        assert described.state == ConsumerGroupState.STABLE
        assert described.partition_assignor == "range"
        assert not described.is_simple_consumer_group
        by_member = member_partitions(described)
        mine = {r.consumer.memberid(): r.partitions() for r in readers}
        assert by_member == mine
        for member in described.members:
            assert {tp.topic for tp in member.assignment.topic_partitions} == {topic}

        listed = admin.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(
            timeout=30)
        types = {g.group_id: g.type for g in listed.valid}
        assert types.get(group) == ConsumerGroupType.CONSUMER
    finally:
        for r in readers:
            r.consumer.close()


def test_classic_and_consumer_groups_coexist_and_do_not_mix(shared_broker, admin):
    b = shared_broker
    topic = create_topic(admin)
    classic_group, consumer_group = unique_topic("classic"), unique_topic("consumer")
    produce(b, topic, 0, 60)
    classic = Reader(classic_consumer(b, classic_group), topic)
    modern = Reader(new_consumer(b, consumer_group), topic)
    readers = [classic, modern]
    try:
        poll_until(readers, lambda: all(len(r.seen) >= 60 for r in readers),
                   "both groups to read everything")
        for r in readers:
            assert sorted(v for (_, _, v) in r.seen) == list(range(60))
        types = {g.group_id: g.type for g in
                 admin.list_consumer_groups().result(timeout=30).valid}
        assert types[classic_group] == ConsumerGroupType.CLASSIC
        assert types[consumer_group] == ConsumerGroupType.CONSUMER

        # A classic member cannot join the consumer group ...
        intruder = classic_consumer(b, consumer_group)
        intruder.subscribe([topic])
        error = poll_error(intruder, readers)
        assert error.code() == KafkaError.INCONSISTENT_GROUP_PROTOCOL
        intruder.close()
        # ... nor a consumer-protocol member the classic group.
        intruder = new_consumer(b, classic_group)
        intruder.subscribe([topic])
        error = poll_error(intruder, readers)
        assert "group id does not exist" in error.str()
        intruder.close()

        # Both groups still have their member and all partitions.
        assert classic.partitions() == modern.partitions() == list(range(PARTITIONS))
        assert committed(admin, classic_group, topic) == committed(
            admin, consumer_group, topic) == {p: 10 for p in range(PARTITIONS)}
    finally:
        for r in readers:
            r.consumer.close()


def poll_error(intruder, others):
    """The first error `intruder`'s poll reports, polling `others` meanwhile."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        message = intruder.poll(0.1)
        for r in others:
            r.poll(0)
        if message is not None and message.error():
            return message.error()
    raise AssertionError("the intruder was never refused")


def test_a_regex_subscription_takes_matching_topics_as_they_appear(shared_broker, admin):
    """The broker resolves the regex (SubscribedTopicRegex) against its
    topics, whole names only, and assigns a new matching topic's partitions
    without the client asking."""
    b = shared_broker
    prefix = unique_topic("re")
    for future in admin.create_topics([NewTopic(f"{prefix}-a", 2, 1),
                                       NewTopic(f"x{prefix}-a", 2, 1)]).values():
        future.result(timeout=30)
    group = unique_topic("g")
    c = new_consumer(b, group)
    reader = Reader(c, f"^{prefix}-.*")

    def owned():
        return sorted((tp.topic, tp.partition) for tp in c.assignment())

    try:
        poll_until([reader], lambda: owned() == [(f"{prefix}-a", 0), (f"{prefix}-a", 1)],
                   "the matching topic")
        for future in admin.create_topics([NewTopic(f"{prefix}-b", 3, 1)]).values():
            future.result(timeout=30)
        poll_until([reader], lambda: len(owned()) == 5, "the new matching topic too")
        assert {t for t, _ in owned()} == {f"{prefix}-a", f"{prefix}-b"}
        [member] = describe(admin, group).members
        assert {tp.topic for tp in member.assignment.topic_partitions} == {
            f"{prefix}-a", f"{prefix}-b"}
    finally:
        c.close()


def test_a_static_member_gets_its_partitions_back_when_it_returns(shared_broker, admin):
    """KIP-345 on the consumer protocol: a consumer with `group.instance.id`
    that closes leaves with epoch -2 and keeps its partitions (nobody else
    gets them) until it comes back under a new member id, within the
    session timeout."""
    b = shared_broker
    topic, group = create_topic(admin), unique_topic("g")
    static = Reader(new_consumer(b, group, **{"group.instance.id": "instance-1"}), topic)
    other = Reader(new_consumer(b, group, **{"group.instance.id": "instance-2"}), topic)
    try:
        poll_until([static, other], lambda: converged(admin, group, 2), "two static members")
        poll_until([static, other], lambda: static.partitions() and other.partitions(),
                   "both consumers assigned")
        kept, theirs = static.partitions(), other.partitions()
        old_id = static.consumer.memberid()
        static.consumer.close()
        described = describe(admin, group)
        by_instance = {m.group_instance_id: m for m in described.members}
        assert sorted(tp.partition for tp in
                      by_instance["instance-1"].assignment.topic_partitions) == kept
        for _ in range(20):  # heartbeats of the other member meanwhile
            other.poll(0.1)
        assert other.partitions() == theirs, "the leaving member's partitions stay put"

        back = Reader(new_consumer(b, group, **{"group.instance.id": "instance-1"}), topic)
        try:
            poll_until([back, other], lambda: back.partitions() == kept,
                       "the returning member holding its old partitions")
            assert back.consumer.memberid() != old_id
            assert other.partitions() == theirs
        finally:
            back.consumer.close()
    finally:
        other.consumer.close()


def test_new_partitions_and_deleted_topics_change_the_assignment(shared_broker, admin):
    """The target assignment follows the subscribed topics' metadata: a
    topic's new partitions are assigned, a deleted topic's are taken away."""
    from confluent_kafka.admin import NewPartitions

    b = shared_broker
    grows, goes = unique_topic("grows"), unique_topic("goes")
    for future in admin.create_topics([NewTopic(grows, 2, 1), NewTopic(goes, 2, 1)]).values():
        future.result(timeout=30)
    group = unique_topic("g")
    c = new_consumer(b, group)
    reader = Reader(c, grows, also=[goes], errors_ok=True)

    def assigned():
        members = describe(admin, group).members
        return sorted((tp.topic, tp.partition) for m in members
                      for tp in m.assignment.topic_partitions)

    try:
        poll_until([reader], lambda: len(assigned()) == 4, "both topics assigned")
        for future in admin.create_partitions([NewPartitions(grows, 4)]).values():
            future.result(timeout=30)
        poll_until([reader], lambda: [p for t, p in assigned() if t == grows] == [0, 1, 2, 3],
                   "the new partitions assigned")
        for future in admin.delete_topics([goes]).values():
            future.result(timeout=30)
        poll_until([reader], lambda: {t for t, _ in assigned()} == {grows},
                   "the deleted topic's partitions taken away")
        poll_until([reader], lambda: sorted(p for p in reader.partitions()) == [0, 1, 2, 3],
                   "the consumer holding just the grown topic")
    finally:
        c.close()


def test_members_rejoin_after_a_restart_and_resume_from_their_commits(make_broker):
    """Membership is kept in memory: after a restart the broker has the
    group's committed offsets and no members. The member's next heartbeat
    is UNKNOWN_MEMBER_ID, and so is a commit that comes first (Kafka, which
    persists membership, would take it); the consumer rejoins with epoch 0
    and goes on from its commits: nothing committed is read again, nothing
    is lost."""
    b = make_broker(extra_args=BROKER_ARGS)
    admin = confluent_admin(b)
    topic, group = create_topic(admin), unique_topic("g")
    produce(b, topic, 0, 60)
    reader = Reader(new_consumer(b, group), topic, refused_commits_ok=True)
    try:
        poll_until([reader], lambda: len(reader.seen) == 60, "the first 60 records")
        assert not reader.refused
        b.restart()
        produce(b, topic, 60, 60)
        admin = confluent_admin(b)
        poll_until([reader], lambda: committed(admin, group, topic) ==
                   {p: 20 for p in range(PARTITIONS)}, "every record committed")
        values = [v for (_, _, v) in reader.seen]
        assert set(values) == set(range(120))
        assert sorted(v for v in values if v < 60) == list(range(60)), "read once"
        assert set(reader.refused) <= {KafkaError.UNKNOWN_MEMBER_ID}
        assert converged(admin, group, 1)
    finally:
        reader.consumer.close()


# ---------------------------------------------------------------------------
# In a cluster


def test_consumer_group_reforms_on_the_broker_that_takes_the_offsets_partition(
        make_cluster):
    """The coordinator follows the group's `__consumer_offsets` leader: when
    it is killed, the member (whose membership the dead broker held in
    memory) is told UNKNOWN_MEMBER_ID by the new coordinator, rejoins, and
    resumes from the replicated commit."""
    from test_cluster_groups import (
        NODES, agreed_coordinator, consume_until, live_brokers_seen)

    extra = ["--set", "offsets.topic.num.partitions=6", *BROKER_ARGS]
    cluster = make_cluster(size=len(NODES), extra_args=extra).nodes
    brokers = list(cluster.values())
    wait_until(lambda: all(live_brokers_seen(b, 3) for b in brokers), timeout=60,
               what="all three brokers registered and unfenced")
    group = unique_topic("g")
    coordinator = wait_until(lambda: agreed_coordinator(brokers, group), timeout=60,
                             what="every broker naming one coordinator")
    survivors = [n for n in NODES if n != coordinator]
    topic = unique_topic("kip848")
    admin = confluent_admin(brokers[0])
    assignment = [[survivors[0], survivors[1], coordinator]]
    admin.create_topics([NewTopic(topic, num_partitions=1,
                                  replica_assignment=assignment)])[topic].result(30)

    def send(values):
        p = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in brokers
                                                    if b.is_running())})
        for value in values:
            p.produce(topic, value=value.encode(), partition=0)
        assert p.flush(60) == 0

    before = [f"before-{i}" for i in range(10)]
    send(before)
    c = Consumer({
        "bootstrap.servers": ",".join(b.bootstrap for b in brokers),
        "group.id": group, "group.protocol": "consumer",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "topic.metadata.refresh.interval.ms": 1000,
    })
    try:
        c.subscribe([topic])
        consume_until(c, before)
        c.commit(asynchronous=False)
        described = describe(admin, group)
        assert described.type == ConsumerGroupType.CONSUMER
        assert described.coordinator.id == coordinator

        cluster[coordinator].kill()
        live = [b for b in brokers if b.is_running()]
        moved = wait_until(
            lambda: next((n for n in [agreed_coordinator(live, group)] if n in survivors), None),
            timeout=60, what="the survivors naming a new coordinator")
        admin = confluent_admin(live[0])
        again = []

        def reformed():
            message = c.poll(0.2)
            if message is not None and not message.error():
                again.append(message.value().decode())
            d = describe(admin, group)
            return (d.coordinator.id == moved and d.type == ConsumerGroupType.CONSUMER
                    and d.state == ConsumerGroupState.STABLE and len(d.members) == 1
                    and member_partitions(d) == {c.memberid(): [0]})

        wait_until(reformed, timeout=90, interval=0.1,
                   what="the group stable on the new coordinator")
        after = [f"after-{i}" for i in range(5)]
        send(after)
        again += consume_until(c, after)
        c.commit(asynchronous=False)
        assert c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 15
        assert not [v for v in again if v.startswith("before-")], again
    finally:
        c.close()
