#!/usr/bin/env bash
# Makes sure a Docker Engine answers on the default socket: starts dockerd when none does.
# Slipway's integration tests run against the real engine (and start a second daemon of their
# own where they need two endpoints).
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "ensure-docker: no Docker daemon answers and dockerd is not installed." >&2
  echo "  Debian/Ubuntu: apt-get update && apt-get install -y docker.io" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "ensure-docker: no Docker daemon answers; start it (sudo service docker start) and retry." >&2
  exit 1
fi
echo "ensure-docker: starting dockerd" >&2
if command -v service >/dev/null 2>&1 && [ -x /etc/init.d/docker ]; then
  service docker start >/dev/null 2>&1 || true
fi
if ! docker info >/dev/null 2>&1; then
  nohup dockerd >/var/log/slipway-dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "ensure-docker: dockerd did not answer within 60 s; its log:" >&2
tail -n 30 /var/log/slipway-dockerd.log >&2 || true
exit 1
