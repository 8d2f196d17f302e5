#!/usr/bin/env bash
# Runs every test of auditfwd: unit, property and integration tests of all
# workspace crates. External services the tests need (a Kafka-protocol
# broker, rsyslogd) are installed and started by scripts/services.sh when
# they are missing; the tests start their own instances on free ports.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh delivery        # only tests whose name matches
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/services.sh ]; then
  scripts/services.sh
fi

if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace --no-fail-fast -- "$@"
fi
