#!/usr/bin/env bash
# Installs what the build and the tests need, when missing. The tests start
# their own service instances on free loopback ports; nothing is left running.
#
# - C build dependencies of librdkafka (Kafka sink): OpenSSL and zlib headers
# - tansu: a Kafka-protocol broker for the Kafka sink tests (cargo install,
#   about 10 minutes on 2 cores, once per machine)
# - rsyslogd with its TLS driver (Debian packages) for the syslog sink tests
# - Python's prometheus_client (Debian package), whose OpenMetrics parser
#   checks the /metrics exposition
# - systemd-analyze (Debian package systemd) and logrotate, which check the
#   files in deploy/ (tests/packaging.rs)
set -euo pipefail

TANSU_VERSION=0.6.0

have() { command -v "$1" >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/$1" ] || [ -x "/usr/sbin/$1" ]; }
sudo_if_needed() { if [ "$(id -u)" -ne 0 ]; then sudo "$@"; else "$@"; fi; }

missing_debs=()
dpkg -s libssl-dev >/dev/null 2>&1 || missing_debs+=(libssl-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || missing_debs+=(zlib1g-dev)
dpkg -s pkg-config >/dev/null 2>&1 || missing_debs+=(pkg-config)
have rsyslogd || missing_debs+=(rsyslog)
dpkg -s rsyslog-gnutls >/dev/null 2>&1 || missing_debs+=(rsyslog-gnutls)
# A real OpenMetrics parser for the /metrics exposition test.
/usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1 || missing_debs+=(python3-prometheus-client)
have systemd-analyze || missing_debs+=(systemd)
have logrotate || missing_debs+=(logrotate)
if [ ${#missing_debs[@]} -gt 0 ]; then
  echo "services: installing Debian packages: ${missing_debs[*]}"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends "${missing_debs[@]}" >/dev/null
fi

if ! have tansu; then
  echo "services: installing tansu $TANSU_VERSION (Kafka-protocol broker; ~10 minutes, once)"
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore --quiet
fi
echo "services: $("$(command -v tansu || echo "$HOME/.cargo/bin/tansu")" --version 2>/dev/null | head -1), $(/usr/sbin/rsyslogd -v | head -1), $(systemd-analyze --version | head -1), $(/usr/sbin/logrotate --version 2>&1 | head -1)"
