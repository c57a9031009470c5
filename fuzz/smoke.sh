#!/usr/bin/env bash
# A short bounded fuzz run of every target, for `make test`:
#   fuzz/smoke.sh [SECONDS_PER_TARGET]      (default 10)
# Without cargo-fuzz it prints SKIP and succeeds, except under CI=true,
# where a fuzz run that silently did not happen is a failure.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-10}

if ! cargo fuzz --version >/dev/null 2>&1; then
    reason="cargo-fuzz is not installed (cargo install cargo-fuzz --locked)"
    if [ "${CI:-}" = true ]; then
        echo "fuzz-smoke: FAIL: $reason" >&2
        exit 1
    fi
    echo "fuzz-smoke: SKIP: $reason"
    exit 0
fi

# cargo-fuzz passes nightly-only flags (-Zsanitizer, coverage passes); the
# machine's one toolchain is stable, and RUSTC_BOOTSTRAP=1 lets it take them.
export RUSTC_BOOTSTRAP=1

mkdir -p artifacts
for target in profile rules; do
    mkdir -p "corpus/$target"
    log="artifacts/smoke-$target.log"
    # corpus/ (written, gitignored) grows from the committed seeds/.
    if cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -dict="dicts/$target.dict" -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "fuzz-smoke: $target: ${runs:-?} runs in ${seconds} s, no failure"
    else
        tail -n 60 "$log" >&2
        echo "fuzz-smoke: FAIL: $target (full log: fuzz/$log; the crashing input is in fuzz/artifacts/$target/)" >&2
        exit 1
    fi
done
