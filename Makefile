# rustfilter — build, test, install.
#
#   make build       release build (target/release/rustfilter)
#   make test        install missing test dependencies (Debian: courier-mta, postgresql-15,
#                    python3-gdbm, nsd, bind9-dnsutils; needs root), build, start the
#                    throwaway PostgreSQL cluster (tests/services/postgres.sh) and the test
#                    name server (tests/services/nsd.sh), run every test including the
#                    real-Courier end-to-end test (needs root), stop both, then `make check`
#   make check       rustfmt check + clippy, warnings are errors
#   make demo        run examples/demo.rs
#   make bench       run examples/bench.rs
#   make install     install the built binary, man pages and example configs
#   make uninstall   remove what install put there (configs are kept)
#   make clean       remove target/
#
# install honours DESTDIR and PREFIX (default /usr/local). The filter goes into
# Courier's filters directory (courier-config's libexecdir/filters, else
# /usr/lib/courier/filters) and also into $(PREFIX)/bin for the `check` and
# `check-config` commands. Example configs go into $(SYSCONFDIR) (default /etc) only
# when no file of that name is there yet; the modules file (it may hold passwords) is
# made 0640 root:courier when the group courier exists.

CARGO        ?= cargo
PREFIX       ?= /usr/local
DESTDIR      ?=
BINDIR       ?= $(PREFIX)/bin
MANDIR       ?= $(PREFIX)/share/man
SYSCONFDIR   ?= /etc
COURIER_LIBEXECDIR := $(shell courier-config 2>/dev/null | sed -n 's/^libexecdir=//p')
FILTERDIR    ?= $(if $(COURIER_LIBEXECDIR),$(COURIER_LIBEXECDIR)/filters,/usr/lib/courier/filters)
# Test threads inside each test binary; the Courier test serializes itself.
TEST_THREADS ?= $(shell nproc 2>/dev/null || echo 2)

BIN      := target/release/rustfilter
MAN5     := $(wildcard man/*.5)
MAN8     := $(wildcard man/*.8)
CONFS    := $(wildcard conf/*.conf)

.PHONY: all build test check fmt-check clippy demo bench install uninstall clean

all: build

build:
	$(CARGO) build --release

test:
	tests/services/install-deps.sh
	$(CARGO) build --release
	tests/services/postgres.sh start
	tests/services/nsd.sh start || { tests/services/postgres.sh stop; exit 1; }
	$(CARGO) test --release -- --test-threads=$(TEST_THREADS); \
		rc=$$?; tests/services/nsd.sh stop; tests/services/postgres.sh stop; exit $$rc
	$(MAKE) check

check: fmt-check clippy

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --release --all-targets -- -D warnings

demo:
	$(CARGO) run --release --example demo

bench:
	$(CARGO) run --release --example bench

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
	@set -e; for f in $(CONFS); do \
		dest=$(DESTDIR)$(SYSCONFDIR)/$$(basename $$f); \
		if [ -e $$dest ]; then \
			echo "keeping the existing $$dest"; \
		else \
			install -d $(DESTDIR)$(SYSCONFDIR); \
			install -m 0644 $$f $$dest; \
			case $$dest in *modules*) \
				chgrp courier $$dest 2>/dev/null && chmod 0640 $$dest || true;; \
			esac; \
			echo "installed $$dest"; \
		fi; \
	done
	@echo "enable with: filterctl start rustfilter"

uninstall:
	rm -f $(DESTDIR)$(FILTERDIR)/rustfilter $(DESTDIR)$(BINDIR)/rustfilter
	@set -e; for f in $(MAN5); do rm -f $(DESTDIR)$(MANDIR)/man5/$$(basename $$f); done
	@set -e; for f in $(MAN8); do rm -f $(DESTDIR)$(MANDIR)/man8/$$(basename $$f); done
	@for f in $(CONFS); do \
		dest=$(DESTDIR)$(SYSCONFDIR)/$$(basename $$f); \
		[ -e $$dest ] && echo "kept $$dest (remove it by hand if you no longer need it)"; \
	done; true
	@if [ -z "$(DESTDIR)" ] && [ -L /etc/courier/filters/active/rustfilter ]; then \
		echo "note: rustfilter is still enabled; run: filterctl stop rustfilter"; \
	fi

clean:
	$(CARGO) clean
