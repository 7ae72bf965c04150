#!/usr/bin/env bash
# The Sluice test command: installs what the tests need (idempotently), then
# runs formatting, lints, unit tests and the integration tests with real
# Kafka clients. Usage: bash tests/run.sh [extra pytest args]
#
# Environment:
#   SKIP_INSTALL=1   skip the tool installation step
#   SLUICE_BIN       broker binary for the integration tests
#                    (default: target/debug/sluice, built here)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

START_TIME=$(date +%s)
step() {
    echo
    echo "==> [$(($(date +%s) - START_TIME))s] $*"
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

VENV="$ROOT/.venv"
REQS="$ROOT/tests/requirements.txt"
JS_DIR="$ROOT/tests/js"

install_python() {
    local want have=""
    want="$(sha256sum "$REQS" | cut -d' ' -f1)"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "creating $VENV"
        python3 -m venv "$VENV"
    fi
    [ -f "$VENV/.requirements.sha256" ] && have="$(cat "$VENV/.requirements.sha256")"
    if [ "$want" = "$have" ]; then
        echo "python packages up to date (requirements hash $want)"
    else
        "$VENV/bin/python" -m pip install --quiet -r "$REQS"
        echo "$want" >"$VENV/.requirements.sha256"
    fi
    "$VENV/bin/python" -c 'import confluent_kafka, kafka, aiokafka, pytest, pytest_timeout, playwright; print("confluent-kafka", confluent_kafka.__version__, "librdkafka", confluent_kafka.libversion()[0], "| kafka-python", kafka.__version__, "| aiokafka", aiokafka.__version__, "| pytest", pytest.__version__)'
}

install_stream_venv() {
    # A venv of its own for tools that must not touch the shared .venv:
    # a stream-processing library (.venv-quix, .venv-faust), each pinning its
    # own Kafka client version, and the deploy validators (.venv-deploy).
    # $2 is the requirements file under tests/. Rebuilt when it changes.
    local venv="$ROOT/$1" reqs="$ROOT/tests/$2" module="$3" want have=""
    want="$(sha256sum "$reqs" | cut -d' ' -f1)"
    if [ ! -x "$venv/bin/python" ]; then
        echo "creating $venv"
        python3 -m venv "$venv"
    fi
    [ -f "$venv/.requirements.sha256" ] && have="$(cat "$venv/.requirements.sha256")"
    if [ "$want" = "$have" ]; then
        echo "$1 up to date (requirements hash $want)"
    else
        "$venv/bin/python" -m pip install --quiet -r "$reqs"
        echo "$want" >"$venv/.requirements.sha256"
    fi
    "$venv/bin/python" -c "import importlib.metadata as m; print('$1:', '$module', m.version('$module'))"
}

apt_get() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get "$@"
}

# install_command COMMAND PACKAGE: Debian's PACKAGE, unless COMMAND is on
# the PATH already.
install_command() {
    local command=$1 package=$2
    if command -v "$command" >/dev/null 2>&1; then
        echo "$command present: $(command -v "$command")"
        return
    fi
    # A fresh image has empty package lists: update only when apt knows no
    # such package.
    if ! apt-cache show "$package" >/dev/null 2>&1; then
        apt_get update -q
    fi
    if ! apt_get install -y -q --no-install-recommends "$package"; then
        apt_get update -q # stale package lists
        apt_get install -y -q --no-install-recommends "$package"
    fi
    command -v "$command"
}

install_kcat() {
    install_command kcat kcat
}

install_chromium() {
    # Debian's chromium for tests/integration/test_console.py (Playwright
    # launches it by path: its own browser download is not reachable here).
    install_command chromium chromium
}

install_openssl() {
    # scripts/make-certs.sh (test_security.py, the README) uses the openssl CLI.
    install_command openssl openssl
}

GO_PACKAGES="golang-go golang-github-shopify-sarama-dev golang-github-segmentio-kafka-go-dev"

