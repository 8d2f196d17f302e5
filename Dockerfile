# auditfwd: multi-stage build; the runtime image runs as a non-root user.
#   docker build -t auditfwd .
#   docker run --rm -v $PWD/auditfwd.toml:/etc/auditfwd/auditfwd.toml:ro \
#     -e PEOPLELENS_API_KEY -v auditfwd-state:/var/lib/auditfwd auditfwd
FROM rust:1-bookworm AS build
# librdkafka is built from source (rdkafka-sys) and links OpenSSL and zlib.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev zlib1g-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .git stays out of the build context (.dockerignore); pass the revision
# that `auditfwd --version` shows:
#   docker build --build-arg AUDITFWD_GIT_REV=$(git rev-parse --short HEAD) .
ARG AUDITFWD_GIT_REV=
COPY . .
RUN cargo build --release --locked --bin auditfwd \
 && strip target/release/auditfwd

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/auditfwd --shell /usr/sbin/nologin auditfwd \
 && install -d -o auditfwd -g auditfwd -m 0700 /var/lib/auditfwd \
 && install -d -o auditfwd -g auditfwd -m 0750 /var/log/auditfwd \
 && install -d -m 0755 /etc/auditfwd
COPY --from=build /src/target/release/auditfwd /usr/local/bin/auditfwd
USER 10001:10001
WORKDIR /var/lib/auditfwd
VOLUME ["/var/lib/auditfwd", "/var/log/auditfwd"]
# Metrics and health when [telemetry] listen = "0.0.0.0:9898".
EXPOSE 9898
# Liveness through the binary itself (the image has no curl): healthy while
# the process answers /livez. Needs [telemetry] listen on port 9898; without
# it the container shows as unhealthy. Readiness (a dead receiver, a
# revoked key) is /readyz, for monitoring: a restart does not cure it.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/auditfwd", "probe", "--timeout", "5s", "http://127.0.0.1:9898/livez"]
# SIGTERM drains the batch in flight and saves the cursor; give it time
# (docker stop -t 30).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/auditfwd"]
CMD ["run", "-c", "/etc/auditfwd/auditfwd.toml"]
