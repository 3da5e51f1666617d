#!/usr/bin/env bash
# System packages the test suite uses: Chromium (renders the HTML report) and a Docker
# engine (tests marked `docker`). Idempotent; installs only as root with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-system-deps: installing chromium with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq chromium >/dev/null
  else
    echo "ensure-system-deps: chromium missing and cannot install it (not root); the report" \
         "rendering test will fail" >&2
  fi
fi

bash scripts/ensure-docker.sh
