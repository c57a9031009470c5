# kawrap — build, test, install.
#   make            release build: target/release/kawrap + target/release/libkawrap.so
#   make demo       a client under kawrap on loopback, and its `ss -o` keepalive timer
#   make test       lint + unit + kernel + integration tests (as root for the full set)
#   make bench      benchmarks (not part of `make test`)
#   make install    PREFIX=/usr/local DESTDIR=  → bin/kawrap, lib/kawrap/libkawrap.so,
#                   share/man/man1/kawrap*.1, bash/zsh/fish completions

PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
# The eBPF mode (`kawrap --bpf`) needs clang to build: on when clang is
# installed, `make BPF=0` to leave it out.
BPF ?= $(if $(shell command -v clang 2>/dev/null),1,0)
FEATURES := $(if $(filter 1,$(BPF)),--features bpf,)
WORKSPACE := --workspace $(if $(filter 1,$(BPF)),--features kawrap/bpf,--exclude kawrap-bpf)
# cargo's own CARGO_TARGET_DIR, when set, is where the artifacts are.
RELEASE := $(or $(CARGO_TARGET_DIR),target)/release
# Man pages and completions, made by the built kawrap from its own argument
# definitions at install time (never committed).
GENERATED := $(RELEASE)/generated
MAN1 := $(DESTDIR)$(PREFIX)/share/man/man1
BASH_COMPLETION := $(DESTDIR)$(PREFIX)/share/bash-completion/completions/kawrap
ZSH_COMPLETION := $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_kawrap
FISH_COMPLETION := $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/kawrap.fish

.PHONY: all build demo test lint unit-test fuzz-smoke bench install uninstall clean

all: build

build:
	$(CARGO) build --release -p kawrap-shim -p kawrap $(FEATURES)

demo: build
	scripts/demo.sh

# The integration tests run the release artifacts (what users get), so
# they are built first; the tests themselves are built in the dev profile.
test: lint build unit-test fuzz-smoke

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy $(WORKSPACE) --all-targets -- -D warnings

unit-test:
	$(CARGO) test $(WORKSPACE)

# A short bounded fuzz run of the grammar (cargo-fuzz needs nightly
# features; see fuzz/README.md). Skipped with a reason when unavailable.
fuzz-smoke:
	fuzz/smoke.sh

bench: build
	scripts/bench.sh

install: build
	install -D -m 0755 $(RELEASE)/kawrap $(DESTDIR)$(PREFIX)/bin/kawrap
	install -D -m 0644 $(RELEASE)/libkawrap.so $(DESTDIR)$(PREFIX)/lib/kawrap/libkawrap.so
	rm -rf $(GENERATED)
	$(RELEASE)/kawrap __generate man $(GENERATED)/man
	$(RELEASE)/kawrap __generate completions $(GENERATED)/completions
	install -d $(MAN1)
	install -m 0644 $(GENERATED)/man/*.1 $(MAN1)/
	install -D -m 0644 $(GENERATED)/completions/kawrap.bash $(BASH_COMPLETION)
	install -D -m 0644 $(GENERATED)/completions/_kawrap $(ZSH_COMPLETION)
	install -D -m 0644 $(GENERATED)/completions/kawrap.fish $(FISH_COMPLETION)

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/kawrap $(DESTDIR)$(PREFIX)/lib/kawrap/libkawrap.so
	rm -f $(MAN1)/kawrap.1 $(MAN1)/kawrap-*.1 $(BASH_COMPLETION) $(ZSH_COMPLETION) $(FISH_COMPLETION)
	-rmdir $(DESTDIR)$(PREFIX)/lib/kawrap

clean:
	$(CARGO) clean
