#!/bin/sh
# The reference for `make bench`: courier-pythonfilter 3.0.6 from PyPI, in a throwaway venv,
# run hermetically as a black box (nothing of it is copied into this repository).
#
#   tools/pythonfilter-ref.sh install [VENV]
#       Create the venv (default: target/pythonfilter-3.0.6) and pip-install
#       courier-pythonfilter==3.0.6 into it, unless that was done already. Prints the venv's
#       path. The venv uses /usr/bin/python3 when there is one (Debian's build has the GDBM
#       module, so the reference's dbm TtlDb is GDBM, as on a Debian mail host); PYTHON=...
#       picks another interpreter.
#
#   tools/pythonfilter-ref.sh run VENV SYSCONFDIR LOCALSTATEDIR CONFDIR
#       Start pythonfilter as courierfilter does (the caller gives it stdin and fd 3) against a
#       throwaway Courier tree, and exec it, so the caller's child is the daemon itself:
#       * a fake `courier-config` (written into CONFDIR/bin, first on PATH) names SYSCONFDIR and
#         LOCALSTATEDIR; its socket is LOCALSTATEDIR/allfilters/pythonfilter;
#       * its two config files are hard-wired: the chain file is the first readable one of
#         /etc, /usr/local/etc, SYSCONFDIR (pythonfilter.conf), the modules file is
#         /etc/pythonfilter-modules.conf merged with /usr/local/etc/pythonfilter-modules.conf.
#         So it runs in a mount namespace of its own (unshare), where CONFDIR is bind-mounted
#         on /usr/local/etc and CONFDIR's files over any /etc/pythonfilter*.conf of the host.
#         CONFDIR must hold pythonfilter.conf and pythonfilter-modules.conf. Nothing outside
#         the namespace sees the mounts; they vanish with the process.
set -eu

VERSION=3.0.6

die() {
    echo "pythonfilter-ref.sh: $*" >&2
    exit 1
}

install_venv() {
    venv=${1:-$(cd "$(dirname "$0")/.." && pwd)/target/pythonfilter-$VERSION}
    stamp=$venv/.courier-pythonfilter-$VERSION
    if [ -f "$stamp" ] && [ -x "$venv/bin/pythonfilter" ]; then
        echo "$venv"
        return 0
    fi
    python=${PYTHON:-}
    if [ -z "$python" ]; then
        if [ -x /usr/bin/python3 ]; then python=/usr/bin/python3; else python=python3; fi
    fi
    command -v "$python" >/dev/null 2>&1 || die "no $python (install python3)"
    if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
        # Debian splits venv/ensurepip out of python3.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "pythonfilter-ref.sh: installing python3-venv" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >&2 ||
                { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >&2; } ||
                die "cannot install python3-venv"
        else
            die "$python has no venv/ensurepip module: install python3-venv"
        fi
    fi
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv" >&2 || die "cannot create a venv in $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "courier-pythonfilter==$VERSION" >&2 ||
        die "pip install courier-pythonfilter==$VERSION failed"
    [ -x "$venv/bin/pythonfilter" ] || die "the package installed no bin/pythonfilter"
    "$venv/bin/python" -c 'import dbm; print(dbm.whichdb.__module__)' >/dev/null 2>&1 ||
        die "the venv's python cannot import dbm"
    touch "$stamp"
    echo "$venv"
}

run_ref() {
    [ $# -eq 4 ] || die "usage: run VENV SYSCONFDIR LOCALSTATEDIR CONFDIR"
    venv=$1 sysconfdir=$2 localstatedir=$3 confdir=$4
    [ -x "$venv/bin/pythonfilter" ] || die "no $venv/bin/pythonfilter (run: $0 install $venv)"
    for f in pythonfilter.conf pythonfilter-modules.conf; do
        [ -f "$confdir/$f" ] || die "no $confdir/$f"
    done
    [ -d /usr/local/etc ] || die "/usr/local/etc is missing (needed as the bind-mount point)"
    # Few processes here: this runs at every start of the reference, and counts in its
    # start-to-ready time.
    [ -d "$confdir/bin" ] || mkdir "$confdir/bin"
    # The reference asks `courier-config` for Courier's paths; sbindir has no `courier`, so
    # its version is 'unknown' (no module uses it). mailuid/mailgid keep their defaults.
    printf '#!/bin/sh\necho "prefix=%s"\necho "exec_prefix=%s"\necho "bindir=%s/bin"\necho "sbindir=%s/sbin"\necho "libexecdir=%s/libexec"\necho "sysconfdir=%s"\necho "datadir=%s/share"\necho "localstatedir=%s"\n' \
        "$confdir" "$confdir" "$confdir" "$confdir" "$confdir" "$sysconfdir" "$confdir" "$localstatedir" \
        >"$confdir/bin/courier-config"
    chmod 755 "$confdir/bin/courier-config"
    PATH=$confdir/bin:$PATH
    export PATH
    if [ "$(id -u)" = 0 ]; then userns=; else userns=--map-root-user; fi
    # shellcheck disable=SC2016
    exec unshare --mount --propagation private $userns -- /bin/sh -c '
        set -e
        confdir=$1 venv=$2
        mount --bind "$confdir" /usr/local/etc
        for f in pythonfilter.conf pythonfilter-modules.conf; do
            if [ -e "/etc/$f" ]; then mount --bind "$confdir/$f" "/etc/$f"; fi
        done
        exec "$venv/bin/python" "$venv/bin/pythonfilter"
    ' pythonfilter-ref "$confdir" "$venv"
}

case ${1:-} in
install)
    shift
    install_venv "$@"
    ;;
run)
    shift
    run_ref "$@"
    ;;
*)
    die "usage: $0 install [VENV] | run VENV SYSCONFDIR LOCALSTATEDIR CONFDIR"
    ;;
esac
