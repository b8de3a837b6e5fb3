# rustfilter — build, test, install.
#
#   make build       the release build with whole-program optimisation (profile dist:
#                    target/dist/rustfilter), what make install installs
#   make test        install missing test dependencies (Debian: courier-mta, postgresql-15,
#                    python3-gdbm, groff, nsd, bind9-dnsutils; needs root), build, start the
#                    throwaway PostgreSQL cluster (tests/services/postgres.sh) and the test
#                    name server (tests/services/nsd.sh), run every test including the
#                    real-Courier end-to-end test (needs root), stop both, then `make check`
#   make check       rustfmt check + clippy, warnings are errors
#   make demo        run examples/demo.rs
#   make bench       run examples/bench.rs on target/dist/rustfilter: rustfilter against the floor and against
#                    courier-pythonfilter 3.0.6 (pip-installed into target/ on first use)
#   make bench-full  the same over the whole matrix: sizes 1k/100k/10m, 1 and 50
#                    recipients, concurrency 1/8/64, every server (long: an hour or more)
#   make soak        run examples/soak.rs: 1,000,000 messages through light + greylist
#                    (SQLite) at C=8, RSS and open fds of every process sampled, must stay
#                    flat, zero errors (SOAK_MESSAGES=N etc.; see SOAK.md)
#   make static      a fully static x86_64-unknown-linux-musl binary (installs musl-tools
#                    and the rustup target when missing): $(STATIC_BIN)
#   make test-static the real-Courier end-to-end test with that static binary (needs root)
#   make install     install the built binary, man pages, example configs, the state
#                    directory and the cron file
#   make uninstall   remove what install put there (configs and the state are kept)
#   make clean       remove target/
#   make fuzz        run each cargo-fuzz target (fuzz/) FUZZ_TIME seconds (default 600), one at
#                    a time, growing fuzz/corpus/<target>/; FUZZ_TARGETS="spf literal" picks
#                    some; installs cargo-fuzz when missing (FUZZING.md)
#   make fuzz-smoke  the same, FUZZ_SMOKE_TIME seconds (default 15) per target, corpora only
#                    read (CI runs it after make test)
#   make fuzz-merge  minimize fuzz/corpus/<target>/ (libFuzzer -merge=1) before committing it
#
# install honours DESTDIR and PREFIX (default /usr/local). The filter goes into
# Courier's filters directory (courier-config's libexecdir/filters, else
# /usr/lib/courier/filters) and also into $(BINDIR) for the command line (check,
# check-config, ttldb). The example chain and modules files go into $(SYSCONFDIR)
# (default /etc) only when rustfilter would not find another one (a rustfilter-*.conf
# or pythonfilter-*.conf in /etc, /usr/local/etc or Courier's sysconfdir): an
# admin's or pythonfilter's file is never overwritten or hidden; the modules file (it may hold
# passwords) is 0640 root:$(MAILGROUP). The state directory $(STATEDIR) is made
# 0750 $(MAILUSER):$(MAILGROUP) (Courier's mail user and group, from courier-config,
# else courier, else daemon). The cron file goes to $(CRONDIR)/rustfilter when absent.
# Install the static binary with: make install BIN=target/x86_64-unknown-linux-musl/static/rustfilter
# After `make install` (as root), `filterctl start rustfilter` is the whole set-up.

CARGO        ?= cargo
PREFIX       ?= /usr/local
DESTDIR      ?=
BINDIR       ?= $(PREFIX)/bin
MANDIR       ?= $(PREFIX)/share/man
DOCDIR       ?= $(PREFIX)/share/doc/rustfilter
SYSCONFDIR   ?= /etc
CRONDIR      ?= $(SYSCONFDIR)/cron.d
STATEDIR     ?= /var/lib/rustfilter
COURIER_CONFIG := $(shell courier-config 2>/dev/null)
courier_var   = $(patsubst $(1)=%,%,$(filter $(1)=%,$(COURIER_CONFIG)))
COURIER_LIBEXECDIR := $(call courier_var,libexecdir)
COURIER_SYSCONFDIR := $(or $(call courier_var,sysconfdir),/etc/courier)
# Where rustfilter looks for its configuration (src/config/discovery.rs), in order.
CONF_DIRS    := $(SYSCONFDIR) $(filter-out $(SYSCONFDIR),/etc /usr/local/etc $(COURIER_SYSCONFDIR))
FILTERDIR    ?= $(if $(COURIER_LIBEXECDIR),$(COURIER_LIBEXECDIR)/filters,/usr/lib/courier/filters)
# Courier's mail user and group: courier-config's, else courier when it exists, else daemon.
MAILUSER     ?= $(or $(call courier_var,mailuser),$(shell getent passwd courier >/dev/null 2>&1 && echo courier),daemon)
MAILGROUP    ?= $(or $(call courier_var,mailgroup),$(shell getent group courier >/dev/null 2>&1 && echo courier),daemon)
# The services the tests use, each started by tests/services/<name>.sh start and stopped
# by … stop (the real Courier is brought up by the tests that need it).
TEST_SERVICES := postgres nsd clamd spamd
# Test threads inside each test binary; the Courier test serializes itself.
TEST_THREADS ?= $(shell nproc 2>/dev/null || echo 2)

