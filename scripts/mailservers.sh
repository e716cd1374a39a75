#!/usr/bin/env bash
# scripts/mailservers.sh: the real mail servers crmsync's full test suite runs against.
#
#   mailservers.sh install                    install Dovecot + OpenSMTPD from Debian (idempotent)
#   mailservers.sh start DIR                  start private instances with their state in DIR
#   mailservers.sh stop DIR                   stop what "start DIR" started
#   mailservers.sh adduser DIR ADDRESS PASS   add a mailbox (IMAP/POP3 login and SMTP AUTH) while running
#   mailservers.sh status DIR                 exit 0 if the servers of DIR are running
#
# What "start" runs (all on 127.0.0.1, never on the standard ports, never with /etc/dovecot or /etc/smtpd.conf):
#   Dovecot, as the unprivileged user vmail: IMAP (+STARTTLS), IMAPS, POP3 (+STLS), POP3S, LMTP (a unix socket in
#     DIR, and a loopback port), and SMTP submission: STARTTLS + AUTH, and implicit TLS + AUTH; one passwd-file
#     per user (DIR/passwd/ADDRESS: Dovecot stats a passwd-file at most once a second, so one shared file could
#     hide a user added in the same second; a new file is read on first use); maildirs under DIR/mail; Drafts,
#     Sent, Trash and Junk with their special-use flags, auto-subscribed; CONDSTORE/QRESYNC (built in).
#   OpenSMTPD (root master with its own privsep users, as Debian ships it), the MTA: Dovecot's submission service
#     relays to it, and it takes mail from localhost without AUTH on its own port (CRMSYNC_MTA_ADDR); mail for
#     example.test goes to Dovecot over LMTP (unknown example.test users are refused at RCPT), mail for any other
#     domain to the catch-all mailbox sink@example.test. Its compiled-in paths (/var/run/smtpd.sock,
#     /var/spool/smtpd) are made private to each instance with a mount namespace, so several instances (one per
#     test binary) can run at once.
#     Why submission is Dovecot's and not OpenSMTPD's: Debian 12's OpenSMTPD 6.8.0p2 cannot do server-side TLS with
#     OpenSSL 3 (every handshake fails, "rsa routines::missing private key" / "SSL routines::EVP lib", for RSA and
#     EC keys alike: upstream issues OpenSMTPD#1171 and #1239, fixed only in 7.x).
#   A test CA and a certificate for localhost / 127.0.0.1 signed by it (CRMSYNC_TLS_CA verifies it).
#
# "start" writes DIR/env (KEY=VALUE lines, also printed on stdout); progress and errors go to stderr.
# DIR and its parent directories must be searchable by vmail (e.g. a directory made by mktemp -d under /tmp).
#
# Environment overrides:
#   CRMSYNC_MAIL_PORT_BASE=N        use the fixed ports N..N+7 instead of free random ones
#   CRMSYNC_MAIL_MAX_USERIP_CONNECTIONS=N   Dovecot's mail_max_userip_connections (default 200)
#   CRMSYNC_MAIL_START_TIMEOUT=S    seconds to wait for the servers to accept connections (default 20)
#   CRMSYNC_MAIL_NO_INSTALL=1       "start" fails instead of installing missing packages
#   CRMSYNC_MAIL_DEBUG=1            verbose logs (Dovecot auth_debug and mail_debug, smtpd -v)
#   CRMSYNC_MAIL_WATCH_PID=PID      "start" also leaves a watchdog that stops the servers when PID exits (a test
#                                   binary killed by a timeout or a signal does not leave servers behind)
set -euo pipefail

readonly PKGS=(dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-submissiond opensmtpd openssl)
readonly MAIL_USER=vmail
readonly DOMAIN=example.test
readonly PASSWORD=secret
readonly SEED_USERS=(alice bob carol sink)
readonly SINK="sink@${DOMAIN}"
readonly INSTALL_LOCK=/var/lock/crmsync-mailservers-install.lock
readonly NPORTS=8 # imap imaps pop3 pop3s submission submissions lmtp mta

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
readonly SCRIPT_PATH

