#!/usr/bin/env bash
# Cascading cost, in one run: 1 sender -> RECEIVERS receivers in one conference, on one
# media server (the baseline) and spread over four linked media servers of a quarter of the
# capacity each, each with one worker, driven by `loadgen` through the dispatcher. Prints
# per layout and round: packets out per second, the noc process's CPU (all its servers),
# CPU per delivered packet, latency p50/p99 and loss; then the ratio of the cost per
# delivered packet (four servers over one) and the p99 the relay hop adds (receivers on the
# sender's server against those on the linked ones, same run), per round; and, on stderr,
# each layout's CPU second by second from the joins on.
# Usage: benches/cascade.sh [RECEIVERS] [SECONDS] [ROUNDS] (default 1000 10 2).
# NOC_CPUS and LOAD_CPUS (taskset lists, e.g. 1 and 0) pin the servers and loadgen to
# cores of their own, so loadgen's 1,000 receivers do not share the servers' cores;
# LOADGEN_ARGS adds loadgen options (`--busy-poll`: its receivers never sleep, so the
# servers are not charged for waking them, as a real network would not).
# Loopback (127.0.0.1) only. Builds the release binaries when they are missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}/release"
receivers="${1:-1000}"
secs="${2:-10}"
rounds="${3:-2}"
participants=$((receivers + 1))
[ -x "$target/noc" ] && [ -x "$target/loadgen" ] || (cd "$root" && cargo build --release -p noc -p benches --bins)

work="$(mktemp -d)"
noc_pid=""
cleanup() { [ -n "$noc_pid" ] && kill "$noc_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# One layout: SERVERS media servers of CAPACITY units each; writes $work/NAME.json.
run() {
  local name="$1" servers="$2" capacity="$3"
  ${NOC_CPUS:+taskset -c "$NOC_CPUS"} "$target/noc" --listen 127.0.0.1:0 --http 127.0.0.1:0 --media-servers "$servers" \
    --capacity "$capacity" --workers 1 --recordings "$work/rec" >"$work/noc.out" 2>"$work/noc.err" &
  noc_pid=$!
  for _ in $(seq 100); do grep -q '^ready' "$work/noc.out" 2>/dev/null && break; sleep 0.1; done
  local disp
  disp="$(awk '$1 == "dispatcher" { print $2; exit }' "$work/noc.out")"
  [ -n "$disp" ] || { echo "noc did not start" >&2; cat "$work/noc.err" >&2; exit 1; }
  # Idle CPU of the layout (its servers' ticks, reports and threads) over the same time.
  local t0 t1
  t0="$(cpu_ticks "$noc_pid")"
  sleep "$secs"
  t1="$(cpu_ticks "$noc_pid")"
  idle["$name"]="$(python3 -c "print(($t1 - $t0) / $(getconf CLK_TCK) / $secs)")"
  ${LOAD_CPUS:+taskset -c "$LOAD_CPUS"} "$target/loadgen" --dispatcher "$disp" --conferences 1 --participants "$participants" \
    --senders 1 --duration "$secs" --server-pid "$noc_pid" --quiet ${LOADGEN_ARGS:-} --json "$work/$name.json" \
    >"$work/$name.out" 2>"$work/$name.err" &
  local lg=$! prev cur series=""
  # The layout's CPU in each second of the load (joins first): whether join work spills
  # into the measured window, or the cost is steady forwarding.
  prev="$(cpu_ticks "$noc_pid")"
  while kill -0 "$lg" 2>/dev/null; do
    sleep 1
    cur="$(cpu_ticks "$noc_pid")"
    series="$series $(((cur - prev) * 100 / $(getconf CLK_TCK)))"
    prev="$cur"
  done
  wait "$lg" || { cat "$work/$name.err" >&2; exit 1; }
  echo "$name: CPU each second from the joins on, hundredths of a core:$series" >&2
  kill "$noc_pid"
  wait "$noc_pid" 2>/dev/null || true
  noc_pid=""
}

declare -A idle
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
field() { python3 -c "import json,sys; v=json.load(open(sys.argv[1])); print(v.get(sys.argv[2]))" "$1" "$2"; }

echo "| round | layout | pps out | server cores | idle cores | CPU µs per delivered packet | same, idle CPU left out | p50 ms | p99 ms | loss % |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for r in $(seq "$rounds"); do
  # Alternate the order, so drift on a shared machine does not favour one layout.
  if [ $((r % 2)) -eq 1 ]; then order="one four"; else order="four one"; fi
  for layout in $order; do
    case "$layout" in
      one) run one 1 $((participants * 4)) ;;
      four) run four 4 $(((participants + 3) / 4 + 8)) ;;
    esac
    j="$work/$layout.json"
    pps="$(field "$j" pps_out)"
    cores="$(field "$j" server_cpu_cores)"
    us="$(python3 -c "print(f'{$cores / $pps * 1e6:.3f}')")"
    busy="$(python3 -c "print(f'{($cores - ${idle[$layout]}) / $pps * 1e6:.3f}')")"
    echo "${idle[$layout]}" >"$work/$layout.$r.idle"
    echo "| $r | $layout | $(printf '%.0f' "$pps") | $(printf '%.3f' "$cores") | $(printf '%.3f' "${idle[$layout]}") | $us | $busy | $(printf '%.3f' "$(field "$j" latency_p50_ms)") | $(printf '%.3f' "$(field "$j" latency_p99_ms)") | $(printf '%.3f' "$(field "$j" loss_pct)") |"
    cp "$j" "$work/$layout.$r.json"
  done
  python3 - "$work/one.$r.json" "$work/four.$r.json" "$r" "$(cat "$work/one.$r.idle")" "$(cat "$work/four.$r.idle")" <<'EOF'
import json, sys
one, four = (json.load(open(p)) for p in sys.argv[1:3])
idle_one, idle_four = float(sys.argv[4]), float(sys.argv[5])
cost = lambda v, idle=0.0: (v["server_cpu_cores"] - idle) / v["pps_out"]
# The relay hop: receivers on the sender's server against those on each linked server, in
# the same four-server run (loadgen's latency by the server each receiver joined).
groups = four.get("latency_by_server", [])
origin = [g for g in groups if g["senders"] > 0]
linked = [g for g in groups if g["senders"] == 0]
hop = ""
if origin and linked:
    o = origin[0]["latency_p99_ms"]
    worst = max(g["latency_p99_ms"] for g in linked)
    each = ", ".join("%.3f" % g["latency_p99_ms"] for g in linked)
    hop = (f"; relay hop, four servers: p99 on the sender's server {o:.3f} ms, on the linked "
           f"ones {each} ms, added {worst - o:+.3f} ms (worst)")
print(f"round {sys.argv[3]}: cost per delivered packet, four servers / one: "
      f"{cost(four) / cost(one):.2f}x, idle CPU left out {cost(four, idle_four) / cost(one, idle_one):.2f}x{hop}",
      file=sys.stderr)
EOF
done
