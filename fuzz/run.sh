#!/usr/bin/env bash
# Runs fuzz targets under libFuzzer (cargo-fuzz) with this machine's stable toolchain:
# RUSTC_BOOTSTRAP=1 lets stable rustc take cargo-fuzz's -Z flags. Each target starts from
# its committed seeds (fuzz/seeds/T) and grows a working corpus in fuzz/corpus/T.
#
#   fuzz/run.sh                      # every target, 10 million executions each
#   RUNS=100000 fuzz/run.sh rtcp sdp # some targets, fewer executions
#   SANITIZER=address fuzz/run.sh    # with AddressSanitizer (about 5x slower)
#   JOBS=2 (default: the core count) targets run side by side
#   WORKERS=2 runs each target as that many processes sharing its corpus, RUNS/WORKERS
#     executions each (for a slow target: mix_datagram does about 1,100 a second per core)
#   MAX_TIME=1500 stops a target after that many seconds even short of RUNS (0: no limit)
#
# Writes target/fuzz/LOG/T.log per target and target/fuzz/summary.md (executions, time,
# coverage, crashes). A crash leaves its input in fuzz/artifacts/T/ and the script exits 1.
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${RUNS:-10000000}
SANITIZER=${SANITIZER:-none}
JOBS=${JOBS:-$(nproc)}
WORKERS=${WORKERS:-1}
MAX_TIME=${MAX_TIME:-0}
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mapfile -t ALL < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^noc-fuzz$')
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")

echo "building ${#TARGETS[@]} targets (sanitizer: $SANITIZER)"
if [ $# -gt 0 ]; then
    for t in "${TARGETS[@]}"; do cargo fuzz build -s "$SANITIZER" -O "$t"; done
else
    cargo fuzz build -s "$SANITIZER" -O
fi
BIN=target/$(rustc -vV | sed -n 's/^host: //p')/release
LOGS=../target/fuzz/log
mkdir -p "$LOGS"

run_one() {
    local t=$1
    mkdir -p "corpus/$t" "artifacts/$t"
    local start end rc=0
    start=$(date +%s)
    # Workers share the corpus directory; libFuzzer reloads it, so each sees the others' finds.
    local w pids=()
    rm -f "$LOGS/$t".[0-9]*.log
    for w in $(seq 1 "$WORKERS"); do
        "$BIN/$t" "corpus/$t" "seeds/$t" -runs=$((RUNS / WORKERS)) -max_len=4096 -timeout=10 \
            -rss_limit_mb=2048 -max_total_time="$MAX_TIME" -print_final_stats=1 \
            -artifact_prefix="artifacts/$t/" >"$LOGS/$t.$w.log" 2>&1 &
        pids+=($!)
    done
    for w in "${pids[@]}"; do wait "$w" || rc=$?; done
    end=$(date +%s)
    cat "$LOGS/$t".[0-9]*.log >"$LOGS/$t.log"
    local execs cov ft corp
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOGS/$t.log" | awk '{s += $1} END {print s}')
    read -r cov ft corp < <(grep -hE '^#[0-9]+' "$LOGS/$t".[0-9]*.log | tail -1 |
        sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/\1 \2 \3/') || true
    local crashes
    crashes=$(find "artifacts/$t" -type f | wc -l)
    local secs=$((end - start)) rate=0
    [ "$secs" -gt 0 ] && rate=$(( ${execs:-0} / secs ))
    printf '| `%s` | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "${execs:-?}" "$secs" "$rate" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes" >"$LOGS/$t.row"
    echo "$t: ${execs:-?} executions in ${secs}s, cov ${cov:-?}, crashes $crashes (exit $rc)"
    return "$rc"
}
export -f run_one
export BIN LOGS RUNS MAX_TIME WORKERS

failed=0
printf '%s\n' "${TARGETS[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one {}' || failed=1
{
    echo "libFuzzer via cargo-fuzz, sanitizer $SANITIZER, $(date -u +%F), $(nproc) cores, $JOBS at once, $RUNS runs or ${MAX_TIME}s (0: no limit) per target in $WORKERS process(es)"
    echo
    echo '| target | executions | seconds | exec/s | cov | ft | corpus | crashes |'
    echo '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
    for t in "${TARGETS[@]}"; do cat "$LOGS/$t.row" 2>/dev/null || echo "| \`$t\` | not run |"; done
} >../target/fuzz/summary.md
cat ../target/fuzz/summary.md
exit "$failed"
