#!/usr/bin/env bash
# shmcache vs memcached vs Redis on this machine, in one run, with one command:
#
#   bench/run.sh            # full run (about 4 minutes)
#   bench/run.sh --quick    # smoke run (about 20 seconds; figures not meaningful)
#
# What it does:
#   1. installs memcached, redis-server and gnuplot-nox with apt-get if they
#      are missing (Debian/Ubuntu; uses sudo when not root);
#   2. builds bench_compare in a release build directory (default build-bench);
#   3. starts its own memcached (two instances: one for the workloads, one with
#      -m <capacity> for the memory row) and redis-server (--save ''
#      --appendonly no) on unix sockets in a temporary directory;
#   4. runs every scenario (bench/bench_compare), which prints the figures and
#      a summary table of ratios shmcache/peer, and writes CSV and JSON;
#   5. draws bench.png with gnuplot (throughput vs processes, latency
#      percentiles per system);
#   6. stops the servers by PID and removes the temporary directory and any
#      shmcache segment of the run.
#
# Options:
#   --quick          short runs (CI smoke test)
#   --build DIR      build directory (default: build-bench; created with
#                    meson setup --buildtype=release if missing)
#   --out DIR        results directory (default: BUILD/bench-results)
#   --no-install     do not run apt-get (peers that are missing are skipped)
#   --only django    only the Django-level comparison (bench/django_compare.py:
#                    ShmCache vs LocMem, diskcache, django-redis, PyMemcache;
#                    it starts its own redis-server and memcached); a full run
#                    ends with it.  Needs the Python binding built in DIR for
#                    a python3 with Django (PATH=/usr/bin:$PATH meson setup).
#   --only hitratio  only the hit-ratio comparison (bench/bench_hitratio: the
#                    same zipf, scan and overwrite traces replayed against
#                    shmcache and a memcached given the same memory, -m 32,
#                    plus an exact LRU; about 5 minutes, --quick 30 s)
#   --only tier      only the Redis tier section: bench_tier (3 hosts x 2 workers
#                    through shmcache_tier vs. every worker on Redis directly;
#                    needs hiredis at build time; see bench/README.md)
#   --               everything after is passed to bench_compare
#                    (e.g. -- --only kv,s2 --seconds 5; see bench_compare --help)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
quick=0
build="$root/build-bench"
out=""
install=1
only=""
extra=()
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1 ;;
        --build) build=$2; shift ;;
        --out) out=$2; shift ;;
        --no-install) install=0 ;;
        --only) only=$2; shift ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case $build in /*) ;; *) build="$PWD/$build" ;; esac
[ -n "$out" ] || out="$build/bench-results"
case $out in /*) ;; *) out="$PWD/$out" ;; esac

say() { printf 'run.sh: %s\n' "$*" >&2; }

# ---- Django-level comparison (bench/django_compare.py) ----
run_django() {
    [ -f "$build/build.ninja" ] || PATH=/usr/bin:$PATH meson setup "$build" "$root" \
        --buildtype=release >/dev/null
    ninja -C "$build" >/dev/null
    local py
    for py in ${PYTHON:-} python3 /usr/bin/python3; do
        if PYTHONPATH="$build/python/src" "$py" -c 'import django, shmcache.django' \
            2>/dev/null; then
            mkdir -p "$out"
            PYTHONPATH="$build/python/src" "$py" "$here/django_compare.py" \
                $([ $quick = 1 ] && echo --quick) --json "$out/django.json" \
                | tee "$out/django.txt"
            return "${PIPESTATUS[0]}"
        fi
    done
    say "django: no python3 with Django can import shmcache from $build/python/src"
    [ "${CI:-}" != true ]   # a failure on CI, a skip elsewhere
}
# ---- hit ratio against memcached at the same memory (bench/bench_hitratio) ----
run_hitratio() {
    [ -f "$build/build.ninja" ] || meson setup "$build" "$root" --buildtype=release >/dev/null
    ninja -C "$build" bench/bench_hitratio >/dev/null
    local t mib=32 mc=() pid="" rc=0 u=()
    t=$(mktemp -d "${TMPDIR:-/tmp}/shmcache-hitratio.XXXXXX")
    [ "$(id -u)" -eq 0 ] && u=(-u root)
    if command -v memcached >/dev/null; then
        memcached "${u[@]}" -s "$t/mc.sock" -a 0700 -m $mib -c 64 >"$t/mc.log" 2>&1 &
        pid=$!
        mc=(--memcached "$t/mc.sock")
    else
        say "memcached not installed: its column will be n/a"
    fi
    mkdir -p "$out"
    "$build/bench/bench_hitratio" --mib $mib "${mc[@]}" --json "$out/hitratio.json" \
        $([ $quick = 1 ] && echo --requests 300000 --scan-every 50000 --scan-len 10000) \
        | tee "$out/hitratio.txt" || rc=$?
    [ -n "$pid" ] && { kill "$pid"; wait "$pid" 2>/dev/null || true; }
    rm -rf "$t"
    return $rc
}
case $only in
    ""|tier) ;;
    django) run_django; exit ;;
    hitratio) run_hitratio; exit ;;
    *) echo "run.sh: unknown --only $only (try --help)" >&2; exit 2 ;;
esac

# ---- 1. dependencies ----
need=()
command -v memcached >/dev/null || need+=(memcached)
command -v redis-server >/dev/null || need+=(redis-server)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
if [ ${#need[@]} -gt 0 ] && [ $install = 1 ]; then
    S=""
    [ "$(id -u)" -eq 0 ] || S=sudo
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! $S apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; then
        $S apt-get update >/dev/null && $S apt-get install -y --no-install-recommends "${need[@]}" >/dev/null \
            || say "apt-get failed; continuing with what is installed"
    fi
fi

# ---- 2. build ----
if [ ! -f "$build/build.ninja" ]; then
    say "configuring $build (release)"
    meson setup "$build" "$root" --buildtype=release >/dev/null
fi
if [ "$only" = tier ]; then
    ninja -C "$build" tier/bench_tier >/dev/null \
        || { say "bench_tier not built (hiredis missing?)"; exit 1; }
elif [ -n "$only" ]; then
    say "unknown --only $only (try --help)"; exit 2
else
    ninja -C "$build" bench/bench_compare >/dev/null
fi
bin="$build/bench/bench_compare"

# ---- 3. servers ----
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmcache-bench.XXXXXX")
name="shmcache-bench-$$"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -f "/dev/shm/$name" "/dev/shm/$name-cap"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ $quick = 1 ]; then cap_mib=64; else cap_mib=1024; fi
args=(--name "$name" --out "$out" --capacity-mib "$cap_mib")
[ $quick = 1 ] && args+=(--quick)

mc_user=()
[ "$(id -u)" -eq 0 ] && mc_user=(-u root)   # memcached refuses root without -u
if command -v memcached >/dev/null; then
    memcached "${mc_user[@]}" -s "$tmp/mc.sock" -a 0700 -m 256 -c 4096 >"$tmp/mc.log" 2>&1 &
    pids+=($!)
    memcached "${mc_user[@]}" -s "$tmp/mccap.sock" -a 0700 -m "$cap_mib" -c 64 \
        >"$tmp/mccap.log" 2>&1 &
    mccap_pid=$!
    pids+=($mccap_pid)
    args+=(--memcached "$tmp/mc.sock" --memcached-cap "$tmp/mccap.sock"
           --memcached-cap-pid "$mccap_pid")
else
    say "memcached not installed: its columns will be n/a"
fi
if command -v redis-server >/dev/null; then
    redis-server --port 0 --unixsocket "$tmp/redis.sock" --unixsocketperm 700 \
        --save '' --appendonly no --dir "$tmp" --daemonize no --maxclients 4000 \
        --logfile "$tmp/redis.log" &
    pids+=($!)
    args+=(--redis "$tmp/redis.sock")
else
    say "redis-server not installed: its columns will be n/a"
fi
for s in "$tmp"/mc.sock "$tmp"/mccap.sock "$tmp"/redis.sock; do
    for _ in $(seq 100); do
        [ -S "$s" ] && break
        case $s in
            *mc*) command -v memcached >/dev/null || break ;;
            *) command -v redis-server >/dev/null || break ;;
        esac
        sleep 0.05
    done
done
say "servers: memcached $(memcached -V 2>/dev/null | cut -d' ' -f2), redis $(redis-server --version 2>/dev/null | sed -n 's/.*v=\([^ ]*\).*/\1/p'); results in $out"

# ---- 4. run ----
mkdir -p "$out"
if [ "$only" = tier ]; then
    targs=(--redis "$tmp/redis.sock" --name "$name-tier")
    [ $quick = 1 ] && targs+=(--seconds 1 --keys 2000)
    "$build/tier/bench_tier" "${targs[@]}" "${extra[@]}" | tee "$out/tier.txt"
    exit "${PIPESTATUS[0]}"
fi
rc=0
"$bin" "${args[@]}" "${extra[@]}" | tee "$out/output.txt" || rc=$?

# ---- 5. chart ----
if command -v gnuplot >/dev/null && [ -s "$out/scaling.dat" ]; then
    if gnuplot -e "dir='$out'; cpus='$(nproc)'" "$here/plot.gp" 2>"$tmp/gnuplot.log"; then
        echo "chart: $out/bench.png"
    else
        say "gnuplot failed:"; cat "$tmp/gnuplot.log" >&2
    fi
else
    say "no gnuplot or no kv figures: no chart"
fi
run_django || rc=$?
exit $rc
