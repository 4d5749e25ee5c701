#!/usr/bin/env bash
# Installs what the integration tests need beside Docker when it is missing (CI and a fresh
# machine): ip (iproute2) and nsenter (util-linux) start the isolated second engine of the
# remote-engine tests in a network namespace of its own; iptables lets a second engine's
# containers reach each other; chromium drives the dashboard's browser tests (headless, from
# Go through chromedp); promtool (prometheus) checks /metrics. Debian's packages only;
# nothing else is fetched.
set -euo pipefail

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-test-tools: missing ${need[*]}: install them (Debian: apt-get install -y ${need[*]})" >&2
  exit 1
fi
echo "ensure-test-tools: installing ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
