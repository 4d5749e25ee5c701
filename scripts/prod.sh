#!/usr/bin/env bash
# The production topology on one machine (docs/production.md): PostgreSQL, two official
# Temporal server processes forming one cluster (membership on loopback), two Slipway
# workers and two Slipway API replicas, each a background process with its pid file and log
# in the state directory. No registry, no containers of its own: Debian's postgresql, and
# the Temporal server and schema tool built from go.temporal.io/server (make .bin/temporal-server).
#
#   scripts/prod.sh up                start (or start again) everything, wait until it is ready, print the addresses
#   scripts/prod.sh down              stop every process; keep the data (PostgreSQL, tokens): `up` carries on
#   scripts/prod.sh clean             down, then delete the state directory
#   scripts/prod.sh status            which process runs, and the addresses
#   scripts/prod.sh env               the addresses as shell variables (SLIPWAY_URL, TEMPORAL_ADDRESS...)
#   scripts/prod.sh start NAME        start one process and wait until it is ready
#   scripts/prod.sh stop NAME         stop one process (SIGTERM; SIGKILL after 15 s)
#   scripts/prod.sh kill NAME         SIGKILL one process (postgres: an immediate shutdown, as a crash)
#   scripts/prod.sh restart NAME      kill, then start (postgres: pg_ctl restart -m immediate)
#   NAME: postgres, temporal-1, temporal-2, worker-1, worker-2, api-1, api-2
#
# Environment (read by `up`, then remembered in the state directory):
#   SLIPWAY_PROD_DIR          state directory (default .prod in the repository, git-ignored)
#   SLIPWAY_PROD_PORT_BASE    first of the 33 loopback ports used (default 17400): PostgreSQL on
#                             base, Temporal server i on base+10i .. base+10i+8, API i on base+30+i
#   SLIPWAY_PROD_BIN          directory of slipway and slipway-probe (default bin, `make build`)
#   SLIPWAY_PROD_TEMPORAL_BIN directory of temporal-server and temporal-sql-tool (default .bin)
#   SLIPWAY_PROD_SCHEMA_DIR   the server module's schema/postgresql/v12 (default: found with go list)
#   SLIPWAY_PROD_DEPLOYMENTS  the API's directory of checked-in specs (default deployments)
#   SLIPWAY_PROD_LOG_LEVEL    the Temporal servers' log level (default warn)
#   SLIPWAY_PROD_PG_BIN       directory of initdb, pg_ctl, postgres (default: the newest
#                             /usr/lib/postgresql/*/bin, else PATH)
# As root, PostgreSQL runs as the postgres system user (initdb refuses root); otherwise as you.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
procs=(postgres temporal-1 temporal-2 worker-1 worker-2 api-1 api-2)

log() { echo "prod: $*" >&2; }
die() {
	echo "prod: $*" >&2
	exit 1
}

state=${SLIPWAY_PROD_DIR:-$repo/.prod}
state=$(mkdir -p "$state" && cd "$state" && pwd)
conf=$state/settings

# settings: chosen once (first `up`), read by every later command, so `kill worker-1` and
# `down` find the ports and binaries `up` used even without the environment variables.
load_settings() {
	if [ -f "$conf" ]; then
		# shellcheck source=/dev/null
		. "$conf"
		return
	fi
	base=${SLIPWAY_PROD_PORT_BASE:-17400}
	bin=${SLIPWAY_PROD_BIN:-$repo/bin}
	tbin=${SLIPWAY_PROD_TEMPORAL_BIN:-$repo/.bin}
	deployments=${SLIPWAY_PROD_DEPLOYMENTS:-$repo/deployments}
	loglevel=${SLIPWAY_PROD_LOG_LEVEL:-warn}
	schema=${SLIPWAY_PROD_SCHEMA_DIR:-}
	pgbin=${SLIPWAY_PROD_PG_BIN:-}
}

save_settings() {
	cat >"$conf.new" <<EOF
# Written by scripts/prod.sh up: the settings of this topology.
base=$base
bin=$(printf %q "$bin")
tbin=$(printf %q "$tbin")
deployments=$(printf %q "$deployments")
loglevel=$loglevel
schema=$(printf %q "$schema")
pgbin=$(printf %q "$pgbin")
EOF
	mv "$conf.new" "$conf"
}

