#!/usr/bin/env bash
# scripts/postgres.sh: the PostgreSQL server crmsync's full test suite runs crmstore/sqlstore against.
#
#   postgres.sh install          install PostgreSQL from Debian (idempotent; quick when it is there)
#   postgres.sh start DIR        initdb a fresh private cluster in DIR/data and start it; writes DIR/env
#   postgres.sh stop DIR         stop what "start DIR" started
#   postgres.sh status DIR       exit 0 if the cluster of DIR is running
#
# What "start" runs: the Debian binaries (the newest /usr/lib/postgresql/*/bin, or $CRMSYNC_PG_BIN), never the
# Debian cluster (/etc/postgresql, the postgresql service, port 5432): a cluster of its own, owned by the
# unprivileged OS user postgres when started as root (by the calling user otherwise), listening on 127.0.0.1 on a
# free port and on a unix socket in DIR/run, with trust authentication (loopback only: a test server), and tuned
# for tests, not for safety: fsync, synchronous_commit and full_page_writes off. It creates the database crmsync.
#
# "start" writes DIR/env (KEY=VALUE lines, also printed on stdout):
#   CRMSYNC_PG_DSN=postgres://postgres@127.0.0.1:PORT/crmsync?sslmode=disable
#   CRMSYNC_PG_ADMIN_DSN (the same for the database postgres), CRMSYNC_PG_PORT, CRMSYNC_PG_DIR, CRMSYNC_PG_BIN
#   (the binaries: psql is there), CRMSYNC_PG_SCRIPT.
# Progress and errors go to stderr. DIR and its parents must be searchable by postgres (mktemp -d under /tmp).
#
# Environment overrides:
#   CRMSYNC_PG_BIN=DIR           the PostgreSQL binaries to use
#   CRMSYNC_PG_PORT=N            listen on port N instead of a free random one
#   CRMSYNC_PG_START_TIMEOUT=S   seconds to wait for the server to accept connections (default 30)
#   CRMSYNC_PG_NO_INSTALL=1      "start" fails instead of installing a missing PostgreSQL
#   CRMSYNC_PG_WATCH_PID=PID     "start" also leaves a watchdog that stops the cluster when PID exits (a test
#                                binary killed by a timeout or a signal does not leave a server behind)
set -euo pipefail

readonly PG_USER=postgres
readonly DBNAME=crmsync
readonly INSTALL_LOCK=/var/lock/crmsync-postgres-install.lock

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
readonly SCRIPT_PATH

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() {
	printf 'postgres.sh: error: %s\n' "$*" >&2
	exit 1
}

