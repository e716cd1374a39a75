#!/usr/bin/env bash
# scripts/bench-mail.sh: the mail benchmark of issue 3 (BENCHMARKS.md), crmsync's Engine against mbsync (isync)
# and mpop on the same Dovecot, in the same run:
#   (a) initial ingest of a generated mailbox of 20,000 messages over IMAP, Engine vs mbsync;
#   (b) a no-change incoming cycle on that mailbox, Engine vs mbsync;
#   (c) POP3 ingest of 5,000 messages, Engine vs mpop.
#
#   bash scripts/bench-mail.sh [mailbench flags...]      e.g. -runs 5, -messages 2000, -cpuprofile /tmp/engine.prof
#
# It installs isync and mpop (and, through scripts/mailservers.sh, Dovecot and OpenSMTPD) with apt-get, starts private
# mail servers in a temporary directory, runs internal/bench/mailbench and stops the servers. The results are a
# Markdown table on stdout; progress goes to stderr. Needs root (apt-get, OpenSMTPD, adding mail users).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

log() { printf 'bench-mail.sh: %s\n' "$*" >&2; }

[[ $(id -u) -eq 0 ]] || {
	log "must run as root (apt-get, mail servers): try sudo $0 $*"
	exit 1
}

missing=()
command -v mbsync >/dev/null || missing+=(isync)
command -v mpop >/dev/null || missing+=(mpop)
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=600)
	if ! apt-get "${opts[@]}" install "${missing[@]}" >/dev/null 2>&1; then
		apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null
		apt-get "${opts[@]}" install "${missing[@]}" >/dev/null
	fi
fi
bash scripts/mailservers.sh install

bin="$(mktemp -d /tmp/crmsync-mailbench-bin.XXXXXX)"
dir="$(mktemp -d /tmp/crmsync-bench.XXXXXX)"
chmod 0755 "$dir"
cleanup() {
	bash scripts/mailservers.sh stop "$dir" >/dev/null 2>&1 || true
	rm -rf "$dir" "$bin"
}
trap cleanup EXIT

log "building internal/bench/mailbench"
go build -o "$bin/mailbench" ./internal/bench/mailbench
log "starting the mail servers in $dir"
CRMSYNC_MAIL_WATCH_PID=$$ bash scripts/mailservers.sh start "$dir" >/dev/null
"$bin/mailbench" -env "$dir/env" "$@"
