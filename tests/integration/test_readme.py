"""The README's commands, run as a user pastes them (issue 11).

The fenced ```sh blocks of README.md's "Run" section (with its subsections)
and "Command-line tools" section (the quick start), and the ```toml blocks
and the config-error example of config/README.md, are read from the files at
test time and run; nothing here repeats their commands, so the READMEs cannot
drift from what works. A block in those sections that this test does not know
how to run fails `test_every_readme_block_is_run`.

Where and how:
- Every broker runs in a fresh temporary working directory holding a copy of
  the repository's `config/` directory (what a fresh clone has there), with
  NO `--data-dir`: data goes to the default, relative `./data`, exactly as
  for a user. Commands run with `bash -c` in that directory.
- `cargo run --release [-- ARGS]` runs the already built binary
  ($SLUICE_BIN, as `sluice` on PATH) instead: the test does not build a
  release. `sluice` and `python3` (the test's venv, with confluent-kafka)
  come first on PATH.

Substitutions (all in `adapt`, and only these):
- the port: `127.0.0.1:9092` becomes `127.0.0.1:<free port>`, since other
  brokers may run on this machine; a broker command without `--listen` gets
  `--listen 127.0.0.1:<port>`, and `sluice topics|groups|transactions|acls <verb>` and
  `sluice produce|consume` get `--bootstrap-server 127.0.0.1:<port>` (their
  default is 127.0.0.1:9092).
- "Common flags" (`ELSEWHERE`): `--listen 0.0.0.0:9092` becomes
  127.0.0.1:<port> (a test must not listen on every interface),
  `--advertise myhost:9092` becomes 127.0.0.1:<port> (`myhost` does not
  resolve here, and clients connect to the advertised address), and
  `--data-dir /var/lib/sluice` becomes `var/lib/sluice` (not writable by
  tests, and shared by every run; relative, so it lands in the temporary
  directory and exercises a relative flag).

Commands that never end on their own:
- a broker command (`sluice` with no subcommand, not `--help`): started in
  the background, checked with `kcat -L`, stopped with SIGTERM (exit 0
  expected); the Run block's `cargo run --release` is the broker that the
  "Try it" and quick-start blocks then talk to.
- `sluice produce` with nothing piped in: the test writes STDIN_LINES to its
  stdin and closes it (Ctrl-D).
- `sluice consume` with neither `--max-messages` nor `--timeout-ms`: SIGINT
  (Ctrl-C) once it has printed every record produced so far, or after
  INTERRUPT_AFTER_S; exit 0 or death by SIGINT expected.

The "Run a three-broker cluster" section (`test_readme_cluster`, in a
`ClusterWorkdir`): the three `sluice --node-id N ...` commands (one a
terminal) start in the background and must all answer Metadata listing three
brokers and a controller; then the next block runs against them; the brokers
stop (SIGTERM, exit 0). Then `scripts/cluster.sh start` (a copy of the
repository's `scripts/`, as a fresh clone has it) starts a new cluster, the
same block runs again against it, then the kill block. Substitutions:
`127.0.0.1:909N` and `127.0.0.1:919N` (N = 1..3) become free ports
base+N-1 and base+100+N-1, `scripts/cluster.sh` gets `--base-port base`,
and a `sluice` tool without `--bootstrap-server` gets broker 2's (its
default, 127.0.0.1:9092, is broker 2). `sleep` is run as written.

Not run, on purpose: the "Load generator" block (a release build of loadgen
and benchmarks of minutes), the "Test" block (`bash tests/run.sh`, which runs
this test), and the "Metrics" block (not part of the Run or quick-start
sections).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import bindable, claim_ports, free_port, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMAND_TIMEOUT_S = 60
INTERRUPT_AFTER_S = 10
STDIN_LINES = [f"line-{i}" for i in range(1, 13)]

# Values a user would replace with their own, with what the test uses.
ELSEWHERE = {
    "--listen 0.0.0.0:9092": "--listen 127.0.0.1:{port}",
    "--advertise myhost:9092": "--advertise 127.0.0.1:{port}",
    "--data-dir /var/lib/sluice": "--data-dir var/lib/sluice",
}


# --- reading the READMEs ----------------------------------------------------

def fenced_blocks(path):
    """(section headings, language, text) of every fenced block of `path`."""
    blocks, headings, block, lang = [], {}, None, None
    for line in open(path, encoding="utf-8").read().splitlines():
        if block is not None:
            if line.startswith("```"):
                blocks.append((dict(headings), lang, "\n".join(block)))
                block = None
            else:
                block.append(line)
            continue
        heading = re.match(r"(#+) (.*)", line)
        if heading:
            level = len(heading.group(1))
            headings = {k: v for k, v in headings.items() if k < level}
            headings[level] = heading.group(2).strip()
        elif line.startswith("```"):
            block, lang = [], line[3:].strip()
    return blocks


def readme_sh_blocks(section):
    """The ```sh blocks under the README's `## section` (subsections too)."""
    return [text for headings, lang, text in fenced_blocks(os.path.join(ROOT, "README.md"))
            if lang == "sh" and headings.get(2) == section]


