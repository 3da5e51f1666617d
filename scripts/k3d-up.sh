#!/usr/bin/env bash
# OpenFaaS on Kubernetes (k3d) for machines that can reach the internet: creates a k3d cluster
# with the OpenFaaS gateway on 127.0.0.1:PORT, installs the OpenFaaS helm chart, imports the
# locally built function images and deploys the stack with `aquatope deploy`.
#
# Usage: scripts/k3d-up.sh [--dry-run] [--port N] [--cluster NAME] [--stack FILE]
#   --dry-run   print every command instead of running it (missing tools are only reported)
#
# Needs k3d, kubectl and helm. The chart comes from the helm repository named `openfaas`; when it
# is not added yet, set OPENFAAS_CHART_REPO to the faas-netes chart repository address given in
# the OpenFaaS documentation ("Deployment" > "Kubernetes" > "helm").
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
port=8080
cluster=aquatope
stack=stack.yml
while [ "$#" -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --port) port="${2:?--port needs a value}"; shift ;;
    --cluster) cluster="${2:?--cluster needs a value}"; shift ;;
    --stack) stack="${2:?--stack needs a value}"; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "k3d-up: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$port" in
  ''|*[!0-9]*) echo "k3d-up: --port must be a number, got $port" >&2; exit 2 ;;
esac
[ -f "$stack" ] || { echo "k3d-up: stack file $stack not found" >&2; exit 2; }

# Print a command (shell-quoted), then run it unless --dry-run.
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  if [ "$dry_run" = 0 ]; then
    "$@"
  fi
}

install_hint() {
  case "$1" in
    k3d) echo "see the k3d documentation, 'Installation' (one static binary)" ;;
    kubectl) echo "the Kubernetes package repository of your distribution, or its static binary" ;;
    helm) echo "see the Helm documentation, 'Installing Helm' (one static binary)" ;;
  esac
}

missing=0
for tool in k3d kubectl helm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "k3d-up: $tool is missing; install it: $(install_hint "$tool")" >&2
    missing=$((missing + 1))
  fi
done
if [ "$missing" -gt 0 ] && [ "$dry_run" = 0 ]; then
  echo "k3d-up: $missing tool(s) missing; nothing done" >&2
  exit 1
fi

# the CLI: $AQUATOPE when set, else the project's virtual environment, else the PATH
aquatope=${AQUATOPE:-aquatope}
if [ -z "${AQUATOPE:-}" ] && [ -x .venv/bin/aquatope ]; then aquatope=.venv/bin/aquatope; fi

# 1. the cluster: the chart's NodePort 31112 (the gateway) published on loopback only
run k3d cluster create "$cluster" --agents 0 -p "127.0.0.1:${port}:31112@server:0" --wait

# 2. OpenFaaS from its helm chart (functions pull only when the image is not imported)
run kubectl create namespace openfaas-fn
if [ "$dry_run" = 1 ] || ! helm repo list 2>/dev/null | grep -q '^openfaas\b'; then
  run helm repo add openfaas "${OPENFAAS_CHART_REPO:-<faas-netes chart repository>}"
fi
run helm repo update openfaas
run helm upgrade --install openfaas openfaas/openfaas --namespace openfaas --create-namespace \
  --set functionNamespace=openfaas-fn --set generateBasicAuth=true \
  --set serviceType=NodePort --set functions.imagePullPolicy=IfNotPresent --wait
run kubectl -n openfaas rollout status deploy/gateway --timeout=180s

# 3. the function images, built here and imported into the cluster's containerd
run "$aquatope" build --stack "$stack"
images=$(awk '$1 == "image:" {print $2}' "$stack")
for image in $images; do
  run k3d image import "$image" -c "$cluster"
done

# 4. the stack, with the admin password the chart generated (never printed)
echo "+ export OPENFAAS_PASSWORD=\$(kubectl -n openfaas get secret basic-auth -o jsonpath='{.data.basic-auth-password}' | base64 -d)"
if [ "$dry_run" = 0 ]; then
  OPENFAAS_PASSWORD=$(kubectl -n openfaas get secret basic-auth \
    -o jsonpath='{.data.basic-auth-password}' | base64 -d)
  export OPENFAAS_PASSWORD
fi
run "$aquatope" --gateway "http://127.0.0.1:${port}" deploy --stack "$stack"
echo "OpenFaaS on k3d: http://127.0.0.1:${port} (UI /ui/, user admin, password in secret openfaas/basic-auth)"
