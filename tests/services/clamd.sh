#!/bin/bash
# The test virus scanner: clamd on a UNIX socket with a tiny private signature database.
#
#   tests/services/clamd.sh start [DIR]   (default /tmp/rustfilter-clamd; socket DIR/clamd.sock)
#   tests/services/clamd.sh stop  [DIR]
#   CLAMD_USER=clamav tests/services/clamd.sh start DIR   (as root: clamd drops to that user)
#
# start: write DIR/db/rustfilter-test.ndb (two body-pattern signatures, below) and DIR/clamd.conf,
# and run clamd in the foreground in the background. Returns at once when that clamd is already
# up with the current signatures and configuration. Ready when `zPING` answers `PONG`.
# stop: SIGTERM to the pid in DIR/clamd.pid, then wait until it is gone.
# Concurrent starts and stops of one DIR are serialized with a lock file (DIR.lock).
#
# Signatures (clamd appends .UNOFFICIAL to the names of unsigned databases):
#   Rustfilter.Test.EICAR      the EICAR test string anywhere (the official database is not
#                              used, and without it clamd does not know EICAR). The hex is
#                              computed here from pieces, so no file of the repository carries
#                              the EICAR string and no scanner quarantines it.
#   Rustfilter.Test.Pattern    the text RUSTFILTER-TEST-MALWARE-PATTERN-42 anywhere.
#   Test.Custom-Pattern        the text PYFILTER-TEST-MALWARE-PATTERN-42 anywhere (the name and
#                              pattern of the test-services recipe).
# StreamMaxLength is 1M, small so that tests reach clamd's INSTREAM size limit cheaply.
# clamd runs as the invoking user (no User line) unless CLAMD_USER names another (root only):
# then it cannot open files that user may not read, which shows that INSTREAM and FILDES need
# no access to the spool.
set -euo pipefail

say() { echo "clamd.sh: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

cmd=${1:-}
DIR=${2:-/tmp/rustfilter-clamd}

case "$cmd" in start|stop) ;; *) die "usage: $0 start|stop [DIR]";; esac
case "$DIR" in /*) ;; *) die "DIR must be an absolute path: $DIR";; esac
# sun_path holds 108 bytes with the terminating NUL
[ ${#DIR} -le 90 ] || die "DIR is too long for a UNIX socket path: $DIR"

. "$(dirname "$0")/lib.sh"
lock_service_dir

pidfile="$DIR/clamd.pid"
sock="$DIR/clamd.sock"

if [ "$cmd" = stop ]; then
    stop
    exit 0
fi

# /usr/sbin is not on every user's PATH.
CLAMD=$(command -v clamd 2>/dev/null || echo /usr/sbin/clamd)
[ -x "$CLAMD" ] \
    || die "clamd is missing (Debian package clamav-daemon): run tests/services/install-deps.sh (as root)"
command -v od >/dev/null 2>&1 || die "od is missing (coreutils)"

hex() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n'; }
# The EICAR test string, put together from pieces.
eicar="X5O!P%@AP[4\\PZX54(P^)7CC)7}\$EICAR"
eicar="$eicar-STANDARD-ANTIVIRUS-TEST-FILE!\$H+H*"
[ ${#eicar} = 68 ] || die "internal: the EICAR string is ${#eicar} bytes, not 68"

ndb="Rustfilter.Test.EICAR:0:*:$(hex "$eicar")
Rustfilter.Test.Pattern:0:*:$(hex 'RUSTFILTER-TEST-MALWARE-PATTERN-42')
Test.Custom-Pattern:0:*:$(hex 'PYFILTER-TEST-MALWARE-PATTERN-42')"
conf="Foreground yes
LocalSocket $sock
LocalSocketMode 666
FixStaleSocket yes
DatabaseDirectory $DIR/db
TemporaryDirectory $DIR
LogFile $DIR/clamd.log
LogTime yes
SelfCheck 0
StreamMaxLength 1M
CommandReadTimeout 5
ReadTimeout 5"
user=${CLAMD_USER:-}
if [ -n "$user" ]; then
    [ "$(id -u)" = 0 ] || die "CLAMD_USER needs root"
    id "$user" >/dev/null 2>&1 || die "CLAMD_USER: no user $user"
    conf="$conf
User $user"
fi
sum=$(printf '%s\n%s\n' "$ndb" "$conf" | md5sum | cut -d' ' -f1)

ping() {
    # zPING\0 → PONG\0, with a deadline (bash's /dev/tcp has no UNIX sockets: use python3 when
    # present, else socat)
    if [ -x /usr/bin/python3 ]; then
        /usr/bin/python3 -c 'import socket,sys
s=socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(sys.argv[1]); s.sendall(b"zPING\0")
sys.exit(s.recv(8)!=b"PONG\0")' "$sock" 2>/dev/null
    elif command -v socat >/dev/null 2>&1; then
        [ "$(printf 'zPING\0' | timeout 2 socat - "UNIX-CONNECT:$sock" 2>/dev/null | tr -d '\0')" = PONG ]
    else
        die "neither /usr/bin/python3 nor socat is there to ping clamd"
    fi
}

if alive && [ "$(cat "$DIR/config.sum" 2>/dev/null)" = "$sum" ] && ping; then
    exit 0
fi
stop
rm -f "$DIR/config.sum"

mkdir -p "$DIR/db"
chmod 755 "$DIR"
rm -f "$DIR"/db/*
printf '%s\n' "$ndb" > "$DIR/db/rustfilter-test.ndb"
printf '%s\n' "$conf" > "$DIR/clamd.conf"
: > "$DIR/clamd.log"
# clamd drops to the user before it binds the socket and writes its log and temporary files.
[ -z "$user" ] || chown -R "$user" "$DIR"

# clamd must not keep the lock (fd 9) or our output pipes.
nohup "$CLAMD" --config-file="$DIR/clamd.conf" </dev/null >"$DIR/stdout" 2>&1 9>&- &
pid=$!
echo "$pid" > "$pidfile"
for _ in $(seq 1 300); do
    if ping; then
        echo "$sum" > "$DIR/config.sum"
        exit 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
die "clamd is not answering on $sock: $(tail -5 "$DIR/clamd.log" "$DIR/stdout" 2>/dev/null)"
