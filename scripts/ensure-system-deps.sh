#!/usr/bin/env bash
# System packages the test suite uses: Chromium (renders the HTML report), a Docker engine
# (tests marked `docker`), and for the OpenFaaS CE stack (tests marked `openfaas`) Go 1.19 (builds
# the OpenFaaS gateway from its source archive), Prometheus and AlertManager; shellcheck (the
# k3d script test).
# Idempotent and fast when present; installs only as root with apt-get.
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

missing=()
[ -x /usr/lib/go-1.19/bin/go ] || missing+=(golang-1.19-go)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-system-deps: installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "ensure-system-deps: ${missing[*]} missing and cannot install (not root); the tests" \
         "marked openfaas will fail" >&2
  fi
fi

bash scripts/ensure-docker.sh
