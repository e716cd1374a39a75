#!/usr/bin/env bash
# scripts/mailservers-oauth.sh: a private Dovecot that signs users in with OAuth 2.0 only, for provider/gmail's tests.
#
#   mailservers-oauth.sh start DIR     start an instance with its state in DIR (needs CRMSYNC_OAUTH2_INTROSPECTION_URL)
#   mailservers-oauth.sh stop DIR      stop what "start DIR" started
#   mailservers-oauth.sh status DIR    exit 0 if the instance of DIR is running
#
# What "start" runs (on 127.0.0.1 only, never on the standard ports, never with /etc/dovecot): Dovecot as the
# unprivileged user vmail, with IMAP (+STARTTLS), IMAPS, SMTP submission (STARTTLS, and implicit TLS) and LMTP on TCP.
# Its only passdb is the oauth2 one: the SASL mechanisms XOAUTH2 and OAUTHBEARER, each access token checked by a POST to
# the introspection URL (RFC 7662, introspection_mode = post; the token is active when the answer's "active" is true,
# and its "username" must be the user who signs in). The userdb is static with allow_all_users: every address is a
# mailbox, made on first use (maildirs under DIR/mail). Submission relays to CRMSYNC_OAUTH_RELAY_ADDR when set.
# A test CA and a certificate for localhost / 127.0.0.1 signed by it (CRMSYNC_OAUTH_TLS_CA verifies it).
#
# It is separate from scripts/mailservers.sh (which it uses to install the Debian packages) so that the shared
# servers' password logins are untouched. "start" writes DIR/env (KEY=VALUE lines, also printed on stdout).
#
# Environment:
#   CRMSYNC_OAUTH2_INTROSPECTION_URL=URL   required by start: the token introspection endpoint (http://127.0.0.1:…)
#   CRMSYNC_OAUTH_RELAY_ADDR=HOST:PORT     the SMTP server submission relays to (default: no submission service)
#   CRMSYNC_MAIL_START_TIMEOUT=S           seconds to wait for the ports (default 20)
#   CRMSYNC_MAIL_DEBUG=1                   Dovecot auth_debug (shows the introspection exchange in DIR/dovecot/dovecot.log)
#   CRMSYNC_MAIL_WATCH_PID=PID             also leave a watchdog that stops the instance when PID exits
set -euo pipefail

readonly MAIL_USER=vmail
readonly DOMAIN=example.test

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
readonly SCRIPT_PATH
SCRIPT_DIR=$(dirname "$SCRIPT_PATH")
readonly SCRIPT_DIR

log() { printf 'mailservers-oauth.sh: %s\n' "$*" >&2; }
die() {
	printf 'mailservers-oauth.sh: error: %s\n' "$*" >&2
	exit 1
}
usage() {
	sed -n '2,6p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//' >&2
	exit 2
}
need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root: try sudo $0 $*"; }