# Ports of everything, from the base.
ports() {
	pg_port=$base
	fe1=$((base + 10)) fe2=$((base + 20))
	api1=$((base + 31)) api2=$((base + 32))
}

find_pgbin() {
	if [ -n "$pgbin" ]; then
		return
	fi
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
	if [ -n "$d" ] && [ -x "$d/initdb" ]; then
		pgbin=$d
	elif command -v initdb >/dev/null 2>&1; then
		pgbin=$(dirname "$(command -v initdb)")
	else
		die "no PostgreSQL server (initdb, pg_ctl): install it (Debian: apt-get install -y postgresql; .ci/run does)"
	fi
}

find_schema() {
	if [ -n "$schema" ]; then
		return
	fi
	local dir
	dir=$(cd "$repo" && go list -m -f '{{.Dir}}' go.temporal.io/server) || die "cannot find the go.temporal.io/server module (go mod download)"
	schema=$dir/schema/postgresql/v12
	[ -d "$schema/temporal/versioned" ] || die "no schema in $schema"
}

# as_pg runs a command as the user PostgreSQL runs as.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

pgdata() { echo "$state/pg"; }
pidfile() { echo "$state/run/$1.pid"; }
logfile() { echo "$state/log/$1.log"; }

pid_of() {
	local f
	f=$(pidfile "$1")
	[ -f "$f" ] || return 1
	local pid
	pid=$(cat "$f")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	echo "$pid"
}

running() {
	if [ "$1" = postgres ]; then
		as_pg "$pgbin/pg_ctl" -D "$(pgdata)" status >/dev/null 2>&1
	else
		pid_of "$1" >/dev/null
	fi
}

# wait_for DESCRIPTION SECONDS COMMAND...: retries the command every 0.2 s.
wait_for() {
	local what=$1 secs=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if [ $SECONDS -ge $deadline ]; then
			return 1
		fi
		sleep 0.2
	done
	log "$what ready"
}

random_secret() { head -c 32 /dev/urandom | od -An -vtx1 | tr -d ' \n'; }

# --- PostgreSQL -------------------------------------------------------------------------

init_postgres() {
	local data
	data=$(pgdata)
	if [ -f "$data/PG_VERSION" ]; then
		return
	fi
	log "initdb $data (PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}'), port $pg_port)"
	(umask 077 && random_secret >"$state/pg-password")
	rm -rf "$data" "$state/pg-init"
	mkdir -p "$data" "$state/pg-init"
	chmod 0700 "$data" "$state/pg-init"
	local pwfile=$state/pg-init/password
	cp "$state/pg-password" "$pwfile"
	if [ "$(id -u)" = 0 ]; then
		id postgres >/dev/null 2>&1 || die "running as root: PostgreSQL needs the postgres system user (apt-get install -y postgresql makes it)"
		# The postgres user walks into the state directory and owns its data and log.
		chmod a+x "$state"
		runuser -u postgres -- test -x "$state" ||
			die "the postgres user cannot enter $state: let it through every parent directory (chmod a+x), or choose another SLIPWAY_PROD_DIR"
		chown -R postgres: "$data" "$state/pg-init"
	fi
	as_pg "$pgbin/initdb" -D "$data" -U temporal --pwfile="$pwfile" --auth-host=scram-sha-256 --auth-local=peer \
		-E UTF8 --locale=C >"$state/log/initdb.log" 2>&1 || {
		cat "$state/log/initdb.log" >&2
		die "initdb failed"
	}
	rm -rf "$state/pg-init"
	cat >>"$data/postgresql.conf" <<EOF

# scripts/prod.sh: loopback only, TCP only (no Unix socket), room for two Temporal servers.
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = ''
max_connections = 200
EOF
}

start_postgres() {
	local lf
	lf=$(logfile postgres)
	touch "$lf"
	if [ "$(id -u)" = 0 ]; then
		chown postgres: "$lf"
	fi
	as_pg "$pgbin/pg_ctl" -D "$(pgdata)" -l "$lf" -w -t 60 start >/dev/null || {
		tail -n 20 "$lf" >&2
		die "PostgreSQL did not start"
	}
	wait_for "postgres on 127.0.0.1:$pg_port" 60 "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" || die "PostgreSQL does not answer"
}

