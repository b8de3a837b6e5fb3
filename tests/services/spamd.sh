#!/bin/bash
# The test SpamAssassin daemon: spamd with the packaged rules only (no network tests, no Bayes,
# no user configs), on a UNIX socket.
#
#   tests/services/spamd.sh start [DIR]   (default /tmp/rustfilter-spamd; socket DIR/spamd.sock)
#   tests/services/spamd.sh stop  [DIR]
#
# start: returns at once when that spamd is already up and answers a ping; otherwise starts it
# (daemonized, pid in DIR/spamd.pid) and waits until `spamc -x -U DIR/spamd.sock -K` answers
# status 0 (about 2-5 s: spamd compiles its rules first).
# stop: SIGTERM to the pid in DIR/spamd.pid (the parent kills its children and removes the
# socket), then wait until it is gone.
# Concurrent starts and stops of one DIR are serialized with a lock file (DIR.lock).
set -euo pipefail

say() { echo "spamd.sh: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

cmd=${1:-}
DIR=${2:-/tmp/rustfilter-spamd}

case "$cmd" in start|stop) ;; *) die "usage: $0 start|stop [DIR]";; esac
case "$DIR" in /*) ;; *) die "DIR must be an absolute path: $DIR";; esac

. "$(dirname "$0")/lib.sh"
lock_service_dir

pidfile="$DIR/spamd.pid"
sock="$DIR/spamd.sock"
if [ "$cmd" = stop ]; then
    stop 200
    exit 0
fi

for b in spamd spamc; do
    command -v "$b" >/dev/null 2>&1 \
        || die "$b is missing (Debian packages spamassassin, spamc, spamd): run tests/services/install-deps.sh (as root)"
done

pong() {
    local out
    # spamc 4.0.1 prints "SPAMD/1.5 0" (status 0 = EX_OK; the recipe saw "... 0 PONG") and
    # exits 70/69 when nothing answers.
    out=$(spamc -x -U "$sock" -K 2>/dev/null) && [[ $out == SPAMD/*" 0"* ]]
}

if alive && pong; then
    exit 0
fi
stop 200
rm -f "$sock"

user=()
# As root spamd must be told whom to run as (else it warns and picks nobody anyway).
[ "$(id -u)" = 0 ] && user=(--username=nobody)

# -d: spamd daemonizes and writes the pid file; it must not keep our output pipes or the lock.
spamd -d --pidfile="$pidfile" --local --nouser-config "${user[@]}" --helper-home-dir="$DIR" \
    --socketpath="$sock" --socketmode=0666 --syslog="$DIR/spamd.log" \
    --max-children=2 --min-children=1 --min-spare=0 --max-spare=1 \
    --cf='use_bayes 0' --cf='bayes_auto_learn 0' \
    </dev/null >>"$DIR/spamd.log" 2>&1 9>&- \
    || die "spamd did not start: $(tail -5 "$DIR/spamd.log" 2>/dev/null)"
# Rule compilation takes 2-5 s; allow for a busy machine.
for _ in $(seq 1 600); do
    if pong; then
        exit 0
    fi
    if [ -f "$pidfile" ] && ! alive; then
        break
    fi
    sleep 0.1
done
die "spamd is not answering on $sock: $(tail -5 "$DIR/spamd.log" 2>/dev/null)"
