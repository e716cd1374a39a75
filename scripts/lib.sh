#!/usr/bin/env bash
# scripts/lib.sh: what the server scripts (mailservers.sh, mailservers-oauth.sh, postgres.sh) share, sourced by
# them: process bookkeeping (pid files that remember a start time, so that a recycled pid is never taken for
# ours; stopping a process group; a watchdog that stops the servers with the process that wanted them), free
# ports, and test TLS certificates. The sourcing script defines log, die and SCRIPT_PATH first.

# start_time PID: the process's start time (in clock ticks since boot), empty if it is gone or a zombie.
start_time() {
	local line rest fields
	read -r line 2>/dev/null <"/proc/$1/stat" || return 0
	rest=${line##*) }
	read -r -a fields <<<"$rest"
	[[ ${fields[0]} != Z ]] || return 0
	printf '%s\n' "${fields[19]}"
}

# record_pid FILE PID: remember PID with its start time, so a recycled pid is never taken for ours.
record_pid() { printf '%s %s\n' "$2" "$(start_time "$2")" >"$1"; }

# pid_is PIDFILE: whether the process recorded in PIDFILE is still alive (same pid, same start time).
pid_is() {
	local pid st
	[[ -s $1 ]] || return 1
	read -r pid st <"$1" || return 1
	[[ $pid =~ ^[0-9]+$ && -n $st && $(start_time "$pid") == "$st" ]]
}

# group_alive PGID: whether any live (non-zombie) process is in the process group.
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
	# The group is ours while its leader is (same start time), or when the leader is gone but members remain.
	if pid_is "$pidfile" || { [[ $pid =~ ^[0-9]+$ && -z $(start_time "$pid") ]] && group_alive "$pid"; }; then
		kill -TERM -- "-$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			group_alive "$pid" || break
			sleep 0.1
		done
		if group_alive "$pid"; then
			log "$name did not stop within 10 s; killing it"
			kill -KILL -- "-$pid" 2>/dev/null || true
			for ((i = 0; i < 50; i++)); do
				group_alive "$pid" || break
				sleep 0.1
			done
		fi
	fi
	rm -f "$pidfile"
}

# free_ports N: N distinct TCP ports in 20000-32767 (below Linux's ephemeral range, so no outgoing connection
# takes them meanwhile) that nothing on this machine has bound.
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

# gen_tls DIR [CA_NAME]: a test CA and a server certificate for localhost and 127.0.0.1 in DIR (ca.pem,
# cert.pem, and dovecot-key.pem readable by $MAIL_USER only).
gen_tls() {
	local tls=$1 ca=${2:-crmsync test CA} ext
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
			-keyout "$tls/ca-key.pem" -out "$tls/ca.pem" -days 3650 -subj "/CN=$ca" \
			-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
		# The server key is RSA 2048, the kind every client accepts.
		openssl req -new -newkey rsa:2048 -nodes \
			-keyout "$tls/key.pem" -out "$tls/leaf.csr" -subj "/CN=localhost"
		openssl x509 -req -in "$tls/leaf.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" \
			-set_serial "0x$(openssl rand -hex 12)" -days 3650 -extfile "$ext" -out "$tls/cert.pem"
	) >"$tls/openssl.log" 2>&1 || {
		cat "$tls/openssl.log" >&2
		die "openssl failed"
	}
	chmod 0644 "$tls/ca.pem" "$tls/cert.pem"
	# Dovecot reads its key as MAIL_USER.
	install -m 0600 -o "$MAIL_USER" -g "$MAIL_USER" "$tls/key.pem" "$tls/dovecot-key.pem"
	rm -f "$tls/leaf.csr" "$tls/leaf.ext" "$tls/openssl.log" "$tls/key.pem"
}

# start_watchdog DIR VAR: when the variable named VAR holds a pid, run this script's
# "__watch DIR PID START_TIME" in the background (cmd_watch), which stops DIR's servers once
# that process is gone: servers started for a test run never outlive it.
start_watchdog() {
	local dir=$1 var=$2 pid st
	pid=${!var:-}
	[[ -n $pid ]] || return 0
	[[ $pid =~ ^[0-9]+$ ]] || die "$var must be a pid"
	st=$(start_time "$pid")
	[[ -n $st ]] || die "$var $pid is not a running process"
	setsid bash "$SCRIPT_PATH" __watch "$dir" "$pid" "$st" </dev/null >/dev/null 2>&1 &
	record_pid "$dir/watch.pid" "$!"
}

# wait_gone PID START_TIME: return once the process PID, started at START_TIME, is gone.
wait_gone() {
	while [[ $(start_time "$1") == "$2" ]]; do
		sleep 1
	done
}

# dovecot_services: the services a private Dovecot runs without chroot (which needs root), and
# anvil without its auth penalty. For the end of a dovecot.conf.
dovecot_services() {
	cat <<'EOF'
# chroot needs root: the services that chroot by default do not here.
service anvil {
  chroot =
  # No auth penalty: else each failed login from 127.0.0.1 delays the next logins of every test by 2-15 s.
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
EOF
}

# dovecot_login_service SERVICE LISTENER PORT TLS_LISTENER TLS_PORT: a Dovecot login service on
# loopback, without chroot: LISTENER plaintext (with STARTTLS), TLS_LISTENER implicit TLS.
dovecot_login_service() {
	cat <<EOF
service $1 {
  chroot =
  inet_listener $2 {
    address = 127.0.0.1
    port = $3
  }
  inet_listener $4 {
    address = 127.0.0.1
    port = $5
    ssl = yes
  }
}
EOF
}
