#!/usr/bin/env bash
# Raw baseline vs the media server under the same load, in the same run.
#
#   benches/run.sh                      # defaults below
#   SWEEP=1 benches/run.sh              # step the load up to saturation, with plots
#   SCALES=1,8 benches/run.sh           # fixed loads: 1x and 8x the packet rates
#   CONFS=50 PARTS=10 SENDERS=2 VIDEO_PPS=100 benches/run.sh
#   TARGETS="raw noc noc-sfu" AUDIO_SIZE=1200 SCALES=1,8 benches/run.sh   # video vs plain
#
# Builds release binaries, then drives each target (TARGETS) with the same loadgen flags:
#   raw           rawfwd: recvmmsg/sendmmsg, no mesh: the physical baseline
#   raw-gso       rawfwd --gso: the same with UDP_SEGMENT sends per destination
#   noc           the embedded NOC with one media server (its defaults)
#   ms-IO         split dispatcher + mediaserver --io IO --gso false (IO: mmsg, uring)
#   ms-IO-gso     the same with --gso true
#   SERVER-webrtc any noc or ms-* target, the same load with loadgen's participants joined
#                 as WebRTC peers (--webrtc: offer, ICE, DTLS-SRTP; SRTP both ways), so
#                 the server decrypts every packet in and encrypts every packet out
#   SERVER-sfu    any noc or ms-* target, the same load sent as H.264-like video on the
#                 video channel (--audio-pps 0 --video-pps $AUDIO_PPS --video-size
#                 $AUDIO_SIZE; VIDEO_PPS is not used): the reflector's full SFU path
#                 (keyframe gating, retransmission cache, RTCP, layer choice) against the
#                 plain audio path of SERVER
# and prints each figure with its ratio to the raw baseline (GSO targets also to raw-gso),
# and each -sfu and -webrtc target's ratio to its plain counterpart, step by step.
# JSON, CSV and plots go to $OUT.
# With PIN=1 (default on 2+ cores) the server runs on CPU 0 and loadgen on CPU 1.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-target/bench}
WORKERS=${WORKERS:-1}
# loadgen's plots need a TrueType font (the build and the tests do not).
if [ ! -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-dejavu-core >/dev/null 2>&1 || true
fi
TARGETS=${TARGETS:-raw raw-gso noc ms-mmsg ms-mmsg-gso ms-uring ms-uring-gso}
mkdir -p "$OUT"
LOAD=(--conferences "${CONFS:-20}" --participants "${PARTS:-5}" --senders "${SENDERS:-5}"
      --duration "${DURATION:-5}"
      --send-threads "${SEND_THREADS:-1}" --recv-threads "${RECV_THREADS:-1}")
# The media part of the load; -sfu targets send the audio-like load as video instead.
MEDIA=(--audio-pps "${AUDIO_PPS:-50}" --audio-size "${AUDIO_SIZE:-100}"
       --video-pps "${VIDEO_PPS:-0}" --video-size "${VIDEO_SIZE:-1200}")
SFU_MEDIA=(--audio-pps 0 --audio-size "${AUDIO_SIZE:-100}" --video-pps "${AUDIO_PPS:-50}"
           --video-size "${AUDIO_SIZE:-100}")
if [ "${SWEEP:-0}" = 1 ]; then
    LOAD+=(--sweep --max-steps "${MAX_STEPS:-10}" --max-loss-pct "${MAX_LOSS:-1}")
elif [ -n "${SCALES:-}" ]; then
    LOAD+=(--scales "$SCALES")
fi
SERVER_CPU=() LOADGEN_CPU=()
if [ "${PIN:-$([ "$(nproc)" -ge 2 ] && echo 1 || echo 0)}" = 1 ]; then
    SERVER_CPU=(taskset -c 0) LOADGEN_CPU=(taskset -c 1)
fi

cargo build --release -p benches -p noc -p mediaserver -p dispatcher --bins
B=target/release
# Other processes spoil the figures; wait (up to QUIET_WAIT s) for the machine to go quiet.
for _ in $(seq "${QUIET_WAIT:-0}"); do
    awk '{exit !($1 < 0.3)}' /proc/loadavg && break
    sleep 1
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# start NAME CMD...: runs CMD in the background, stdout to $OUT/NAME.out; sets PID.
start() {
    local name=$1; shift
    "${SERVER_CPU[@]}" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" &
    PID=$!
    PIDS+=("$PID")
}

# wait_line FILE PREFIX: prints what follows "PREFIX " on the first such line of FILE.
wait_line() {
    for _ in $(seq 300); do
        local l
        l=$(grep -m1 "^$2 " "$1" || true)
        if [ -n "$l" ]; then echo "${l#"$2 "}"; return; fi
        sleep 0.1
    done
    echo "no '$2' line in $1:" >&2; cat "$1" "${1%.out}.err" >&2; exit 1
}

stop() { kill "$@" 2>/dev/null || true; wait "$@" 2>/dev/null || true; }

# loadgen LABEL TARGET-FLAGS... (server pid in $PID)
loadgen() {
    local label=$1; shift
    local base=() ref=raw media=("${MEDIA[@]}") how=()
    case $label in *-sfu) media=("${SFU_MEDIA[@]}") ;; esac
    case $label in *-webrtc) how=(--webrtc) ;; esac
    case ${label%-webrtc} in *-gso|*-gso-sfu) ref=raw-gso ;; esac
    [ "$label" != "$ref" ] && [ -f "$OUT/$ref.json" ] && base=(--baseline "$OUT/$ref.json")
    local plot=()
    [ "${SWEEP:-0}" = 1 ] && plot=(--plot "$OUT/$label.png")
    echo "== $label"
    "${LOADGEN_CPU[@]}" $B/loadgen "$@" "${how[@]}" "${LOAD[@]}" "${media[@]}" --server-pid "$PID" \
        --label "$label" --json "$OUT/$label.json" --csv "$OUT/$label.csv" "${plot[@]}" \
        "${base[@]}" --quiet
}

