# kawrap — build, test, install.
#   make            release build: target/release/kawrap + target/release/libkawrap.so
#   make demo       a client under kawrap on loopback, and its `ss -o` keepalive timer
#   make test       lint + unit + kernel + integration tests (as root for the full set)
#   make bench      benchmarks (not part of `make test`)
#   make install    PREFIX=/usr/local DESTDIR=  → bin/kawrap, lib/kawrap/libkawrap.so

PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
RELEASE := target/release

.PHONY: all build demo test lint unit-test fuzz-smoke bench install uninstall clean

all: build

build:
	$(CARGO) build --release -p kawrap-shim -p kawrap

demo: build
	scripts/demo.sh

# The integration tests run the release artifacts (what users get), so
# they are built first; the tests themselves are built in the dev profile.
test: lint build unit-test fuzz-smoke

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit-test:
	$(CARGO) test --workspace

# A short bounded fuzz run of the grammar (cargo-fuzz needs nightly
# features; see fuzz/README.md). Skipped with a reason when unavailable.
fuzz-smoke:
	fuzz/smoke.sh

bench: build
	scripts/bench.sh

install: build
	install -D -m 0755 $(RELEASE)/kawrap $(DESTDIR)$(PREFIX)/bin/kawrap
	install -D -m 0644 $(RELEASE)/libkawrap.so $(DESTDIR)$(PREFIX)/lib/kawrap/libkawrap.so

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/kawrap $(DESTDIR)$(PREFIX)/lib/kawrap/libkawrap.so
	-rmdir $(DESTDIR)$(PREFIX)/lib/kawrap

clean:
	$(CARGO) clean
