"""deploy/: the container image, compose, Kubernetes and systemd files (issue 19).

Three layers, from what runs everywhere to what needs a container engine:

1. Offline validation of the files as written, with tools that tests/run.sh
   installs in .venv-deploy (each ships its schemas or binary in its wheel):
   - Kubernetes: `kubernetes-validate --strict` (the Kubernetes JSON schemas)
     on the output of `kubectl kustomize deploy/kubernetes` when kubectl is on
     PATH, else on the plain files (the test says which in its output);
   - compose: `docker compose config -q` when the compose plugin answers,
     else check-jsonschema with its vendored compose-spec schema;
   - the systemd unit: `systemd-analyze verify` (ExecStart pointed at
     $SLUICE_BIN in a temporary copy: verify checks the binary exists);
   - the Dockerfile: hadolint, and a parse of its stages.
   Each validator is first shown a broken copy, which it must reject, so a
   validator that accepts anything cannot pass the test.
2. The entrypoint logic without a container: the real binary, configured
   ONLY by the environment variables the compose file gives each broker
   (addresses moved to 127.0.0.x and free ports, the data dir to a temporary
   one), three of them as a cluster. /health and /ready over HTTP, the
   compose healthcheck command itself, `kcat -L` through each broker's
   EXTERNAL and INTERNAL listener (each answers with its own advertised
   addresses), kcat through every broker's EXTERNAL listener, SIGTERM
   within the grace period; a bad variable stops start-up naming it; the
   Kubernetes ConfigMap's file passes the broker's own config validation.
3. The README's Deploying section: every block is either run or listed in
   NOT_RUN with the reason. With a container engine (`docker info` succeeds
   and `docker compose` exists) the Docker and Compose blocks run as
   written: build the image, `docker compose up`, kcat through the brokers,
   stop one. Skipped otherwise, saying so; it has never run on our machines.
"""

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

import json

import pytest

from conftest import _binary, free_port, unique_topic, wait_until
from test_readme import commands, readme_sh_blocks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
COMPOSE_FILE = os.path.join(DEPLOY, "compose", "docker-compose.yml")
KUSTOMIZE_DIR = os.path.join(DEPLOY, "kubernetes")
UNIT_FILE = os.path.join(DEPLOY, "systemd", "sluice.service")
DOCKERFILE = os.path.join(ROOT, "Dockerfile")
DEPLOY_VENV_BIN = os.path.join(ROOT, ".venv-deploy", "bin")
BROKERS = ("broker-1", "broker-2", "broker-3")
# compose's stop_grace_period and Kubernetes' terminationGracePeriodSeconds.
GRACE_PERIOD_S = 30
CLUSTER_READY_S = 60