log() { printf 'mailservers.sh: %s\n' "$*" >&2; }
die() {
	printf 'mailservers.sh: error: %s\n' "$*" >&2
	exit 1
}

# shellcheck source=scripts/lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
usage() {
	sed -n '2,8p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//' >&2
	exit 2
}
need_root() {
	[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages, and OpenSMTPD needs root): try sudo $0 $*"
}

# ---------------------------------------------------------------------------------------------------------------
# install

packages_installed() {
	local st n=0
	while read -r st; do
		[[ $st == installed ]] && n=$((n + 1))
	done < <(dpkg-query -W -f='${db:Status-Status}\n' "${PKGS[@]}" 2>/dev/null || true)
	[[ $n -eq ${#PKGS[@]} ]] && command -v dovecot >/dev/null && command -v smtpd >/dev/null
}

ensure_mail_user() {
	if ! getent passwd "$MAIL_USER" >/dev/null; then
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin --comment "crmsync test mail" "$MAIL_USER" 2>/dev/null ||
			getent passwd "$MAIL_USER" >/dev/null || die "cannot create the user $MAIL_USER"
	fi
}

# stop_system_services stops and disables the system-wide services the packages install: the tests never use them,
# and they would hold the standard ports.
stop_system_services() {
	if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
		systemctl disable --now dovecot.socket dovecot.service opensmtpd.service >/dev/null 2>&1 || true
	fi
	if [[ -s /run/dovecot/master.pid ]] && kill -0 "$(cat /run/dovecot/master.pid)" 2>/dev/null; then
		/etc/init.d/dovecot stop >/dev/null 2>&1 || kill "$(cat /run/dovecot/master.pid)" 2>/dev/null || true
	fi
	if [[ -s /run/smtpd.pid ]] && kill -0 "$(cat /run/smtpd.pid)" 2>/dev/null; then
		/etc/init.d/opensmtpd stop >/dev/null 2>&1 || kill "$(cat /run/smtpd.pid)" 2>/dev/null || true
	fi
}

cmd_install() {
	need_root install
	if packages_installed; then
		ensure_mail_user
		return 0
	fi
	local lockfd
	exec {lockfd}>"$INSTALL_LOCK"
	flock -w 1200 "$lockfd" || die "timed out waiting for $INSTALL_LOCK"
	if ! packages_installed; then
		log "installing ${PKGS[*]}"
		local policy=/usr/sbin/policy-rc.d created_policy=
		if [[ ! -e $policy ]]; then
			printf '#!/bin/sh\n# written by crmsync scripts/mailservers.sh during apt-get install\nexit 101\n' >"$policy"
			chmod 0755 "$policy"
			created_policy=1
		fi
		export DEBIAN_FRONTEND=noninteractive
		local apt_opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=600
			-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
		local rc=0 out
		out=$(mktemp)
		if ! apt-get "${apt_opts[@]}" install "${PKGS[@]}" >"$out" 2>&1; then
			# A fresh machine may have no (or stale) package lists.
			if apt-get -q -o DPkg::Lock::Timeout=600 update >>"$out" 2>&1; then
				apt-get "${apt_opts[@]}" install "${PKGS[@]}" >>"$out" 2>&1 || rc=$?
			else
				rc=$?
			fi
		fi
		[[ -n $created_policy ]] && rm -f "$policy"
		if [[ $rc -ne 0 ]]; then
			tail -n 40 "$out" >&2
			rm -f "$out"
			die "apt-get install failed (exit $rc)"
		fi
		rm -f "$out"
		stop_system_services
	fi
	exec {lockfd}>&-
	ensure_mail_user
	packages_installed || die "packages still missing after apt-get install: ${PKGS[*]}"
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
	# Dovecot's sockets live in DIR/run; a unix socket path has at most 107 bytes.
	[[ ${#dir} -le 72 ]] || die "DIR is too long for unix socket paths (max 72 characters): $dir"
	printf '%s\n' "$dir"
}

running() {
	local dir=$1
	pid_is "$dir/dovecot.pid" || pid_is "$dir/smtpd.pid"
}

# without_key KEY: copy stdin to stdout without the lines whose first word is KEY (and without empty lines).
without_key() {
	local line
	while IFS= read -r line || [[ -n $line ]]; do
		[[ -n $line && ${line%% *} != "$1" ]] && printf '%s\n' "$line"
	done
	return 0
}

valid_password() { [[ -n $1 && $1 != *[:[:space:]]* ]]; }

# add_user_files DIR ADDRESS PASSWORD: write ADDRESS's passwd-file for Dovecot and add it to (for example.test)
# OpenSMTPD's recipient tables. Files are replaced atomically: the servers may read them at any time.
add_user_files() {
	local dir=$1 addr=$2 pass=$3 f tmp
	tmp="$dir/passwd/.$addr.tmp"
	printf '%s:{PLAIN}%s::::::\n' "$addr" "$pass" >"$tmp"
	chown "root:$MAIL_USER" "$tmp"
	chmod 0640 "$tmp"
	mv -f "$tmp" "$dir/passwd/$addr"
	for f in smtpd/vusers smtpd/recipients; do
		[[ -e $dir/$f ]] || : >"$dir/$f"
		tmp="$dir/$f.tmp"
		without_key "$addr" <"$dir/$f" >"$tmp"
		case $f in
		smtpd/vusers) [[ $addr != *"@$DOMAIN" ]] || printf '%s %s\n' "$addr" "$MAIL_USER" >>"$tmp" ;;
		smtpd/recipients) [[ $addr != *"@$DOMAIN" ]] || printf '%s\n' "$addr" >>"$tmp" ;;
		esac
		chmod 0644 "$tmp" # reread by OpenSMTPD's unprivileged lookup process on "smtpctl update table"
		mv -f "$tmp" "$dir/$f"
	done
}

# smtpctl_in DIR ARGS...: run smtpctl against DIR's OpenSMTPD (inside its mount namespace when it has one).
smtpctl_in() {
	local dir=$1 pid
	shift
	pid_is "$dir/smtpd.pid" || die "OpenSMTPD of $dir is not running"
	read -r pid _ <"$dir/smtpd.pid"
	if [[ -e $dir/smtpd/private-ns ]]; then
		nsenter --target "$pid" --mount -- smtpctl "$@"
	else
		smtpctl "$@"
	fi
}

write_dovecot_conf() {
	local dir=$1 p_imap=$2 p_imaps=$3 p_pop3=$4 p_pop3s=$5 p_smtp=$6 p_smtps=$7 p_lmtp=$8 p_mta=$9 uid gid maxconn
	uid=$(id -u "$MAIL_USER")
	gid=$(id -g "$MAIL_USER")
	local debug=no
	[[ -z ${CRMSYNC_MAIL_DEBUG:-} ]] || debug=yes
	maxconn=${CRMSYNC_MAIL_MAX_USERIP_CONNECTIONS:-200}
	[[ $maxconn =~ ^[0-9]+$ ]] || die "CRMSYNC_MAIL_MAX_USERIP_CONNECTIONS must be a number"
	cat >"$dir/dovecot/dovecot.conf" <<EOF
# Generated by crmsync scripts/mailservers.sh; run by "dovecot -F -c" as $MAIL_USER. Not /etc/dovecot.
instance_name = crmsync-$(basename "$dir" | sed 's/^crmsync-//')
base_dir = $dir/run
state_dir = $dir/state
protocols = imap pop3 lmtp submission
listen = 127.0.0.1
hostname = localhost
log_path = $dir/dovecot/dovecot.log
# The whole instance runs as $MAIL_USER (no root): every service uses that user.
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

# Tests log in with plaintext passwords on loopback, with or without TLS, and learn of a wrong password at once.
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_cache_size = 0
passdb {
  driver = passwd-file
  args = scheme=PLAIN $dir/passwd/%u
}
userdb {
  driver = passwd-file
  args = $dir/passwd/%u
  default_fields = uid=$uid gid=$gid home=$dir/mail/%d/%n
}

mail_location = maildir:~/Maildir
auth_debug = ${debug}
mail_debug = ${debug}
mail_max_userip_connections = $maxconn
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
  mailbox Junk {
    special_use = \\Junk
    auto = subscribe
  }
}
# CONDSTORE and QRESYNC are built into Dovecot 2.3's IMAP server (enabled on a client's request).
protocol imap {
  mail_max_userip_connections = $maxconn
}
protocol pop3 {
  mail_max_userip_connections = $maxconn
}
protocol lmtp {
  postmaster_address = postmaster@$DOMAIN
}
# Submission (STARTTLS or implicit TLS, AUTH against the passdb above), relayed to this instance's OpenSMTPD.
submission_relay_host = 127.0.0.1
submission_relay_port = $p_mta
submission_relay_ssl = no
submission_max_mail_size = 150M

EOF
	{
		dovecot_services
		dovecot_login_service imap-login imap "$p_imap" imaps "$p_imaps"
		dovecot_login_service pop3-login pop3 "$p_pop3" pop3s "$p_pop3s"
		dovecot_login_service submission-login submission "$p_smtp" submissions "$p_smtps"
		cat <<EOF
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
  inet_listener lmtp {
    address = 127.0.0.1
    port = $p_lmtp
  }
}
EOF
	} >>"$dir/dovecot/dovecot.conf"
}

write_smtpd_conf() {
	local dir=$1 p_mta=$2
	cat >"$dir/smtpd/smtpd.conf" <<EOF
# Generated by crmsync scripts/mailservers.sh for OpenSMTPD 6.8 ("smtpd -d -f"). Not /etc/smtpd.conf.
table vusers file:$dir/smtpd/vusers
table recipients file:$dir/smtpd/recipients
table sink file:$dir/smtpd/sink

smtp max-message-size 150M

# Plain SMTP on loopback, no TLS (Debian 12's 6.8 cannot do TLS with OpenSSL 3) and no AUTH: Dovecot's
# submission service relays here after AUTH, and local test code may inject here directly.
listen on 127.0.0.1 port $p_mta hostname localhost

action "mailbox" lmtp "$dir/run/lmtp" rcpt-to virtual <vusers>
action "sink" lmtp "$dir/run/lmtp" rcpt-to virtual <sink>

# Known $DOMAIN users get their mail; other $DOMAIN addresses are refused; any other domain ends in $SINK.
match from any for domain "$DOMAIN" rcpt-to <recipients> action "mailbox"
match from any for domain "$DOMAIN" reject
match from local for any action "sink"
EOF
	printf '%s %s\n' "@" "$SINK" "$SINK" "$MAIL_USER" >"$dir/smtpd/sink"
	chmod 0644 "$dir/smtpd/sink" "$dir/smtpd/smtpd.conf"
}

show_logs() {
	local dir=$1 f
	for f in "$dir/dovecot/dovecot.log" "$dir/smtpd/smtpd.log"; do
		[[ -s $f ]] || continue
		printf -- '--- last lines of %s\n' "$f" >&2
		tail -n 25 "$f" >&2
	done
}

# launch DIR PORTS...: one attempt at starting both servers; returns 1 (servers stopped) if they did not come up.
launch() {
	local dir=$1 p_imap=$2 p_imaps=$3 p_pop3=$4 p_pop3s=$5 p_smtp=$6 p_smtps=$7 p_lmtp=$8 p_mta=$9
	local timeout=${CRMSYNC_MAIL_START_TIMEOUT:-20} ns=private i p dpid spid ok=() v=
	[[ -z ${CRMSYNC_MAIL_DEBUG:-} ]] || v=-v

	write_dovecot_conf "$dir" "$p_imap" "$p_imaps" "$p_pop3" "$p_pop3s" "$p_smtp" "$p_smtps" "$p_lmtp" "$p_mta"
	write_smtpd_conf "$dir" "$p_mta"
	: >"$dir/dovecot/dovecot.log"
	chown "$MAIL_USER:$MAIL_USER" "$dir/dovecot/dovecot.log"

	# Dovecot, entirely as vmail, in the foreground of its own session (stop signals the process group).
	setsid setpriv --reuid="$MAIL_USER" --regid="$MAIL_USER" --init-groups -- \
		dovecot -F -c "$dir/dovecot/dovecot.conf" </dev/null >>"$dir/dovecot/dovecot.log" 2>&1 &
	dpid=$!
	record_pid "$dir/dovecot.pid" "$dpid"

	# OpenSMTPD: /var/run/smtpd.sock and /var/spool/smtpd are compiled in; give this instance its own.
	mkdir -p /var/spool/smtpd
	chmod 0711 /var/spool/smtpd
	if ! unshare --mount --propagation private true 2>/dev/null; then
		ns=shared
		if smtpctl show status >/dev/null 2>&1; then
			stop_one "$dir" dovecot
			die "mount namespaces are not available here and another OpenSMTPD already runs on /var/run/smtpd.sock"
		fi
	fi
	rm -f "$dir/smtpd/private-ns"
	if [[ $ns == private ]]; then
		touch "$dir/smtpd/private-ns"
		# shellcheck disable=SC2016 # expanded by the inner shell
		setsid unshare --mount --propagation private -- /bin/sh -c '
			mount --bind "$1/smtpd/spool" /var/spool/smtpd && mount --bind "$1/smtpd/run" /run &&
			exec smtpd -d $2 -f "$1/smtpd/smtpd.conf"' sh "$dir" "$v" </dev/null >"$dir/smtpd/smtpd.log" 2>&1 &
	else
		# shellcheck disable=SC2086 # $v is empty or one word
		setsid smtpd -d $v -f "$dir/smtpd/smtpd.conf" </dev/null >"$dir/smtpd/smtpd.log" 2>&1 &
	fi
	spid=$!
	record_pid "$dir/smtpd.pid" "$spid"

	local waiting=("$p_imap" "$p_imaps" "$p_pop3" "$p_pop3s" "$p_smtp" "$p_smtps" "$p_lmtp" "$p_mta")
	for ((i = 0; i < timeout * 10; i++)); do
		ok=()
		for p in "${waiting[@]}"; do
			port_open "$p" || ok+=("$p")
		done
		waiting=("${ok[@]}")
		[[ ${#waiting[@]} -eq 0 && -S $dir/run/lmtp ]] && return 0
		if ! pid_is "$dir/dovecot.pid" || ! pid_is "$dir/smtpd.pid"; then
			break
		fi
		sleep 0.1
	done
	stop_one "$dir" smtpd
	stop_one "$dir" dovecot
	return 1
}

cmd_start() {
	[[ $# -eq 1 ]] || usage
	need_root start
	local dir
	dir=$(abs_dir "$1")
	case "$(readlink -m "$dir")/" in
	/run/* | /var/run/* | /var/spool/smtpd/*) die "DIR must not be under /run or /var/spool/smtpd: $dir" ;;
	esac
	if ! packages_installed; then
		[[ -z ${CRMSYNC_MAIL_NO_INSTALL:-} ]] || die "packages missing (${PKGS[*]}): run $0 install"
		cmd_install
	fi
	ensure_mail_user
	mkdir -p "$dir"
	chmod 0755 "$dir"
	if running "$dir"; then
		die "servers are already running for $dir (run: $0 stop $dir)"
	fi
	setpriv --reuid="$MAIL_USER" --regid="$MAIL_USER" --init-groups -- test -x "$dir" ||
		die "$MAIL_USER cannot reach $dir: its parent directories must be searchable by others (chmod o+x)"

	local t0=$SECONDS
	stop_one "$dir" watch # a watchdog left from an earlier start of this DIR
	rm -rf "$dir/run" "$dir/state" "$dir/smtpd" "$dir/tls" "$dir/env" "$dir/passwd"
	mkdir -p "$dir/dovecot" "$dir/run" "$dir/state" "$dir/mail" "$dir/smtpd/run" "$dir/smtpd/spool" "$dir/passwd"
	chown "root:$MAIL_USER" "$dir/passwd"
	chmod 0750 "$dir/passwd"
	chown "$MAIL_USER:$MAIL_USER" "$dir/dovecot" "$dir/run" "$dir/state" "$dir/mail"
	chmod 0700 "$dir/mail"
	chmod 0755 "$dir/smtpd" "$dir/smtpd/run"
	chmod 0711 "$dir/smtpd/spool"
	gen_tls "$dir/tls"

	local u users=()
	for u in "${SEED_USERS[@]}"; do
		users+=("$u@$DOMAIN")
	done
	# Keep users added before a restart of the same DIR.
	if [[ -s $dir/users.list ]]; then
		while read -r u _; do
			[[ -n $u ]] && users+=("$u")
		done <"$dir/users.list"
	fi
	for u in "${users[@]}"; do
		add_user_files "$dir" "$u" "$(user_password "$dir" "$u")"
	done

	local attempt ports
	for attempt in 1 2 3; do
		if [[ -n ${CRMSYNC_MAIL_PORT_BASE:-} ]]; then
			[[ $CRMSYNC_MAIL_PORT_BASE =~ ^[0-9]+$ ]] || die "CRMSYNC_MAIL_PORT_BASE must be a number"
			local b=$CRMSYNC_MAIL_PORT_BASE
			ports="$b $((b + 1)) $((b + 2)) $((b + 3)) $((b + 4)) $((b + 5)) $((b + 6)) $((b + 7))"
		else
			ports=$(free_ports "$NPORTS")
		fi
		# shellcheck disable=SC2086 # word splitting of the port list is intended
		if launch "$dir" $ports; then
			break
		fi
		if [[ -n ${CRMSYNC_MAIL_PORT_BASE:-} || $attempt -eq 3 ]] ||
			! grep -qiE 'in use|bind' "$dir/dovecot/dovecot.log" "$dir/smtpd/smtpd.log" 2>/dev/null; then
			show_logs "$dir"
			die "the mail servers did not come up (an early exit, or no answer within ${CRMSYNC_MAIL_START_TIMEOUT:-20} s; ports: $ports)"
		fi
		log "a port was taken meanwhile; retrying with other ports"
	done

	# shellcheck disable=SC2086
	set -- $ports
	{
		printf 'CRMSYNC_MAIL_DIR=%s\n' "$dir"
		printf 'CRMSYNC_IMAP_ADDR=127.0.0.1:%s\n' "$1"
		printf 'CRMSYNC_IMAPS_ADDR=127.0.0.1:%s\n' "$2"
		printf 'CRMSYNC_POP3_ADDR=127.0.0.1:%s\n' "$3"
		printf 'CRMSYNC_POP3S_ADDR=127.0.0.1:%s\n' "$4"
		printf 'CRMSYNC_SMTP_ADDR=127.0.0.1:%s\n' "$5"
		printf 'CRMSYNC_SMTPS_ADDR=127.0.0.1:%s\n' "$6"
		printf 'CRMSYNC_LMTP=%s\n' "$dir/run/lmtp"
		printf 'CRMSYNC_LMTP_ADDR=127.0.0.1:%s\n' "$7"
		printf 'CRMSYNC_MTA_ADDR=127.0.0.1:%s\n' "$8"
		printf 'CRMSYNC_TLS_CA=%s\n' "$dir/tls/ca.pem"
		printf 'CRMSYNC_TLS_SERVER_NAME=localhost\n'
		printf 'CRMSYNC_MAIL_DOMAIN=%s\n' "$DOMAIN"
		printf 'CRMSYNC_MAIL_PASSWORD=%s\n' "$PASSWORD"
		printf 'CRMSYNC_MAIL_USERS=alice@%s,bob@%s,carol@%s\n' "$DOMAIN" "$DOMAIN" "$DOMAIN"
		printf 'CRMSYNC_MAIL_SINK=%s\n' "$SINK"
		printf 'CRMSYNC_MAIL_SCRIPT=%s\n' "$SCRIPT_PATH"
	} >"$dir/env.tmp"
	mv -f "$dir/env.tmp" "$dir/env"
	start_watchdog "$dir" CRMSYNC_MAIL_WATCH_PID
	cat "$dir/env"
	log "started in $((SECONDS - t0)) s: Dovecot pid $(cut -d' ' -f1 "$dir/dovecot.pid"), OpenSMTPD pid $(cut -d' ' -f1 "$dir/smtpd.pid")"
}

# user_password DIR ADDRESS: the password of a user added with adduser (kept in DIR/users.list), else the default.
user_password() {
	local dir=$1 addr=$2 u p
	if [[ -s $dir/users.list ]]; then
		while read -r u p; do
			if [[ $u == "$addr" ]]; then
				printf '%s\n' "$p"
				return
			fi
		done <"$dir/users.list"
	fi
	printf '%s\n' "$PASSWORD"
}

# cmd_watch DIR PID START_TIME: (internal) stop DIR's servers once the process PID is gone.
cmd_watch() {
	local dir=$1 pid=$2 st=$3
	wait_gone "$pid" "$st"
	stop_one "$dir" smtpd
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
	stop_one "$dir" smtpd
	stop_one "$dir" dovecot
	rm -f "$dir/run/lmtp"
}

cmd_status() {
	[[ $# -eq 1 ]] || usage
	local dir
	dir=$(abs_dir "$1")
	pid_is "$dir/dovecot.pid" && pid_is "$dir/smtpd.pid"
}

cmd_adduser() {
	[[ $# -eq 3 ]] || usage
	need_root adduser
	local dir addr=$2 pass=$3 lockfd
	dir=$(abs_dir "$1")
	[[ $addr == *@* ]] || addr="$addr@$DOMAIN"
	addr=${addr,,} # Dovecot looks users up lowercased (auth_username_format = %Lu)
	[[ $addr =~ ^[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+$ ]] || die "bad address: $addr"
	valid_password "$pass" || die "a password must be non-empty, without spaces or colons"
	[[ -s $dir/env ]] || die "no servers were started in $dir"
	exec {lockfd}>"$dir/adduser.lock"
	flock -w 60 "$lockfd" || die "timed out waiting for $dir/adduser.lock"
	add_user_files "$dir" "$addr" "$pass"
	{
		[[ ! -e $dir/users.list ]] || without_key "$addr" <"$dir/users.list"
		printf '%s %s\n' "$addr" "$pass"
	} >"$dir/users.list.tmp"
	chmod 0600 "$dir/users.list.tmp"
	mv -f "$dir/users.list.tmp" "$dir/users.list"
	if running "$dir"; then
		smtpctl_in "$dir" update table vusers >/dev/null
		smtpctl_in "$dir" update table recipients >/dev/null
	fi
	exec {lockfd}>&-
	printf '%s\n' "$addr"
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
	adduser) cmd_adduser "$@" ;;
	__watch) cmd_watch "$@" ;;
	-h | --help | help) usage ;;
	*) usage ;;
	esac
}

main "$@"
