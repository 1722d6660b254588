#!/usr/bin/env bash
# tests/soak.sh — a long run of the crash torture (tests/torture.c); not in CI.
#
#   tests/soak.sh                      # 10 minutes, a random seed, build dir "build"
#   tests/soak.sh --minutes 60 --build build-sanitize --workers 6
#   tests/soak.sh --seed 1234          # replay a seed (kill moments still differ)
#
# Options other than --minutes, --build and --seed go to torture as they are
# (see `torture --help`: --workers, --size, --kill-ms, --no-stall, ...).
# Builds the build directory first (meson setup if it does not exist).  The
# exit status is torture's: 0 when no violation was found.
set -euo pipefail

minutes=10
build=build
seed=
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) minutes=$2; shift 2 ;;
        --build) build=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) args+=("$1"); shift ;;
    esac
done
case "$minutes" in
    ''|*[!0-9]*|0) echo "soak.sh: --minutes takes a whole number > 0" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
# Debian's toolchain, even where a python version manager comes first on PATH.
export PATH=/usr/bin:/bin:$PATH
if [ ! -d "$build" ]; then
    meson setup "$build"
fi
ninja -C "$build" tests/torture

if [ -z "$seed" ]; then
    seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
fi
secs=$((minutes * 60))
echo "soak: $minutes min, seed $seed, $build/tests/torture ${args[*]:-}"
echo "soak: replay with: tests/soak.sh --minutes $minutes --build $build --seed $seed ${args[*]:-}"
# torture bounds itself (a watchdog at --seconds + 6 min); this is the
# last resort should the watchdog itself be stuck.
status=0
timeout --kill-after=30 $((secs + 900)) \
    "$build/tests/torture" --seconds "$secs" --seed "$seed" --name "shmct-soak-$$" \
    ${args[@]+"${args[@]}"} || status=$?
if [ "$status" -eq 0 ]; then
    echo "soak: OK ($minutes min, seed $seed)"
else
    echo "soak: FAILED with status $status (seed $seed)" >&2
fi
exit "$status"