setup_databases() {
	if [ -f "$state/schema-done" ]; then
		return
	fi
	find_schema
	local db dir
	for db in temporal temporal_visibility; do
		dir=$schema/temporal
		[ "$db" = temporal ] || dir=$schema/visibility
		log "database $db: create, schema from $dir/versioned"
		sqltool --db "$db" create-database
		sqltool --db "$db" setup-schema -v 0.0
		sqltool --db "$db" update-schema -d "$dir/versioned"
	done
	touch "$state/schema-done"
}

sqltool() {
	SQL_PASSWORD=$(cat "$state/pg-password") "$tbin/temporal-sql-tool" --plugin postgres12 --ep 127.0.0.1 -p "$pg_port" -u temporal \
		"$@" >>"$state/log/schema.log" 2>&1 || {
		tail -n 20 "$state/log/schema.log" >&2
		die "temporal-sql-tool $* failed (log $state/log/schema.log)"
	}
}

# --- Temporal ---------------------------------------------------------------------------

# temporal_config N: the config file of server N. Both servers share the database and the
# cluster; they find each other through the cluster_membership table and ringpop on loopback.
temporal_config() {
	local n=$1 p=$((base + 10 * $1))
	local f=$state/temporal-$n.yaml pw
	pw=$(cat "$state/pg-password")
	(
		umask 077
		cat >"$f" <<EOF
# Written by scripts/prod.sh: Temporal server $n of the one-machine production topology.
log:
  stdout: true
  level: $loglevel
persistence:
  defaultStore: default
  visibilityStore: visibility
  numHistoryShards: 4
  datastores:
    default:
      sql:
        pluginName: postgres12
        databaseName: temporal
        connectAddr: 127.0.0.1:$pg_port
        connectProtocol: tcp
        user: temporal
        password: "$pw"
        maxConns: 10
        maxIdleConns: 10
        maxConnLifetime: 1h
    visibility:
      sql:
        pluginName: postgres12
        databaseName: temporal_visibility
        connectAddr: 127.0.0.1:$pg_port
        connectProtocol: tcp
        user: temporal
        password: "$pw"
        maxConns: 4
        maxIdleConns: 4
        maxConnLifetime: 1h
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: 127.0.0.1
services:
  frontend:
    rpc: {grpcPort: $p, membershipPort: $((p + 1)), httpPort: $((p + 2)), bindOnIP: 127.0.0.1}
  history:
    rpc: {grpcPort: $((p + 3)), membershipPort: $((p + 4)), bindOnIP: 127.0.0.1}
  matching:
    rpc: {grpcPort: $((p + 5)), membershipPort: $((p + 6)), bindOnIP: 127.0.0.1}
  worker:
    rpc: {grpcPort: $((p + 7)), membershipPort: $((p + 8)), bindOnIP: 127.0.0.1}
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: 127.0.0.1:$fe1
dcRedirectionPolicy:
  policy: noop
dynamicConfigClient:
  filepath: $state/dynamicconfig.yaml
  pollInterval: 10s
EOF
	)
	echo "$f"
}

write_dynamic_config() {
	cat >"$state/dynamicconfig.yaml" <<'EOF'
# Written by scripts/prod.sh: Temporal's dynamic config (polled every 10 s).
limit.maxIDLength:
  - value: 255
EOF
}

# --- processes --------------------------------------------------------------------------

# spawn NAME COMMAND...: starts the command in the background, in a session of its own (a
# signal to the caller's process group does not reach it), its output appended to its log.
spawn() {
	local name=$1
	shift
	local lf
	lf=$(logfile "$name")
	printf '===== %s start %s: %s\n' "$name" "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" "$*" >>"$lf"
	setsid "$@" >>"$lf" 2>&1 </dev/null &
	echo $! >"$(pidfile "$name")"
}

