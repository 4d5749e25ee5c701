#!/usr/bin/env bash
# End-to-end test of Slipway as containers (make compose-e2e; CI runs it):
#   1. compose up (images built offline; temporal, worker, api healthy; the one-shot
#      release-demo released the demo service through the API)
#   2. release a new version of the demo through the API with curl, as Jenkins would
#      (POST /v1/releases?wait=5m with the spec file as body), expect outcome succeeded, and
#      check with the docker CLI that the new version takes the traffic with the right number
#      of replicas on both clusters
#   3. release a bad version (demo=bad-errors), expect outcome rolled_back, the good version
#      still serving and no container of the bad version running
#   4. compose down, and check that no container, network or volume is left behind (the
#      images are kept, as docs/compose.md says)
# It prints PASS/FAIL per check and ends with "N passed, M failed"; exit status 1 on a failure.
# It cleans up on failure and on Ctrl-C too.
#
# Isolation from anything else on the machine (`make dev`, a `make compose-up` stack):
# its own compose project (slipway-e2e), free host ports, and its own environment: it
# releases deployments/local.yaml with only the environment renamed to compose-e2e, so
# its containers (slipway.compose-e2e.*) and networks never touch the `local` environment.
#
# Environment: SLIPWAY_E2E_PROJECT (slipway-e2e), SLIPWAY_E2E_ENVIRONMENT (compose-e2e;
# "local" releases deployments/local.yaml unchanged, and then refuses to run when containers
# of `local` exist unless SLIPWAY_E2E_FORCE=1), SLIPWAY_API_PORT / SLIPWAY_TEMPORAL_PORT /
# SLIPWAY_UI_PORT (default: free ports from 28080 / 27233 / 28233), SLIPWAY_SKIP_BUILD=1,
# SLIPWAY_E2E_GOOD (1.1.0), SLIPWAY_E2E_BAD (bad-errors).
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo" || exit 1

project=${SLIPWAY_E2E_PROJECT:-slipway-e2e}
env=${SLIPWAY_E2E_ENVIRONMENT:-compose-e2e}
good=${SLIPWAY_E2E_GOOD:-1.1.0}
bad=${SLIPWAY_E2E_BAD:-bad-errors}
service=demo
replicas=2
clusters=(local-a local-b)
started=$SECONDS

passed=0
failed=0
fatal="" # set when a later step cannot run (its checks then fail as "not run")

pass() {
	passed=$((passed + 1))
	echo "PASS  $*"
}
fail() {
	failed=$((failed + 1))
	echo "FAIL  $*"
}
note() { echo "      $*"; }
# runnable NAME: false (and a FAIL) when an earlier fatal failure prevents this check.
runnable() {
	if [ -n "$fatal" ]; then
		fail "$1 (not run: $fatal)"
		return 1
	fi
}

work=$(mktemp -d "${TMPDIR:-/tmp}/slipway-e2e.XXXXXX")
log=$work/e2e.log
: >"$log"

# free_port START: the first port from START on that nothing listens on (127.0.0.1).
free_port() {
	local p=$1
	while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
		p=$((p + 1))
	done
	echo "$p"
}
export SLIPWAY_COMPOSE_PROJECT=$project
export SLIPWAY_ENVIRONMENT=$env
export SLIPWAY_COMPOSE_DIR=$work/compose
export SLIPWAY_DEPLOYMENTS=$work/deployments
export SLIPWAY_API_PORT=${SLIPWAY_API_PORT:-$(free_port 28080)}
export SLIPWAY_TEMPORAL_PORT=${SLIPWAY_TEMPORAL_PORT:-$(free_port 27233)}
export SLIPWAY_UI_PORT=${SLIPWAY_UI_PORT:-$(free_port 28233)}
export SLIPWAY_BIND=127.0.0.1
api=http://127.0.0.1:$SLIPWAY_API_PORT

