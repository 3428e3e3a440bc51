#!/usr/bin/env bash
# WebRTC fan-out: Janus VideoRoom vs this project's reflector, the same `loadgen --webrtc`
# load against both, one after the other, in one run (issue 15).
#
#   benches/peers/webrtc/run.sh                    # 10 rooms x 20, a sweep to saturation
#   ROUNDS=3 benches/peers/webrtc/run.sh           # alternate the order, 3 rounds
#   CONFS=20 PARTS=50 SCALES=1,4 benches/peers/webrtc/run.sh
#   ONLY=janus|noc benches/peers/webrtc/run.sh     # one side
#
# Each room has one WebRTC publisher (Opus-like RTP, SRTP) and PARTS-1 WebRTC subscribers,
# all loadgen's (offer/answer, ICE, DTLS-SRTP with AES-GCM, consent checks). Against Janus
# the signalling is its HTTP API (loadgen --janus); against `noc` it is the join flow.
# Headline: packets out per second per server core at the highest step with loss <= 0.1%.
# Results: $OUT/{janus,noc}-rN.json and a summary table; see README.md here.
#
# libnice (Janus's ICE) skips the loopback interface, so the run re-executes itself in a
# network namespace of its own (`unshare -n`, root) with a veth pair whose two ends stay
# in that namespace; both servers run there, nothing leaves the machine.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
OUT=${OUT:-$ROOT/target/bench/webrtc-peers}
B=${CARGO_TARGET_DIR:-$ROOT/target}/release

if [ "${NOC_PEERS_NETNS:-0}" != 1 ]; then
    [ "$(id -u)" = 0 ] || { echo "run.sh: needs root (a network namespace, apt-get)" >&2; exit 2; }
    install=${INSTALL:-1}
    # shellcheck source=../common.sh
    . "$HERE/../common.sh"
    command -v janus >/dev/null || apt_install janus \
        || echo "run.sh: could not install janus; only the project half will run" >&2
    (cd "$ROOT" && cargo build --release -p benches -p noc --bins)
    mkdir -p "$OUT"
    NOC_PEERS_NETNS=1 exec unshare -n "$0" "$@"
fi

ip link set lo up
ip link add jv0 type veth peer name jv1
ip addr add 10.77.0.1/30 dev jv0
ip addr add 10.77.0.2/30 dev jv1
ip link set jv0 up
ip link set jv1 up
# libnice sends out of jv0 (SO_BINDTODEVICE), so its packets arrive on jv1 with a source
# address of this namespace: take them (accept_local) instead of dropping them as martians.
for c in all jv0 jv1; do
    sysctl -qw "net.ipv4.conf.$c.accept_local=1" "net.ipv4.conf.$c.rp_filter=0"
done

LOAD=(--webrtc --senders 1 --conferences "${CONFS:-10}" --participants "${PARTS:-20}"
      --duration "${DURATION:-5}" --audio-pps "${AUDIO_PPS:-50}" --audio-size "${AUDIO_SIZE:-200}"
      --join-concurrency 8 --quiet)
if [ -n "${SCALES:-}" ]; then
    LOAD+=(--scales "$SCALES")
else
    LOAD+=(--sweep --max-steps "${MAX_STEPS:-10}" --max-loss-pct "${MAX_LOSS:-1}")
fi
SERVER_CPU=() LOADGEN_CPU=()
if [ "${PIN:-$([ "$(nproc)" -ge 2 ] && echo 1 || echo 0)}" = 1 ]; then
    SERVER_CPU=(taskset -c 0) LOADGEN_CPU=(taskset -c 1)
fi

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
stop() { kill "$@" 2>/dev/null || true; wait "$@" 2>/dev/null || true; }

