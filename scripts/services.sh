#!/usr/bin/env bash
# Installs the real services the tests run against, when missing. The tests
# start their own instances on free loopback ports; nothing is left running.
#
# - tansu: a Kafka-protocol broker for the Kafka sink tests (cargo install,
#   about 10 minutes on 2 cores, once per machine).
set -euo pipefail

TANSU_VERSION=0.6.0

have() { command -v "$1" >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/$1" ]; }

if ! have tansu; then
  echo "services: installing tansu $TANSU_VERSION (Kafka-protocol broker; ~10 minutes, once)"
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore --quiet
fi
echo "services: tansu $("$(command -v tansu || echo "$HOME/.cargo/bin/tansu")" --version 2>/dev/null | head -1)"
