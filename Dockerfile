# syntax=docker/dockerfile:1.7
# The chat-engine image: build with cargo-chef so the dependency layer is cached apart from the
# source (a source-only change rebuilds only the engine crate), run on debian-slim as a non-root user.
#
#   docker build -t chat-engine .
#   docker run --rm -p 8080:8080 --read-only -v chat-data:/data chat-engine
#
# The root filesystem can be read-only: the engine writes only its SQLite file (DATABASE_URL, default
# /data/chat.db on the /data volume) and SQLite's temporary files (TMPDIR=/tmp; mount a tmpfs there
# when the root filesystem is read-only). With a Postgres DATABASE_URL nothing is written at all.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# The dependency graph only (Cargo.toml/Cargo.lock of every workspace member).
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
# Dependencies: this layer is reused as long as Cargo.toml/Cargo.lock do not change.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo chef cook --release --locked --recipe-path recipe.json -p chat-engine
# The engine embeds the widget (embed-widget/) and its migrations (migrations/) at compile time.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo build --release --locked -p chat-engine \
 && install -D -m 0755 target/release/chat-engine /out/chat-engine

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: TLS to a managed Postgres or Redis. No curl/wget: the health check below uses
# bash's /dev/tcp, which the slim image already has. ca-certificates is left unpinned on purpose:
# it should follow the release's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 chat \
 && useradd --system --uid 10001 --gid chat --home-dir /data --shell /usr/sbin/nologin chat \
 && install -d -o chat -g chat -m 0750 /data
COPY --from=build /out/chat-engine /usr/local/bin/chat-engine

ENV BIND=0.0.0.0:8080 \
    DATABASE_URL=sqlite:///data/chat.db \
    LOG_FORMAT=json \
    TMPDIR=/tmp
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080

# GET /healthz over a plain TCP socket: exits 0 only on an HTTP 200 status line.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

# Exec form: the engine is PID 1 and receives SIGTERM itself (readyz 503, readers get `reconnect`,
# exit after they leave or SHUTDOWN_GRACE seconds). `docker stop -t` should exceed SHUTDOWN_GRACE.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/chat-engine"]