downed=0
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ "$downed" = 0 ]; then
		echo "e2e: cleaning up (compose down)" >&2
		build/compose.sh down >>"$log" 2>&1 || echo "e2e: compose down failed, see above" >&2
	fi
	if [ "$failed" -gt 0 ] && [ -s "$log" ]; then
		echo "---- last lines of the e2e log ($log)" >&2
		tail -n 60 "$log" >&2
	fi
	rm -rf "$work"
	echo "e2e: $((SECONDS - started))s in all"
	echo "$passed passed, $failed failed"
	if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
		exit 1
	fi
	exit 0
}
trap cleanup EXIT
trap 'fail "interrupted"; exit 130' INT TERM

# ---- helpers over the docker CLI --------------------------------------------------------

# traffic CLUSTER: one line "<version> <ip>" per running replica of the service that takes
# traffic on CLUSTER (joined to slipway.<env>.<cluster> under the service alias).
traffic() {
	local net="slipway.$env.$1" ids
	ids=$(docker ps -q --filter "label=io.slipway.environment=$env" --filter "label=io.slipway.cluster=$1" \
		--filter "label=io.slipway.service=$service")
	[ -n "$ids" ] || return 0
	# shellcheck disable=SC2086
	docker inspect $ids | jq -r --arg net "$net" --arg alias "$service" '.[]
		| select(.State.Running)
		| select((.NetworkSettings.Networks[$net].Aliases // []) | index($alias))
		| "\(.Config.Labels["io.slipway.version"]) \(.NetworkSettings.Networks[$net].IPAddress)"'
}

# running_of VERSION: the names of running containers of that version of the service.
running_of() {
	docker ps --filter "label=io.slipway.environment=$env" --filter "label=io.slipway.service=$service" \
		--filter "label=io.slipway.version=$1" --format '{{.Names}}'
}

# check_serves VERSION WHAT: every cluster has exactly $replicas replicas in traffic, all of
# VERSION, and each answers GET / with that version.
check_serves() {
	local want=$1 what=$2 c lines n bad_lines ip v ok=1
	for c in "${clusters[@]}"; do
		lines=$(traffic "$c")
		n=$(printf '%s' "$lines" | grep -c . || true)
		bad_lines=$(printf '%s\n' "$lines" | awk -v w="$want" 'NF && $1 != w')
		if [ "$n" -eq "$replicas" ] && [ -z "$bad_lines" ]; then
			pass "$what: $c has $replicas replicas of $service $want in traffic"
		else
			fail "$what: $c has $n replica(s) in traffic, want $replicas of $service $want; got: $(echo $lines)"
			ok=0
		fi
		while read -r v ip; do
			[ -n "$ip" ] || continue
			got=$(curl -sS --max-time 5 "http://$ip:8080/" 2>>"$log" | jq -r .version 2>/dev/null)
			if [ "$got" != "$want" ]; then
				fail "$what: replica $ip on $c answers version '$got', want $want"
				ok=0
			fi
		done <<<"$lines"
	done
	[ "$ok" = 1 ] && pass "$what: every replica in traffic answers GET / with version $want"
}

# release QUERY KEY: POST the spec file to /v1/releases?QUERY with Idempotency-Key KEY, as a
# Jenkins job would; sets $code and $body.
release() {
	local out=$work/release.json
	code=$(curl -sS --max-time 330 -o "$out" -w '%{http_code}' \
		-H "@$work/auth.header" -H 'Content-Type: application/yaml' \
		-H "Idempotency-Key: $2" --data-binary "@$SLIPWAY_DEPLOYMENTS/$env.yaml" \
		"$api/v1/releases?$1" 2>>"$log") || code=000
	body=$(cat "$out" 2>/dev/null)
	echo "POST /v1/releases?$1 -> $code $(echo "$body" | jq -c '{id, outcome, reason, phase}' 2>/dev/null)" >>"$log"
}

# ---- 0. preparation --------------------------------------------------------------------

for tool in docker docker-compose curl jq; do
	if ! command -v "$tool" >/dev/null; then
		fail "tool $tool is installed"
		fatal="$tool missing"
	fi
done
[ -n "$fatal" ] && exit 1

mkdir -p "$SLIPWAY_DEPLOYMENTS"
if [ "$env" = local ]; then
	cp deployments/local.yaml "$SLIPWAY_DEPLOYMENTS/local.yaml"
	if [ -n "$(docker ps -aq --filter label=io.slipway.environment=local)" ] && [ "${SLIPWAY_E2E_FORCE:-}" != 1 ]; then
		fail "environment local is free (containers of it exist: the e2e would remove them; set SLIPWAY_E2E_FORCE=1)"
		downed=1 # touch nothing
		exit 1
	fi
else
	sed "s/^environment: local\$/environment: $env/" deployments/local.yaml >"$SLIPWAY_DEPLOYMENTS/$env.yaml"
	if ! grep -q "^environment: $env\$" "$SLIPWAY_DEPLOYMENTS/$env.yaml"; then
		fail "deployments/local.yaml has a top-level 'environment: local' line to rename"
		exit 1
	fi
fi
initial=$(awk '/^services:/ {s=1} s && $1 == "version:" {print $2; exit}' "$SLIPWAY_DEPLOYMENTS/$env.yaml")
if [ "$initial" = "$good" ]; then
	good=2.0.0
fi
echo "e2e: project $project, environment $env, API $api, Temporal 127.0.0.1:$SLIPWAY_TEMPORAL_PORT, UI :$SLIPWAY_UI_PORT"
echo "e2e: versions: $initial (deployments/local.yaml) -> $good -> $bad (expect rollback to $good)"

# Leftovers of an earlier run of this project/environment (a killed CI job) go first.
build/compose.sh down >>"$log" 2>&1

# ---- 1. compose up ---------------------------------------------------------------------

t0=$SECONDS
if build/compose.sh up >>"$log" 2>&1; then
	pass "compose up: temporal, worker and api healthy, release-demo released $service $initial ($((SECONDS - t0))s)"
else
	fail "compose up (see the log below)"
	fatal="compose up failed"
fi
# The token goes to curl in a header file, not on its command line (which ps shows).
(umask 077 && printf 'Authorization: Bearer %s\n' "$(cat "$SLIPWAY_COMPOSE_DIR/token" 2>/dev/null)" >"$work/auth.header")

if runnable "API /healthz and /readyz"; then
	h=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$api/healthz" 2>>"$log")
	r=$(curl -sS --max-time 10 "$api/readyz" 2>>"$log")
	if [ "$h" = 200 ] && [ "$(echo "$r" | jq -r .ready 2>/dev/null)" = true ]; then
		pass "API /healthz 200 and /readyz ready ($(echo "$r" | jq -c .checks))"
	else
		fail "API /healthz $h, /readyz: $r"
		fatal="the API is not ready"
	fi
fi

if runnable "Temporal Web UI"; then
	ns=$(curl -sS --max-time 10 "http://127.0.0.1:$SLIPWAY_UI_PORT/api/v1/namespaces" 2>>"$log" |
		jq -r '.namespaces[].namespaceInfo.name' 2>/dev/null | tr '\n' ' ')
	case " $ns" in
	*" default "*) pass "Temporal Web UI on :$SLIPWAY_UI_PORT lists the default namespace" ;;
	*) fail "Temporal Web UI on :$SLIPWAY_UI_PORT lists namespaces '$ns', want default" ;;
	esac
