#!/bin/bash
# Bring up a real Courier MTA (Debian 12 packages) on 127.0.0.1:$PORT, without
# systemd, with rustfilter installed and enabled as a global filter.
# For tests only: it rewrites Courier's configuration in /etc/courier. Run as root.
#
#   FILTER_BIN=target/release/rustfilter tests/services/courier-up.sh CHAIN_FILE MODULES_FILE
#
# Inputs (arguments win over the environment):
#   FILTER_BIN      the rustfilter binary; installed as /usr/lib/courier/filters/rustfilter
#   $1 / CHAIN_CONF    chain file   -> /etc/courier/rustfilter.conf
#   $2 / MODULES_CONF  modules file -> /etc/courier/rustfilter-modules.conf
#   PORT            SMTP port on 127.0.0.1 (default 2525)
#   WORK            scratch directory (default /tmp/rustfilter-courier-e2e)
#
# Afterwards $WORK/syslog-cmd holds a shell command that prints the syslog lines
# written since this script started (Courier logs only through syslog).
# Undo with courier-down.sh. Running this again first stops what a previous run started.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ME=courier-up.sh
say() { echo "$ME: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
trap 'die "line $LINENO failed: $BASH_COMMAND"' ERR

[ "$(id -u)" = 0 ] || die "must run as root (uid 0), not uid $(id -u): it installs packages, rewrites /etc/courier and starts Courier's daemons"

NAME=rustfilter
PORT=${PORT:-2525}
WORK=${WORK:-/tmp/rustfilter-courier-e2e}
FILTER_BIN=${FILTER_BIN:-}
CHAIN_CONF=${1:-${CHAIN_CONF:-}}
MODULES_CONF=${2:-${MODULES_CONF:-}}
[ -n "$FILTER_BIN" ] || die "FILTER_BIN is not set (path of the rustfilter binary to install)"
[ -f "$FILTER_BIN" ] && [ -x "$FILTER_BIN" ] || die "FILTER_BIN=$FILTER_BIN is not an executable file"
[ -n "$CHAIN_CONF" ] || die "no chain file given (first argument or CHAIN_CONF)"
[ -f "$CHAIN_CONF" ] && [ -r "$CHAIN_CONF" ] || die "chain file $CHAIN_CONF is not a readable file"
[ -n "$MODULES_CONF" ] || die "no modules file given (second argument or MODULES_CONF)"
[ -f "$MODULES_CONF" ] && [ -r "$MODULES_CONF" ] || die "modules file $MODULES_CONF is not a readable file"
case "$PORT" in ''|*[!0-9]*) die "PORT=$PORT is not a number" ;; esac

# rustfilter takes the first config it finds in /etc, /usr/local/etc, then Courier's
# sysconfdir: a file in the first two would silently replace the one installed here.
for f in /etc/rustfilter.conf /usr/local/etc/rustfilter.conf \
         /etc/rustfilter-modules.conf /usr/local/etc/rustfilter-modules.conf; do
    [ -e "$f" ] && die "$f exists and would take precedence over the test configuration in /etc/courier; move it away first"
done

start_time=$(date +%s)
mkdir -p "$WORK"
chmod 0755 "$WORK"

# ---- packages (no-op when installed) -------------------------------------------
INSTALL_DEPS_RUST=0 "$HERE/install-deps.sh" || die "installing Courier failed (see above)"
for f in /usr/sbin/authdaemond /usr/sbin/courierfilter /usr/sbin/courier /usr/sbin/esmtpd \
         /usr/sbin/filterctl /usr/sbin/makesmtpaccess /usr/sbin/makealiases /usr/bin/maildirmake; do
    [ -x "$f" ] || die "$f is missing although courier-mta is installed"
done

# ---- a previous run left running? -------------------------------------------------
if [ -e "$WORK/up.marker" ]; then
    say "a previous run is still up; stopping it first"
    "$HERE/courier-down.sh" || die "courier-down.sh failed"
