#!/bin/sh
# Builds the Slipway demo images offline (FROM scratch, legacy builder, nothing pulled):
#   slipway/demo:1.0.0 1.1.0 2.0.0                    good versions
#   slipway/demo:bad-crash bad-health bad-errors bad-latency   misbehaving ones
# The Go binary is built once (static, reproducible); a tag whose image already carries the same
# binary hash and knobs is skipped, so a second run only costs the (cached) go build.
#
# Usage: examples/demo-service/build-images.sh [tag...]     (default: every tag)
# Environment: DOCKER (docker CLI, default "docker"), GO (default "go"),
#              FORCE=1 rebuilds every tag.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=slipway/demo
docker=${DOCKER:-docker}
go=${GO:-go}

# Several test processes may call this at once: one build at a time per machine.
if command -v flock >/dev/null 2>&1; then
	exec 9>"${TMPDIR:-/tmp}/slipway-demo-images.lock"
	flock 9
fi

# knobs TAG -> build arguments (one per line: NAME=value)
knobs() {
	case "$1" in
	1.0.0 | 1.1.0 | 2.0.0) echo "DEMO_VERSION=$1" ;;
	bad-crash) printf '%s\n' "DEMO_VERSION=$1" "DEMO_CRASH_AT_START=1" ;;
	bad-health) printf '%s\n' "DEMO_VERSION=$1" "DEMO_FAIL_HEALTH_AFTER=3s" ;;
	bad-errors) printf '%s\n' "DEMO_VERSION=$1" "DEMO_ERROR_RATE=0.5" ;;
	bad-latency) printf '%s\n' "DEMO_VERSION=$1" "DEMO_LATENCY=300ms" ;;
	*)
		echo "build-images.sh: unknown tag $1" >&2
		return 1
		;;
	esac
}

if [ $# -eq 0 ]; then
	set -- 1.0.0 1.1.0 2.0.0 bad-crash bad-health bad-errors bad-latency
fi
for tag in "$@"; do knobs "$tag" >/dev/null; done

ctx=$(mktemp -d "${TMPDIR:-/tmp}/slipway-demo-build.XXXXXX")
trap 'rm -rf "$ctx"' EXIT INT TERM

(cd "$here" && CGO_ENABLED=0 "$go" build -trimpath -buildvcs=false -ldflags='-s -w' -o "$ctx/demo-service" .)
cp "$here/Dockerfile" "$ctx/Dockerfile"
sum=$(sha256sum "$ctx/demo-service" | cut -d' ' -f1)
dsum=$(sha256sum "$ctx/Dockerfile" | cut -d' ' -f1)
stamp="$sum-$(echo "$dsum" | cut -c1-12)"

for tag in "$@"; do
	have=$($docker image inspect --format '{{ index .Config.Labels "io.slipway.demo.binary-sha256" }}' "$repo:$tag" 2>/dev/null || true)
	if [ "${FORCE:-}" != 1 ] && [ "$have" = "$stamp" ]; then
		echo "$repo:$tag is up to date"
		continue
	fi
	args=""
	for kv in $(knobs "$tag"); do args="$args --build-arg $kv"; done
	# shellcheck disable=SC2086 # $args is a list of words without spaces
	# The legacy builder (no buildx here) prints a deprecation notice on stderr: keep it
	# out of the output unless the build fails.
	if ! DOCKER_BUILDKIT=0 $docker build -q $args --build-arg "BINARY_SHA256=$stamp" -t "$repo:$tag" "$ctx" >"$ctx/build.log" 2>&1; then
		cat "$ctx/build.log" >&2
		exit 1
	fi
	echo "built $repo:$tag"
done
# Images the tags pointed to before (now untagged) go, unless a container still uses them.
$docker image prune -f --filter label=org.opencontainers.image.title=slipway-demo >/dev/null