def deploy_tool(name):
    path = os.path.join(DEPLOY_VENV_BIN, name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: tests/run.sh installs it (.venv-deploy)", pytrace=False)
    return path


def run(cmd, timeout=120, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


def load_yaml(path=None, text=None):
    """Every document of a YAML file or text. PyYAML is read in .venv-deploy
    (kubernetes-validate needs it), not added to the clients' .venv."""
    code = "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))"
    if text is None:
        with open(path) as f:
            text = f.read()
    proc = subprocess.run([deploy_tool("python"), "-c", code], input=text, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in json.loads(proc.stdout) if doc]


def load_compose():
    return load_yaml(COMPOSE_FILE)[0]  # safe_load resolves the x-broker anchors and << merges


def has_docker_compose():
    return shutil.which("docker") is not None and run(["docker", "compose", "version"]).returncode == 0


# ---------------------------------------------------------------------------
# 1. Offline validation.


def render_kubernetes(tmp_path):
    """The manifests as `kubectl apply -k` would send them, or the plain files."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        proc = run([kubectl, "kustomize", KUSTOMIZE_DIR])
        assert proc.returncode == 0, proc.stderr
        out = tmp_path / "rendered.yaml"
        out.write_text(proc.stdout)
        print("validated: kubectl kustomize output")
        return [str(out)], load_yaml(text=proc.stdout)
    print("kubectl not found: validated the plain files, not rendered through kustomize")
    files = sorted(os.path.join(KUSTOMIZE_DIR, name) for name in os.listdir(KUSTOMIZE_DIR)
                   if name.endswith(".yaml") and name != "kustomization.yaml")
    docs = [doc for path in files for doc in load_yaml(path)]
    return files, docs


def test_kubernetes_manifests_validate_against_the_schemas(tmp_path):
    validate = deploy_tool("kubernetes-validate")
    broken = tmp_path / "broken.yaml"
    broken.write_text(open(os.path.join(KUSTOMIZE_DIR, "poddisruptionbudget.yaml")).read()
                      .replace("maxUnavailable", "maxUnavailabel"))
    rejected = run([validate, "--strict", str(broken)])
    assert rejected.returncode != 0, "the validator accepted a misspelt field"

    files, docs = render_kubernetes(tmp_path)
    proc = run([validate, "--strict", *files])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    assert {("StatefulSet", "sluice"), ("Service", "sluice-headless"), ("Service", "sluice"),
            ("PodDisruptionBudget", "sluice"), ("ConfigMap", "sluice-config"),
            ("Deployment", "sluice-console"), ("Service", "sluice-console")} <= kinds

    by_kind = {doc["kind"] + "/" + doc["metadata"]["name"]: doc for doc in docs}
    statefulset = by_kind["StatefulSet/sluice"]["spec"]
    assert statefulset["podManagementPolicy"] == "Parallel"
    assert statefulset["serviceName"] == "sluice-headless"
    assert statefulset["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    container = statefulset["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    resources = container["resources"]
    assert resources["requests"] == resources["limits"], "Guaranteed QoS needs requests == limits"
    assert re.fullmatch(r"\d+", str(resources["limits"]["cpu"])), "whole CPUs"
    assert by_kind["Service/sluice-headless"]["spec"]["clusterIP"] == "None"
    assert by_kind["Service/sluice-headless"]["spec"]["publishNotReadyAddresses"] is True
    assert by_kind["PodDisruptionBudget/sluice"]["spec"]["maxUnavailable"] == 1
    console = by_kind["Deployment/sluice-console"]["spec"]["template"]["spec"]["containers"][0]
    assert console["args"][:2] == ["console", "--bootstrap-server"] and "--listen" in console["args"]


def test_kubernetes_config_file_passes_the_brokers_validation(tmp_path):
    """The ConfigMap's sluice.toml and the pod's environment are accepted by
    the broker's config validation: start-up gets as far as resolving the
    quorum voters' per-pod names, which only exist inside the cluster."""
    docs = load_yaml(os.path.join(KUSTOMIZE_DIR, "configmap.yaml"))
    config = tmp_path / "sluice.toml"
    config.write_text(docs[0]["data"]["sluice.toml"])
    statefulset = load_yaml(os.path.join(KUSTOMIZE_DIR, "statefulset.yaml"))[0]
    pod_env = statefulset["spec"]["template"]["spec"]["containers"][0]["env"]
    advertised = next(var["value"] for var in pod_env if var["name"] == "SLUICE_SET_ADVERTISED_LISTENERS")
    advertised = advertised.replace("$(POD_NAME)", "sluice-1").replace("$(POD_NAMESPACE)", "sluice")
    assert advertised == "INTERNAL://sluice-1.sluice-headless.sluice.svc:9092"
    env = dict(os.environ, SLUICE_NODE_ID="1", SLUICE_SET_ADVERTISED_LISTENERS=advertised)
    # The file's INTERNAL listener on a free local port instead of 0.0.0.0:9092.
    proc = run([_binary(), "--config", str(config), "--data-dir", str(tmp_path / "data"),
                "--set", f"listeners=INTERNAL://127.0.0.1:{free_port()}",
                "--metrics", f"127.0.0.1:{free_port()}",
                "--controller-listen", f"127.0.0.1:{free_port()}"], env=env, cwd=tmp_path, timeout=30)
    # Exit 1 (not 2, a config error) and promptly: a shard that cannot start
    # stops the others, so a supervisor can restart the process.
    assert proc.returncode == 1, proc.stderr
    assert "config error" not in proc.stderr, proc.stderr
    assert "cannot resolve sluice-0.sluice-headless:9093" in proc.stderr, proc.stderr


def test_compose_file_validates(tmp_path):
    if has_docker_compose():
        check = lambda path: run(["docker", "compose", "-f", str(path), "config", "-q"])  # noqa: E731
        print("validated with docker compose config")
    else:
        schema_check = deploy_tool("check-jsonschema")
        check = lambda path: run([schema_check, "--builtin-schema", "vendor.compose-spec", str(path)])  # noqa: E731
        print("docker compose not installed: validated against the compose-spec JSON schema "
              "(check-jsonschema's vendored copy)")
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(open(COMPOSE_FILE).read().replace("stop_grace_period:", "stop_grace_periode:"))
    assert check(broken).returncode != 0, "the validator accepted an unknown service key"
    proc = check(COMPOSE_FILE)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    compose = load_compose()
    services = compose["services"]
    assert set(services) == {*BROKERS, "console"}
    for number, name in enumerate(BROKERS, start=1):
        service = services[name]
        env = service["environment"]
        port = 19090 + number
        assert env["SLUICE_NODE_ID"] == str(number)
        assert "SLUICE_LISTEN" not in env and "SLUICE_ADVERTISE" not in env
        assert env["SLUICE_SET_LISTENERS"] == f"INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:{port}"
        assert env["SLUICE_SET_ADVERTISED_LISTENERS"] == \
            f"INTERNAL://{name}:9092,EXTERNAL://localhost:{port}", "EXTERNAL port == published port"
        assert env["SLUICE_SET_LISTENER_SECURITY_PROTOCOL_MAP"] == "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT"
        assert env["SLUICE_SET_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
        assert service["ports"] == [f"{port}:{port}"]
        assert service["ulimits"]["memlock"] == {"soft": -1, "hard": -1}
        assert "/ready" in " ".join(service["healthcheck"]["test"])
        assert service["volumes"] == [f"{name}-data:/var/lib/sluice/data"]
    assert set(compose["volumes"]) == {f"{name}-data" for name in BROKERS}
    command = services["console"]["command"]
    assert command[:2] == ["console", "--bootstrap-server"] and "--listen" in command
    assert command[2] == ",".join(f"{name}:9092" for name in BROKERS), "the INTERNAL listeners"


def test_systemd_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit was not verified")
    text = open(UNIT_FILE).read()
    assert "LimitMEMLOCK=infinity" in text and "LimitNOFILE=" in text
    assert "Restart=on-failure" in text and "User=sluice" in text
    assert not re.search(r"^SystemCallFilter=", text, re.M), "would block io_uring"
    broken = tmp_path / "broken.service"
    broken.write_text(text.replace("Restart=on-failure", "Restart=sometimes"))
    unit = tmp_path / "sluice.service"
    # verify checks that ExecStart's binary exists: point it at the one built.
    unit.write_text(text.replace("/usr/local/bin/sluice", _binary()))
    bad = run([analyze, "verify", str(broken)])
    assert bad.returncode != 0 or "Restart" in bad.stderr, "verify accepted Restart=sometimes"
    proc = run([analyze, "verify", str(unit)])
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def test_dockerfile_lints_and_has_the_expected_stages(tmp_path):
    hadolint = deploy_tool("hadolint")
    broken = tmp_path / "Dockerfile"
    broken.write_text(open(DOCKERFILE).read().replace('ENTRYPOINT ["sluice"]', "ENTRYPOINT sluice"))
    assert run([hadolint, str(broken)]).returncode != 0, "hadolint accepted a shell-form ENTRYPOINT"
    proc = run([hadolint, DOCKERFILE])
    assert proc.returncode == 0, proc.stdout + proc.stderr

    lines = [line.strip() for line in open(DOCKERFILE) if line.strip() and not line.startswith("#")]
    rust_version = re.search(r'^rust-version = "([\d.]+)"', open(os.path.join(ROOT, "Cargo.toml")).read(), re.M)
    assert f"ARG RUST_VERSION={rust_version.group(1)}" in lines
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms == ["FROM rust:${RUST_VERSION}-bookworm AS build", "FROM debian:bookworm-slim"]
    final = lines[lines.index(froms[1]):]
    user = next(line for line in final if line.startswith("USER "))
    assert not user.split()[1].startswith(("0", "root")), user
    assert 'VOLUME ["/var/lib/sluice/data"]' in final
    assert 'ENTRYPOINT ["sluice"]' in final
    ignored = open(os.path.join(ROOT, ".dockerignore")).read().split()
    assert "target/" in ignored and ".git/" in ignored


# ---------------------------------------------------------------------------
# 2. The entrypoint logic: the compose environment on 127.0.0.x.


def http_get(port, path):
    """(status, body) of GET path on 127.0.0.1:port; (None, error) if refused."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return None, str(error)


class EnvBroker:
    """One compose broker as a local process: the compose environment with
    its addresses moved to local ones, no flags at all. `bootstrap` is the
    HOST:PORT clients start from (default: SLUICE_LISTEN)."""

    def __init__(self, name, env, workdir, wrap=(), bootstrap=None):
        self.name, self.env, self.workdir, self.wrap = name, env, workdir, list(wrap)
        self.bootstrap = bootstrap or env["SLUICE_LISTEN"]
        self.metrics_port = int(env["SLUICE_METRICS"].rsplit(":", 1)[1])
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.proc = None

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        env = {key: value for key, value in os.environ.items() if not key.startswith("SLUICE_")}
        env.update(self.env)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*self.wrap, _binary()], env=env, cwd=self.workdir,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=GRACE_PERIOD_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def local_compose_env(tmp_path):
    """Each broker's compose environment, addresses moved to local ones:
    broker-N (compose's DNS name, the INTERNAL listener) becomes 127.0.0.1N,
    the EXTERNAL listener binds 127.0.0.1 (the host's side of the published
    port) and still advertises localhost, every port a free one."""
    services = load_compose()["services"]
    ports = {name: (free_port(), free_port(), free_port(), free_port()) for name in BROKERS}
    voters = {services[name]["environment"]["SLUICE_CONTROLLER_QUORUM_VOTERS"] for name in BROKERS}
    assert len(voters) == 1, "every broker names the same voters"
    node_ids = [int(entry.split("@")[0]) for entry in voters.pop().split(",")]
    assert node_ids == [1, 2, 3]
    local_voters = ",".join(f"{node_id}@localhost:{ports[BROKERS[node_id - 1]][1]}" for node_id in node_ids)
    brokers = []
    for number, name in enumerate(BROKERS, start=1):
        env = {key: str(value) for key, value in services[name]["environment"].items()}
        kafka, controller, metrics, external = ports[name]
        internal_ip = f"127.0.0.{10 + number}"

        def moved(key, *pairs):
            value = env[key]
            for old, new in pairs:
                assert old in value, (key, old, value)  # the compose file changed: update here
                value = value.replace(old, new)
            return value

        env["SLUICE_SET_LISTENERS"] = moved(
            "SLUICE_SET_LISTENERS", ("0.0.0.0:9092", f"{internal_ip}:{kafka}"),
            (f"0.0.0.0:{19090 + number}", f"127.0.0.1:{external}"))
        env["SLUICE_SET_ADVERTISED_LISTENERS"] = moved(
            "SLUICE_SET_ADVERTISED_LISTENERS", (f"{name}:9092", f"{internal_ip}:{kafka}"),
            (f"localhost:{19090 + number}", f"localhost:{external}"))
        env["SLUICE_CONTROLLER_LISTEN"] = f"127.0.0.1:{controller}"
        env["SLUICE_METRICS"] = f"127.0.0.1:{metrics}"
        env["SLUICE_CONTROLLER_QUORUM_VOTERS"] = local_voters
        env["SLUICE_DATA_DIR"] = "data"  # relative: resolved against the working dir
        # Faster fencing than Kafka's 9 s, so the test is short.
        env["SLUICE_SET_BROKER_SESSION_TIMEOUT_MS"] = "3000"
        env["SLUICE_SET_BROKER_HEARTBEAT_INTERVAL_MS"] = "500"
        # Clients on the host bootstrap from the EXTERNAL listener.
        broker = EnvBroker(name, env, str(tmp_path / name), bootstrap=f"localhost:{external}")
        broker.node_id, broker.internal = number, f"{internal_ip}:{kafka}"
        brokers.append(broker)
    return brokers


def healthcheck_command(metrics_port):
    """The compose healthcheck, run as compose runs it, on the local port."""
    test = load_compose()["services"]["broker-1"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    return [part.replace("/9100", f"/{metrics_port}") for part in test[1:]]


def kcat_path():
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.fail("kcat is not installed (tests/run.sh installs it with apt-get)", pytrace=False)
    return kcat


def advertised_brokers(bootstrap):
    """{node id: HOST:PORT} from `kcat -L` bootstrapped from `bootstrap`."""
    proc = run([kcat_path(), "-L", "-b", bootstrap, "-m", "10"], timeout=60)
    assert proc.returncode == 0, proc.stderr
    return {int(node): address for node, address in re.findall(r"broker (\d+) at (\S+)", proc.stdout)}


def kcat_through(broker, topic, values):
    kcat = kcat_path()
    bootstrap = broker.bootstrap
    produce = subprocess.run([kcat, "-P", "-b", bootstrap, "-t", topic, "-X", "acks=all"],
                             input="\n".join(values) + "\n", capture_output=True, text=True, timeout=60)
    assert produce.returncode == 0, produce.stderr
    consume = subprocess.run([kcat, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e",
                              "-c", str(len(values)), "-q"], capture_output=True, text=True, timeout=60)
    assert consume.returncode == 0, consume.stderr
    return consume.stdout.split()


@pytest.fixture
def env_cluster(tmp_path):
    brokers = local_compose_env(tmp_path)
    yield brokers
    for broker in brokers:
        broker.stop()


def test_compose_environment_forms_a_cluster_with_probes_and_stops_on_sigterm(env_cluster):
    first, *others = env_cluster
    first.start()
    wait_until(lambda: http_get(first.metrics_port, "/health")[0] == 200, timeout=20,
               what="/health 200 on the first broker")
    # One voter of three: no quorum, so not ready, and the reason says why.
    status, body = http_get(first.metrics_port, "/ready")
    assert status == 503 and "not joined to the metadata quorum" in body, (status, body)
    assert run(healthcheck_command(first.metrics_port)).returncode != 0
    for broker in others:
        broker.start()
    for broker in env_cluster:
        wait_until(lambda b=broker: http_get(b.metrics_port, "/ready")[0] == 200,
                   timeout=CLUSTER_READY_S, what=f"/ready 200 on {broker.name}")
        status, body = http_get(broker.metrics_port, "/ready")
        assert "registered and unfenced" in body, body
        assert run(healthcheck_command(broker.metrics_port)).returncode == 0
    assert "environment variable" not in first.log_text()

    # Each listener's clients are told that listener's addresses: the host's
    # (EXTERNAL, localhost:<published port>) or the containers' (INTERNAL,
    # broker-N here moved to 127.0.0.1N).
    external = {broker.node_id: broker.bootstrap for broker in env_cluster}
    internal = {broker.node_id: broker.internal for broker in env_cluster}
    assert all(address.startswith("localhost:") for address in external.values())
    for broker in env_cluster:
        assert advertised_brokers(broker.bootstrap) == external
        assert advertised_brokers(broker.internal) == internal

    # Produce and consume through every broker; the compose env makes RF 3.
    for broker in env_cluster:
        topic = unique_topic(f"deploy-{broker.name}")
        values = [f"{broker.name}-{i}" for i in range(5)]
        got = wait_until(lambda: kcat_through(broker, topic, values) == values, timeout=30,
                         what=f"kcat round trip through {broker.name}")
        assert got

    # Still ready, now with the topics' replicas open on every broker.
    for broker in env_cluster:
        status, body = http_get(broker.metrics_port, "/ready")
        assert status == 200, body
        opened = int(re.search(r"(\d+) partition\(s\) open", body).group(1))
        assert opened >= len(env_cluster), body  # RF 3: every broker has every topic

    # SIGTERM: a clean stop, well within the grace period.
    victim = env_cluster[2]
    started = time.monotonic()
    victim.proc.send_signal(signal.SIGTERM)
    code = victim.proc.wait(timeout=GRACE_PERIOD_S)
    took = time.monotonic() - started
    assert code == 0, victim.log_text()[-2000:]
    assert took < GRACE_PERIOD_S, took
    log = victim.log_text()
    assert "shutdown requested" in log and "sluice stopped" in log
    # The other two keep serving.
    assert http_get(env_cluster[0].metrics_port, "/health")[0] == 200
    topic = unique_topic("deploy-after-stop")
    assert kcat_through(env_cluster[0], topic, ["after"]) == ["after"]


def test_a_stop_that_outlasts_shutdown_timeout_exits_with_status_1(tmp_path):
    """shutdown.timeout.ms bounds the stop: with 1 ms, the stop (shards look
    for the request every 50 ms) normally cannot finish in time. On a loaded
    machine the timer's thread can sleep past the whole stop, so each attempt
    is a fresh broker: an attempt whose stop won must have stopped cleanly
    (status 0), and one of at most five must show the bound."""
    outcomes = []
    for attempt in range(5):
        port, metrics = free_port(), free_port()
        env = {"SLUICE_LISTEN": f"127.0.0.1:{port}", "SLUICE_METRICS": f"127.0.0.1:{metrics}",
               "SLUICE_DATA_DIR": "data", "SLUICE_SHARDS": "1", "SLUICE_SET_SHUTDOWN_TIMEOUT_MS": "1"}
        broker = EnvBroker(f"bounded{attempt}", env, str(tmp_path / f"bounded{attempt}"))
        broker.start()
        try:
            wait_until(lambda: http_get(metrics, "/ready")[0] == 200, timeout=20, what="/ready")
            broker.proc.send_signal(signal.SIGTERM)
            status = broker.proc.wait(timeout=GRACE_PERIOD_S)
        finally:
            broker.stop()
        log = broker.log_text()
        outcomes.append(status)
        if status == 1:
            assert "stop did not finish within shutdown.timeout.ms" in log, log[-2000:]
            return
        assert status == 0 and "sluice stopped" in log, (status, log[-2000:])
    raise AssertionError(f"the 1 ms bound never cut a stop short in 5 attempts: {outcomes}")


def test_a_voter_back_on_a_new_address_is_found_again(tmp_path):
    """A recreated Kubernetes pod keeps its name and gets a new IP. Each
    broker runs in a mount namespace of its own whose /etc/hosts is a file
    the test rewrites: voter3 moves from 127.0.0.13 to 127.0.0.23 while
    broker 3 is down. The brokers that kept running must look the name up
    again after their connections to the old address fail; otherwise the
    leader never reaches broker 3, which then never catches up to its own
    registration and never becomes ready."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (a private /etc/hosts per broker)")
    hosts = tmp_path / "hosts"

    def write_hosts(voter3):
        # In place (same inode): the bind mounts see the new content.
        with open(hosts, "w") as f:
            f.write(f"127.0.0.1 localhost\n127.0.0.11 voter1\n127.0.0.12 voter2\n{voter3} voter3\n")

    write_hosts("127.0.0.13")
    wrap = ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$1"', str(hosts)]
    controller_ports = [free_port() for _ in range(3)]
    voters = ",".join(f"{n}@voter{n}:{controller_ports[n - 1]}" for n in (1, 2, 3))
    brokers = []
    for n in (1, 2, 3):
        port = free_port()
        env = {"SLUICE_NODE_ID": str(n), "SLUICE_LISTEN": f"127.0.0.1:{port}",
               "SLUICE_ADVERTISE": f"127.0.0.1:{port}", "SLUICE_METRICS": f"127.0.0.1:{free_port()}",
               "SLUICE_CONTROLLER_LISTEN": f"127.0.0.{10 + n}:{controller_ports[n - 1]}",
               "SLUICE_CONTROLLER_QUORUM_VOTERS": voters, "SLUICE_SHARDS": "1",
               "SLUICE_DATA_DIR": "data", "SLUICE_SET_BROKER_SESSION_TIMEOUT_MS": "3000",
               "SLUICE_SET_BROKER_HEARTBEAT_INTERVAL_MS": "500"}
        brokers.append(EnvBroker(f"voter{n}", env, str(tmp_path / f"voter{n}"), wrap=wrap))
    try:
        for broker in brokers:
            broker.start()
        for broker in brokers:
            wait_until(lambda b=broker: http_get(b.metrics_port, "/ready")[0] == 200,
                       timeout=CLUSTER_READY_S, what=f"/ready on {broker.name}")
        third = brokers[2]
        third.stop()
        assert third.proc.returncode == 0
        write_hosts("127.0.0.23")
        third.env["SLUICE_CONTROLLER_LISTEN"] = f"127.0.0.23:{controller_ports[2]}"
        third.start()
        try:
            wait_until(lambda: http_get(third.metrics_port, "/ready")[0] == 200,
                       timeout=CLUSTER_READY_S, what="/ready on broker 3 back on its new address")
        except AssertionError:
            # What each broker says, to tell a slow catch-up from a port or
            # address problem.
            for broker in brokers:
                try:
                    ready = http_get(broker.metrics_port, "/ready")
                except OSError as exc:
                    ready = repr(exc)
                print(f"--- {broker.name}: /ready {ready}\n{broker.log_text()[-3000:]}")
            raise
        changed = [b.name for b in brokers[:2] if "controller address of a voter changed" in b.log_text()]
        assert changed, "no broker logged looking voter3 up again"
    finally:
        for broker in brokers:
            broker.stop()


def test_the_memlock_error_names_the_container_settings(tmp_path):
    """Started under a 1 MiB memlock limit with 2 shards (about 2.4 MiB
    needed), the broker refuses and says what to raise in each runtime."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    proc = run(["prlimit", "--memlock=1048576:1048576", _binary(), "--shards", "2",
                "--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{free_port()}"],
               cwd=tmp_path, timeout=30)
    assert proc.returncode == 1, proc.stderr
    for setting in ("locked-memory limit too low", "LimitMEMLOCK=infinity", "--ulimit memlock=-1",
                    "ulimits: memlock", "Kubernetes has no per-pod setting"):
        assert setting in proc.stderr, (setting, proc.stderr)


@pytest.mark.parametrize("variable, value, expected", [
    ("SLUICE_SET_NODE_IDD", "2", "environment variable SLUICE_SET_NODE_IDD: 'node.idd': unknown key "
                                 "(did you mean 'node.id'?)"),
    ("SLUICE_SET_NUM_PARTITIONS", "many", "key 'num.partitions' in environment variable "
                                          "SLUICE_SET_NUM_PARTITIONS"),
    ("SLUICE_NODE_ID", "-1", "key 'node.id' in environment variable SLUICE_NODE_ID"),
])
def test_a_bad_environment_variable_stops_start_up_naming_it(tmp_path, variable, value, expected):
    env = {key: val for key, val in os.environ.items() if not key.startswith("SLUICE_")}
    env[variable] = value
    proc = run([_binary(), "--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{free_port()}"],
               env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert not (tmp_path / "data").exists(), "start-up went past the config"


# ---------------------------------------------------------------------------
# 3. The README's Deploying section, and a container engine.

# Its ```sh blocks, in order: which ones run where. A block added to the
# section without being listed here fails test_deploying_blocks_are_known.
README_DOCKER, README_COMPOSE, README_KUBERNETES, README_SYSTEMD = range(4)
# Not run anywhere by the tests, and why.
NOT_RUN = {
    README_KUBERNETES: "needs a Kubernetes cluster; the manifests are validated by "
                       "test_kubernetes_manifests_validate_against_the_schemas",
    README_SYSTEMD: "installs into /usr/local, /etc and systemd of the machine; the unit is "
                    "verified by test_systemd_unit_verifies",
}


def deploying_blocks():
    blocks = readme_sh_blocks("Deploying")
    return [commands(block) for block in blocks]


def test_deploying_blocks_are_known():
    """Every block of the README's Deploying section is run by
    test_readme_deploying_in_containers or named in NOT_RUN with the reason,
    and the files its commands name exist."""
    blocks = deploying_blocks()
    assert len(blocks) == 4, [block[0] for block in blocks]
    assert blocks[README_DOCKER][0] == "docker build -t sluice ."
    assert not any("/etc/hosts" in command for command in blocks[README_COMPOSE]), \
        "the EXTERNAL listeners advertise localhost: the host needs no names"
    assert blocks[README_KUBERNETES][0] == "kubectl apply -k deploy/kubernetes"
    assert blocks[README_SYSTEMD][-1] == "systemctl enable --now sluice"
    for block in blocks:
        for command in block:
            for path in re.findall(r"\b(?:deploy|config)/[\w./-]+", command):
                assert os.path.exists(os.path.join(ROOT, path)), (path, command)
    print("not run here:", {blocks[index][0]: why for index, why in NOT_RUN.items()})


def docker_available():
    return shutil.which("docker") is not None and run(["docker", "info"]).returncode == 0


def shell(command, timeout=600):
    proc = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_readme_deploying_in_containers():
    """The Docker and Compose blocks as written."""
    if not docker_available():
        pytest.skip("no container engine (`docker info` fails): the README's Docker and Compose "
                    "blocks were not run; the files were validated offline only")
    if not has_docker_compose():
        pytest.skip("`docker compose` is not installed: the README's Compose block was not run")
    docker, compose = deploying_blocks()[README_DOCKER], deploying_blocks()[README_COMPOSE]
    try:
        for command in docker:
            if command.startswith("kcat"):
                wait_until(lambda: run(["bash", "-c", command]).returncode == 0, timeout=60,
                           what=command)
            else:
                shell(command, timeout=3600)
    finally:
        subprocess.run(["docker", "rm", "-f", "sluice"], capture_output=True, timeout=120)
    down = next(command for command in compose if command.endswith("down -v"))
    try:
        for command in compose:
            shell(command)
        logs = shell("docker compose -f deploy/compose/docker-compose.yml logs broker-3")
        assert "sluice stopped" in logs
    finally:
        subprocess.run(["bash", "-c", down], cwd=ROOT, capture_output=True, timeout=300)