janus_config() {  # janus_config DIR: loopback-only Janus with the VideoRoom and HTTP only
    local d=$1 lib=/usr/lib/x86_64-linux-gnu/janus
    mkdir -p "$d"
    local plugins transports
    plugins=$(cd $lib/plugins && ls ./*.so | sed 's|^\./||' | grep -vx libjanus_videoroom.so | paste -sd,)
    transports=$(cd $lib/transports && ls ./*.so | sed 's|^\./||' | grep -vx libjanus_http.so | paste -sd,)
    cat >"$d/janus.jcfg" <<JCFG
general: {
	configs_folder = "$d"
	plugins_folder = "$lib/plugins"
	transports_folder = "$lib/transports"
	events_folder = "$lib/events"
	loggers_folder = "$lib/loggers"
	debug_level = ${JANUS_DEBUG:-3}
	session_timeout = 60
	admin_secret = "unused-$RANDOM$RANDOM"
}
media: {
	rtp_port_range = "30000-39999"
}
nat: {
	ice_lite = true
	ice_enforce_list = "jv0"
	ignore_mdns = true
	nice_debug = ${NICE_DEBUG:-false}
}
plugins: {
	disable = "$plugins"
}
transports: {
	disable = "$transports"
}
loggers: {
	disable = "libjanus_jsonlog.so"
}
events: {
	broadcast = false
}
JCFG
    cat >"$d/janus.transport.http.jcfg" <<JCFG
general: {
	json = "plain"
	base_path = "/janus"
	http = true
	ip = "127.0.0.1"
	port = 8088
	https = false
}
admin: {
	admin_http = false
	admin_https = false
}
JCFG
    echo "general: {
}" >"$d/janus.plugin.videoroom.jcfg"
}

run_janus() {  # run_janus LABEL
    command -v janus >/dev/null || { echo "== $1: skipped, no janus"; return; }
    local d="$OUT/janus-config"
    janus_config "$d"
    "${SERVER_CPU[@]}" janus -C "$d/janus.jcfg" -F "$d" -o -L "$OUT/$1.log" -N >"$OUT/$1.stdout" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 100); do
        curl -sf -m 1 -d '{"janus":"info","transaction":"x"}' http://127.0.0.1:8088/janus >/dev/null && break
        sleep 0.1
    done
    echo "== $1: $(janus --version 2>/dev/null | head -1)"
    "${LOADGEN_CPU[@]}" "$B/loadgen" --janus http://127.0.0.1:8088/janus --janus-local 10.77.0.2 "${LOAD[@]}" \
        --server-pid "$pid" --label "$1" --json "$OUT/$1.json"
    stop "$pid"
}

run_noc() {  # run_noc LABEL
    "${SERVER_CPU[@]}" "$B/noc" --listen 127.0.0.1:0 --media-servers 1 \
        >"$OUT/$1.out" 2>"$OUT/$1.err" &
    local pid=$!
    PIDS+=("$pid")
    local disp=""
    for _ in $(seq 300); do
        disp=$(grep -m1 '^dispatcher ' "$OUT/$1.out" | cut -d' ' -f2 || true)
        [ -n "$disp" ] && break
        sleep 0.1
    done
    echo "== $1: noc"
    "${LOADGEN_CPU[@]}" "$B/loadgen" --dispatcher "$disp" "${LOAD[@]}" \
        --server-pid "$pid" --label "$1" --json "$OUT/$1.json"
    stop "$pid"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "${ROUNDS:-1}"); do
    order=(janus noc)
    [ $((r % 2)) = 0 ] && order=(noc janus)
    for side in "${order[@]}"; do
        case ${ONLY:-both} in both|"$side") ;; *) continue ;; esac
        "run_$side" "$side-r$r"
    done
done

python3 - "$OUT" "${ROUNDS:-1}" <<'PY'
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rows = {"janus": [], "noc": []}
print("\nround  server  headline step  pps out  server cores  pps out per core  loss %  p99 ms")
for r in range(1, rounds + 1):
    for side in rows:
        p = os.path.join(out, f"{side}-r{r}.json")
        if not os.path.exists(p):
            continue
        d = json.load(open(p))
        if d.get("pps_out_per_core") is None:
            continue
        rows[side].append(d["pps_out_per_core"])
        print(f"{r:5}  {side:6}  {d['headline_step']:13}  {d['pps_out']:7.0f}  "
              f"{d['server_cpu_cores']:12.2f}  {d['pps_out_per_core']:16.0f}  "
              f"{d['loss_pct']:6.3f}  {d['latency_p99_ms']:6.2f}")
if rows["janus"] and rows["noc"]:
    j, n = statistics.median(rows["janus"]), statistics.median(rows["noc"])
    print(f"\nmedian packets out per core: noc {n:.0f}, Janus {j:.0f}; noc / Janus = {n / j:.2f}")
PY
