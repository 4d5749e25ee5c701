#!/bin/sh
# Builds the slipway image offline: a static binary built on this machine, copied into a
# FROM scratch image with the legacy builder (no buildx, nothing pulled from any registry).
#
#   build/build-image.sh            -> bin/slipway-static and image slipway/slipway:dev
#
# The image is rebuilt only when the binary or the Dockerfile changed (label
# io.slipway.image.binary-sha256); FORCE=1 rebuilds anyway.
# Environment: GO (default go), DOCKER (default docker), IMAGE (default slipway/slipway:dev),
#              VERSION (default: git describe).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
go=${GO:-go}
docker=${DOCKER:-docker}
image=${IMAGE:-slipway/slipway:dev}
version=${VERSION:-$(git -C "$repo" describe --tags --always --dirty 2>/dev/null || echo dev)}
bin=$repo/bin/slipway-static

mkdir -p "$repo/bin"
echo "build-image: go build (CGO_ENABLED=0, static) -> bin/slipway-static"
(cd "$repo" && CGO_ENABLED=0 "$go" build -trimpath -ldflags "-s -w -X main.version=$version" -o "$bin" ./cmd/slipway)
# The prober the worker loads into engines (found beside /slipway in the image).
(cd "$repo" && CGO_ENABLED=0 "$go" build -trimpath -ldflags "-s -w" -o "$repo/bin/slipway-probe-static" ./cmd/slipway-probe)

# FROM scratch has no libc: the binary must not need one. Go records the cgo setting in the
# binary; trust that, not a guess.
if ! "$go" version -m "$bin" | grep -q 'CGO_ENABLED=0'; then
	echo "build-image: $bin was not built with CGO_ENABLED=0" >&2
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/slipway-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
ctx=$work/context
mkdir -p "$ctx/empty"
cp "$here/Dockerfile" "$ctx/Dockerfile"
# CA bundle: only for TLS to a remote Temporal cluster or engine; an empty file without one.
if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
	cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
else
	: >"$ctx/ca-certificates.crt"
fi
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'slipway:x:65532:65532:slipway:/tmp:/sbin/nologin' >"$ctx/passwd"
printf '%s\n' 'root:x:0:' 'slipway:x:65532:' >"$ctx/group"
ln "$bin" "$ctx/slipway" 2>/dev/null || cp "$bin" "$ctx/slipway"
cp "$repo/bin/slipway-probe-static" "$ctx/slipway-probe"
stamp=$(cat "$ctx/slipway" "$ctx/slipway-probe" "$ctx/Dockerfile" "$ctx/ca-certificates.crt" "$ctx/passwd" "$ctx/group" | sha256sum | cut -c1-64)

have=$($docker image inspect --format '{{ index .Config.Labels "io.slipway.image.binary-sha256" }}' "$image" 2>/dev/null || true)
if [ "${FORCE:-}" != 1 ] && [ "$have" = "$stamp" ]; then
	echo "build-image: $image is up to date"
	exit 0
fi
# The legacy builder prints a deprecation notice on stderr: show it only when the build fails.
if ! DOCKER_BUILDKIT=0 $docker build -q --build-arg "VERSION=$version" --build-arg "BINARY_SHA256=$stamp" \
	-t "$image" "$ctx" >"$work/build.log" 2>&1; then
	cat "$work/build.log" >&2
	exit 1
fi
echo "build-image: built $image ($version)"
