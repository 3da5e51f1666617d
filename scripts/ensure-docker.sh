#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine (idempotent; CI and `make testbed-up`).
#
# 1. As root, install what is missing with apt-get: Debian's docker.io, and debootstrap
#    (`aquatope build` makes its base image with it when no registry answers).
# 2. When `docker info` does not answer and we are root, start dockerd in the background
#    (log: $DOCKERD_LOG, default /tmp/dockerd.log) and poll `docker info` until it answers
#    (deadline $DOCKER_WAIT_S seconds, default 60).
# 3. When the project's venv exists, make sure the base image of function images exists
#    (python:3.11-slim, else a debootstrap-built Debian bookworm: about a minute, once), so
#    the first replica start in a test or `aquatope up` does not wait for it.
#    AQUATOPE_SKIP_BASE_IMAGE=1 skips this step.
# Exits 0 when the engine answers, 1 with a hint on how to install and start one otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

wait_s="${DOCKER_WAIT_S:-60}"
log="${DOCKERD_LOG:-/tmp/dockerd.log}"

answers() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }
version() { docker version --format '{{.Server.Version}}' 2>/dev/null || echo "?"; }

hint() {
  echo "ensure-docker: $1" >&2
  echo "ensure-docker: install an engine (Debian/Ubuntu: sudo apt-get install -y docker.io)" \
       "and start it (sudo systemctl start docker, or: sudo dockerd >/tmp/dockerd.log 2>&1 &)" >&2
  exit 1
}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=""
  command -v dockerd >/dev/null 2>&1 || answers || missing="docker.io"
  command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
  if [ -n "${missing// /}" ]; then
    echo "ensure-docker: installing${missing} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086 # one word per package
    apt-get install -y -qq $missing >/dev/null
  fi
fi

base_image() {
  local py="${AQUATOPE_PYTHON:-.venv/bin/python}"
  if [ -n "${AQUATOPE_SKIP_BASE_IMAGE:-}" ] || [ ! -x "$py" ]; then
    return 0
  fi
  "$py" -c '
import sys
from testbed.core.errors import TestbedError
from testbed.gateway.runtimes.images import ImageBuilder
try:
    base = ImageBuilder(log=lambda m: print("ensure-docker:", m, flush=True)).base()
except TestbedError as exc:
    sys.exit(f"ensure-docker: no base image: {exc}")
print(f"ensure-docker: base image {base.ref} (python {base.python_version}, {base.source})")
'
}

if answers; then
  echo "ensure-docker: engine answers ($(version))"
  base_image
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  hint "no Docker engine answers and we are not root, so we cannot start one"
fi
command -v dockerd >/dev/null 2>&1 || hint "dockerd is not installed and apt-get is unavailable"

if ! (pgrep -x dockerd || pidof dockerd) >/dev/null 2>&1; then
  echo "ensure-docker: starting dockerd (log: $log)"
  nohup dockerd >"$log" 2>&1 &
fi

deadline=$(( $(date +%s) + wait_s ))
until answers; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    tail -n 20 "$log" >&2 || true
    hint "dockerd did not answer within ${wait_s}s (see $log)"
  fi
  sleep 0.2
done
echo "ensure-docker: engine answers ($(version))"
base_image
