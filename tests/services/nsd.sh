#!/bin/bash
# The test name server: nsd, authoritative for the zones in tests/data/dns/.
#
#   tests/services/nsd.sh start [DIR] [PORT]   (default /tmp/rustfilter-nsd 15353)
#   tests/services/nsd.sh stop  [DIR] [PORT]
#
# start: check the zone files, copy them to DIR, and run nsd on 127.0.0.1:PORT (UDP and TCP).
# Returns at once when that nsd is already up and serving the current zone files; restarts it
# when the zone files have changed. Ready when every zone's SOA answers.
# stop: SIGTERM to the pid in DIR/nsd.pid, then wait until it is gone.
# Concurrent starts and stops of one DIR are serialized with a lock file (DIR.lock).
set -euo pipefail

say() { echo "nsd.sh: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

cmd=${1:-}
DIR=${2:-/tmp/rustfilter-nsd}
PORT=${3:-15353}
ZONES_SRC=$(cd "$(dirname "$0")/../data/dns" && pwd)
ZONES=(example.test dnswl.test 127.in-addr.arpa ip6.arpa)

case "$cmd" in start|stop) ;; *) die "usage: $0 start|stop [DIR] [PORT]";; esac
case "$DIR" in /*) ;; *) die "DIR must be an absolute path: $DIR";; esac
case "$PORT" in ''|*[!0-9]*) die "PORT must be a number: $PORT";; esac

. "$(dirname "$0")/lib.sh"
lock_service_dir

pidfile="$DIR/nsd.pid"
if [ "$cmd" = stop ]; then
    stop
    exit 0
fi

for b in nsd nsd-checkzone dig; do
    command -v "$b" >/dev/null 2>&1 \
        || die "$b is missing (Debian packages nsd, bind9-dnsutils): run tests/services/install-deps.sh (as root)"
done

sum=$(cd "$ZONES_SRC" && cat "${ZONES[@]/%/.zone}" | md5sum | cut -d' ' -f1)

serving() {
    local z
    for z in "${ZONES[@]}"; do
        [ -n "$(dig +short +time=1 +tries=1 @127.0.0.1 -p "$PORT" "$z" SOA 2>/dev/null)" ] || return 1
    done
}

if alive && [ "$(cat "$DIR/zones.sum" 2>/dev/null)" = "$sum" ] && serving; then
    exit 0
fi
stop

# A zone with an error would not be served at all, while nsd still starts: check first.
for z in "${ZONES[@]}"; do
    out=$(nsd-checkzone "$z" "$ZONES_SRC/$z.zone" 2>&1) || die "zone $z: $out"
    cp "$ZONES_SRC/$z.zone" "$DIR/"
done

{
    cat <<CONF
server:
    ip-address: 127.0.0.1@$PORT
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "$DIR"
    database: ""
    zonelistfile: "$DIR/zone.list"
    xfrdfile: "$DIR/xfrd.state"
    xfrdir: "$DIR"
    pidfile: "$pidfile"
    logfile: "$DIR/nsd.log"
    server-count: 1
    verbosity: 1
remote-control:
    control-enable: no
CONF
    for z in "${ZONES[@]}"; do
        printf 'zone:\n    name: "%s"\n    zonefile: "%s.zone"\n' "$z" "$z"
    done
} > "$DIR/nsd.conf"

# nsd daemonizes and writes the pid file; it must not keep our output pipes or the lock.
nsd -c "$DIR/nsd.conf" </dev/null >"$DIR/stdout" 2>&1 9>&- \
    || die "nsd did not start (port $PORT taken?): $(tail -5 "$DIR/nsd.log" "$DIR/stdout" 2>/dev/null)"
for _ in $(seq 1 100); do
    if serving; then
        echo "$sum" > "$DIR/zones.sum"
        exit 0
    fi
    alive || break
    sleep 0.05
done
die "nsd is not answering on 127.0.0.1:$PORT: $(tail -5 "$DIR/nsd.log" 2>/dev/null)"
