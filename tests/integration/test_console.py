"""`sluice console` (issue 18) in a real headless browser.

Debian's chromium (installed by tests/run.sh) driven by Playwright for Python
(launched with `executable_path`, since Playwright's own browser download is
not reachable here), against a real `sluice` broker, with records and groups
made by confluent-kafka. The main pages' screenshots go to a temporary
directory; with SLUICE_UPDATE_SCREENSHOTS=1 they replace docs/console/*.png,
which the README's "Web console" section shows (so a test run leaves the
checkout as it was).
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import _binary, free_port, unique_topic, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHOTS = (
    os.path.join(ROOT, "docs", "console")
    if os.environ.get("SLUICE_UPDATE_SCREENSHOTS") == "1"
    else os.path.join(tempfile.gettempdir(), "sluice-console-screenshots")
)
XSS = "<script>alert(1)</script>"


class Console:
    """A running `sluice console` process."""

    def __init__(self, bootstrap, *extra, command=None, port=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = command or [_binary(), "console", "--bootstrap-server", bootstrap,
                           "--listen", f"127.0.0.1:{self.port}", "--request-timeout-ms", "5000",
                           *extra]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_until(self._answers, timeout=20, what="the console to answer")

    def _answers(self):
        assert self.proc.poll() is None, self.proc.stdout.read().decode()
        with urllib.request.urlopen(self.url + "/static/console.css", timeout=2) as response:
            return response.status == 200

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def post(url, fields, origin):
    """A hand-made form POST; the answer's (status, body), redirects not followed."""
    data = urllib.parse.urlencode(fields).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if origin:
        headers["Origin"] = origin

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed (tests/run.sh installs Debian's chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A page that records every JavaScript dialog and page error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.dialogs, page.errors = [], []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    context.close()


@pytest.fixture(scope="module")
def console(shared_broker):
    c = Console(shared_broker.bootstrap)
    yield c
    c.stop()


def producer(broker):
    from confluent_kafka import Producer
    return Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})


def group_consumer(broker, group):
    from confluent_kafka import Consumer
    return Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "client.id": "console-test-client"})


def consume_and_commit(consumer, count):
    """Reads `count` records, then commits what was read."""
    got = []
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        for message in consumer.consume(num_messages=count - len(got), timeout=1.0):
            assert message.error() is None, message.error()
            got.append(message)
    assert len(got) == count, f"consumed {len(got)} of {count}"
    consumer.commit(asynchronous=False)  # every partition's position
    return got


def shot(page, name):
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def test_every_page_opens_and_is_shot(shared_broker, console, page):
    topic = unique_topic("orders")
    subprocess.run([_binary(), "topics", "create", "--bootstrap-server", shared_broker.bootstrap,
                    "--topic", topic, "--partitions", "3", "--config", "retention.ms=86400000"],
                   check=True)
    p = producer(shared_broker)
    orders = iter(range(1_000_000))

    def produce_orders(count):
        for _ in range(count):
            i = next(orders)
            value = f'{{"order": {i}, "item": "book", "qty": {i % 4 + 1}}}'
            p.produce(topic, key=f"customer-{i % 5}", value=value, headers=[("source", b"web")])
        p.poll(0)

    produce_orders(30)
    assert p.flush(10) == 0
    group = f"billing-{topic}"
    consumer = group_consumer(shared_broker, group)
    consumer.subscribe([topic])
    try:
        consume_and_commit(consumer, 30)
        # Traffic over three throughput samples (5 s apart) for the charts.
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            produce_orders(50)
            time.sleep(0.1)
        assert p.flush(10) == 0
        response = page.goto(console.url + "/")
        assert response.status == 200
        assert page.locator("#brokers tbody tr").count() == 1
        assert page.locator("#brokers").inner_text().count(shared_broker.bootstrap) == 1
        int(page.locator("#under-replicated").inner_text())
        page.wait_for_selector(".chart svg polyline")
        assert "records/s" in page.locator(".rates").first.inner_text()
        shot(page, "cluster")

        page.goto(console.url + "/topics")
        row = page.locator("#topics tr", has_text=topic)
        assert re.search(r"\b3\s+1\s+\d+\s+\d", row.inner_text()), row.inner_text()
        assert "retention.ms=86400000" in row.inner_text()
        shot(page, "topics")

        with page.expect_navigation():
            page.click(f"text={topic}")
        assert page.locator("#partitions tbody tr").count() == 3
        assert page.locator("#configs", has_text="retention.ms").count() == 1
        assert page.locator("#topic-groups", has_text=group).count() == 1
        shot(page, "topic")

        with page.expect_navigation():
            page.click("text=Browse messages")
        records = page.locator("#records tbody tr")
        assert records.count() == 20
        assert page.locator("pre.json").count() == 20  # JSON values pretty-printed
        first = page.locator("pre.json").first.inner_text()
        assert first.startswith('{\n  "order": '), first  # in the record's own order
        assert "source" in page.locator("#records").inner_text()
        shot(page, "messages")

        page.goto(console.url + "/groups")
        with page.expect_navigation():
            page.click(f"#groups >> text={group}")
        assert page.locator("#state").inner_text() == "Stable"
        assert "console-test-client" in page.locator("#members").inner_text()
        assert int(page.locator("#total-lag").inner_text()) > 0  # produced after the commit
        shot(page, "group")
    finally:
        consumer.close()
    assert page.dialogs == [] and page.errors == []