BIN      := target/dist/rustfilter
MAN5     := $(wildcard man/*.5)
MAN8     := $(wildcard man/*.8)
# Only these two go into /etc; conf/examples/ goes into $(DOCDIR)/examples.
CONFS    := conf/rustfilter.conf conf/rustfilter-modules.conf
EXAMPLES := $(wildcard conf/examples/*.conf)
CRON     := conf/rustfilter.cron
# The cron file names the mail user "courier" (also in commented-out jobs); install
# writes $(MAILUSER) there.
CRON_SED := sed -E '/^\#?[0-9*@]/s/^(\#?([^[:space:]]+[[:space:]]+){5})courier([[:space:]])/\1$(MAILUSER)\3/'

STATIC_TARGET := x86_64-unknown-linux-musl
STATIC_BIN    := target/$(STATIC_TARGET)/static/rustfilter
# Above this the static binary is too big for the small hosts it is meant for.
STATIC_MAX_BYTES := 5000000

.PHONY: all build test check fmt-check clippy demo bench bench-full soak static test-static install uninstall clean
.PHONY: fuzz fuzz-smoke fuzz-merge

# Fuzzing (fuzz/run.sh, FUZZING.md): seconds per target, and which targets (default all).
FUZZ_TIME       ?= 600
FUZZ_SMOKE_TIME ?= 15
FUZZ_TARGETS    ?=

all: build

build:
	$(CARGO) build --profile dist --bin rustfilter

test:
	tests/services/install-deps.sh
	$(CARGO) build --release
	@started=; for s in $(TEST_SERVICES); do \
		tests/services/$$s.sh start || { for t in $$started; do tests/services/$$t.sh stop; done; exit 1; }; \
		started="$$s $$started"; \
	done; \
	$(CARGO) test --release --no-fail-fast -- --test-threads=$(TEST_THREADS); \
		rc=$$?; for t in $$started; do tests/services/$$t.sh stop; done; exit $$rc
	$(MAKE) check

check: fmt-check clippy

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --release --all-targets -- -D warnings

demo:
	$(CARGO) run --release --example demo

# The bench measures the binary make install installs.
bench: build
	RUSTFILTER_BIN=$(CURDIR)/$(BIN) $(CARGO) run --release --example bench

soak:
	$(CARGO) run --release --example soak
bench-full: build
	RUSTFILTER_BIN=$(CURDIR)/$(BIN) $(CARGO) run --release --example bench -- --servers all --sizes 1k,100k,10m \
		--recipients 1,50 --concurrency 1,8,64

static:
	@set -e; if ! command -v musl-gcc >/dev/null 2>&1; then \
		[ "$$(id -u)" = 0 ] || { echo "musl-gcc is missing; install musl-tools (needs root)" >&2; exit 1; }; \
		echo "installing musl-tools"; \
		DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 update; \
		DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 \
			--no-install-recommends install musl-tools; \
	fi
	@set -e; if ! rustup target list --installed 2>/dev/null | grep -qx $(STATIC_TARGET); then \
		command -v rustup >/dev/null 2>&1 || { echo "rustup is missing: cannot add $(STATIC_TARGET)" >&2; exit 1; }; \
		rustup target add $(STATIC_TARGET); \
	fi
	CC_x86_64_unknown_linux_musl=musl-gcc $(CARGO) build --profile static --target $(STATIC_TARGET)
	@set -e; out=$$(file -L $(STATIC_BIN)); echo "$$out"; \
	case "$$out" in *"statically linked"*|*"static-pie linked"*) ;; \
		*) echo "$(STATIC_BIN) is not static" >&2; exit 1;; esac; \
	if ldd $(STATIC_BIN) >/dev/null 2>&1; then \
		case "$$(ldd $(STATIC_BIN) 2>&1)" in *"statically linked"*) ;; \
			*) echo "ldd lists shared libraries for $(STATIC_BIN)" >&2; ldd $(STATIC_BIN); exit 1;; esac; \
	fi; \
	size=$$(stat -c %s $(STATIC_BIN)); \
	echo "$(STATIC_BIN): $$size bytes ($$((size / 1024)) KiB), static"; \
	[ $$size -le $(STATIC_MAX_BYTES) ] || { echo "larger than $(STATIC_MAX_BYTES) bytes" >&2; exit 1; }

# The end-to-end test under a real Courier, with the static binary in place of the
# test build (tests/courier_e2e.rs reads RUSTFILTER_E2E_BIN). Needs root.
test-static: static
	RUSTFILTER_E2E_BIN=$(CURDIR)/$(STATIC_BIN) $(CARGO) test --release --test courier_e2e

install:
	@test -x $(BIN) || { echo "$(BIN) is missing: run 'make build' first" >&2; exit 1; }
	install -d $(DESTDIR)$(FILTERDIR) $(DESTDIR)$(BINDIR)
	install -m 0755 $(BIN) $(DESTDIR)$(FILTERDIR)/rustfilter
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/rustfilter
	@set -e; for f in $(MAN5); do \
		install -d $(DESTDIR)$(MANDIR)/man5; \
		install -m 0644 $$f $(DESTDIR)$(MANDIR)/man5/; \
	done
	@set -e; for f in $(MAN8); do \
		install -d $(DESTDIR)$(MANDIR)/man8; \
		install -m 0644 $$f $(DESTDIR)$(MANDIR)/man8/; \
	done
	install -d $(DESTDIR)$(DOCDIR)/examples
	install -m 0644 $(EXAMPLES) $(CRON) $(DESTDIR)$(DOCDIR)/examples/
	@# rustfilter reads the first rustfilter-*.conf, else pythonfilter-*.conf, it finds in
	@# $(CONF_DIRS): an example in /etc would hide any of them, so it is installed
	@# only when there is none (pythonfilter's files are then used as they are).
	@set -e; for f in $(CONFS); do \
		base=$$(basename $$f); dest=$(DESTDIR)$(SYSCONFDIR)/$$base; found=; \
		for dir in $(CONF_DIRS); do \
			for name in $$base $$(echo $$base | sed s/^rustfilter/pythonfilter/); do \
				if [ -z "$$found" ] && [ -e $(DESTDIR)$$dir/$$name ]; then found=$(DESTDIR)$$dir/$$name; fi; \
			done; \
		done; \
		if [ -n "$$found" ]; then \
			echo "keeping the existing $$found (not installing $$dest)"; \
		else \
			install -d $(DESTDIR)$(SYSCONFDIR); \
			install -m 0644 $$f $$dest; \
			case $$dest in *modules*) \
				chgrp $(MAILGROUP) $$dest 2>/dev/null && chmod 0640 $$dest || true;; \
			esac; \
			echo "installed $$dest"; \
		fi; \
	done
	@set -e; dest=$(DESTDIR)$(CRONDIR)/rustfilter; \
	if [ -e $$dest ]; then \
		echo "keeping the existing $$dest"; \
	else \
		install -d $(DESTDIR)$(CRONDIR); \
		$(CRON_SED) $(CRON) > $$dest.tmp; chmod 0644 $$dest.tmp; mv $$dest.tmp $$dest; \
		echo "installed $$dest"; \
	fi
	@# The SQLite store lives here; only Courier's mail user writes it.
	@set -e; dir=$(DESTDIR)$(STATEDIR); \
	install -d -m 0750 $$dir; \
	if chown $(MAILUSER):$(MAILGROUP) $$dir 2>/dev/null; then \
		echo "state directory $$dir: 0750 $(MAILUSER):$(MAILGROUP)"; \
	elif [ -z "$(DESTDIR)" ]; then \
		echo "cannot give $$dir to $(MAILUSER):$(MAILGROUP) (run make install as root)" >&2; exit 1; \
	else \
		echo "note: $$dir must be owned by $(MAILUSER):$(MAILGROUP) (not root: not done)"; \
	fi
	@echo "enable with: filterctl start rustfilter"

uninstall:
	rm -f $(DESTDIR)$(FILTERDIR)/rustfilter $(DESTDIR)$(BINDIR)/rustfilter
	@set -e; for f in $(MAN5); do rm -f $(DESTDIR)$(MANDIR)/man5/$$(basename $$f); done
	@set -e; for f in $(MAN8); do rm -f $(DESTDIR)$(MANDIR)/man8/$$(basename $$f); done
	@set -e; for f in $(EXAMPLES) $(CRON); do rm -f $(DESTDIR)$(DOCDIR)/examples/$$(basename $$f); done
	@rmdir $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null || true
	@# The cron file goes when it is the one install wrote; an edited one is kept.
	@dest=$(DESTDIR)$(CRONDIR)/rustfilter; \
	if [ -e $$dest ]; then \
		if $(CRON_SED) $(CRON) | cmp -s - $$dest; then rm -f $$dest; \
		else echo "kept $$dest (edited; remove it by hand if you no longer need it)"; fi; \
	fi
	@for f in $(CONFS); do \
		dest=$(DESTDIR)$(SYSCONFDIR)/$$(basename $$f); \
		[ -e $$dest ] && echo "kept $$dest (remove it by hand if you no longer need it)"; \
	done; true
	@[ -d $(DESTDIR)$(STATEDIR) ] && echo "kept $(DESTDIR)$(STATEDIR) (the greylisting and rate-limit state)"; true
	@if [ -z "$(DESTDIR)" ] && [ -L /etc/courier/filters/active/rustfilter ]; then \
		echo "note: rustfilter is still enabled; run: filterctl stop rustfilter"; \
	fi

clean:
	$(CARGO) clean

fuzz:
	fuzz/run.sh $(FUZZ_TIME) $(FUZZ_TARGETS)

fuzz-smoke:
	fuzz/run.sh --smoke $(FUZZ_SMOKE_TIME) $(FUZZ_TARGETS)

fuzz-merge:
	fuzz/run.sh --merge $(FUZZ_TARGETS)
