#!/usr/bin/env bash
# CPU seconds (user + system, in clock ticks) used so far by every process, summed by command name.
# Run before and after a load and subtract: bench/order_entry.sh prints the cores each used.
for p in /proc/[0-9]*; do
  c=$(cat $p/comm 2>/dev/null) || continue
  s=$(awk '{print $14+$15}' $p/stat 2>/dev/null) || continue
  echo "$c $s"
done | awk '{a[$1]+=$2} END {for (k in a) print k, a[k]}' | sort
