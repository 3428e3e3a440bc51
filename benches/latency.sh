#!/usr/bin/env bash
# Mouth-to-ear latency through `noc`: one confclient sends a click every 500 ms of the wall
# clock (`--clicks`), another finds the clicks in the audio it plays out
# (`--detect-clicks`); both on this host, so on one clock. Reflect and mix, each clean and
# impaired (the sender's uplink with 30 ms of jitter and 5% loss, `--jitter 30 --loss 5`).
# Usage: benches/latency.sh [SECONDS_PER_RUN] (default 30). Loopback (127.0.0.1) only.
# Builds the release binaries when target/release/noc is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}/release"
secs="${1:-30}"
[ -x "$target/noc" ] && [ -x "$target/confclient" ] || (cd "$root" && cargo build --release --bins)

work="$(mktemp -d)"
noc_pid=""
cleanup() { [ -n "$noc_pid" ] && kill "$noc_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$target/noc" --listen 127.0.0.1:0 --http 127.0.0.1:0 >"$work/noc.out" 2>"$work/noc.err" &
noc_pid=$!
for _ in $(seq 100); do grep -q '^ready' "$work/noc.out" 2>/dev/null && break; sleep 0.1; done
disp="$(awk '$1 == "dispatcher" { print $2; exit }' "$work/noc.out")"
[ -n "$disp" ] || { echo "noc did not start" >&2; cat "$work/noc.err" >&2; exit 1; }

echo "| mode | sender uplink | clicks | p50 ms | p99 ms | max ms | client buffer ms at the end |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for mode in reflect mix; do
  for impair in clean impaired; do
    conf="latency-$mode-$impair"
    extra=()
    [ "$impair" = impaired ] && extra=(--jitter 30 --loss 5)
    "$target/confclient" --dispatcher "$disp" --conference "$conf" --account demo --name ear \
      --mode "$mode" --detect-clicks --duration $((secs + 3)) >"$work/ear.out" 2>"$work/ear.err" &
    ear=$!
    sleep 1
    "$target/confclient" --dispatcher "$disp" --conference "$conf" --account demo --name mouth \
      --mode "$mode" --clicks --duration "$secs" "${extra[@]}" >"$work/mouth.out" 2>"$work/mouth.err"
    wait "$ear"
    line="$(grep '^clicks ' "$work/ear.out" || true)"
    [ -n "$line" ] || { echo "no clicks line in $mode $impair" >&2; cat "$work/ear.err" >&2; exit 1; }
    get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    n="$(sed -n 's/^clicks n=\([0-9]*\).*/\1/p' <<<"$line")"
    up="clean"
    [ "$impair" = impaired ] && up="30 ms jitter, 5% loss"
    echo "| $mode | $up | $n | $(get p50_ms) | $(get p99_ms) | $(get max_ms) | $(get buffer_ms) |"
  done
done