install_go() {
    # Go and the Sarama / kafka-go sources from Debian (in /usr/share/gocode),
    # built offline in GOPATH mode by tests/go/build.sh.
    if command -v go >/dev/null 2>&1 &&
        [ -d /usr/share/gocode/src/github.com/Shopify/sarama ] &&
        [ -d /usr/share/gocode/src/github.com/segmentio/kafka-go ]; then
        echo "go and the Debian Go client sources present: $(go version)"
    else
        # shellcheck disable=SC2086 # a list of package names
        if ! apt-cache show $GO_PACKAGES >/dev/null 2>&1; then
            apt_get update -q
        fi
        # shellcheck disable=SC2086
        if ! apt_get install -y -q --no-install-recommends $GO_PACKAGES; then
            apt_get update -q # stale package lists
            # shellcheck disable=SC2086
            apt_get install -y -q --no-install-recommends $GO_PACKAGES
        fi
    fi
    bash "$ROOT/tests/go/build.sh"
}

install_js() {
    local want have=""
    want="$(cat "$JS_DIR/package.json" "$JS_DIR/package-lock.json" | sha256sum | cut -d' ' -f1)"
    [ -f "$JS_DIR/node_modules/.sluice-lock.sha256" ] && have="$(cat "$JS_DIR/node_modules/.sluice-lock.sha256")"
    if [ "$want" = "$have" ] && [ -d "$JS_DIR/node_modules/kafkajs" ]; then
        echo "node_modules up to date"
    else
        (cd "$JS_DIR" && npm ci --no-audit --no-fund --loglevel=error)
        echo "$want" >"$JS_DIR/node_modules/.sluice-lock.sha256"
    fi
    node -e 'console.log("node", process.version, "| kafkajs", require(process.argv[1] + "/node_modules/kafkajs/package.json").version)' "$JS_DIR"
}

if [ "${SKIP_INSTALL:-0}" != "1" ]; then
    step "install: python venv (.venv) with tests/requirements.txt"
    install_python
    step "install: stream-processing venvs (.venv-quix, .venv-faust)"
    install_stream_venv .venv-quix streams/requirements-quix.txt quixstreams
    install_stream_venv .venv-faust streams/requirements-faust.txt faust-streaming
    step "install: deploy validators venv (.venv-deploy): kubernetes-validate, check-jsonschema, hadolint"
    install_stream_venv .venv-deploy requirements-deploy.txt kubernetes-validate
    step "install: kcat"
    install_kcat
    step "install: chromium (Debian), for the web console's browser tests"
    install_chromium
    step "install: openssl (certificates for the TLS tests)"
    install_openssl
    step "install: kafkajs (tests/js)"
    install_js
    step "install: Go, Sarama and kafka-go (Debian), tests/go built into target/go"
    install_go
fi

step "cargo fmt --all -- --check"
cargo fmt --all -- --check --color never

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
cargo test --workspace

step "cargo build --bin sluice"
cargo build --bin sluice

step "pytest tests/integration"
export SLUICE_BIN="${SLUICE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/sluice}"
# test_streams.py fails instead of skipping when a stream venv is missing.
export SLUICE_REQUIRE_STREAMS=1
# --timeout (pytest-timeout's signal) fails a test stuck in Python; a test
# stuck inside a client's C code (a librdkafka thread deadlocked in close())
# never returns to Python, so: faulthandler prints every thread's stack after
# 6 minutes, and the whole run is stopped after PYTEST_LIMIT (40 minutes;
# the suite takes about 15 here) rather than running into CI's 90.
timeout --signal=TERM --kill-after=30s "${PYTEST_LIMIT:-40m}" \
    "$VENV/bin/python" -m pytest tests/integration -q -ra --timeout=300 -o faulthandler_timeout=360 "$@" || {
    status=$?
    [ "$status" -eq 124 ] && echo "pytest stopped after ${PYTEST_LIMIT:-40m}: a test hung (stacks above)" >&2
    exit "$status"
}

step "all tests passed"