# log_since_start NAME PATTERN: the log has a line matching PATTERN after the last start line.
log_since_start() {
	local lf
	lf=$(logfile "$1")
	awk -v pat="$2" -v name="$1" 'index($0, "===== " name " start ") == 1 { seen = 0; start = 1; next }
		start && index($0, pat) { seen = 1 } END { exit !seen }' "$lf"
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

alive_and() {
	local name=$1
	shift
	running "$name" || return 2
	"$@"
}

# ready NAME: waits until the process serves (or fails at once if it died).
ready() {
	local name=$1 rc=0
	case $name in
	temporal-*)
		local fe=$((base + 10 * ${name#temporal-}))
		wait_for "$name frontend on 127.0.0.1:$fe" 120 alive_and "$name" tcp_open "$fe" || rc=1
		;;
	worker-*)
		wait_for "$name" 120 alive_and "$name" log_since_start "$name" "polling task queue" || rc=1
		;;
	api-*)
		local port=$((base + 30 + ${name#api-}))
		wait_for "$name on http://127.0.0.1:$port" 60 alive_and "$name" curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$port/healthz" || rc=1
		;;
	esac
	if [ $rc != 0 ]; then
		tail -n 30 "$(logfile "$name")" >&2
		die "$name is not ready (log $(logfile "$name"))"
	fi
}

start_one() {
	local name=$1
	if [ "$name" = postgres ]; then
		running postgres || start_postgres
		return
	fi
	if running "$name"; then
		return
	fi
	local n=${name##*-} slipway=$bin/slipway
	case $name in
	temporal-1 | temporal-2)
		local cf
		cf=$(temporal_config "$n")
		spawn "$name" "$tbin/temporal-server" --allow-no-auth --config-file "$cf" start
		;;
	worker-1 | worker-2)
		mkdir -p "$state/secrets"
		chmod 0700 "$state/secrets"
		# Worker i talks to Temporal server i.
		spawn "$name" "$slipway" worker --temporal-address "127.0.0.1:$((base + 10 * n))" --secrets-dir "$state/secrets"
		;;
	api-1 | api-2)
		spawn "$name" "$slipway" api --temporal-address "127.0.0.1:$((base + 10 * n))" \
			--api-addr "127.0.0.1:$((base + 30 + n))" --replicas 2 \
			--deployments "$deployments" --tokens-file "$state/tokens.yaml"
		;;
	*) die "unknown process $name (one of: ${procs[*]})" ;;
	esac
	ready "$name"
}

# stop_one NAME [SIGNAL]: TERM waits up to 15 s then KILLs; KILL is at once.
stop_one() {
	local name=$1 sig=${2:-TERM}
	if [ "$name" = postgres ]; then
		if running postgres; then
			local mode=fast
			[ "$sig" = KILL ] && mode=immediate
			as_pg "$pgbin/pg_ctl" -D "$(pgdata)" -m "$mode" -w stop >/dev/null
		fi
		return
	fi
	local pid
	pid=$(pid_of "$name") || {
		rm -f "$(pidfile "$name")"
		return 0
	}
	kill -s "$sig" "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + 15))
	while kill -0 "$pid" 2>/dev/null; do
		if [ "$sig" != KILL ] && [ $SECONDS -ge $deadline ]; then
			log "$name did not stop in 15 s: SIGKILL"
			kill -s KILL "$pid" 2>/dev/null || true
			sig=KILL
		fi
		sleep 0.1
	done
	rm -f "$(pidfile "$name")"
}

ensure_token() {
	if [ ! -s "$state/token" ]; then
		(umask 077 && printf 'slw_%s\n' "$(random_secret)" >"$state/token")
	fi
	local hash
	hash=$(tr -d '\n' <"$state/token" | sha256sum | cut -c1-64)
	cat >"$state/tokens.yaml" <<EOF
# Written by scripts/prod.sh from $state/token (SHA-256 only; the token is not here).
tokens:
  - name: prod
    sha256: $hash
    environments: ["*"]
    permissions: [read, release, approve]
EOF
}

check_binaries() {
	local b
	for b in "$bin/slipway" "$bin/slipway-probe"; do
		[ -x "$b" ] || die "$b missing: make build (or set SLIPWAY_PROD_BIN)"
	done
	for b in "$tbin/temporal-server" "$tbin/temporal-sql-tool"; do
		[ -x "$b" ] || die "$b missing: make .bin/temporal-server .bin/temporal-sql-tool (or set SLIPWAY_PROD_TEMPORAL_BIN)"
	done
	command -v curl >/dev/null 2>&1 || die "curl missing"
}

cmd_up() {
	local began=$SECONDS
	find_pgbin
	check_binaries
	mkdir -p "$state/run" "$state/log"
	save_settings
	init_postgres
	start_one postgres
	setup_databases
	write_dynamic_config
	ensure_token
	# The first server makes the cluster's metadata; the second joins it.
	start_one temporal-1
	start_one temporal-2
	local n
	for n in 1 2; do
		"$bin/slipway" namespace ensure --temporal-address "127.0.0.1:$((base + 10 * n))" --wait 3m \
			>>"$(logfile namespace)" 2>&1 || {
			tail -n 20 "$(logfile namespace)" >&2
			die "namespace not ready on temporal-$n"
		}
	done
	log "namespace default ready on both frontends"
	local p pids=()
	for p in worker-1 worker-2 api-1 api-2; do
		start_one "$p" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do
		wait "$p" || die "a process did not start"
	done
	log "up in $((SECONDS - began)) s"
	cmd_status
}

cmd_down() {
	local p
	for p in api-1 api-2 worker-1 worker-2; do
		stop_one "$p" &
	done
	wait
	for p in temporal-2 temporal-1; do
		stop_one "$p"
	done
	if [ -d "$(pgdata)" ]; then
		find_pgbin
		stop_one postgres
	fi
	[ "${1:-}" = quiet ] || log "stopped (data kept in $state; scripts/prod.sh clean deletes it)"
}

cmd_status() {
	local p st
	for p in "${procs[@]}"; do
		st=stopped
		if running "$p"; then
			st=running
		fi
		printf '  %-11s %s\n' "$p" "$st"
	done
	cat <<EOF
Production topology (state: $state)
  PostgreSQL   127.0.0.1:$pg_port  (user temporal, password in $state/pg-password; databases temporal, temporal_visibility)
  Temporal     127.0.0.1:$fe1, 127.0.0.1:$fe2  (one cluster, namespace default; worker-1 and api-1 use the first, worker-2 and api-2 the second)
  API          http://127.0.0.1:$api1, http://127.0.0.1:$api2  (token: $state/token)
  Logs         $state/log/
Release through either replica:
  SLIPWAY_URL=http://127.0.0.1:$api1 SLIPWAY_TOKEN=\$(cat $state/token) $bin/slipway release -f deployments/local.yaml --wait
EOF
}

cmd_env() {
	cat <<EOF
SLIPWAY_PROD_DIR=$(printf %q "$state")
SLIPWAY_URL=http://127.0.0.1:$api1
SLIPWAY_URL_2=http://127.0.0.1:$api2
SLIPWAY_TOKEN_FILE=$(printf %q "$state/token")
TEMPORAL_ADDRESS=127.0.0.1:$fe1
TEMPORAL_ADDRESS_2=127.0.0.1:$fe2
PGPORT=$pg_port
EOF
}

main() {
	local cmd=${1:-}
	[ -n "$cmd" ] || die "usage: scripts/prod.sh up|down|clean|status|env|start NAME|stop NAME|kill NAME|restart NAME"
	shift || true
	load_settings
	ports
	case $cmd in
	up) cmd_up ;;
	down) cmd_down ;;
	clean)
		cmd_down quiet
		rm -rf "$state"
		log "deleted $state"
		;;
	status)
		find_pgbin
		cmd_status
		;;
	env) cmd_env ;;
	start | stop | kill | restart)
		[ $# = 1 ] || die "usage: scripts/prod.sh $cmd NAME (one of: ${procs[*]})"
		local name=$1
		case " ${procs[*]} " in *" $name "*) ;; *) die "unknown process $name (one of: ${procs[*]})" ;; esac
		find_pgbin
		case $cmd in
		start) start_one "$name" ;;
		stop) stop_one "$name" ;;
		kill) stop_one "$name" KILL ;;
		restart)
			if [ "$name" = postgres ]; then
				as_pg "$pgbin/pg_ctl" -D "$(pgdata)" -l "$(logfile postgres)" -m immediate -w -t 60 restart >/dev/null
				wait_for "postgres on 127.0.0.1:$pg_port" 60 "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" || die "PostgreSQL does not answer"
			else
				stop_one "$name" KILL
				start_one "$name"
			fi
			;;
		esac
		;;
	*) die "unknown command $cmd" ;;
	esac
}

main "$@"
