#!/usr/bin/env bash
# Median wall time (ms) of 15 `svcops listen ID --no-follow` against a fresh `svcops up`,
# CLI start included. Usage: crates/svcops/scripts/listen-latency.sh path/to/svcops
# Compare two builds side by side to see a change (e.g. TCP_NODELAY, BENCHMARKS.md).
set -e
BIN=$1; D=$(mktemp -d); PORT=$((20000 + RANDOM % 20000))
$BIN up --listen 127.0.0.1:$PORT --data-dir $D > $D/up.log 2>&1 &
UP=$!
for i in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
sleep 1
ID=$($BIN --addr http://127.0.0.1:$PORT --data-dir $D case open --phone "+8613800001234" --category repair --summary "lamp")
sleep 2
T=()
for i in $(seq 1 15); do
  s=$(date +%s%N); $BIN --addr http://127.0.0.1:$PORT --data-dir $D listen $ID --no-follow > /dev/null; e=$(date +%s%N)
  T+=($(( (e - s) / 1000000 )))
done
kill $UP; wait $UP 2>/dev/null || true
printf '%s\n' "${T[@]}" | sort -n | sed -n 8p
