#!/bin/bash
# Install what `make test` needs and is missing; do nothing when all is present.
#
#   Debian packages: courier-mta (the real MTA for tests/courier_e2e.rs), postgresql-15
#   (the throwaway cluster of tests/services/postgres.sh; no system cluster is created),
#   python3-gdbm (the TtlDb import test writes pythonfilter's dbm files), groff-base
#   (tests/man_pages.rs renders the manual pages), make (tests/packaging.rs runs
#   `make install`), nsd and bind9-dnsutils (the test name server of tests/services/nsd.sh,
#   dig for its readiness check), spamassassin, spamc and spamd (the SpamAssassin daemon of
#   tests/services/spamd.sh and its client), clamav-daemon (clamd of tests/services/clamd.sh;
#   it runs on a private signature file, so neither freshclam nor the system clamd is started
#   or needed), and a C toolchain (cc) for linking when none is on PATH.
#   Rust components: rustfmt and clippy (`make check`).
#
# Needs root only when something has to be installed. Safe to re-run.
set -euo pipefail

say() { echo "install-deps: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

missing=()
dpkg -s courier-mta >/dev/null 2>&1 || missing+=(courier-mta)
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
dpkg -s python3-gdbm >/dev/null 2>&1 || missing+=(python3-gdbm)
command -v groff >/dev/null 2>&1 || missing+=(groff-base)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v nsd >/dev/null 2>&1 || missing+=(nsd)
command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
command -v spamd >/dev/null 2>&1 || [ -x /usr/sbin/spamd ] || missing+=(spamd)
command -v spamc >/dev/null 2>&1 || missing+=(spamc)
dpkg -s spamassassin >/dev/null 2>&1 || missing+=(spamassassin)
command -v clamd >/dev/null 2>&1 || [ -x /usr/sbin/clamd ] || missing+=(clamav-daemon)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
# sqlite3: tests/faults.rs holds the TtlDb's write lock from another process.
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)

if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "these Debian packages are missing and installing them needs root: ${missing[*]}"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: ${missing[*]}"
    # A policy-rc.d that says "no" keeps the postinst scripts from starting Courier
    # on port 25 (or nsd on port 53) with its default configuration. Only ours is removed afterwards.
    policy=/usr/sbin/policy-rc.d
    created_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# temporary, from rustfilter tests/services/install-deps.sh\nexit 101\n' > "$policy"
        chmod 0755 "$policy"
        created_policy=1
        trap 'rm -f "$policy"' EXIT
    fi
    case " ${missing[*]} " in *" postgresql-15 "*)
        # The tests run their own cluster: keep the package from creating 15/main.
        mkdir -p /etc/postgresql-common/createcluster.d
        echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/rustfilter-ci.conf
    esac
    say "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -q -o DPkg::Lock::Timeout=600 update \
        || die "apt-get update failed"
    apt-get -q -y -o DPkg::Lock::Timeout=600 --no-install-recommends install "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
    if [ -n "$created_policy" ]; then rm -f "$policy"; trap - EXIT; fi
    dpkg -s courier-mta >/dev/null 2>&1 || die "courier-mta is still not installed"
    [ -x /usr/lib/postgresql/15/bin/initdb ] || die "postgresql-15 is still not installed"
    command -v nsd >/dev/null 2>&1 || die "nsd is still not installed"
    [ -x /usr/sbin/spamd ] || command -v spamd >/dev/null 2>&1 || die "spamd is still not installed"
    command -v spamc >/dev/null 2>&1 || die "spamc is still not installed"
    [ -x /usr/sbin/clamd ] || command -v clamd >/dev/null 2>&1 || die "clamd (clamav-daemon) is still not installed"
fi

# rustfmt / clippy: only when a cargo is there to use them (the Courier scripts call
# this file too, and need no Rust).
if [ "${INSTALL_DEPS_RUST:-1}" = 1 ] && command -v cargo >/dev/null 2>&1; then
    comps=()
    cargo fmt --version >/dev/null 2>&1 || comps+=(rustfmt)
    cargo clippy --version >/dev/null 2>&1 || comps+=(clippy)
    if [ ${#comps[@]} -gt 0 ]; then
        command -v rustup >/dev/null 2>&1 || die "cargo lacks ${comps[*]} and rustup is not on PATH to add them"
        say "adding rust components: ${comps[*]}"
        rustup component add "${comps[@]}" || die "rustup component add ${comps[*]} failed"
    fi
fi
exit 0
