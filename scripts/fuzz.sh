#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that faces the network or the disk (fuzz/).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Runs each target (default: all of `cargo fuzz list`) for SECONDS_PER_TARGET (default 60),
# one after the other, and exits non-zero on the first crash, naming the file that holds the
# crashing input. Reproduce one with `scripts/fuzz.sh repro TARGET FILE`.
#
#   scripts/fuzz.sh cmin [TARGET...]
#
# Folds what the runs found (fuzz/target/corpus-work/<target>/) into the committed corpus
# fuzz/corpus/<target>/, keeping the named seeds (seed-*, regress-*) and adding only inputs
# that reach coverage the seeds do not (libFuzzer -merge=1).
#
# Runs are one libFuzzer process each (no -jobs/-workers) under `nice -n ${FUZZ_NICE:-10}`.
#
# How it builds here: cargo-fuzz (libFuzzer, from crates.io) on the machine's stable rustc.
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, -Cpasses=sancov-module options
# through -Z), so RUSTC_BOOTSTRAP=1 lets the stable compiler accept them; AddressSanitizer's
# runtime ships with the stable toolchain on x86_64 Linux. FUZZ_SANITIZER=none builds without
# ASan (faster, still coverage-guided) if a toolchain lacks it. Debug assertions are on (-a),
# so the sessions' debug_assert!s are checked too.
#
# Corpora: fuzz/corpus/<target>/ holds the committed seeds (small, realistic sessions and
# records; regenerate with fuzz/seeds/make_corpus.py). New inputs go to
# fuzz/target/corpus-work/<target>/ (not committed), which later runs start from.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

if [ "${1:-}" = repro ]; then
    [ $# -eq 3 ] || { echo "usage: scripts/fuzz.sh repro TARGET FILE" >&2; exit 2; }
    file=$(realpath "$3")
    export RUSTC_BOOTSTRAP=1
    exec cargo fuzz run -a -s "${FUZZ_SANITIZER:-address}" "$2" "$file"
fi

if ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz.sh: installing cargo-fuzz (crates.io)" >&2
    cargo install cargo-fuzz --version 0.13.2 --locked
fi
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-address}

if [ "${1:-}" = cmin ]; then
    shift
    if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
    nice -n "${FUZZ_NICE:-10}" cargo fuzz build -a -s "$sanitizer"
    for t in "${targets[@]}"; do
        merged="target/cmin/$t"
        rm -rf "$merged"
        mkdir -p "$merged" "target/corpus-work/$t"
        find "corpus/$t" -maxdepth 1 -type f \( -name 'seed-*' -o -name 'regress-*' \) \
            -exec cp {} "$merged/" \;
        nice -n "${FUZZ_NICE:-10}" cargo fuzz run -a -s "$sanitizer" "$t" \
            "$merged" "corpus/$t" "target/corpus-work/$t" -- -merge=1 2>&1 | grep -E '^MERGE-OUTER' >&2
        rm -rf "corpus/$t"
        mv "$merged" "corpus/$t"
        echo "fuzz.sh: corpus/$t: $(find "corpus/$t" -type f | wc -l) files" >&2
    done
    exit 0
fi

secs=${1:-60}
[ $# -gt 0 ] && shift
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

# One build for all targets (they share the instrumented surel).
nice -n "${FUZZ_NICE:-10}" cargo fuzz build -a -s "$sanitizer"

status=0
for t in "${targets[@]}"; do
    work="target/corpus-work/$t"
    mkdir -p "$work" "corpus/$t" "artifacts/$t"
    echo "=== $t: ${secs}s" >&2
    log="target/fuzz-$t.log"
    # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a leak or a runaway buffer.
    # One process (libFuzzer's default, no -jobs/-workers), nice'd: the machine is shared.
    if nice -n "${FUZZ_NICE:-10}" cargo fuzz run -a -s "$sanitizer" "$t" "$work" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        2>&1 | tee "$log" | grep -E '^(#[0-9]+ +(INITED|DONE)|stat::|==[0-9]+==|SUMMARY|.*panicked|Test unit written)' >&2; then
        :
    fi
    if grep -q -E 'Test unit written to|^SUMMARY: ' "$log" || ! grep -q 'Done [0-9]* runs' "$log"; then
        status=1
        echo "fuzz.sh: $t FAILED; log: fuzz/$log" >&2
        grep -o 'Test unit written to .*' "$log" | sed "s|to \./|to fuzz/|;s|^|fuzz.sh: |" >&2 || true
        echo "fuzz.sh: reproduce with scripts/fuzz.sh repro $t <that file>" >&2
        break
    fi
done
exit $status
