#!/usr/bin/env bash
# The soak with faults (issue 16), not part of `make test`: builds release binaries, then
# runs the soak example against Redis, two dispatchers behind the switch and two media
# servers on loopback, at LOAD_SHARE (0.8) of the saturation it measures first, for
# MINUTES (30), killing a media server and the active dispatcher and restarting Redis on
# the way. Writes soak.json, soak.csv and soak.png to OUT and exits 1 if a criterion fails.
#
#   benches/soak.sh                         # the full half hour
#   MINUTES=3 WARMUP_S=20 SETTLE_S=20 benches/soak.sh   # a short trial
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-target/soak}
if ! command -v redis-server >/dev/null && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
# The plot needs a TrueType font (the build and the tests do not).
if [ ! -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-dejavu-core >/dev/null 2>&1 || true
fi
cargo build --release --bin dispatcher --bin mediaserver
cargo build --release -p benches --example soak
exec target/release/examples/soak --out "$OUT" \
  --minutes "${MINUTES:-30}" --load-share "${LOAD_SHARE:-0.8}" \
  --conferences "${CONFS:-20}" --participants "${PARTS:-5}" \
  --warmup-s "${WARMUP_S:-120}" --settle-s "${SETTLE_S:-60}" "$@"
