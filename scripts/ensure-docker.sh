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

# A daemon that is still starting (or still stopping) holds its pid file: give it time first.
pidfile=/var/run/docker.pid
for _ in $(seq 1 30); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  if [ ! -f "$pidfile" ] || ! kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then
    break
  fi
  sleep 1
done
# A pid file whose process is gone would stop the new daemon from starting.
if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then
  rm -f "$pidfile"
fi

echo "ensure-docker: starting dockerd (log: /var/log/slipway-dockerd.log)" >&2
nohup dockerd >/var/log/slipway-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "ensure-docker: dockerd did not answer within 60 s; its log:" >&2
tail -n 30 /var/log/slipway-dockerd.log >&2 || true
exit 1
