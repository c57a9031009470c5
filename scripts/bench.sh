#!/usr/bin/env bash
# make bench: what libkawrap.so costs a program, measured side by side with
# the floor (the program setting the same options itself) and with nothing;
# then how long kawrap takes to start a program in each mode (`kawrap --bpf`
# cold and warm, `kawrap --`, nothing). Prints Markdown tables; writes
# bench/results/latest.json, launcher.json and latest.md.
#
#   scripts/bench.sh [--quick] [--rounds N] [--strict]
#     --quick    fewer rounds and iterations (about 30 s instead of 2-3 min)
#     --rounds   interleaved rounds per loop benchmark (default 15)
#     --strict   exit 1 if a target is missed (default: report only)
#
# Needs cc (which cargo needs anyway); valgrind, strace, strip, curl and psql are
# used when present and reported as skipped otherwise; the launcher's start needs
# root and a kawrap built with the eBPF mode (`make`). See bench/README.md.
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
cc "${cflags[@]}" -o "$bin/launcher" bench/launcher.c

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

# The launcher's start, in a mount namespace with a BPF filesystem of its own:
# its cold runs remove the pinned programs, which must be nobody else's.
kawrap=${KAWRAP_BIN:-$target/release/kawrap}
rounds=30 launcher_args=()
for arg in "$@"; do
    case $arg in
        --quick) rounds=10 ;;
        --strict) launcher_args+=(--strict) ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "bench: launcher start skipped (needs root for the eBPF mode)" | tee -a "$results/latest.md" >&2
elif ! "$kawrap" bpf status > /dev/null 2>&1; then
    echo "bench: launcher start skipped ($kawrap has no eBPF mode: build it with \`make\`)" |
        tee -a "$results/latest.md" >&2
else
    unshare -m --propagation private sh -c 'mount -t bpf bpf /sys/fs/bpf && exec "$@"' sh \
        "$bin/launcher" --kawrap "$kawrap" --rounds "$rounds" --json "$results/launcher.json" \
        "${launcher_args[@]}" | tee -a "$results/latest.md"
    launcher_status=${PIPESTATUS[0]}
    [ "$status" = 0 ] && status=$launcher_status
fi
echo "bench: wrote $results/latest.json, launcher.json and latest.md" >&2
exit "$status"