abs_dir() {
	local dir=$1
	[[ -n $dir ]] || die "DIR is empty"
	[[ $dir == /* ]] || dir="$PWD/$dir"
	dir=${dir%/}
	[[ $dir =~ ^/[A-Za-z0-9._/+-]+$ ]] || die "DIR must be a path of letters, digits and ._+-/ only: $dir"
	[[ ${#dir} -le 72 ]] || die "DIR is too long for unix socket paths (max 72 characters): $dir"
	printf '%s\n' "$dir"
}

# start_time PID: the process's start time (clock ticks since boot), empty if it is gone or a zombie.
start_time() {
	local line rest fields
	read -r line 2>/dev/null <"/proc/$1/stat" || return 0
	rest=${line##*) }
	read -r -a fields <<<"$rest"
	[[ ${fields[0]} != Z ]] || return 0
	printf '%s\n' "${fields[19]}"
}
record_pid() { printf '%s %s\n' "$2" "$(start_time "$2")" >"$1"; }
pid_is() {
	local pid st
	[[ -s $1 ]] || return 1
	read -r pid st <"$1" || return 1
	[[ $pid =~ ^[0-9]+$ && -n $st && $(start_time "$pid") == "$st" ]]
}
group_alive() {
	local pgid=$1 f line rest state pgrp
	for f in /proc/[0-9]*/stat; do
		read -r line 2>/dev/null <"$f" || continue
		rest=${line##*) }
		read -r state _ pgrp _ <<<"$rest"
		[[ $pgrp == "$pgid" && $state != Z ]] && return 0
	done
	return 1
}

# stop_one DIR NAME: signal the process group recorded in DIR/NAME.pid, wait, then kill.
stop_one() {
	local dir=$1 name=$2 pidfile pid i
	pidfile="$dir/$name.pid"
	[[ -s $pidfile ]] || return 0
	read -r pid _ <"$pidfile" || true
	if pid_is "$pidfile" || { [[ $pid =~ ^[0-9]+$ && -z $(start_time "$pid") ]] && group_alive "$pid"; }; then
		kill -TERM -- "-$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			group_alive "$pid" || break
			sleep 0.1
		done
		if group_alive "$pid"; then
			log "$name did not stop within 10 s; killing it"
			kill -KILL -- "-$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$pidfile"
}

# free_ports N: N distinct unbound TCP ports in 20000-32767.
free_ports() {
	local n=$1 local_addr p
	local -A used=()
	while read -r _ local_addr _; do
		[[ $local_addr == *:* ]] || continue
		used[$((16#${local_addr##*:}))]=1
	done < <(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null)
	local out=()
	while ((${#out[@]} < n)); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 12768))
		[[ -z ${used[$p]:-} ]] || continue
		used[$p]=1
		out+=("$p")
	done
	echo "${out[@]}"
}
port_open() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

gen_tls() {
	local tls=$1 ext
	mkdir -p "$tls"
	chmod 0755 "$tls"
	ext="$tls/leaf.ext"
	printf '%s\n' \
		'basicConstraints = critical, CA:FALSE' \
		'keyUsage = critical, digitalSignature, keyEncipherment' \
		'extendedKeyUsage = serverAuth' \
		'subjectAltName = DNS:localhost, IP:127.0.0.1' >"$ext"
	(
		umask 077
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-keyout "$tls/ca-key.pem" -out "$tls/ca.pem" -days 3650 -subj "/CN=crmsync oauth test CA" \
			-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
		openssl req -new -newkey rsa:2048 -nodes -keyout "$tls/key.pem" -out "$tls/leaf.csr" -subj "/CN=localhost"
		openssl x509 -req -in "$tls/leaf.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" \
			-set_serial "0x$(openssl rand -hex 12)" -days 3650 -extfile "$ext" -out "$tls/cert.pem"
	) >"$tls/openssl.log" 2>&1 || {
		cat "$tls/openssl.log" >&2
		die "openssl failed"
	}
	chmod 0644 "$tls/ca.pem" "$tls/cert.pem"
	install -m 0600 -o "$MAIL_USER" -g "$MAIL_USER" "$tls/key.pem" "$tls/dovecot-key.pem"
	rm -f "$tls/leaf.csr" "$tls/leaf.ext" "$tls/openssl.log" "$tls/key.pem"
}

write_conf() {
	local dir=$1 p_imap=$2 p_imaps=$3 p_smtp=$4 p_smtps=$5 p_lmtp=$6 uid gid debug=no protocols="imap lmtp"
	local relay=${CRMSYNC_OAUTH_RELAY_ADDR:-}
	uid=$(id -u "$MAIL_USER")
	gid=$(id -g "$MAIL_USER")
	[[ -z ${CRMSYNC_MAIL_DEBUG:-} ]] || debug=yes
	[[ -z $relay ]] || protocols="$protocols submission"

	# The oauth2 passdb's settings (Dovecot 2.3: doc.dovecot.org/2.3/configuration_manual/authentication/oauth2).
	cat >"$dir/dovecot/dovecot-oauth2.conf.ext" <<EOF
introspection_mode = post
introspection_url = $CRMSYNC_OAUTH2_INTROSPECTION_URL
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 10000
debug = $debug
EOF
	chmod 0644 "$dir/dovecot/dovecot-oauth2.conf.ext"

	cat >"$dir/dovecot/dovecot.conf" <<EOF
# Generated by crmsync scripts/mailservers-oauth.sh; run by "dovecot -F -c" as $MAIL_USER. Not /etc/dovecot.
instance_name = crmsync-oauth-$(basename "$dir" | sed 's/^crmsync-oauth-//')
base_dir = $dir/run
state_dir = $dir/state
protocols = $protocols
listen = 127.0.0.1
hostname = localhost
log_path = $dir/dovecot/dovecot.log
default_login_user = $MAIL_USER
default_internal_user = $MAIL_USER
default_internal_group = $MAIL_USER
first_valid_uid = $uid
last_valid_uid = $uid
first_valid_gid = $gid
last_valid_gid = $gid

ssl = yes
ssl_cert = <$dir/tls/cert.pem
ssl_key = <$dir/tls/dovecot-key.pem
ssl_min_protocol = TLSv1.2

# OAuth 2.0 only: no password mechanism. Tokens are checked at every login (no cache), and a refused one is
# answered at once, so a revoked grant shows at the next login.
disable_plaintext_auth = no
auth_mechanisms = xoauth2 oauthbearer
auth_failure_delay = 0
auth_cache_size = 0
auth_debug = $debug
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $dir/dovecot/dovecot-oauth2.conf.ext
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$dir/mail/%d/%n allow_all_users=yes
}

mail_location = maildir:~/Maildir
mail_debug = $debug
mail_max_userip_connections = 200
namespace inbox {
  inbox = yes
  separator = /
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
}
protocol lmtp {
  postmaster_address = postmaster@$DOMAIN
}
EOF
	if [[ -n $relay ]]; then
		cat >>"$dir/dovecot/dovecot.conf" <<EOF
submission_relay_host = ${relay%:*}
submission_relay_port = ${relay##*:}
submission_relay_ssl = no
submission_max_mail_size = 150M
service submission-login {
  chroot =
  inet_listener submission {
    address = 127.0.0.1
    port = $p_smtp
  }
  inet_listener submissions {
    address = 127.0.0.1
    port = $p_smtps
    ssl = yes
  }
}
EOF
	fi
	cat >>"$dir/dovecot/dovecot.conf" <<EOF
service anvil {
  chroot =
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service ipc {
  chroot =
}
service old-stats {
  chroot =
}
service aggregator {
  chroot =
}
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = $p_imap
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $p_imaps
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $p_lmtp
  }
}
EOF
}

launch() {
	local dir=$1 timeout=${CRMSYNC_MAIL_START_TIMEOUT:-20} i p waiting ok
	shift
	write_conf "$dir" "$@"
	: >"$dir/dovecot/dovecot.log"
	chown "$MAIL_USER:$MAIL_USER" "$dir/dovecot/dovecot.log"
	setsid setpriv --reuid="$MAIL_USER" --regid="$MAIL_USER" --init-groups -- \
		dovecot -F -c "$dir/dovecot/dovecot.conf" </dev/null >>"$dir/dovecot/dovecot.log" 2>&1 &
	record_pid "$dir/dovecot.pid" "$!"
	waiting=("$1" "$2" "$5")
	[[ -z ${CRMSYNC_OAUTH_RELAY_ADDR:-} ]] || waiting+=("$3" "$4")
	for ((i = 0; i < timeout * 10; i++)); do
		ok=()
		for p in "${waiting[@]}"; do
			port_open "$p" || ok+=("$p")
		done
		waiting=("${ok[@]}")
		[[ ${#waiting[@]} -eq 0 ]] && return 0
		pid_is "$dir/dovecot.pid" || break
		sleep 0.1
	done
	stop_one "$dir" dovecot
	return 1
}

cmd_start() {
	[[ $# -eq 1 ]] || usage
	need_root start
	[[ -n ${CRMSYNC_OAUTH2_INTROSPECTION_URL:-} ]] || die "CRMSYNC_OAUTH2_INTROSPECTION_URL is not set"
	[[ $CRMSYNC_OAUTH2_INTROSPECTION_URL =~ ^https?://[^[:space:]]+$ ]] || die "CRMSYNC_OAUTH2_INTROSPECTION_URL is not a URL"
	if [[ -n ${CRMSYNC_OAUTH_RELAY_ADDR:-} && ! $CRMSYNC_OAUTH_RELAY_ADDR =~ ^[0-9.]+:[0-9]+$ ]]; then
		die "CRMSYNC_OAUTH_RELAY_ADDR must be IP:PORT"
	fi
	local dir
	dir=$(abs_dir "$1")
	# The packages (and the vmail user) come from the shared script's install step.
	bash "$SCRIPT_DIR/mailservers.sh" install
	mkdir -p "$dir"
	chmod 0755 "$dir"
	pid_is "$dir/dovecot.pid" && die "already running for $dir (run: $0 stop $dir)"
	setpriv --reuid="$MAIL_USER" --regid="$MAIL_USER" --init-groups -- test -x "$dir" ||
		die "$MAIL_USER cannot reach $dir: its parent directories must be searchable by others (chmod o+x)"
	local t0=$SECONDS
	stop_one "$dir" watch
	rm -rf "$dir/run" "$dir/state" "$dir/tls" "$dir/env"
	mkdir -p "$dir/dovecot" "$dir/run" "$dir/state" "$dir/mail"
	chown "$MAIL_USER:$MAIL_USER" "$dir/dovecot" "$dir/run" "$dir/state" "$dir/mail"
	chmod 0700 "$dir/mail"
	gen_tls "$dir/tls"

	local attempt ports
	for attempt in 1 2 3; do
		ports=$(free_ports 5)
		# shellcheck disable=SC2086 # word splitting of the port list is intended
		if launch "$dir" $ports; then
			break
		fi
		if [[ $attempt -eq 3 ]] || ! grep -qiE 'in use|bind' "$dir/dovecot/dovecot.log" 2>/dev/null; then
			tail -n 25 "$dir/dovecot/dovecot.log" >&2 || true
			die "Dovecot did not come up (ports: $ports)"
		fi
		log "a port was taken meanwhile; retrying with other ports"
	done
	# shellcheck disable=SC2086
	set -- $ports
	{
		printf 'CRMSYNC_OAUTH_DIR=%s\n' "$dir"
		printf 'CRMSYNC_OAUTH_IMAP_ADDR=127.0.0.1:%s\n' "$1"
		printf 'CRMSYNC_OAUTH_IMAPS_ADDR=127.0.0.1:%s\n' "$2"
		printf 'CRMSYNC_OAUTH_SMTP_ADDR=127.0.0.1:%s\n' "$3"
		printf 'CRMSYNC_OAUTH_SMTPS_ADDR=127.0.0.1:%s\n' "$4"
		printf 'CRMSYNC_OAUTH_LMTP_ADDR=127.0.0.1:%s\n' "$5"
		printf 'CRMSYNC_OAUTH_TLS_CA=%s\n' "$dir/tls/ca.pem"
		printf 'CRMSYNC_OAUTH_DOMAIN=%s\n' "$DOMAIN"
		printf 'CRMSYNC_OAUTH2_INTROSPECTION_URL=%s\n' "$CRMSYNC_OAUTH2_INTROSPECTION_URL"
	} >"$dir/env.tmp"
	mv -f "$dir/env.tmp" "$dir/env"
	if [[ -n ${CRMSYNC_MAIL_WATCH_PID:-} ]]; then
		local st
		[[ $CRMSYNC_MAIL_WATCH_PID =~ ^[0-9]+$ ]] || die "CRMSYNC_MAIL_WATCH_PID must be a pid"
		st=$(start_time "$CRMSYNC_MAIL_WATCH_PID")
		[[ -n $st ]] || die "CRMSYNC_MAIL_WATCH_PID $CRMSYNC_MAIL_WATCH_PID is not a running process"
		setsid bash "$SCRIPT_PATH" __watch "$dir" "$CRMSYNC_MAIL_WATCH_PID" "$st" </dev/null >/dev/null 2>&1 &
		record_pid "$dir/watch.pid" "$!"
	fi
	cat "$dir/env"
	log "started in $((SECONDS - t0)) s: Dovecot pid $(cut -d' ' -f1 "$dir/dovecot.pid")"
}

cmd_watch() {
	local dir=$1 pid=$2 st=$3
	while [[ $(start_time "$pid") == "$st" ]]; do
		sleep 1
	done
	stop_one "$dir" dovecot
	rm -f "$dir/watch.pid"
}

cmd_stop() {
	[[ $# -eq 1 ]] || usage
	need_root stop
	local dir
	dir=$(abs_dir "$1")
	[[ -d $dir ]] || return 0
	stop_one "$dir" watch
	stop_one "$dir" dovecot
}

cmd_status() {
	[[ $# -eq 1 ]] || usage
	local dir
	dir=$(abs_dir "$1")
	pid_is "$dir/dovecot.pid"
}

main() {
	[[ $# -ge 1 ]] || usage
	local cmd=$1
	shift
	case $cmd in
	start) cmd_start "$@" ;;
	stop) cmd_stop "$@" ;;
	status) cmd_status "$@" ;;
	__watch) cmd_watch "$@" ;;
	*) usage ;;
	esac
}

main "$@"
