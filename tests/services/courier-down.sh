#!/bin/bash
# Stop what courier-up.sh started and reset Courier's queue, filter sockets and the
# e2e mailbox. For test machines only. Safe to re-run; prints only errors.
set -uo pipefail

ME=courier-down.sh
say() { echo "$ME: $*" >&2; }
[ "$(id -u)" = 0 ] || { say "ERROR: must run as root (uid 0), not uid $(id -u)"; exit 1; }

NAME=rustfilter
WORK=${WORK:-/tmp/rustfilter-courier-e2e}
status=0

# Exited daemons can linger as zombies (nothing reaps orphans in a container), so
# look at the process state, not kill -0.
alive() {
    local state
    state=$(sed -n 's/^[0-9]* (.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
# Our filter's processes: courierfilter runs it by the link path in filters/active,
# which is argv[0] (argv[1] for a script run by its interpreter).
filter_pids() {
    /usr/bin/perl -e '
        my $link = shift;
        opendir(my $d, "/proc") or exit;
        for my $pid (grep { /^\d+$/ } readdir $d) {
            open(my $f, "<", "/proc/$pid/cmdline") or next;
            local $/; my @argv = split /\0/, (<$f> // "");
            print "$pid\n" if grep { defined && $_ eq $link } @argv[0, 1];
        }' "/etc/courier/filters/active/$NAME"
}

# Reverse start order. Each stop is a no-op when the daemon is not running.
# `courierfilter stop` closes each filter's stdin; the filter removes its socket.
for cmd in "/usr/sbin/esmtpd stop" "/usr/sbin/courier stop" \
           "/usr/sbin/courierfilter stop" "/usr/sbin/authdaemond stop"; do
    [ -x "${cmd%% *}" ] || continue
    $cmd >/dev/null 2>&1 || true
done

# Give the filter up to 12 s to drain and exit (it may finish in-flight mail).
for _ in $(seq 120); do
    [ -z "$(filter_pids)" ] && [ ! -e /var/lib/courier/allfilters/$NAME ] && break
    sleep 0.1
done
# A filter still running here was never told to stop (e.g. it hung before closing fd 3,
# so courierfilter never wrote its pid file): stop it by pid, then courierfilter.
pids=$(filter_pids)
if [ -n "$pids" ]; then
    say "warning: $NAME still running after courierfilter stop (pids $(echo $pids)); sending TERM"
    kill $pids 2>/dev/null
    for _ in $(seq 50); do
        left=; for p in $pids; do alive "$p" && left="$left $p"; done
        [ -z "$left" ] && break
        sleep 0.1
    done
    [ -n "$left" ] && { say "warning: sending KILL to$left"; kill -KILL $left 2>/dev/null; }
    # courierfilter now finishes its start, writes its pid file, and can be stopped.
    for _ in $(seq 50); do [ -s /run/courier/courierfilter.pid ] && break; sleep 0.1; done
    /usr/sbin/courierfilter stop >/dev/null 2>&1 || true
fi
if [ -e /var/lib/courier/allfilters/$NAME ]; then
    say "warning: $NAME left its socket /var/lib/courier/allfilters/$NAME behind (removed now)"
fi

if [ -f "$WORK/syslog-sink.pid" ]; then
    pid=$(cat "$WORK/syslog-sink.pid")
    # Only our perl sink, never a pid that has since been reused by something else.
    if [ -n "$pid" ] && grep -q perl "/proc/$pid/comm" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
    fi
    rm -f "$WORK/syslog-sink.pid" /dev/log
fi

# Reset state: queue, filter sockets, enabled filters, mailbox.
L=/var/lib/courier
if [ -d $L ]; then
    rm -rf $L/msgq/* $L/msgs/* $L/track/* \
           $L/allfilters/* $L/allfilters/.[!.]* $L/filters/* $L/filters/.[!.]*
    find $L/tmp -mindepth 1 -maxdepth 1 -type d -name '[0-9]*' -exec rm -rf {} + 2>/dev/null
fi
[ -d /etc/courier/filters/active ] && rm -f /etc/courier/filters/active/*
if E2E_HOME=$(getent passwd e2e | cut -d: -f6) && [ -d "$E2E_HOME/Maildir" ]; then
    find "$E2E_HOME/Maildir/new" "$E2E_HOME/Maildir/cur" "$E2E_HOME/Maildir/tmp" -type f -delete 2>/dev/null
fi

# Undo the hosted domain and userdb accounts of courier-up.sh.
C=/etc/courier
[ -f $C/authdaemonrc.dist ] && cp -p $C/authdaemonrc.dist $C/authdaemonrc
if [ -f $C/userdb.rustfilter-created ]; then
    rm -rf $C/userdb $C/userdb.dat $C/userdbshadow.dat $C/userdb.lock $C/userdb.rustfilter-created
elif [ -f $C/userdb.dist ]; then
    cp -p $C/userdb.dist $C/userdb && /usr/sbin/makeuserdb || status=1
elif [ -f $C/userdb/rustfilter-test ]; then
    rm -f $C/userdb/rustfilter-test && /usr/sbin/makeuserdb || status=1
fi
if [ -f $C/hosteddomains.rustfilter-created ]; then
    rm -rf $C/hosteddomains $C/hosteddomains.dat $C/hosteddomains.rustfilter-created
elif [ -f $C/hosteddomains/rustfilter-test ]; then
    rm -f $C/hosteddomains/rustfilter-test
    if [ -f $C/hosteddomains.dat.rustfilter-created ]; then
        rm -f $C/hosteddomains.dat
    else
        /usr/sbin/makehosteddomains || status=1
    fi
elif [ -f $C/hosteddomains.dist ]; then
    cp -p $C/hosteddomains.dist $C/hosteddomains && /usr/sbin/makehosteddomains || status=1
fi
rm -f $C/hosteddomains.dat.rustfilter-created
rm -rf "$WORK/hosted"

# A daemon that outlives its stop is an error.
for pidfile in /run/courier/esmtpd.pid /run/courier/courierfilter.pid /run/courier/authdaemon/pid; do
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
        say "ERROR: pid $pid from $pidfile is still running"
        status=1
    fi
done
# A stale pid file would make the next `filterctl start` send HUP to that pid.
pf=/run/courier/courierfilter.pid
[ -s $pf ] && ! alive "$(cat $pf)" && rm -f $pf
rm -f "$WORK/up.marker"
exit $status
