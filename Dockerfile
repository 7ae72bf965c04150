# syntax=docker/dockerfile:1
# The Sluice broker image (issue 19). Two stages: build with the Rust
# toolchain that Cargo.toml's rust-version names, run on debian:bookworm-slim
# (the binary needs only glibc, libm and libgcc_s, which bookworm-slim has).
#
#   docker build -t sluice .
#   docker run --rm -p 9092:9092 --ulimit memlock=-1 --security-opt seccomp=unconfined sluice
# (Docker 25+ blocks io_uring in its default seccomp profile; see deploy/README.md.)
#
# Configuration: the environment (SLUICE_SET_<KEY>, SLUICE_<FLAG>; see
# config/README.md), a mounted file (`-v ./sluice.toml:/etc/sluice/sluice.toml:ro`
# then `--config /etc/sluice/sluice.toml`), or flags after the image name.
# Precedence: default < file < environment < --set < flags.

ARG RUST_VERSION=1.85

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sluice \
    && install -D -m 0755 target/release/sluice /out/sluice

FROM debian:bookworm-slim
# A dedicated, non-root user; its data directory is the volume.
RUN groupadd --system --gid 10001 sluice \
    && useradd --system --uid 10001 --gid sluice --home-dir /var/lib/sluice \
        --shell /usr/sbin/nologin sluice \
    && mkdir -p /var/lib/sluice/data /etc/sluice \
    && chown -R sluice:sluice /var/lib/sluice
COPY --from=build /out/sluice /usr/local/bin/sluice
# Listen on every interface inside the container; advertise localhost:9092,
# which is right for `docker run -p 9092:9092` and a client on the host.
# A cluster sets SLUICE_ADVERTISE per broker (deploy/compose, deploy/kubernetes).
ENV SLUICE_DATA_DIR=/var/lib/sluice/data \
    SLUICE_LISTEN=0.0.0.0:9092 \
    SLUICE_ADVERTISE=localhost:9092 \
    SLUICE_METRICS=0.0.0.0:9100
WORKDIR /var/lib/sluice
USER 10001:10001
VOLUME ["/var/lib/sluice/data"]
# Kafka, the controller (Raft) listener of a cluster, metrics with /health and /ready.
EXPOSE 9092 9093 9100
# SIGTERM starts a clean stop, bounded by shutdown.timeout.ms (25 s).
# Give it time: docker stop --time 30 / docker run --stop-timeout 30.
STOPSIGNAL SIGTERM
ENTRYPOINT ["sluice"]
CMD []
