# bench/plot.gp — the chart of bench/run.sh:
#   gnuplot -e "dir='RESULTS_DIR'; cpus='2'" bench/plot.gp   ->  RESULTS_DIR/bench.png
# Left: kv throughput vs processes per system (scaling.dat).
# Right: kv latency percentiles per system (latency.dat).  Both log scale.
if (!exists("dir")) dir = "."
if (!exists("cpus")) cpus = "?"
set terminal pngcairo size 1400,560 font "sans,10"
set output dir."/bench.png"
set multiplot layout 1,2 title "shmcache vs memcached vs Redis (one run, same machine, ".cpus." CPUs)"

set title "kv throughput vs worker processes (uniform keys)"
set xlabel "worker processes (the machine has ".cpus." CPUs)"
set ylabel "operations/s (log scale)"
set logscale y
set format y "%.0s%c"
set logscale x 2
stats dir."/scaling.dat" using 1 nooutput
set xrange [0.8:STATS_max * 1.25]
set xtics (1, 2, 4, 8, 16, 32, 64)
set grid ytics mytics xtics
set key top right box opaque
if (cpus + 0 > 0) set arrow 1 from cpus + 0, graph 0 to cpus + 0, graph 1 nohead dt 2 lc "gray40"; \
    set label 1 cpus." CPUs" at cpus + 0, graph 0.04 offset 0.5,0 tc "gray40"
plot dir."/scaling.dat" using 1:2 with linespoints lw 2 pt 7 title "shmcache", \
     ""                using 1:3 with linespoints lw 2 pt 5 title "memcached", \
     ""                using 1:4 with linespoints lw 2 pt 9 title "redis"

unset logscale x
unset arrow 1
unset label 1
unset xrange
set xtics auto
set key top left box opaque
set format y "%g"
set title "kv latency percentiles per system"
set xlabel ""
set ylabel "microseconds (log scale)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
stats dir."/latency.dat" using 5 nooutput
set yrange [0.01:STATS_max * 4]
set grid noxtics
plot for [i=2:5] dir."/latency.dat" using i:xtic(1) title word("p50 p99 p99.9 max", i-1)
unset multiplot
