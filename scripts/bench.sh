#!/usr/bin/env bash
# make bench: what libkawrap.so costs a program, measured side by side with
# the floor (the program setting the same options itself) and with nothing.
# Prints a Markdown table; writes bench/results/latest.json and latest.md.
#
#   scripts/bench.sh [--quick] [--rounds N] [--strict]
#     --quick    fewer rounds and iterations (about 30 s instead of 2-3 min)
#     --rounds   interleaved rounds per loop benchmark (default 15)
#     --strict   exit 1 if a target is missed (default: report only)
#
# Needs cc (which cargo needs anyway); valgrind, strace, strip, curl and psql are
# used when present and reported as skipped otherwise. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
shim=${KAWRAP_SO:-$target/release/libkawrap.so}
if [ -z "${KAWRAP_SO:-}" ]; then
    cargo build --quiet --release -p kawrap-shim
fi
[ -r "$shim" ] || { echo "bench: no shim at $shim" >&2; exit 1; }

bin=$target/bench
results=bench/results
mkdir -p "$bin" "$results"
cflags=(-O2 -Wall -Wextra -Werror)
cc "${cflags[@]}" -pthread -o "$bin/client" bench/client.c
cc "${cflags[@]}" -o "$bin/driver" bench/driver.c
cc "${cflags[@]}" -shared -fPIC -o "$bin/empty.so" bench/empty.c

{
    echo "Machine: nproc=$(nproc), kernel $(uname -r)"
    echo
    echo '```'
    lscpu | head -n 15
    echo '```'
} | tee "$results/latest.md"

"$bin/driver" --client "$bin/client" --shim "$shim" --empty-so "$bin/empty.so" \
    --json "$results/latest.json" "$@" | tee -a "$results/latest.md"
status=${PIPESTATUS[0]}
echo "bench: wrote $results/latest.json and $results/latest.md" >&2
exit "$status"
