#!/usr/bin/env bash
# Atomic read-modify-write across processes: shmcache vs APCu (PHP's
# shared-memory cache), the same runs alternately in one invocation, so that
# the ratios hold on a noisy machine.
#   bench/semantics.sh [BUILD_DIR] [SECONDS]
# APCu is the peer when `php` has the apcu and pcntl modules
# (Debian: apt-get install php-cli php-apcu); otherwise shmcache runs alone.
set -euo pipefail
build=${1:-build}
secs=${2:-2}
here=$(cd "$(dirname "$0")" && pwd)
bin="$build/bench/bench_semantics"
[ -x "$bin" ] || { echo "no $bin: build first (ninja -C $build)" >&2; exit 2; }
peer=0
if command -v php >/dev/null && mods=$(php -m 2>/dev/null) &&
   grep -qx apcu <<<"$mods" && grep -qx pcntl <<<"$mods"; then
    peer=1
fi
php_run() { php -d apc.enable_cli=1 -d apc.shm_size=64M "$here/peer_apcu.php" "$@"; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs"
[ $peer = 1 ] || echo "(php with apcu+pcntl not found: shmcache only)"
printf '%-34s %5s %14s %14s %10s\n' workload procs shmcache apcu ratio
fail=0
for spec in "incr:1" "incr:2" "cas:1" "cas:2" "tasks:2"; do
    wl=${spec%:*}; p=${spec#*:}
    s=$("$bin" -w "$wl" -p "$p" -s "$secs") || fail=1
    a=""; [ $peer = 1 ] && { a=$(php_run "$wl" "$p" "$secs") || fail=1; }
    so=$(echo "$s" | field ops_s); sf=$(echo "$s" | field final_ok)
    ao="-"; ratio="-"
    if [ -n "$a" ]; then
        ao=$(echo "$a" | field ops_s)
        ratio=$(awk -v x="$so" -v y="$ao" 'BEGIN { printf "%.2fx", x / y }')
        [ "$(echo "$a" | field final_ok)" = 1 ] || echo "  apcu lost updates in $wl/$p!"
    fi
    [ "$sf" = 1 ] || { echo "  shmcache lost updates in $wl/$p!"; fail=1; }
    case $wl in
        incr) what="incr, one hot key (ops/s)" ;;
        cas) what="gets+cas loop, one key (ok/s)" ;;
        tasks) what="500 updaters x 1000 cas (ok/s)" ;;
    esac
    printf '%-34s %5s %14.0f %14s %10s\n' "$what" "$p" "$so" "$ao" "$ratio"
done
exit $fail
