# Shared by the service scripts of tests/services (sourced, not run): the lock that serializes
# starts and stops of one service directory, and stopping a daemon by its pid file.
# The sourcing script defines die() and sets $DIR and $pidfile.

# Hold $DIR.lock (fd 9) for the rest of the script.
lock_service_dir() {
    mkdir -p "$DIR"
    exec 9>"$DIR.lock" || die "cannot create the lock file $DIR.lock"
    flock -w 60 9 || die "timed out waiting for $DIR.lock (another start or stop is running)"
}

# Whether the pid in $pidfile runs. A zombie does not count: nothing in a container reaps
# orphans, and a zombie has released its sockets already.
alive() {
    [ -f "$pidfile" ] || return 1
    local pid
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null && [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" != Z ]
}

# SIGTERM to the pid in $pidfile, then wait (up to $1 × 50 ms, default 100) until it is gone.
stop() {
    if ! alive; then
        rm -f "$pidfile"
        return 0
    fi
    local pid
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 "${1:-100}"); do
        kill -0 "$pid" 2>/dev/null || break
        [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" = Z ] && break
        sleep 0.05
    done
    rm -f "$pidfile"
}