def commands(block):
    """The commands of a block: comment lines dropped, backslash
    continuations and here-documents kept with their command."""
    lines, out, i = block.splitlines(), [], 0
    while i < len(lines):
        command = lines[i]
        i += 1
        if not command.strip() or command.lstrip().startswith("#"):
            continue
        while command.rstrip().endswith("\\"):
            command += "\n" + lines[i]
            i += 1
        heredoc = re.search(r"<<-?'?(\w+)'?", command)
        if heredoc:
            while lines[i] != heredoc.group(1):
                command += "\n" + lines[i]
                i += 1
            command += "\n" + lines[i]
            i += 1
        out.append(command)
    return out


def is_broker(command):
    return command.startswith("cargo run --release") and "--help" not in command


# --- running commands -------------------------------------------------------

class Workdir:
    """A temporary working directory like a fresh clone's, and a port."""

    def __init__(self, tmp_path):
        self.path = tmp_path / "work"
        shutil.copytree(os.path.join(ROOT, "config"), self.path / "config")
        assert not (self.path / "config" / "sluice.toml").exists()
        self.port = free_port()
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        binary = os.environ.get("SLUICE_BIN")
        if not binary:
            pytest.fail("SLUICE_BIN is not set (see tests/integration/README.md)", pytrace=False)
        os.symlink(os.path.abspath(binary), bin_dir / "sluice")
        self.env = dict(os.environ)
        self.env["PATH"] = os.pathsep.join(
            [str(bin_dir), os.path.dirname(sys.executable), self.env.get("PATH", "")])
        self.broker = None
        self.broker_log = tmp_path / "broker.log"
        self.produced = []  # records the quick start produced, in order

    def adapt(self, command):
        """The command as the test runs it: see the module docs."""
        for theirs, ours in ELSEWHERE.items():
            command = command.replace(theirs, ours.format(port=self.port))
        command = re.sub(r"^cargo run --release(?: --)?", "sluice", command)
        command = command.replace("127.0.0.1:9092", f"127.0.0.1:{self.port}")
        bootstrap = f"--bootstrap-server 127.0.0.1:{self.port}"
        command = re.sub(r"\bsluice (topics|groups|transactions|acls) ([a-z-]+)",
                         rf"sluice \1 \2 {bootstrap}", command)
        command = re.sub(r"\bsluice (produce|consume)\b", rf"sluice \1 {bootstrap}", command)
        if re.match(r"sluice( -|$)", command) and "--listen" not in command and "--help" not in command:
            command = command.replace("sluice", f"sluice --listen 127.0.0.1:{self.port}", 1)
        return command

    def popen(self, command, **kwargs):
        return subprocess.Popen(["bash", "-c", "set -o pipefail\n" + command], cwd=self.path,
                                env=self.env, start_new_session=True, **kwargs)

    def run(self, command, stdin=None, timeout=COMMAND_TIMEOUT_S):
        """Runs one README command; returns its stdout. Fails on a non-zero
        exit or a timeout, naming the README command and what ran."""
        adapted = self.adapt(command)
        proc = self.popen(adapted, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"README command did not finish in {timeout}s:\n{command}\n"
                        f"ran: {adapted}\nstdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}\n"
                        f"{self.log_tail()}", pytrace=False)
        assert proc.returncode == 0, (
            f"README command failed (exit {proc.returncode}):\n{command}\nran: {adapted}\n"
            f"stdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}\n{self.log_tail()}")
        return out

    def run_until_interrupted(self, command, done):
        """Runs a command that never ends; Ctrl-C once `done(stdout)` holds
        (or after INTERRUPT_AFTER_S). Returns its stdout."""
        adapted = self.adapt(command)
        out_path = self.path.parent / "interrupted.out"
        with open(out_path, "w") as out_file:
            # exec: Ctrl-C goes to the command, not to a shell waiting for it.
            proc = self.popen("exec " + adapted, stdin=subprocess.DEVNULL, stdout=out_file,
                              stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + INTERRUPT_AFTER_S
            while time.monotonic() < deadline and proc.poll() is None:
                if done(out_path.read_text()):
                    break
                time.sleep(0.1)
            assert proc.poll() is None, f"{command!r} ended before Ctrl-C: {proc.stderr.read()}"
            os.killpg(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=COMMAND_TIMEOUT_S)
        out = out_path.read_text()
        # Without --group, consume keeps the default Ctrl-C action (killed by
        # SIGINT, as kafka-console-consumer.sh); with one it exits 0.
        assert proc.returncode in (0, -signal.SIGINT), (
            f"README command exited {proc.returncode} on Ctrl-C:\n{command}\nran: {adapted}\n"
            f"stdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}")
        return out

    def run_command(self, command):
        """Runs any README command the way the module docs say."""
        if is_broker(command):
            self.start_broker(command)
            self.run("kcat -L -b 127.0.0.1:9092")
            self.stop_broker()
            return ""
        if re.search(r"\bsluice produce\b", command) and "|" not in command:
            self.produced += STDIN_LINES
            return self.run(command, stdin="".join(f"{line}\n" for line in STDIN_LINES))
        if re.search(r"\bsluice consume\b", command) and not re.search(
                r"--max-messages|--timeout-ms", command):
            return self.run_until_interrupted(
                command, lambda out: len(out.splitlines()) >= len(self.produced))
        return self.run(command)

    def start_broker(self, command):
        assert self.broker is None
        adapted = self.adapt(command)
        log = open(self.broker_log, "ab")
        log.write(f"\n=== {adapted}\n".encode())
        log.flush()
        self.broker = self.popen(adapted, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT)
        log.close()

        def accepting():
            assert self.broker.poll() is None, f"broker exited: {self.log_tail()}"
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as probe:
                return probe.getsockname() != probe.getpeername()
        wait_until(accepting, timeout=20, what=f"{adapted!r} to accept connections")

    def wait_stopped(self, proc, timeout=10):
        """After SIGTERM: the broker must exit 0 within `timeout` s."""
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"broker did not stop on SIGTERM: {self.log_tail()}", pytrace=False)
        assert code == 0, f"broker exited {code} on SIGTERM: {self.log_tail()}"

    def stop_broker(self):
        proc, self.broker = self.broker, None
        os.killpg(proc.pid, signal.SIGTERM)
        self.wait_stopped(proc)

        def released():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as c:
                    return c.getsockname() == c.getpeername()
            except OSError:
                return True
        wait_until(released, timeout=10, what="the port to be released")

    def log_tail(self, lines=30):
        try:
            text = self.broker_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "broker log tail:\n" + "\n".join(text.splitlines()[-lines:])

    def close(self):
        if self.broker is not None:
            if self.broker.poll() is None:
                os.killpg(self.broker.pid, signal.SIGKILL)
            self.broker.wait()


