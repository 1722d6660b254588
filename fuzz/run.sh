#!/usr/bin/env bash
# fuzz/run.sh [SECONDS] [TARGET...] — runs the libFuzzer targets for real.
#
# Installs clang and its libFuzzer runtime if they are missing (apt-get),
# builds the fuzz targets with clang, ASan and UBSan in build-fuzz/ (or
# $FUZZ_BUILD), then runs each TARGET (default: every fuzz_<name> built) for
# SECONDS (default 60), starting from fuzz/corpus/<name>/.  Fails if any run
# finds a crash, a hang (an input slower than $FUZZ_TIMEOUT s, default 30), a
# leak, a sanitizer report or a failed check: the input is then in
# <build>/fuzz-artifacts/<name>/ and the log in <build>/fuzz-<name>.log.
#
# What the fuzzers add to their corpus stays in <build>/fuzz-corpus/<name>/
# (kept between runs); fuzz/corpus/ holds only the small seeds.
set -euo pipefail

cd "$(dirname "$0")/.."
secs=${1:-60}
[ $# -gt 0 ] && shift
build=${FUZZ_BUILD:-build-fuzz}
timeout_s=${FUZZ_TIMEOUT:-30}

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi

# clang, and a libFuzzer runtime it can link (Debian: libclang-rt-*-dev,
# which clang only recommends).
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
    > "$probe/t.c"
if ! command -v clang >/dev/null ||
   ! clang -fsanitize=fuzzer,address "$probe/t.c" -o "$probe/t" 2>/dev/null; then
    echo "fuzz/run.sh: installing clang and its libFuzzer runtime"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends clang libclang-rt-dev
fi

if [ -d "$build" ]; then
    meson configure "$build" -Dfuzz=true >/dev/null
else
    CC=clang meson setup "$build" -Dfuzz=true -Dwerror=true \
        -Db_sanitize=address,undefined -Db_lundef=false
fi
ninja -C "$build"

if [ $# -eq 0 ]; then
    for exe in "$build"/fuzz/fuzz_*; do
        case $exe in *-standalone|*.p) continue ;; esac
        [ -x "$exe" ] && set -- "$@" "${exe##*/fuzz_}"
    done
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:print_summary=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
# Segments of fuzzer processes that are gone (a crash or a timeout skips
# their clean-up): shmcfz-TARGET-PID[-...] whose PID no longer exists.
sweep_segments() {
    local f pid
    for f in /dev/shm/shmcfz-*; do
        [ -e "$f" ] || continue
        pid=${f#/dev/shm/shmcfz-*-}
        pid=${pid%%-*}
        case $pid in ''|*[!0-9]*) continue ;; esac
        kill -0 "$pid" 2>/dev/null || rm -f "$f"
    done
}

failed=0
for t in "$@"; do
    exe="$build/fuzz/fuzz_$t"
    work="$build/fuzz-corpus/$t"
    art="$build/fuzz-artifacts/$t"
    log="$build/fuzz-$t.log"
    mkdir -p "$work" "$art"
    echo "==== fuzz_$t: ${secs} s (log: $log)"
    rc=0
    "$exe" -max_total_time="$secs" -timeout="$timeout_s" -rss_limit_mb=4096 -max_len=4096 \
        -print_final_stats=1 -artifact_prefix="$art/" "$work" "fuzz/corpus/$t" \
        >"$log" 2>&1 || rc=$?
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$log" || true
    grep -E '^#[0-9]+.*(cov|DONE)' "$log" | tail -n 1 || true
    if [ "$rc" -ne 0 ]; then
        echo "fuzz_$t FAILED (exit $rc); the end of its log:"
        tail -n 60 "$log"
        ls -l "$art"
        failed=1
    fi
    sweep_segments
done
exit $failed
