#!/usr/bin/env bash
# Builds the Go client programs (tests/go/sarama, tests/go/kafkago) into
# target/go/ offline, GOPATH-style, from Debian's Go sources in
# /usr/share/gocode (packages golang-go, golang-github-shopify-sarama-dev,
# golang-github-segmentio-kafka-go-dev; tests/run.sh installs them).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
mkdir -p "$TARGET/go" "$TARGET/go/cache"
export GOPATH=/usr/share/gocode GO111MODULE=off GOPROXY=off GOFLAGS= GOCACHE="$TARGET/go/cache"
# DataDog/zstd's cgo prints deprecation warnings: keep them out of the log.
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -Wno-deprecated-declarations}"
for prog in sarama kafkago; do
    (cd "$ROOT" && go build -o "$TARGET/go/$prog" "./tests/go/$prog")
done
echo "built $TARGET/go/sarama $TARGET/go/kafkago with $(go version)"