@pytest.fixture
def workdir(tmp_path):
    w = Workdir(tmp_path)
    yield w
    w.close()


def free_port_base():
    """A base port B with B..B+2 and B+100..B+102 free (below the ephemeral
    range, so a client's port cannot take one meanwhile)."""
    import random
    for _ in range(200):
        base = random.randrange(20000, 32000)
        block = [base + i for i in range(3)] + [base + 100 + i for i in range(3)]
        if all(bindable(port) for port in block) and claim_ports(*block):
            return base
    raise AssertionError("no free block of ports")


def is_cluster_broker(command):
    return command.startswith("sluice --node-id")


class ClusterWorkdir(Workdir):
    """A Workdir for the "Run a three-broker cluster" section: three ports
    for Kafka and three for the quorum, `scripts/` copied in."""

    def __init__(self, tmp_path):
        super().__init__(tmp_path)
        shutil.copytree(os.path.join(ROOT, "scripts"), self.path / "scripts")
        self.base = free_port_base()
        self.port = self.base + 1  # broker 2: the tools' default 127.0.0.1:9092
        self.brokers = []

    def adapt(self, command):
        command = re.sub(r"127\.0\.0\.1:9([01])9([1-3])\b",
                         lambda m: f"127.0.0.1:{self.base + 100 * int(m.group(1)) + int(m.group(2)) - 1}",
                         command)
        command = re.sub(r"\bscripts/cluster\.sh (start|stop|status)\b(?!.*--base-port)",
                         rf"scripts/cluster.sh \1 --base-port {self.base}", command)
        if "--bootstrap-server" not in command:
            bootstrap = f"--bootstrap-server 127.0.0.1:{self.port}"
            command = re.sub(r"\bsluice (topics|groups|transactions) ([a-z-]+)",
                         rf"sluice \1 \2 {bootstrap}", command)
            command = re.sub(r"\bsluice (produce|consume)\b", rf"sluice \1 {bootstrap}", command)
        return command

    def start_cluster_brokers(self, commands):
        from cluster import metadata
        for command in commands:
            adapted = self.adapt(command)
            log = open(self.broker_log, "ab")
            log.write(f"\n=== {adapted}\n".encode())
            log.flush()
            self.brokers.append(self.popen(adapted, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT))
            log.close()
        ports = [self.base + i for i in range(len(commands))]

        def ready():
            for proc in self.brokers:
                assert proc.poll() is None, f"broker exited: {self.log_tail()}"
            views = [metadata("127.0.0.1", port) for port in ports]
            return all(sorted(v["brokers"]) == [1, 2, 3] and v["controller_id"] in (1, 2, 3)
                       for v in views)
        wait_until(ready, timeout=30, what="the three README brokers to see each other")

    def stop_cluster_brokers(self):
        procs, self.brokers = self.brokers, []
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            self.wait_stopped(proc, timeout=15)

    def close(self):
        for proc in self.brokers:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if (self.path / "cluster-data").exists():
            subprocess.run(["bash", "scripts/cluster.sh", "stop", "--base-port", str(self.base)],
                           cwd=self.path, env=self.env, capture_output=True, timeout=60)
        super().close()


