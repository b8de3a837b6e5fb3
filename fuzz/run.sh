#!/bin/bash
# Run the cargo-fuzz targets one after the other (FUZZING.md). Used by `make fuzz` and
# `make fuzz-smoke`.
#
#   fuzz/run.sh [--smoke] SECONDS [TARGET...]
#   fuzz/run.sh --merge [TARGET...]
#
# Each target runs SECONDS seconds (one libFuzzer process, nice'd). Without --smoke new
# inputs go into fuzz/corpus/<target>/ (kept; minimize with `make fuzz-merge` before a
# commit); with --smoke the committed corpus is only read and new inputs go to a temporary
# directory, so CI leaves the tree clean. --merge minimizes fuzz/corpus/<target>/ (libFuzzer's
# -merge=1 -set_cover_merge=1 on edge coverage): a small set of inputs with the same edges.
# A crash, timeout or OOM leaves its input in fuzz/artifacts/<target>/ and makes the script
# fail after the remaining targets ran.
# FUZZ_ARGS adds libFuzzer options, e.g. "-fork=1 -ignore_crashes=1 -ignore_timeouts=1
# -ignore_ooms=1" to keep fuzzing past a finding for the whole time.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

smoke=
merge=
case "${1:-}" in
    --smoke) smoke=1; shift;;
    --merge) merge=1; shift;;
esac
if [ -z "$merge" ]; then
    seconds=${1:?usage: fuzz/run.sh [--smoke] SECONDS [TARGET...] | --merge [TARGET...]}
    shift
fi
# Stable Rust: no sanitizer (-Zsanitizer needs nightly; the parsers are safe Rust), with
# debug assertions and overflow checks (-a) so arithmetic overflow is a finding too.
FUZZ_FLAGS=(-s none -a -O)

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# libfuzzer-sys compiles libFuzzer (C++).
if ! command -v c++ >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { echo "fuzz/run.sh: no C++ compiler; install g++ (needs root)" >&2; exit 1; }
    echo "fuzz/run.sh: installing g++" >&2
    DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 update || exit 1
    DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 \
        --no-install-recommends install g++ || exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz || exit 1
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

nice -n 10 cargo fuzz build "${FUZZ_FLAGS[@]}" || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -n "$merge" ]; then
    # cargo fuzz cmin keeps every input with a feature of its own (hit counts included): thousands
    # of files. Set-cover merging on edge coverage alone keeps a few hundred.
    bin=fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release
    for t in "${targets[@]}"; do
        corpus=fuzz/corpus/$t
        before=$(find "$corpus" -type f | wc -l)
        rm -rf "$corpus.merged"
        mkdir -p "$corpus.merged"
        if ! nice -n 10 "$bin/$t" -merge=1 -set_cover_merge=1 -use_counters=0 -rss_limit_mb=2048 \
            -max_len=65536 "$corpus.merged" "$corpus" >"$tmp/merge.log" 2>&1; then
            cat "$tmp/merge.log" >&2
            echo "fuzz/run.sh: merging $t failed" >&2
            rm -rf "$corpus.merged"
            exit 1
        fi
        rm -rf "$corpus"
        mv "$corpus.merged" "$corpus"
        echo "$t: $before -> $(find "$corpus" -type f | wc -l) files"
    done
    exit 0
fi

failed=()
for t in "${targets[@]}"; do
    corpus=fuzz/corpus/$t
    mkdir -p "$corpus" "fuzz/artifacts/$t"
    if [ -n "$smoke" ]; then
        dirs=("$tmp/$t" "$corpus")
        mkdir -p "$tmp/$t"
    else
        dirs=("$corpus")
    fi
    found_before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    echo "=== $t: ${seconds}s, corpus $(find "$corpus" -type f | wc -l) files"
    # -timeout: one input taking more than 10 s is a finding; -rss_limit_mb: so is 2 GB.
    if ! nice -n 10 cargo fuzz run "${FUZZ_FLAGS[@]}" "$t" "${dirs[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 ${FUZZ_ARGS:-}; then
        failed+=("$t")
    elif [ "$(find "fuzz/artifacts/$t" -type f | wc -l)" != "$found_before" ]; then
        # -fork=1 with -ignore_crashes etc. exits 0 after findings.
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz/run.sh: findings in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz/run.sh: ${#targets[@]} targets, ${seconds}s each, no findings"
