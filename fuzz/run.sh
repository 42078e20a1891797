#!/usr/bin/env bash
# Fuzzes the wire codec: runs each cargo-fuzz target for SECONDS seconds
# (default 60), starting from a fresh copy of the checked-in seeds.
#
#   fuzz/run.sh 300
#
# Uses the stable toolchain (RUSTUP_TOOLCHAIN overrides): RUSTC_BOOTSTRAP=1
# lets the -Z flags that cargo-fuzz passes to rustc through. Installs
# cargo-fuzz when it is missing. Builds with debug assertions, so that an
# integer overflow in the codec counts as a crash.
# Exits non-zero when a target fails to build or finds a crash; the crashing
# input is left in fuzz/artifacts/<target>/ (reproduce with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none --debug-assertions
# <target> <file>` from fuzz/).
set -euo pipefail

secs="${1:-60}"
case "$secs" in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS]" >&2
    exit 2
    ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

export RUSTUP_TOOLCHAIN="${RUSTUP_TOOLCHAIN:-stable}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== cargo fuzz not found; installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

targets=(stream_decode datagram_decode)
corpora=()
cleanup() {
    if [ "${#corpora[@]}" -gt 0 ]; then
        rm -rf "${corpora[@]}"
    fi
}
trap cleanup EXIT

failed=()
for target in "${targets[@]}"; do
    corpus="$(mktemp -d "${TMPDIR:-/tmp}/lppsp-fuzz-$target.XXXXXX")"
    corpora+=("$corpus")
    cp seeds/"$target"/* "$corpus"/
    echo "== $target: ${secs}s from $(ls "$corpus" | wc -l) seeds"
    start=$(date +%s)
    if RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none --debug-assertions "$target" "$corpus" -- \
        -max_total_time="$secs" -rss_limit_mb=2048; then
        echo "== $target: no crash ($(($(date +%s) - start))s, corpus $(ls "$corpus" | wc -l) inputs)"
    else
        echo "== $target: FAILED (see fuzz/artifacts/$target/)" >&2
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "== failing targets: ${failed[*]}" >&2
    exit 1
fi
echo "== all targets ran ${secs}s without a crash"