@pytest.fixture
def cluster_workdir(tmp_path):
    w = ClusterWorkdir(tmp_path)
    yield w
    w.close()


# --- the tests ---------------------------------------------------------------

def test_every_readme_block_is_run():
    """The blocks the other tests run are all the blocks there are."""
    run_blocks = readme_sh_blocks("Run")
    assert len(run_blocks) == 3, run_blocks
    assert commands(run_blocks[0]) == ["cargo run --release"], run_blocks[0]
    assert all(is_broker(c) or "--help" in c for c in commands(run_blocks[1])), run_blocks[1]
    assert not any(c.startswith("cargo") for c in commands(run_blocks[2])), run_blocks[2]
    assert len(readme_sh_blocks("Command-line tools")) == 1
    terminals, use, script, kill = readme_sh_blocks("Run a three-broker cluster")
    assert [c.split()[:3] for c in commands(terminals)] == \
        [["sluice", "--node-id", str(n)] for n in (1, 2, 3)], terminals
    for command in commands(use) + commands(script) + commands(kill):
        assert re.match(r"(sluice (topics|produce|consume)|seq .*\| sluice produce|kcat -L|"
                        r"scripts/cluster\.sh (start|status|stop)|kill -9 |sleep \d+)", command), command
    config_blocks = fenced_blocks(os.path.join(ROOT, "config", "README.md"))
    assert {lang for _, lang, _ in config_blocks} == {"toml"}, config_blocks


