#!/usr/bin/env bash
# Before/after in one session: the mesh criterion benches and loadgen (raw baseline, then
# the embedded noc) for two revisions, interleaved so that the machine's drift hits both.
#
#   benches/ab.sh BASE_REV [NEW_REV]        # NEW_REV: the working tree when omitted
#   ROUNDS=2 SCALES=1,8,16 benches/ab.sh 4a60236
#
# Each revision is built in release (a detached worktree under target/ab/ for BASE_REV).
# Results: $OUT/ab.log, and loadgen's JSON per revision and target.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_REV=${1:?usage: benches/ab.sh BASE_REV [NEW_REV]}
NEW_REV=${2:-}
OUT=${OUT:-target/bench/ab}
ROUNDS=${ROUNDS:-2}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
root=$(pwd)

# prepare SIDE REV: a tree for REV (the working tree for an empty REV), built in release;
# prints its directory.
prepare() {
    local side=$1 rev=$2 dir=$root
    if [ -n "$rev" ]; then
        dir=$root/target/ab/$side
        [ -d "$dir" ] || git worktree add --detach "$dir" "$rev" >&2
        git -C "$dir" checkout -q --detach "$rev"
    fi
    (cd "$dir" && cargo bench -q -p benches --bench mesh --no-run >&2 &&
        cargo build -q --release -p benches -p noc --bins >&2)
    echo "$dir"
}
BASE=$(prepare base "$BASE_REV")
NEW=$(prepare new "$NEW_REV")
exec > >(tee "$OUT/ab.log") 2>&1
echo "machine: $(nproc) cores, $(date -u +%FT%TZ); base $BASE_REV, new ${NEW_REV:-working tree}"

for r in $(seq "$ROUNDS"); do
    for side in base new; do
        dir=$BASE; [ $side = new ] && dir=$NEW
        echo "== mesh $side round $r, load $(cut -d' ' -f1-3 /proc/loadavg)"
        (cd "$dir" && cargo bench -q -p benches --bench mesh -- --warm-up-time 1 \
            --measurement-time 3 --noplot 2>&1 | grep -B1 "time:" | grep -v '^--$' | paste - - |
            sed 's/Benchmarking [^:]*: Analyzing//; s/ \+/ /g')
    done
done

PIN_S=() PIN_L=()
if [ "$(nproc)" -ge 8 ]; then PIN_S=(taskset -c 2-3) PIN_L=(taskset -c 4-7)
elif [ "$(nproc)" -ge 2 ]; then PIN_S=(taskset -c 0) PIN_L=(taskset -c 1); fi
wait_line() {
    for _ in $(seq 300); do
        local l; l=$(grep -m1 "^$2 " "$1" || true)
        if [ -n "$l" ]; then echo "${l#"$2 "}"; return; fi
        sleep 0.1
    done
    echo "no '$2' line in $1" >&2; exit 1
}
LOAD=(--conferences "${CONFS:-20}" --participants "${PARTS:-5}" --senders "${SENDERS:-5}"
      --duration "${DURATION:-5}" --audio-pps 50 --audio-size 100 --scales "${SCALES:-1,8}"
      --quiet)
for r in $(seq "$ROUNDS"); do
    for side in base new; do
        dir=$BASE; [ $side = new ] && dir=$NEW
        B=$dir/target/release
        for t in raw noc; do
            if [ $t = raw ]; then
                "${PIN_S[@]}" "$B/rawfwd" --listen 127.0.0.1:0 >"$OUT/$t.out" 2>&1 &
                pid=$!; target=(--raw "$(wait_line "$OUT/$t.out" rawfwd)"); ref=()
            else
                "${PIN_S[@]}" "$B/noc" --listen 127.0.0.1:0 --media-servers 1 >"$OUT/$t.out" 2>&1 &
                pid=$!; target=(--dispatcher "$(wait_line "$OUT/$t.out" dispatcher)")
                # Joins before the media server registered would be refused.
                for _ in $(seq 300); do grep -q '^ready$' "$OUT/$t.out" && break; sleep 0.1; done
                ref=(--baseline "$OUT/$side-raw-$r.json")
            fi
            echo "== loadgen $side $t round $r"
            "${PIN_L[@]}" "$B/loadgen" "${target[@]}" "${LOAD[@]}" --server-pid "$pid" \
                --label "$side-$t" --json "$OUT/$side-$t-$r.json" "${ref[@]}" 2>/dev/null |
                grep -E "^ +[0-9]+ |^vs |^headline|memory" || true
            kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
        done
    done
done