fi

if runnable "API refuses a release without a token"; then
	c=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/yaml' \
		--data-binary "@$SLIPWAY_DEPLOYMENTS/$env.yaml" "$api/v1/releases" 2>>"$log")
	if [ "$c" = 401 ]; then pass "API refuses a release without a token (401)"; else fail "release without a token: HTTP $c, want 401"; fi
fi

if runnable "demo released by compose"; then
	check_serves "$initial" "after compose up"
fi

# ---- 2. a good release through the API --------------------------------------------------

key="e2e-$$-$RANDOM"
if runnable "release $service=$good through the API"; then
	t0=$SECONDS
	release "wait=5m&set=$service=$good&description=compose-e2e" "$key-good"
	outcome=$(echo "$body" | jq -r .outcome 2>/dev/null)
	rid=$(echo "$body" | jq -r .id 2>/dev/null)
	if [ "$code" = 200 ] && [ "$outcome" = succeeded ]; then
		pass "release $service=$good through the API: HTTP 200, outcome succeeded ($((SECONDS - t0))s, $rid)"
	else
		fail "release $service=$good: HTTP $code, outcome '$outcome': $(echo "$body" | jq -c '{reason, detail, title}' 2>/dev/null || echo "$body" | head -c 400)"
		fatal="the good release did not succeed"
	fi