# shellcheck source=scripts/lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
usage() {
	sed -n '2,7p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# pg_bin prints the directory of the PostgreSQL binaries, empty if there are none.
pg_bin() {
	if [[ -n ${CRMSYNC_PG_BIN:-} ]]; then
		[[ -x $CRMSYNC_PG_BIN/pg_ctl ]] && printf '%s\n' "$CRMSYNC_PG_BIN"
		return 0
	fi
	local d best='' v bestv=0
	for d in /usr/lib/postgresql/*/bin; do
		[[ -x $d/pg_ctl && -x $d/initdb && -x $d/psql ]] || continue
		v=$(basename "$(dirname "$d")")
		[[ $v =~ ^[0-9]+$ ]] || continue
		if ((v > bestv)); then
			best=$d
			bestv=$v
		fi
	done
	[[ -n $best ]] && printf '%s\n' "$best"
	return 0
}

# stop_system_clusters keeps Debian's own clusters out of the way: the tests never use them.
stop_system_clusters() {
	if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
		systemctl disable --now postgresql.service >/dev/null 2>&1 || true
		return 0
	fi
	if command -v pg_lsclusters >/dev/null; then
		local ver name _rest
		while read -r ver name _rest; do
			[[ $ver =~ ^[0-9]+$ ]] || continue
			pg_ctlcluster "$ver" "$name" stop >/dev/null 2>&1 || true
		done < <(pg_lsclusters --no-header 2>/dev/null | awk '$4 == "online" {print $1, $2}')
	fi
}

cmd_install() {
	if [[ -n $(pg_bin) ]]; then
		return 0
	fi
	[[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed, and installing it needs root: sudo $0 install"
	local lockfd
	exec {lockfd}>"$INSTALL_LOCK"
	flock -w 1200 "$lockfd" || die "timed out waiting for $INSTALL_LOCK"
	if [[ -z $(pg_bin) ]]; then
		log "installing postgresql"
		# No service may start during the install: this container may have no init system, and the tests run
		# clusters of their own.
		local policy=/usr/sbin/policy-rc.d created_policy=
		if [[ ! -e $policy ]]; then
			printf '#!/bin/sh\n# written by crmsync scripts/postgres.sh during apt-get install\nexit 101\n' >"$policy"
			chmod 0755 "$policy"
			created_policy=1
		fi
		export DEBIAN_FRONTEND=noninteractive
		local apt_opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=600
			-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
		local rc=0 out
		out=$(mktemp)
		if ! apt-get "${apt_opts[@]}" install postgresql >"$out" 2>&1; then
			# A fresh machine may have no (or stale) package lists.
			if apt-get -q -o DPkg::Lock::Timeout=600 update >>"$out" 2>&1; then
				apt-get "${apt_opts[@]}" install postgresql >>"$out" 2>&1 || rc=$?
			else
				rc=$?
			fi
		fi
		[[ -n $created_policy ]] && rm -f "$policy"
		if [[ $rc -ne 0 ]]; then
			tail -n 40 "$out" >&2
			rm -f "$out"
			die "apt-get install postgresql failed (exit $rc)"
		fi
		rm -f "$out"
		stop_system_clusters
	fi
	exec {lockfd}>&-
	[[ -n $(pg_bin) ]] || die "no PostgreSQL binaries under /usr/lib/postgresql/*/bin after apt-get install"
}

# ---------------------------------------------------------------------------------------------------------------
# helpers for start / stop

# abs_dir prints DIR as an absolute path and checks it is usable.
abs_dir() {
	local dir=$1
	[[ -n $dir ]] || die "DIR is empty"
	[[ $dir == /* ]] || dir="$PWD/$dir"
	dir=${dir%/}
	[[ $dir =~ ^/[A-Za-z0-9._/+-]+$ ]] || die "DIR must be a path of letters, digits and ._+-/ only: $dir"
	# The server's socket is DIR/run/.s.PGSQL.PORT; a unix socket path has at most 107 bytes.
	[[ ${#dir} -le 80 ]] || die "DIR is too long for a unix socket path (max 80 characters): $dir"
	printf '%s\n' "$dir"
}

# as_owner CMD...: run CMD as the cluster's owner: postgres when we are root (initdb refuses root), else us.
as_owner() {
	if [[ $(id -u) -eq 0 ]]; then
		setpriv --reuid="$PG_USER" --regid="$PG_USER" --init-groups -- "$@"
	else
		"$@"
	fi
}

# postmaster_pid DIR: the pid of DIR's running server, empty if none.
postmaster_pid() {
	local pid
	[[ -s $1/data/postmaster.pid ]] || return 0
	read -r pid <"$1/data/postmaster.pid" || return 0
	[[ $pid =~ ^[0-9]+$ && -n $(start_time "$pid") ]] && printf '%s\n' "$pid"
	return 0
}

running() { [[ -n $(postmaster_pid "$1") ]]; }

# stop_cluster DIR MODE: stop DIR's server (pg_ctl stop -m MODE), killing it if it does not go.
stop_cluster() {
	local dir=$1 mode=$2 bin pid i
	pid=$(postmaster_pid "$dir")
	[[ -n $pid ]] || return 0
	bin=$(cat "$dir/bin" 2>/dev/null || pg_bin)
	if [[ -n $bin ]]; then
		as_owner "$bin/pg_ctl" -D "$dir/data" -m "$mode" -w -t 20 stop >/dev/null 2>&1 || true
	fi
	for ((i = 0; i < 100; i++)); do
		[[ -n $(start_time "$pid") ]] || return 0
		((i == 0)) && kill -QUIT "$pid" 2>/dev/null
		sleep 0.1
	done
	log "the server (pid $pid) did not stop within 10 s; killing it"
	kill -KILL "$pid" 2>/dev/null || true
}

# free_port: a TCP port in 20000-32767 (below Linux's ephemeral range, so no outgoing connection takes it
# meanwhile) that nothing on this machine has bound.
free_port() {
	local local_addr p
	local -A used=()
	while read -r _ local_addr _; do
		[[ $local_addr == *:* ]] || continue
		used[$((16#${local_addr##*:}))]=1
	done < <(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null)
	while :; do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 12768))
		[[ -z ${used[$p]:-} ]] && break
	done
	echo "$p"
}

# launch DIR BIN PORT: start the server of DIR on PORT and wait until it accepts connections.
launch() {
	local dir=$1 bin=$2 port=$3
	as_owner rm -f "$dir/log/postgres.log"
	as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log/postgres.log" -w -t "${CRMSYNC_PG_START_TIMEOUT:-30}" \
		-o "-p $port" start >/dev/null 2>&1
}

cmd_start() {
	[[ $# -eq 1 ]] || usage
	local dir bin
	dir=$(abs_dir "$1")
	if [[ -z $(pg_bin) ]]; then
		[[ -z ${CRMSYNC_PG_NO_INSTALL:-} ]] || die "PostgreSQL is not installed: run $0 install"
		cmd_install
	fi
	bin=$(pg_bin)
	[[ -n $bin ]] || die "no PostgreSQL binaries found (CRMSYNC_PG_BIN=${CRMSYNC_PG_BIN:-})"
	mkdir -p "$dir"
	chmod 0755 "$dir"
	if running "$dir"; then
		die "a server is already running for $dir (run: $0 stop $dir)"
	fi
	if [[ $(id -u) -eq 0 ]]; then
		getent passwd "$PG_USER" >/dev/null || die "the OS user $PG_USER does not exist (run: $0 install)"
		as_owner test -x "$dir" ||
			die "$PG_USER cannot reach $dir: its parent directories must be searchable by others (chmod o+x)"
	fi

	local t0=$SECONDS
	stop_one_watch "$dir" # a watchdog left from an earlier start of this DIR
	rm -rf "$dir/data" "$dir/run" "$dir/log" "$dir/env"
	mkdir -p "$dir/data" "$dir/run" "$dir/log"
	chmod 0700 "$dir/data"
	chmod 0755 "$dir/run" "$dir/log"
	if [[ $(id -u) -eq 0 ]]; then
		chown "$PG_USER:$PG_USER" "$dir/data" "$dir/run" "$dir/log"
	fi
	printf '%s\n' "$bin" >"$dir/bin"

	local out
	out=$(as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 -N 2>&1) ||
		out=$(as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C -N 2>&1) ||
		{
			printf '%s\n' "$out" >&2
			die "initdb failed"
		}
	as_owner tee -a "$dir/data/postgresql.conf" >/dev/null <<EOF

# crmsync test cluster (scripts/postgres.sh): loopback only, fast, not crash-safe.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/run'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
shared_buffers = 256MB
max_wal_size = 2GB
checkpoint_timeout = 30min
logging_collector = off
log_min_messages = warning
EOF

	local attempt port
	for attempt in 1 2 3; do
		if [[ -n ${CRMSYNC_PG_PORT:-} ]]; then
			[[ $CRMSYNC_PG_PORT =~ ^[0-9]+$ ]] || die "CRMSYNC_PG_PORT must be a number"
			port=$CRMSYNC_PG_PORT
		else
			port=$(free_port)
		fi
		if launch "$dir" "$bin" "$port"; then
			break
		fi
		if [[ -n ${CRMSYNC_PG_PORT:-} || $attempt -eq 3 ]] || ! grep -qiE 'in use|could not bind' "$dir/log/postgres.log" 2>/dev/null; then
			tail -n 30 "$dir/log/postgres.log" >&2 || true
			die "the server did not come up (port $port); its log is $dir/log/postgres.log"
		fi
		log "port $port was taken meanwhile; retrying with another"
	done

	as_owner "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/run" -p "$port" -U postgres -d postgres \
		-c "CREATE DATABASE $DBNAME" >/dev/null || die "CREATE DATABASE $DBNAME failed"

	{
		printf 'CRMSYNC_PG_DSN=postgres://postgres@127.0.0.1:%s/%s?sslmode=disable\n' "$port" "$DBNAME"
		printf 'CRMSYNC_PG_ADMIN_DSN=postgres://postgres@127.0.0.1:%s/postgres?sslmode=disable\n' "$port"
		printf 'CRMSYNC_PG_PORT=%s\n' "$port"
		printf 'CRMSYNC_PG_DIR=%s\n' "$dir"
		printf 'CRMSYNC_PG_BIN=%s\n' "$bin"
		printf 'CRMSYNC_PG_SCRIPT=%s\n' "$SCRIPT_PATH"
	} >"$dir/env.tmp"
	mv -f "$dir/env.tmp" "$dir/env"
	start_watchdog "$dir" CRMSYNC_PG_WATCH_PID
	cat "$dir/env"
	log "started in $((SECONDS - t0)) s: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') pid $(postmaster_pid "$dir") on 127.0.0.1:$port"
}

# cmd_watch DIR PID START_TIME: (internal) stop DIR's server once the process PID is gone.
cmd_watch() {
	local dir=$1 pid=$2 st=$3
	wait_gone "$pid" "$st"
	stop_cluster "$dir" immediate
	rm -f "$dir/watch.pid"
}


# stop_one_watch DIR: stop the watchdog of DIR, if any.
stop_one_watch() {
	local dir=$1 pid
	if pid_is "$dir/watch.pid"; then
		read -r pid _ <"$dir/watch.pid"
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	fi
	rm -f "$dir/watch.pid"
}

cmd_stop() {
	[[ $# -eq 1 ]] || usage
	local dir
	dir=$(abs_dir "$1")
	[[ -d $dir ]] || return 0
	stop_one_watch "$dir"
	stop_cluster "$dir" fast
}

cmd_status() {
	[[ $# -eq 1 ]] || usage
	local dir
	dir=$(abs_dir "$1")
	running "$dir"
}

main() {
	[[ $# -ge 1 ]] || usage
	local cmd=$1
	shift
	case $cmd in
	install)
		[[ $# -eq 0 ]] || usage
		cmd_install
		;;
	start) cmd_start "$@" ;;
	stop) cmd_stop "$@" ;;
	status) cmd_status "$@" ;;
	__watch) cmd_watch "$@" ;;
	-h | --help | help) usage ;;
	*) usage ;;
	esac
}

main "$@"