def test_readme_quick_start(workdir):
    """`cargo run --release` with no arguments in an empty directory, then
    the README's "Try it" block and the quick start against it; then a
    restart on the same `./data`."""
    run_block, _, try_it = readme_sh_blocks("Run")
    (quick_start,) = readme_sh_blocks("Command-line tools")
    (start,) = commands(run_block)
    workdir.start_broker(start)
    outputs = {}
    for command in commands(try_it) + commands(quick_start):
        outputs[command] = workdir.run_command(command)
    workdir.stop_broker()

    by_start = lambda prefix: [out for c, out in outputs.items() if c.startswith(prefix)]
    assert "broker 1 at 127.0.0.1:" in by_start("kcat -L")[0]
    numbers = sorted(int(line) for line in by_start("kcat -C")[0].split())
    assert numbers == list(range(1, 1001))
    assert "orders" in by_start("python3")[0]
    assert "quickstart-events" in by_start("sluice topics list")[0]
    consumed = by_start("sluice consume --topic quickstart-events --from-beginning")[0]
    assert set(STDIN_LINES) <= set(consumed.splitlines()), consumed
    assert "my-group" in by_start("sluice groups list")[0]

    assert (workdir.path / "data" / "numbers-0").is_dir()
    log = workdir.broker_log.read_text()
    assert f"data_dir={workdir.path / 'data'}" in log, log
    assert "recovered" not in log, log  # new partitions are "created"

    # The topic and its records survive a restart on the relative data dir.
    workdir.start_broker(start)
    again = workdir.run(commands(try_it)[2])  # kcat -C ... -o beginning -e
    assert sorted(int(line) for line in again.split()) == list(range(1, 1001))
    workdir.stop_broker()


def test_readme_common_flags(workdir):
    """Each command of the README's "Common flags" block starts a broker
    (or prints help), with the substitutions listed in ELSEWHERE."""
    _, flags, _ = readme_sh_blocks("Run")
    for command in commands(flags):
        out = workdir.run_command(command)
        if "--help" in command:
            assert "--data-dir" in out, out
    # The data dir's identity file and metadata log (issue 12; cluster-metadata.json before).
    assert (workdir.path / "var" / "lib" / "sluice" / "meta.properties").exists()
    assert (workdir.path / "var" / "lib" / "sluice" / "__cluster_metadata-0").is_dir()


def run_cluster_block(workdir, block):
    """A node of a three-node cluster, as config/README.md shows it: the same
    file for every voter with its own `node.id` and `listen` (the block's
    node's listen port minus its id, plus each id), each broker in a working
    directory of its own (so each has its own ./data). Every 127.0.0.1 port is
    replaced by a free one. The cluster forms: Metadata lists all voters."""
    voters = re.findall(r'"(\d+)@127\.0\.0\.1:(\d+)"', block)
    node_id = int(re.search(r"node\.id = (\d+)", block).group(1))
    listen = int(re.search(r'listen = "127\.0\.0\.1:(\d+)"', block).group(1))
    listen_ports = {int(voter): listen - node_id + int(voter) for voter, _ in voters}
    used = set(re.findall(r"127\.0\.0\.1:(\d+)", block)) | {str(p) for p in listen_ports.values()}
    ports = {port: free_port() for port in used}
    procs = []
    try:
        for voter in sorted(listen_ports):
            text = re.sub(r"node\.id = \d+", f"node.id = {voter}", block)
            text = re.sub(r'listen = "127\.0\.0\.1:\d+"', f'listen = "127.0.0.1:{listen_ports[voter]}"', text)
            text = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{ports[m.group(1)]}", text)
            node_dir = workdir.path / f"node{voter}"
            (node_dir / "config").mkdir(parents=True)
            (node_dir / "config" / "sluice.toml").write_text(text + "\n")
            log = open(workdir.path.parent / f"node{voter}.log", "w")
            procs.append(subprocess.Popen(["sluice"], cwd=node_dir, env=workdir.env,
                                          stdout=log, stderr=subprocess.STDOUT))
        bootstrap = f"127.0.0.1:{ports[str(listen)]}"
        def formed():
            listed = subprocess.run(["kcat", "-L", "-b", bootstrap, "-m", "2"], capture_output=True,
                                    text=True, timeout=COMMAND_TIMEOUT_S)
            return f" {len(voters)} brokers:" in listed.stdout
        wait_until(formed, timeout=30, what=f"a {len(voters)}-broker cluster at {bootstrap}")
    finally:
        for proc in procs:
            proc.terminate()
        codes = [proc.wait(timeout=COMMAND_TIMEOUT_S) for proc in procs]
    assert codes == [0] * len(procs), codes


