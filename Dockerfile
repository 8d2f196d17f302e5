# auditfwd: multi-stage build; the runtime image runs as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin auditfwd

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/auditfwd --shell /usr/sbin/nologin auditfwd \
 && install -d -o auditfwd -g auditfwd -m 0700 /var/lib/auditfwd \
 && install -d -o auditfwd -g auditfwd -m 0750 /var/log/auditfwd
COPY --from=build /src/target/release/auditfwd /usr/local/bin/auditfwd
USER auditfwd
VOLUME ["/var/lib/auditfwd", "/var/log/auditfwd"]
# Metrics and health when [telemetry] listen = "0.0.0.0:9898".
EXPOSE 9898
ENTRYPOINT ["/usr/local/bin/auditfwd"]
CMD ["run", "-c", "/etc/auditfwd/auditfwd.toml"]
