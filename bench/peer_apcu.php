<?php
// The same runs as bench_semantics, on APCu (PHP's shared-memory cache), for
// ratios in one invocation.  APCu's segment is created before pcntl_fork, so
// the forked processes share it.
//   php -d apc.enable_cli=1 -d apc.shm_size=64M peer_apcu.php WORKLOAD PROCS SECONDS [TASKS LOOPS]
// Prints: apcu <workload> procs=<P> ops_s=<n> retries=<n> final_ok=<0|1> wall_ms=<n>
$wl = $argv[1]; $procs = (int)$argv[2]; $secs = (float)$argv[3];
$tasks = (int)($argv[4] ?? 500); $loops = (int)($argv[5] ?? 1000);
if (!function_exists('apcu_inc') || !apcu_enabled()) { fwrite(STDERR, "APCu not enabled\n"); exit(2); }
apcu_store('ctr', 0);
$tmp = tempnam(sys_get_temp_dir(), 'apcu-bench');
$pids = [];
$t0 = hrtime(true);
for ($p = 0; $p < $procs; $p++) {
    $pid = pcntl_fork();
    if ($pid === 0) {
        $ops = 0; $retries = 0; $start = hrtime(true);
        $inc = function () use (&$retries) {
            while (true) {
                $v = apcu_fetch('ctr');
                if (apcu_cas('ctr', $v, $v + 1)) return;
                $retries++;
            }
        };
        if ($wl === 'tasks') {
            for ($task = $p; $task < $tasks; $task += $procs)
                for ($i = 0; $i < $loops; $i++) { $inc(); $ops++; }
        } else {
            $end = $start + (int)($secs * 1e9);
            do {
                for ($i = 0; $i < 256; $i++) {
                    if ($wl === 'incr') apcu_inc('ctr'); else $inc();
                    $ops++;
                }
            } while (hrtime(true) < $end);
        }
        $ns = hrtime(true) - $start;
        file_put_contents("$tmp.$p", "$ops $retries $ns");
        exit(0);
    }
    $pids[] = $pid;
}
foreach ($pids as $pid) pcntl_waitpid($pid, $st);
$wall = hrtime(true) - $t0;
$ops = 0; $retries = 0; $ops_s = 0.0;
for ($p = 0; $p < $procs; $p++) {
    [$o, $r, $ns] = array_map('intval', explode(' ', file_get_contents("$tmp.$p")));
    unlink("$tmp.$p");
    $ops += $o; $retries += $r; $ops_s += $ns ? $o * 1e9 / $ns : 0;
}
unlink($tmp);
if ($wl === 'tasks') $ops_s = $ops * 1e9 / $wall;
$final_ok = apcu_fetch('ctr') === $ops ? 1 : 0;
printf("apcu %s procs=%d ops_s=%.0f retries=%d final_ok=%d wall_ms=%.1f\n", $wl, $procs, $ops_s,
       $retries, $final_ok, $wall / 1e6);
