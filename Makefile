# kawrap — build, test, install.
#   make            release build: target/release/kawrap + target/release/libkawrap.so
#   make dist       release artifacts for every x86_64 Linux (glibc >= 2.17, musl):
#                   dist/kawrap-VERSION-x86_64-linux.tar.gz, dist/kawrap_VERSION_amd64.deb
#                   (needs cargo-zigbuild: pip install ziglang cargo-zigbuild)
#   make demo       a client under kawrap on loopback, and its `ss -o` keepalive timer
#   make test       lint + unit + kernel + integration tests (as root for the full set)
#   make bench      benchmarks (not part of `make test`)
#   make install    PREFIX=/usr/local DESTDIR=  → bin/kawrap, lib/kawrap/libkawrap.so,
#                   share/man/man1/kawrap*.1, bash/zsh/fish completions, share/doc/kawrap;
#                   copies what `make` built and never runs cargo (so `sudo make install`
#                   works with a PATH that has no cargo)

PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
# The eBPF mode (`kawrap --bpf`) needs clang to build: on when clang is
# installed, `make BPF=0` to leave it out.
BPF ?= $(if $(shell command -v clang 2>/dev/null),1,0)
FEATURES := $(if $(filter 1,$(BPF)),--features bpf,)
WORKSPACE := --workspace $(if $(filter 1,$(BPF)),--features kawrap/bpf,--exclude kawrap-bpf)
# cargo's own CARGO_TARGET_DIR, when set, is where the artifacts are.
TARGET := $(or $(CARGO_TARGET_DIR),target)
RELEASE := $(TARGET)/release
MAN1 := $(DESTDIR)$(PREFIX)/share/man/man1
BASH_COMPLETION := $(DESTDIR)$(PREFIX)/share/bash-completion/completions/kawrap
# Where zsh looks for completions under PREFIX (Debian's packages use
# /usr/share/zsh/vendor-completions).
ZSH_COMPLETION_DIR ?= $(PREFIX)/share/zsh/site-functions
ZSH_COMPLETION := $(DESTDIR)$(ZSH_COMPLETION_DIR)/_kawrap
FISH_COMPLETION := $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/kawrap.fish
DOC := $(DESTDIR)$(PREFIX)/share/doc/kawrap
DOC_FILES := README.md LICENSE-MIT LICENSE-APACHE

# The release artifacts: linked against glibc 2.17's symbol versions by
# zig (cargo zigbuild), in a target directory of their own so that the
# zig linker does not make cargo rebuild `make`'s host artifacts.
VERSION := $(shell awk -F'"' '/^\[/ { package = ($$0 == "[workspace.package]") } package && /^version *=/ { print $$2; exit }' Cargo.toml)
DIST_TRIPLE := x86_64-unknown-linux-gnu
DIST_GLIBC := 2.17
DIST_RELEASE := $(TARGET)/dist/$(DIST_TRIPLE)/release
DIST_STAGE := $(TARGET)/dist/stage

.PHONY: all build demo test test-dist lint unit-test fuzz-smoke bench dist install uninstall clean

all: build

build:
	$(CARGO) build --release -p kawrap-shim -p kawrap $(FEATURES)

demo: build
	scripts/demo.sh

# The integration tests run the release artifacts (what users get), so
# they are built first; the tests themselves are built in the dev profile.
test: lint build test-dist unit-test fuzz-smoke

# The portability tests (integration/tests/portability.rs) check what
# `make dist` makes; without cargo-zigbuild they print SKIP, and under
# CI=true this fails instead.
test-dist:
	@if $(CARGO) zigbuild --help >/dev/null 2>&1; then \
	    $(MAKE) --no-print-directory dist; \
	elif [ "$$CI" = true ]; then \
	    echo "make test: FAIL: make dist needs cargo-zigbuild (pip install ziglang cargo-zigbuild)" >&2; exit 1; \
	else \
	    echo "make test: SKIP make dist: cargo-zigbuild is not installed (pip install ziglang cargo-zigbuild)"; \
	fi

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

# One tarball for /usr/local (or anywhere) and one .deb, made from the same
# `make install` as a source build; packaging/dist.sh packs them.
dist:
	@[ "$$(uname -m)" = x86_64 ] || { echo "make dist: builds for x86_64 Linux; this machine is $$(uname -m)" >&2; exit 1; }
	CARGO_TARGET_DIR=$(TARGET)/dist $(CARGO) zigbuild --locked --release \
	    --target $(DIST_TRIPLE).$(DIST_GLIBC) -p kawrap-shim -p kawrap $(FEATURES)
	rm -rf $(DIST_STAGE)
	$(MAKE) --no-print-directory install RELEASE=$(DIST_RELEASE) PREFIX= \
	    DESTDIR=$(DIST_STAGE)/kawrap-$(VERSION)-x86_64-linux
	$(MAKE) --no-print-directory install RELEASE=$(DIST_RELEASE) PREFIX=/usr \
	    ZSH_COMPLETION_DIR=/usr/share/zsh/vendor-completions DESTDIR=$(DIST_STAGE)/deb
	packaging/dist.sh $(VERSION) $(DIST_STAGE) dist

# Copies what `make` built; never builds (sudo's PATH has no cargo). The man
# pages and completions are made by the built kawrap from its own argument
# definitions, in a temporary directory (nothing root-owned is left in the
# target directory, nothing generated is ever committed).
install:
	@for built in $(RELEASE)/kawrap $(RELEASE)/libkawrap.so; do \
	    [ -f "$$built" ] || { echo "make install: $$built is missing: run \`make\` first (install copies what is built and never runs cargo)" >&2; exit 1; }; \
	done
	install -D -m 0755 $(RELEASE)/kawrap $(DESTDIR)$(PREFIX)/bin/kawrap
	install -D -m 0644 $(RELEASE)/libkawrap.so $(DESTDIR)$(PREFIX)/lib/kawrap/libkawrap.so
	generated=$$(mktemp -d) && trap 'rm -rf "$$generated"' EXIT && \
	$(RELEASE)/kawrap __generate man "$$generated/man" && \
	$(RELEASE)/kawrap __generate completions "$$generated/completions" && \
	install -d $(MAN1) && \
	install -m 0644 "$$generated"/man/*.1 $(MAN1)/ && \
	install -D -m 0644 "$$generated/completions/kawrap.bash" $(BASH_COMPLETION) && \
	install -D -m 0644 "$$generated/completions/_kawrap" $(ZSH_COMPLETION) && \
	install -D -m 0644 "$$generated/completions/kawrap.fish" $(FISH_COMPLETION)
	install -d $(DOC)
	install -m 0644 $(DOC_FILES) $(DOC)/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/kawrap $(DESTDIR)$(PREFIX)/lib/kawrap/libkawrap.so
	rm -f $(MAN1)/kawrap.1 $(MAN1)/kawrap-*.1 $(BASH_COMPLETION) $(ZSH_COMPLETION) $(FISH_COMPLETION)
	rm -f $(addprefix $(DOC)/,$(DOC_FILES))
	-rmdir $(DESTDIR)$(PREFIX)/lib/kawrap $(DOC)

clean:
	$(CARGO) clean