def create_with_form(console, page, topic, partitions, configs=None):
    """Creates `topic` through the Topics page's form."""
    page.goto(console.url + "/topics")
    page.fill("#create-topic input[name=name]", topic)
    page.fill("#create-topic input[name=partitions]", str(partitions))
    if configs is not None:
        page.fill("#create-topic textarea[name=configs]", configs)
    with page.expect_navigation():
        page.click("#create-topic button")


def test_create_topic_with_the_form(console, page):
    topic = unique_topic("made-by-form")
    create_with_form(console, page, topic, 4, "cleanup.policy=compact")
    assert f"Created topic '{topic}'." in page.locator(".notice").inner_text()
    row = page.locator("#topics tr", has_text=topic)
    assert row.count() == 1
    assert "cleanup.policy=compact" in row.inner_text()
    assert row.locator("td").nth(1).inner_text() == "4"


def test_produce_with_the_form_and_find_it(console, page):
    topic = unique_topic("produced")
    create_with_form(console, page, topic, 2)
    page.goto(f"{console.url}/messages?topic={topic}")
    page.fill("#produce input[name=partition]", "1")
    page.fill("#produce input[name=key]", "the-key")
    page.fill("#produce textarea[name=value]", "hello from the form")
    page.fill("#produce textarea[name=headers]", "trace=abc123")
    with page.expect_navigation():
        page.click("#produce button")
    assert f"Produced a record to {topic}-1." in page.locator(".notice").inner_text()
    row = page.locator("#records tbody tr")
    assert row.count() == 1
    text = row.inner_text()
    for expected in ("the-key", "hello from the form", "trace", "abc123"):
        assert expected in text, text
    assert row.locator("td").nth(0).inner_text() == "1"


def test_group_lag_falls_then_reset_and_delete(shared_broker, console, page):
    topic, group = unique_topic("lag"), unique_topic("lag-group")
    p = producer(shared_broker)
    for i in range(100):
        p.produce(topic, value=f"v{i}".encode(), partition=0)
    assert p.flush(10) == 0
    consumer = group_consumer(shared_broker, group)
    consumer.subscribe([topic])
    group_page = f"{console.url}/group?id={group}"
    try:
        consume_and_commit(consumer, 40)
        page.goto(group_page)
        assert page.locator("#total-lag").inner_text() == "60"
        assert page.locator("#reset-offsets").count() == 0  # active members: no reset
        consume_and_commit(consumer, 60)
        page.goto(group_page)
        assert page.locator("#total-lag").inner_text() == "0"
    finally:
        consumer.close()
    wait_until(lambda: page.goto(group_page) and page.locator("#state").inner_text() == "Empty",
               timeout=30, what="the group to empty")
    page.select_option("#reset-offsets select[name=topic]", topic)
    page.fill("#reset-offsets input[name=partitions]", "7")  # no such partition
    page.select_option("#reset-offsets select[name=target]", "earliest")
    with page.expect_navigation():
        page.click("#reset-offsets button")
    assert "has no partition 7" in page.locator(".error").inner_text()
    page.goto(group_page)
    page.select_option("#reset-offsets select[name=topic]", topic)
    page.fill("#reset-offsets input[name=partitions]", "0")
    page.select_option("#reset-offsets select[name=target]", "offset")
    page.fill("#reset-offsets input[name=value]", "25")
    with page.expect_navigation():
        page.click("#reset-offsets button")
    assert "Reset 1 offset(s)" in page.locator(".notice").inner_text()
    assert page.locator("#total-lag").inner_text() == "75"
    page.fill("#delete-group input[name=confirm]", group)
    with page.expect_navigation():
        page.click("#delete-group button")
    assert f"Deleted consumer group '{group}'." in page.locator(".notice").inner_text()
    assert page.locator("#groups", has_text=group).count() == 0