def test_config_readme(workdir):
    """config/README.md: each TOML example, written to config/sluice.toml,
    starts `sluice` with no other arguments than the port; the config error
    it shows is the one a bad value gives."""
    text = open(os.path.join(ROOT, "config", "README.md"), encoding="utf-8").read()
    toml_blocks = [block for _, lang, block in fenced_blocks(os.path.join(ROOT, "config", "README.md"))
                   if lang == "toml"]
    assert toml_blocks
    config_file = workdir.path / "config" / "sluice.toml"
    for block in toml_blocks:
        if "controller.quorum.voters" in block:
            run_cluster_block(workdir, block)
            continue
        config_file.write_text(block + "\n")
        # Each example on a fresh ./data: a data dir keeps its node.id, and
        # one example is node 2 of a cluster.
        shutil.rmtree(workdir.path / "data", ignore_errors=True)
        workdir.start_broker("cargo run --release")
        workdir.run("kcat -L -b 127.0.0.1:9092")
        if "retention.ms" in block:
            described = workdir.run(
                "sluice topics create --topic retained --if-not-exists && "
                "sluice topics describe --topic retained --all-configs --output json")
            assert '"retention.ms"' in described and "3600000" in described, described
        workdir.stop_broker()

    (example,) = re.findall(r"\n    (config error: .*)\n", text)
    key, value = re.search(r"key '([^']+)' in config/sluice.toml: .*got (\".*\")", example).groups()
    config_file.write_text(f"{key} = {value}\n")
    proc = subprocess.run(["sluice"], cwd=workdir.path, env=workdir.env, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT_S)
    assert proc.returncode == 2, proc
    assert example in proc.stderr, proc.stderr


def test_readme_cluster(cluster_workdir):
    """"Run a three-broker cluster": the three terminals' brokers and the
    commands against them; then scripts/cluster.sh, the same commands, and
    killing a broker (leaders move off it, produce goes on), as written."""
    w = cluster_workdir
    terminals, use, script, kill = readme_sh_blocks("Run a three-broker cluster")

    def check_use(outputs):
        by_start = lambda prefix: [out for c, out in outputs if c.startswith(prefix)][0]  # noqa: E731
        described = by_start("sluice topics describe")
        rows = [line.split() for line in described.splitlines() if re.match(r"\d+\s", line)]
        assert len(rows) == 6 and {r[1] for r in rows} == {"1", "2", "3"}, described
        assert all(sorted(r[2].split(",")) == ["1", "2", "3"] for r in rows), described
        assert "3 brokers" in by_start("kcat -L") and "(controller)" in by_start("kcat -L")
        assert by_start("sluice consume").split() == ["1000"], by_start("sluice consume")

    w.start_cluster_brokers(commands(terminals))
    check_use([(c, w.run(c)) for c in commands(use)])
    w.stop_cluster_brokers()
    for n in (1, 2, 3):
        assert (w.path / f"d{n}" / "meta.properties").exists()

    outputs = [(c, w.run(c)) for c in commands(script)]
    assert "bootstrap: " + ",".join(f"127.0.0.1:{w.base + i}" for i in range(3)) in outputs[0][1]
    assert outputs[1][1].count("answers: brokers 1 2 3") == 3, outputs[1][1]
    check_use([(c, w.run(c)) for c in commands(use)])

    outputs = [(c, w.run(c)) for c in commands(kill)]
    described = [out for c, out in outputs if c.startswith("sluice topics describe")][0]
    rows = [line.split() for line in described.splitlines() if re.match(r"\d+\s", line)]
    assert len(rows) == 6 and all(r[1] in ("1", "3") and "2" not in r[3].split(",") for r in rows), described
    started = [out for c, out in outputs if c.startswith("scripts/cluster.sh start")][0]
    assert "node 2 starting" in started and "node 1 already running" in started, started
    stopped = [out for c, out in outputs if c.startswith("scripts/cluster.sh stop")][0]
    assert stopped.count("stopped") == 3, stopped