fi
if runnable "$service $good runs on both clusters"; then
	check_serves "$good" "after the release of $good"
	old=$(running_of "$initial" | wc -l)
	note "$old container(s) of $initial still running (out of traffic; keep_previous)"
fi
if runnable "a retried trigger (same Idempotency-Key) starts nothing new"; then
	release "wait=5m&set=$service=$good&description=compose-e2e" "$key-good"
	if [ "$code" = 200 ] && [ "$(echo "$body" | jq -r .existing)" = true ] && [ "$(echo "$body" | jq -r .id)" = "$rid" ]; then
		pass "a retried trigger (same Idempotency-Key) answers the same release $rid"
	else
		fail "retried trigger: HTTP $code, $(echo "$body" | jq -c '{id, existing, outcome}' 2>/dev/null)"
	fi
fi

# ---- 3. a bad release is rolled back ----------------------------------------------------

if runnable "release $service=$bad is rolled back"; then
	t0=$SECONDS
	release "wait=5m&set=$service=$bad&description=compose-e2e-bad" "$key-bad"
	outcome=$(echo "$body" | jq -r .outcome 2>/dev/null)
	if [ "$code" = 200 ] && [ "$outcome" = rolled_back ]; then
		pass "release $service=$bad: HTTP 200, outcome rolled_back ($((SECONDS - t0))s; $(echo "$body" | jq -r .reason | head -c 160))"
	else
		fail "release $service=$bad: HTTP $code, outcome '$outcome', want rolled_back: $(echo "$body" | jq -c '{reason, detail}' 2>/dev/null)"
	fi
fi
if runnable "$good still serving after the rollback"; then
	check_serves "$good" "after the rollback"
	left=$(running_of "$bad")
	if [ -z "$left" ]; then
		pass "no container of $service $bad is running"
	else
		fail "containers of $service $bad still running: $(echo $left)"
	fi
fi

# ---- 4. compose down leaves nothing behind -----------------------------------------------

t0=$SECONDS
downed=1
if build/compose.sh down >>"$log" 2>&1; then
	pass "compose down ($((SECONDS - t0))s)"
else
	fail "compose down"
fi
c=$( {
	docker ps -a --filter "label=com.docker.compose.project=$project" --format '{{.Names}}'
	docker ps -a --filter "label=io.slipway.environment=$env" --format '{{.Names}}'
} | sort -u)
if [ -z "$c" ]; then pass "no container of project $project or environment $env left"; else fail "containers left: $(echo $c)"; fi
n=$( {
	docker network ls --filter "label=com.docker.compose.project=$project" --format '{{.Name}}'
	docker network ls --format '{{.Name}}' | grep -E "^(${project}_|slipway\.$env\.)" || true
} | sort -u)
if [ -z "$n" ]; then pass "no network of project $project or environment $env left"; else fail "networks left: $(echo $n)"; fi
v=$( {
	docker volume ls -q --filter "label=com.docker.compose.project=$project"
	docker volume ls -q | grep -E "^${project}_" || true
} | sort -u)
if [ -z "$v" ]; then pass "no volume of project $project left"; else fail "volumes left: $(echo $v)"; fi
if docker image inspect slipway/slipway:dev "slipway/demo:$good" >/dev/null 2>&1; then
	pass "the images are kept (slipway/slipway:dev, slipway/demo:*), as docs/compose.md says"
else
	fail "the images slipway/slipway:dev and slipway/demo:$good should be kept"
fi
