#!/usr/bin/env bash
# Makes sure `go test -race` can build (make test-race): the race detector needs cgo, so a C
# compiler and the C library's headers. Installs Debian's gcc and libc6-dev when a trivial C
# program does not compile (CI and a fresh machine). Debian's packages only; nothing else
# is fetched.
set -euo pipefail

cc="$(go env CC)"
cc="${cc:-gcc}"
if command -v "$cc" >/dev/null 2>&1 &&
  echo 'int main(void) { return 0; }' | "$cc" -x c - -o /dev/null >/dev/null 2>&1; then
  exit 0
fi
need=(gcc libc6-dev)
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-race-tools: no working C compiler ($cc): go test -race needs one (Debian: apt-get install -y ${need[*]})" >&2
  exit 1
fi
echo "ensure-race-tools: installing ${need[*]} (go test -race needs cgo)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
