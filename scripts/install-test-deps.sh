#!/usr/bin/env bash
# System packages the tests use: a real PostgreSQL server and Debian's Chromium; for the real test node
# (scripts/testcluster up --node) containerd, runc and the CNI plugins, iptables and conntrack for
# kube-proxy, socat for the loopback T2V_URL; mmdebstrap and buildah build the images without Docker.
# Idempotent and quiet when everything is already there.
set -euo pipefail
need=()
command -v /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
for pkg in containerd runc containernetworking-plugins iptables conntrack socat mmdebstrap buildah; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