def test_hostile_text_renders_as_text(shared_broker, console, page):
    topic = unique_topic("xss")
    p = producer(shared_broker)
    p.produce(topic, key=XSS, value=XSS, headers=[(XSS, XSS.encode())])
    assert p.flush(10) == 0
    group = '<img src=x onerror="alert(2)">'
    from confluent_kafka import Consumer, TopicPartition
    committer = Consumer({"bootstrap.servers": shared_broker.bootstrap, "group.id": group})
    committer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    committer.close()

    page.goto(f"{console.url}/messages?topic={topic}")
    cells = page.locator("#records tbody tr td")
    assert cells.nth(3).inner_text() == XSS  # key
    assert cells.nth(4).inner_text().split() == [f"{XSS}:", XSS]  # header name: value
    assert XSS in cells.nth(5).inner_text()  # value
    assert page.locator("#records script").count() == 0
    page.goto(console.url + "/groups")
    assert page.locator("#groups", has_text=group).count() == 1
    assert page.locator("#groups img").count() == 0
    with page.expect_navigation():
        page.click(f"#groups >> text={group}")
    assert page.locator("h1").inner_text() == f"Consumer group {group}"
    page.goto(f"{console.url}/topic?name={topic}")
    assert page.locator("#topic-groups", has_text=group).count() == 1
    assert page.dialogs == [], page.dialogs


def test_large_values_are_cut_and_downloadable(shared_broker, console, page):
    topic = unique_topic("large")
    big = b"x" * (900 * 1024)  # under the broker's 1 MiB message.max.bytes
    p = producer(shared_broker)
    p.produce(topic, value=big)
    assert p.flush(10) == 0
    page.goto(f"{console.url}/messages?topic={topic}")
    value = page.locator("pre.value").inner_text()
    assert 0 < len(value) <= 64 * 1024
    link = page.locator("a.download")
    assert link.count() == 1
    href = link.get_attribute("href")
    with urllib.request.urlopen(console.url + href, timeout=30) as response:
        assert response.headers["Content-Disposition"].startswith("attachment")
        assert response.read() == big


def test_changes_need_same_origin(console):
    topic = unique_topic("forged")
    status, body = post(console.url + "/topics/create", {"name": topic}, origin=None)
    assert status == 403 and "Origin or Referer" in body
    status, _ = post(console.url + "/topics/create", {"name": topic},
                     origin="http://evil.example")
    assert status == 403
    status, _ = post(console.url + "/topics/create", {"name": topic}, origin=console.url)
    assert status == 303


def test_read_only_refuses_changes(shared_broker, page):
    console = Console(shared_broker.bootstrap, "--read-only")
    try:
        page.goto(console.url + "/topics")
        assert "read-only" in page.locator("header").inner_text()
        assert page.locator("form[method=post]").count() == 0
        topic = unique_topic("refused")
        status, body = post(console.url + "/topics/create", {"name": topic}, origin=console.url)
        assert status == 403 and "read-only" in body
        page.goto(console.url + "/topics")
        assert page.locator("#topics", has_text=topic).count() == 0
    finally:
        console.stop()


