#!/usr/bin/env bash
# Runs fuzz targets under libFuzzer (cargo-fuzz) with this machine's stable toolchain:
# RUSTC_BOOTSTRAP=1 lets stable rustc take cargo-fuzz's -Z flags. Each target starts from
# its committed seeds (fuzz/seeds/T) and grows a working corpus in fuzz/corpus/T.
#
#   fuzz/run.sh                      # every target, 10 million executions each
#   RUNS=100000 fuzz/run.sh rtcp sdp # some targets, fewer executions
#   SANITIZER=address fuzz/run.sh    # with AddressSanitizer (about 5x slower)
#   JOBS=2 (default: the core count) targets run side by side
#   MAX_TIME=1500 stops a target after that many seconds even short of RUNS (0: no limit)
#
# Writes target/fuzz/LOG/T.log per target and target/fuzz/summary.md (executions, time,
# coverage, crashes). A crash leaves its input in fuzz/artifacts/T/ and the script exits 1.
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${RUNS:-10000000}
SANITIZER=${SANITIZER:-none}
JOBS=${JOBS:-$(nproc)}
MAX_TIME=${MAX_TIME:-0}
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mapfile -t ALL < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^noc-fuzz$')
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")

echo "building ${#TARGETS[@]} targets (sanitizer: $SANITIZER)"
cargo fuzz build -s "$SANITIZER" -O
BIN=target/$(rustc -vV | sed -n 's/^host: //p')/release
LOGS=../target/fuzz/log
mkdir -p "$LOGS"

run_one() {
    local t=$1
    mkdir -p "corpus/$t" "artifacts/$t"
    local start end rc=0
    start=$(date +%s)
    "$BIN/$t" "corpus/$t" "seeds/$t" -runs="$RUNS" -max_len=4096 -timeout=10 \
        -rss_limit_mb=2048 -max_total_time="$MAX_TIME" -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
        >"$LOGS/$t.log" 2>&1 || rc=$?
    end=$(date +%s)
    local execs cov ft corp
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOGS/$t.log" | tail -1)
    read -r cov ft corp < <(grep -E '^#[0-9]+' "$LOGS/$t.log" | tail -1 |
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
export BIN LOGS RUNS MAX_TIME

failed=0
printf '%s\n' "${TARGETS[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one {}' || failed=1
{
    echo "libFuzzer via cargo-fuzz, sanitizer $SANITIZER, $(date -u +%F), $(nproc) cores, $JOBS at once, $RUNS runs or ${MAX_TIME}s (0: no limit) per target"
    echo
    echo '| target | executions | seconds | exec/s | cov | ft | corpus | crashes |'
    echo '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
    for t in "${TARGETS[@]}"; do cat "$LOGS/$t.row" 2>/dev/null || echo "| \`$t\` | not run |"; done
} >../target/fuzz/summary.md
cat ../target/fuzz/summary.md
exit "$failed"