fi
# Exited daemons may linger as zombies (nothing reaps orphans in a container), so
# look at the process state rather than kill -0.
alive() {
    local state
    state=$(sed -n 's/^[0-9]* (.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
for pidfile in /run/courier/esmtpd.pid /run/courier/courierfilter.pid /run/courier/authdaemon/pid; do
    if [ -s "$pidfile" ] && alive "$(cat "$pidfile")"; then
        die "Courier is already running (live pid in $pidfile) and was not started by this script; stop it first"
    fi
done
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "something already listens on 127.0.0.1:$PORT; stop it or choose another PORT"
fi
touch "$WORK/up.marker"
# From here on a failure also stops whatever did start, leaving the machine clean.
fail() {
    if [ -s "$WORK/syslog-cmd" ]; then
        say "relevant syslog lines ($(cat "$WORK/syslog-cmd")):"
        sh -c "$(cat "$WORK/syslog-cmd")" 2>/dev/null \
            | grep -E 'courierfilter:|submit:|courieresmtpd:|authdaemond:|courierd:.*(rror|ail)' \
            | tail -n 30 >&2 || true
    fi
    say "ERROR: $*"
    "$HERE/courier-down.sh" || true
    exit 1
}
trap 'fail "line $LINENO failed: $BASH_COMMAND"' ERR

# ---- Courier configuration ------------------------------------------------------------
C=/etc/courier
[ -f $C/esmtpd.dist ] || cp -p $C/esmtpd $C/esmtpd.dist     # keep the packaged file once
cp -p $C/esmtpd.dist $C/esmtpd
# No DNS here (BOFHCHECKDNS), no delayed error replies (TARPIT), AUTH without TLS.
sed -i -e "s/^PORT=.*/PORT=$PORT/" \
       -e 's/^BOFHCHECKDNS=.*/BOFHCHECKDNS=0/' \
       -e 's/^TARPIT=.*/TARPIT=0/' \
       -e 's/^ESMTPAUTH=.*/ESMTPAUTH="LOGIN PLAIN"/' \
       -e 's/^ESMTPDSTART=.*/ESMTPDSTART=YES/' $C/esmtpd
echo 'ADDRESS=127.0.0.1' >> $C/esmtpd
echo 'mail.e2e.test'           > $C/me
printf 'localhost\ne2e.test\nmail.e2e.test\n' > $C/locals   # me() too: quarantine release addresses
echo 'e2e.test'                > $C/esmtpacceptmailfor
echo 'e2e.test'                > $C/defaultdomain
echo ': [127.0.0.1],9'         > $C/esmtproutes       # all outbound mail (DSNs) to a closed port
echo 'esmtp'                   > $C/enablefiltering   # filter mail received by ESMTP
/usr/sbin/makesmtpaccess || fail "makesmtpaccess failed"   # 127.0.0.1 -> allow,RELAYCLIENT
/usr/sbin/makealiases    || fail "makealiases failed"

# The recipient, also the SMTP AUTH account (authdaemond -> PAM).
id e2e >/dev/null 2>&1 || useradd -m -s /usr/sbin/nologin e2e || fail "useradd e2e failed"
echo 'e2e:e2epass' | chpasswd || fail "chpasswd for e2e failed"
E2E_HOME=$(getent passwd e2e | cut -d: -f6)
[ -n "$E2E_HOME" ] && [ -d "$E2E_HOME" ] || fail "user e2e has no home directory"
if [ ! -d "$E2E_HOME/Maildir/new" ]; then
    su -s /bin/sh e2e -c 'maildirmake "$HOME/Maildir"' || fail "maildirmake for e2e failed"
fi

# ---- hosted domain and userdb accounts (tests/mailbox_modules.rs) ----------------------
# authdaemond asks userdb first, then PAM (user e2e). HOSTED_USERS live in hosted.test, with
# home and Maildir under $WORK/hosted/<name>, owned by e2e's uid/gid and readable by courier
# (the quota module reads their maildirsize). bob's MAILDIR is relative to his home.
HOSTED_DOMAIN=hosted.test
HOSTED_USERS="alice bob carol dave"
[ -f $C/authdaemonrc.dist ] || cp -p $C/authdaemonrc $C/authdaemonrc.dist   # pristine copy
cp -p $C/authdaemonrc.dist $C/authdaemonrc
sed -i 's/^authmodulelist=.*/authmodulelist="authuserdb authpam"/' $C/authdaemonrc
E2E_UID=$(id -u e2e); E2E_GID=$(id -g e2e)
rm -rf "$WORK/hosted"
install -d -m 0755 "$WORK/hosted"
if [ -d $C/userdb ]; then
    UDB=$C/userdb/rustfilter-test
elif [ -e $C/userdb ]; then
    [ -f $C/userdb.dist ] || cp -p $C/userdb $C/userdb.dist
    cp -p $C/userdb.dist $C/userdb
    UDB=$C/userdb
else
    install -d -m 0700 $C/userdb
    touch $C/userdb.rustfilter-created    # courier-down.sh removes userdb entirely
    UDB=$C/userdb/rustfilter-test
fi
[ "$UDB" = $C/userdb ] || : > "$UDB"
for u in $HOSTED_USERS; do
    home=$WORK/hosted/$u
    install -d -o "$E2E_UID" -g "$E2E_GID" -m 0755 "$home"
    su -s /bin/sh e2e -c "maildirmake '$home/Maildir'" || fail "maildirmake for $u failed"
    chmod 0755 "$home/Maildir"
    if [ "$u" = bob ]; then mail=./Maildir; else mail=$home/Maildir; fi
    printf '%s@%s\tuid=%s|gid=%s|home=%s|mail=%s\n' "$u" "$HOSTED_DOMAIN" \
        "$E2E_UID" "$E2E_GID" "$home" "$mail" >> "$UDB"
done
chmod 0600 "$UDB"
/usr/sbin/makeuserdb || fail "makeuserdb failed"
# Without a hosteddomains.dat before, courier-down.sh removes the one made here.
[ -e $C/hosteddomains.dat ] || touch $C/hosteddomains.dat.rustfilter-created
if [ -d $C/hosteddomains ]; then
    echo "$HOSTED_DOMAIN" > $C/hosteddomains/rustfilter-test
elif [ -e $C/hosteddomains ]; then
    [ -f $C/hosteddomains.dist ] || cp -p $C/hosteddomains $C/hosteddomains.dist
    { cat $C/hosteddomains.dist; echo "$HOSTED_DOMAIN"; } > $C/hosteddomains
else
    install -d -m 0755 $C/hosteddomains
    touch $C/hosteddomains.rustfilter-created   # courier-down.sh removes it entirely
    echo "$HOSTED_DOMAIN" > $C/hosteddomains/rustfilter-test
fi
/usr/sbin/makehosteddomains || fail "makehosteddomains failed"

# ---- syslog: Courier logs only via /dev/log ------------------------------------------
# Without a syslog daemon every line would be lost, so start a small sink (perl-base
# is Essential on Debian). With a syslog already there, say where its lines go.
: > "$WORK/syslog"
rm -f "$WORK/syslog-cmd"
# A /dev/log nobody reads (a sink or syslogd that died) counts as none.
dev_log_live() {
    /usr/bin/perl -e 'use Socket; socket(my $s, AF_UNIX, SOCK_DGRAM, 0) or exit 1;
                      connect($s, pack_sockaddr_un("/dev/log")) or exit 1' 2>/dev/null
}
if [ ! -S /dev/log ] || ! dev_log_live; then
    rm -f /dev/log
    setsid /usr/bin/perl -e '
        use strict; use Socket; use IO::Handle;
        my ($path, $out) = @ARGV;
        socket(my $s, AF_UNIX, SOCK_DGRAM, 0) or die "socket: $!";
        unlink $path;
        bind($s, pack_sockaddr_un($path)) or die "bind $path: $!";
        chmod 0666, $path;
        open(my $f, ">>", $out) or die "open $out: $!";
        $f->autoflush(1);
        while (defined(recv($s, my $buf, 65536, 0))) { $buf =~ s/[\n\0]+\z//; print $f "$buf\n"; }
    ' /dev/log "$WORK/syslog" </dev/null >/dev/null 2>"$WORK/syslog-sink.err" &
    echo $! > "$WORK/syslog-sink.pid"
    for _ in $(seq 50); do [ -S /dev/log ] && break; sleep 0.1; done
    [ -S /dev/log ] || fail "the syslog sink did not create /dev/log: $(cat "$WORK/syslog-sink.err")"
    echo "cat $WORK/syslog" > "$WORK/syslog-cmd"
elif [ -S /run/systemd/journal/socket ] && command -v journalctl >/dev/null 2>&1; then
    echo "journalctl --no-pager -q -o short --since=@$start_time" > "$WORK/syslog-cmd"
else
    cmd=
    for f in /var/log/mail.log /var/log/syslog /var/log/messages; do
        if [ -f "$f" ]; then cmd="tail -c +$(( $(stat -c %s "$f") + 1 )) $f"; break; fi
    done
    [ -n "$cmd" ] || fail "/dev/log belongs to a syslog daemon whose log file is not in /var/log/{mail.log,syslog,messages}"
    echo "$cmd" > "$WORK/syslog-cmd"
fi

# ---- the filter and its configuration -------------------------------------------------
install -o root -g root -m 0755 "$FILTER_BIN" /usr/lib/courier/filters/$NAME \
    || fail "cannot install $FILTER_BIN as /usr/lib/courier/filters/$NAME"
# Readable by the filter (user courier), not writable by it.
install -o root -g courier -m 0640 "$CHAIN_CONF"   $C/rustfilter.conf \
    || fail "cannot install $CHAIN_CONF as $C/rustfilter.conf"
install -o root -g courier -m 0640 "$MODULES_CONF" $C/rustfilter-modules.conf \
    || fail "cannot install $MODULES_CONF as $C/rustfilter-modules.conf"
rm -f $C/filters/active/*                                  # only our filter runs
rm -f /var/lib/courier/allfilters/$NAME /var/lib/courier/allfilters/.$NAME
/usr/sbin/filterctl start $NAME || fail "filterctl start $NAME failed"

# ---- start, in dependency order --------------------------------------------------------
/usr/sbin/authdaemond start || fail "authdaemond start failed"
# courierfilter start returns only once every filter has closed fd 3, which rustfilter
# does when its socket accepts.
timeout 30 /usr/sbin/courierfilter start \
    || fail "courierfilter start failed or took over 30 s (a filter that never closes fd 3?)"
for _ in $(seq 30); do [ -S /var/lib/courier/allfilters/$NAME ] && break; sleep 0.1; done
[ -S /var/lib/courier/allfilters/$NAME ] \
    || fail "$NAME did not create its socket /var/lib/courier/allfilters/$NAME (did it exit? see its stderr above, tagged courierfilter)"
/usr/sbin/courier start || fail "courier start failed"
/usr/sbin/esmtpd start  || fail "esmtpd start failed"

# ---- readiness: the SMTP port accepts connections ------------------------------------
for _ in $(seq 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        [ -S /var/lib/courier/allfilters/$NAME ] || fail "$NAME's socket disappeared during start-up"
        say "Courier is up on 127.0.0.1:$PORT with $NAME (took $(( $(date +%s) - start_time )) s)"
        exit 0
    fi
    sleep 0.1
done
fail "nothing listens on 127.0.0.1:$PORT after 15 s: esmtpd did not start"