has_io=0
$B/mediaserver --help 2>/dev/null | grep -q -- '--io' && has_io=1

for t in $TARGETS; do
    case $t in
    raw|raw-gso)
        gso=(); [ "$t" = raw-gso ] && gso=(--gso)
        start "$t" $B/rawfwd --listen 127.0.0.1:0 "${gso[@]}"
        loadgen "$t" --raw "$(wait_line "$OUT/$t.out" rawfwd)"
        stop "$PID" ;;
    noc|noc-sfu|noc-webrtc)
        start "$t" $B/noc --listen 127.0.0.1:0 --media-servers 1
        loadgen "$t" --dispatcher "$(wait_line "$OUT/$t.out" dispatcher)"
        stop "$PID" ;;
    ms-*)
        m=${t%-webrtc}; m=${m%-sfu}; io=${m#ms-}; io=${io%-gso}
        gso=false; [ "${m%-gso}" != "$m" ] && gso=true
        if [ $has_io = 0 ]; then echo "== $t: skipped (mediaserver has no --io yet)"; continue; fi
        start "disp-$io" $B/dispatcher --config config/dispatcher.toml --listen 127.0.0.1:0 \
            --registry 127.0.0.1:0 --http 127.0.0.1:0
        dpid=$PID
        disp=$(wait_line "$OUT/disp-$io.out" dispatcher)
        reg=$(wait_line "$OUT/disp-$io.out" registry)
        start "$t" $B/mediaserver --config config/mediaserver.toml --listen 127.0.0.1:0 \
            --dispatcher "$reg" --id "$t" --workers "$WORKERS" --io "$io" --gso "$gso"
        wait_line "$OUT/$t.out" mediaserver >/dev/null
        sleep 1.5  # the first report makes the server selectable
        loadgen "$t" --dispatcher "$disp"
        stop "$PID" "$dpid" ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
    esac
done

python3 - "$OUT" $TARGETS <<'PY'
import json, os, sys
out, targets = sys.argv[1], sys.argv[2:]
runs = {}
for t in targets:
    p = os.path.join(out, t + ".json")
    if os.path.exists(p):
        runs[t] = json.load(open(p))
f = lambda v, fmt: "-" if v is None else format(v, fmt)
def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b
raw = runs.get("raw", {}).get("pps_out_per_core")
rawg = runs.get("raw-gso", {}).get("pps_out_per_core")
print("\nheadline = highest step with loss <= --headline-loss-pct (0.1%); ratios of pps/core")
print(f"{'target':<14} {'step':>4} {'pps_out':>10} {'pps/core':>10} {'/raw':>6} {'/rawgso':>7} "
      f"{'loss%':>6} {'p50ms':>7} {'p99ms':>7} {'p999ms':>7} {'cores':>5} {'half-p99':>8} {'KiB/part':>8} {'other':>5}")
for t, r in runs.items():
    ppc = r["pps_out_per_core"]
    print(f"{t:<14} {r['headline_step']:>4} {r['pps_out']:>10.0f} {f(ppc, '>10.0f')} "
          f"{f(ratio(ppc, raw), '>6.3f')} {f(ratio(ppc, rawg), '>7.3f')} {r['loss_pct']:>6.3f} "
          f"{r['latency_p50_ms']:>7.3f} {r['latency_p99_ms']:>7.3f} {r['latency_p999_ms']:>7.3f} "
          f"{f(r['server_cpu_cores'], '>5.2f')} {f(r.get('half_load_latency_p99_ms'), '>8.3f')} "
          f"{f(r.get('server_kib_per_participant'), '>8.1f')} "
          f"{f(max((s.get('other_cpu_cores') or 0) for s in r['steps']), '>5.2f')}")
print("other = most CPU (cores) that other processes used during any step: above 0.1 the run was disturbed")

# Each -sfu target against its plain counterpart (same packets through the audio path) and
# raw, at every load both ran (steps of equal rate scale).
pairs = [(t[:-4], t) for t in runs if t.endswith("-sfu") and t[:-4] in runs]
if pairs:
    print("\nvideo through the full SFU (-sfu) vs the same load through the plain audio path")
    print(f"{'target':<14} {'scale':>5} {'out/s':>8} {'raw/core':>9} {'plain/core':>10} {'sfu/core':>9} "
          f"{'sfu/plain':>9} {'loss% raw/plain/sfu':>20} {'p99ms raw/plain/sfu':>22} {'other':>5}")
    rawsteps = {s["scale"]: s for s in runs.get("raw", {}).get("steps", [])}
    for plain, sfu in pairs:
        psteps = {s["scale"]: s for s in runs[plain]["steps"]}
        for v in runs[sfu]["steps"]:
            p, r = psteps.get(v["scale"]), rawsteps.get(v["scale"], {})
            if p is None:
                continue
            g = lambda s, k: s.get(k) if s else None
            loss = "/".join(f(g(x, "loss_pct"), ".3f") for x in (r, p, v))
            p99 = "/".join(f(g(x, "latency_p99_ms"), ".3f") for x in (r, p, v))
            other = max((x.get("other_cpu_cores") or 0) for x in (r, p, v) if x)
            print(f"{sfu:<14} {v['scale']:>5g} {v['pps_out']:>8.0f} "
                  f"{f(g(r, 'pps_out_per_core'), '>9.0f')} {f(p['pps_out_per_core'], '>10.0f')} "
                  f"{f(v['pps_out_per_core'], '>9.0f')} "
                  f"{f(ratio(v['pps_out_per_core'], p['pps_out_per_core']), '>9.3f')} "
                  f"{loss:>20} {p99:>22} {other:>5.2f}")
    print("sfu/plain = packets out per server core, video through the SFU over the audio path (issue 5: >= 0.8)")

# Each -webrtc target against its plain counterpart: the same load, SRTP both ways.
pairs = [(t[:-7], t) for t in runs if t.endswith("-webrtc") and t[:-7] in runs]
if pairs:
    print("\nWebRTC (SRTP in and out) vs the same load in plain RTP, step by step")
    print(f"{'target':<16} {'scale':>5} {'out/s':>8} {'plain/core':>10} {'srtp/core':>9} "
          f"{'srtp/plain':>10} {'loss% plain/srtp':>17} {'p99ms plain/srtp':>17} {'added':>7} {'other':>5}")
    for plain, w in pairs:
        psteps = {s["scale"]: s for s in runs[plain]["steps"]}
        for v in runs[w]["steps"]:
            p = psteps.get(v["scale"])
            if p is None:
                continue
            loss = f"{p['loss_pct']:.3f}/{v['loss_pct']:.3f}"
            p99 = f"{p['latency_p99_ms']:.3f}/{v['latency_p99_ms']:.3f}"
            other = max((x.get("other_cpu_cores") or 0) for x in (p, v))
            print(f"{w:<16} {v['scale']:>5g} {v['pps_out']:>8.0f} "
                  f"{f(p['pps_out_per_core'], '>10.0f')} {f(v['pps_out_per_core'], '>9.0f')} "
                  f"{f(ratio(v['pps_out_per_core'], p['pps_out_per_core']), '>10.3f')} "
                  f"{loss:>17} {p99:>17} {v['latency_p99_ms'] - p['latency_p99_ms']:>+7.3f} {other:>5.2f}")
    print("srtp/plain = packets out per server core with SRTP over plain RTP (issue 12: >= 0.6, and >= 300k/core);")
    print("added = p99 with SRTP minus plain at the same load (issue 12: < 1 ms at half of saturation)")
PY
