#!/bin/sh
# Builds the Slipway demo images offline (FROM scratch, legacy builder, nothing pulled).
# Every tag reports its tag as its version (DEMO_VERSION) on GET /; /healthz is the health.
# "Every route but /healthz" means /, /lookup and unknown paths. Knobs: see main.go.
#
#   good versions
#     1.0.0 1.1.0 2.0.0   healthy, no misbehaviour
#     noisy-1.0.0 noisy-1.1.0
#                     good but noisy: 0.5% of the requests on every route but /healthz
#                     answer 500, drawn at random (for false-positive tests)
#     slow-start      good, but slow to start: listens at once, answers 503 on /healthz and
#                     every other route for the first 12 s, then 200 (DEMO_START_DELAY=12s);
#                     the image's HEALTHCHECK (1 s interval, 3 retries, no start period)
#                     says unhealthy from ~3 s until it passes after 12 s
#     slow-stop       good, but ignores SIGTERM: the engine has to kill it after its stop
#                     timeout (DEMO_IGNORE_SIGTERM=1)
#   misbehaving ones
#     bad-crash       exits 1 at start (DEMO_CRASH_AT_START=1)
#     bad-crash-later serves normally, then exits 1 after 20 s (DEMO_CRASH_AFTER=20s)
#     bad-health      /healthz turns 503 after 3 s, the rest keeps working
#                     (DEMO_FAIL_HEALTH_AFTER=3s)
#     bad-errors      every second request on every route but /healthz answers 500, evenly
#                     spread by a counter, so deterministic (DEMO_ERROR_RATE=0.5,
#                     DEMO_ERROR_SPREAD=even)
#     bad-intermittent  5% of the requests on every route but /healthz answer 500, drawn at
#                     random (DEMO_ERROR_RATE=0.05)
#     bad-routes      500 on every route but /healthz, which stays 200
#                     (DEMO_ERRORS_BUT_HEALTH=1)
#     bad-latency     +300 ms on every request but /healthz (DEMO_LATENCY=300ms)
#     bad-tail        8% of the requests on every route but /healthz, drawn at random, take
#                     800 ms more (DEMO_TAIL_RATE=0.08 DEMO_TAIL_LATENCY=800ms)
#     bad-oom         the heap grows ~64 MiB/s, pages written (DEMO_LEAK_PER_SECOND=64Mi):
#                     under a memory limit L the growth may go to 2L + 64 MiB, so the
#                     container is OOM-killed (exit 137) at the limit; without a limit it
#                     stops at 512 MiB (after 8 s) and the service keeps serving
#     bad-port        listens on 8081 instead of 8080 (DEMO_LISTEN_PORT=8081; PORT stays
#                     8080): nothing answers on the spec's port, though the image's own
#                     HEALTHCHECK, which follows the listen port, passes
#
# The Go binary is built once (static, reproducible). Each image carries a stamp (binary
# hash, Dockerfile hash, hash of the tag's knobs); a tag whose image already carries the
# same stamp is skipped, so a second run only costs the (cached) go build, and changing a
# tag's knobs rebuilds that tag.
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

# knobs TAG -> build arguments (one per line: NAME=value); DEMO_VERSION is the tag.
knobs() {
	case "$1" in
	1.0.0 | 1.1.0 | 2.0.0) ;;
	noisy-1.0.0 | noisy-1.1.0) echo "DEMO_ERROR_RATE=0.005" ;;
	slow-start) echo "DEMO_START_DELAY=12s" ;;
	slow-stop) echo "DEMO_IGNORE_SIGTERM=1" ;;
	bad-crash) echo "DEMO_CRASH_AT_START=1" ;;
	bad-crash-later) echo "DEMO_CRASH_AFTER=20s" ;;
	bad-health) echo "DEMO_FAIL_HEALTH_AFTER=3s" ;;
	bad-errors) printf '%s\n' "DEMO_ERROR_RATE=0.5" "DEMO_ERROR_SPREAD=even" ;;
	bad-intermittent) echo "DEMO_ERROR_RATE=0.05" ;;
	bad-routes) echo "DEMO_ERRORS_BUT_HEALTH=1" ;;
	bad-latency) echo "DEMO_LATENCY=300ms" ;;
	bad-tail) printf '%s\n' "DEMO_TAIL_RATE=0.08" "DEMO_TAIL_LATENCY=800ms" ;;
	bad-oom) echo "DEMO_LEAK_PER_SECOND=64Mi" ;;
	bad-port) echo "DEMO_LISTEN_PORT=8081" ;;
	*)
		echo "build-images.sh: unknown tag $1" >&2
		return 1
		;;
	esac
	echo "DEMO_VERSION=$1"
}

if [ $# -eq 0 ]; then
	set -- 1.0.0 1.1.0 2.0.0 noisy-1.0.0 noisy-1.1.0 slow-start slow-stop \
		bad-crash bad-crash-later bad-health bad-errors bad-intermittent bad-routes \
		bad-latency bad-tail bad-oom bad-port
fi
for tag in "$@"; do knobs "$tag" >/dev/null; done

ctx=$(mktemp -d "${TMPDIR:-/tmp}/slipway-demo-build.XXXXXX")
trap 'rm -rf "$ctx"' EXIT INT TERM

(cd "$here" && CGO_ENABLED=0 "$go" build -trimpath -buildvcs=false -ldflags='-s -w' -o "$ctx/demo-service" .)
cp "$here/Dockerfile" "$ctx/Dockerfile"
sum=$(sha256sum "$ctx/demo-service" | cut -d' ' -f1)
dsum=$(sha256sum "$ctx/Dockerfile" | cut -d' ' -f1)

for tag in "$@"; do
	ksum=$(knobs "$tag" | sha256sum | cut -c1-12)
	stamp="$sum-$(echo "$dsum" | cut -c1-12)-$ksum"
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
