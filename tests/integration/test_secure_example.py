"""README "A production example: TLS, SCRAM and ACLs together", run as a
user would: config/secure-node.toml and scripts/make-certs.sh copied into a
fresh directory, the section's commands run as written there (with `sluice`
on PATH), the ports 9092 and 9094 changed to free ones in the commands and the
config copy, as test_readme.py does for the quick start.
"""
import os
import re
import shutil
import subprocess
import time

from conftest import _binary, free_port, wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SECTION = "### A production example: TLS, SCRAM and ACLs together"


def section_commands():
    """The section's sh blocks, each a list of commands (continuation lines
    joined)."""
    with open(os.path.join(ROOT, "README.md")) as readme:
        text = readme.read()
    start = text.index(SECTION)
    end = text.index("\n## ", start)
    blocks = re.findall(r"```sh\n(.*?)```", text[start:end], flags=re.S)
    return [[c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()] for block in blocks]


def test_production_example_runs_as_written(tmp_path):
    for part in ("scripts", "config"):
        os.makedirs(tmp_path / part)
    shutil.copy(os.path.join(ROOT, "scripts", "make-certs.sh"), tmp_path / "scripts")
    plain, secure = free_port(), free_port()

    def ports(text):
        return text.replace(":9092", f":{plain}").replace(":9094", f":{secure}")

    with open(os.path.join(ROOT, "config", "secure-node.toml")) as source:
        (tmp_path / "config" / "secure-node.toml").write_text(ports(source.read()))
    env = dict(os.environ, PATH=os.path.dirname(_binary()) + os.pathsep + os.environ["PATH"])

    def run(command, **kwargs):
        command = ports(command)
        if command.startswith("sluice ") and "--config" not in command:
            command += f" --bootstrap-server 127.0.0.1:{plain}"
        return subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60, **kwargs)

    start, admin, client = section_commands()
    assert start == ["scripts/make-certs.sh certs", "sluice --config config/secure-node.toml"]
    made = run(start[0])
    assert made.returncode == 0, made.stderr
    log = open(tmp_path / "broker.log", "w")
    broker = subprocess.Popen(start[1], shell=True, cwd=tmp_path, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: run("sluice topics list").returncode == 0, timeout=30,
                   what="the broker to answer on its loopback listener")
        for command in admin:
            done = run(command)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
        produced, consumed, listed = (run(command) for command in client)
        assert produced.returncode == 0, produced.stderr
        assert consumed.returncode == 0 and consumed.stdout.strip() == "paid", (consumed.stdout, consumed.stderr)
        assert listed.returncode == 0, listed.stderr
        assert 'topic "payments"' in listed.stdout and "payroll" not in listed.stdout, listed.stdout
        # A wrong password gets nothing in; the super user sees every topic.
        wrong = run(client[0].replace("alice-secret", "wrong"), input="x\n")
        assert wrong.returncode != 0, (wrong.stdout, wrong.stderr)
        listed_admin = run(client[2].replace("alice", "admin"))
        assert 'topic "payroll"' in listed_admin.stdout, listed_admin.stdout
        # The data dir the file names, under the directory it ran in.
        assert os.path.isdir(tmp_path / "data-secure")
    finally:
        os.killpg(broker.pid, 15)
        try:
            broker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(broker.pid, 9)
            broker.wait()
        log.close()
        time.sleep(0.1)