def test_broker_down_is_an_error_message(page, make_broker):
    nobody = free_port()  # nothing listens here
    console = Console(f"127.0.0.1:{nobody}")
    try:
        response = page.goto(console.url + "/topics")
        assert response.status == 502
        assert "Cluster error" in page.locator("h1").inner_text()
        assert f"127.0.0.1:{nobody}" in page.locator(".error").inner_text()
        assert page.locator("nav").count() == 1  # the page, not a blank one
    finally:
        console.stop()
    # A broker that goes away under a running console.
    b = make_broker()
    console = Console(b.bootstrap)
    try:
        assert page.goto(console.url + "/").status == 200
        b.stop()
        response = page.goto(console.url + "/topics")
        assert response.status == 502
        assert page.locator(".error").inner_text().strip() != ""
        b.start()
        wait_until(lambda: page.goto(console.url + "/topics").status == 200, timeout=30,
                   what="the console to find the broker again")
    finally:
        console.stop()


def readme_console_block():
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("\n## Web console\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 1, blocks
    return blocks[0]


def test_readme_command_runs_as_written(shared_broker, page):
    """The README's console commands, with the broker's and a free port."""
    lines = [line for line in readme_console_block().splitlines() if line.strip()]
    assert lines and all(line.startswith("sluice console ") for line in lines)
    for line in lines:
        port = free_port()
        line = line.replace("127.0.0.1:9092", shared_broker.bootstrap)
        line = line.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        argv = [_binary()] + line.split()[1:]
        console = Console(shared_broker.bootstrap, command=argv, port=port)
        try:
            assert page.goto(console.url + "/").status == 200
            assert page.locator("#brokers tbody tr").count() == 1
        finally:
            console.stop()


def test_throughput_from_metrics_url(make_broker):
    """--metrics-url: the charts' rates come from the broker's Prometheus text."""
    metrics_port = free_port()
    b = make_broker(extra_args=["--metrics", f"127.0.0.1:{metrics_port}"])
    topic = unique_topic("metered")
    p = producer(b)
    p.produce(topic, value=b"first")
    assert p.flush(10) == 0
    console = Console(b.bootstrap, "--metrics-url", f"http://127.0.0.1:{metrics_port}/metrics")
    try:
        def rates():
            for i in range(200):
                p.produce(topic, value=b"x")
            p.flush(10)
            with urllib.request.urlopen(console.url + "/api/throughput", timeout=10) as response:
                data = json.load(response)
            assert data["error"] is None, data["error"]
            series = {s["name"]: s["points"] for s in data["topics"]}
            return series.get(topic) and max(rate for _, rate in series[topic]) > 0
        wait_until(rates, timeout=30, interval=1, what="a rate from the metrics endpoint")
        with urllib.request.urlopen(console.url + "/", timeout=10) as response:
            assert "/metrics" in response.read().decode()
    finally:
        console.stop()
    # A metrics endpoint that does not answer: said on the cluster page.
    console = Console(b.bootstrap, "--metrics-url", f"http://127.0.0.1:{free_port()}/metrics")
    try:
        def said():
            with urllib.request.urlopen(console.url + "/", timeout=10) as response:
                return "the last sample failed" in response.read().decode()
        wait_until(said, timeout=20, interval=1, what="the sampling error on the page")
    finally:
        console.stop()


def test_topic_changes_with_the_forms(console, page):
    topic = unique_topic("changed")
    create_with_form(console, page, topic, 1)
    page.goto(f"{console.url}/topic?name={topic}")
    page.fill("#set-config input[name=key]", "retention.ms")
    page.fill("#set-config input[name=value]", "3600000")
    with page.expect_navigation():
        page.click("#set-config button")
    override = page.locator("#configs tr.override")
    assert override.count() == 1 and "3600000" in override.inner_text()
    with page.expect_navigation():
        override.locator("button").click()
    assert "Removed the override of retention.ms." in page.locator(".notice").inner_text()
    assert page.locator("#configs tr.override").count() == 0
    page.fill("#add-partitions input[name=count]", "3")
    with page.expect_navigation():
        page.click("#add-partitions button")
    assert page.locator("#partitions tbody tr").count() == 3
    page.fill("#delete-topic input[name=confirm]", "not-the-name")
    with page.expect_navigation():
        page.click("#delete-topic button")
    assert "Type the topic's name" in page.locator(".error").inner_text()
    page.goto(f"{console.url}/topic?name={topic}")
    page.fill("#delete-topic input[name=confirm]", topic)
    with page.expect_navigation():
        page.click("#delete-topic button")
    assert f"Deleted topic '{topic}'." in page.locator(".notice").inner_text()
    assert page.locator("#topics", has_text=topic).count() == 0
