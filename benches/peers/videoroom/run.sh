#!/usr/bin/env bash
# Janus VideoRoom vs this project's reflector: video fan-out, same stream, same driver, one run.
# Usage: benches/peers/videoroom/run.sh [--build] [--no-install] [bench.py options]
#   --rooms R (10)  --receivers N (10)  --bitrate B (1M)  --fps F (25)  --size WxH (640x360)
#   --duration D (20)  --warmup S (3)  --rounds K (1)  --only janus|project|both
#   --json FILE (/tmp/videoroom-last-run.json)
# See README.md next to this script. Loopback (127.0.0.1) only.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"

build=0
install=1
pass=()
for a in "$@"; do
  case "$a" in
    --build) build=1 ;;
    --no-install) install=0 ;;
    -h|--help) sed -n '2,7p' "$0"; echo; exec python3 "$HERE/bench.py" --help ;;
    *) pass+=("$a") ;;
  esac
done

apt_install() {  # apt_install PKG...: install when missing, apt-get update and retry once on failure
  [ "$install" = 1 ] || return 1
  [ "$(id -u)" = 0 ] || { echo "run.sh: not root, cannot apt-get install $*" >&2; return 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null 2>&1 && return 0
  apt-get update >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null 2>&1
}

command -v python3 >/dev/null || { echo "run.sh: python3 is required" >&2; exit 2; }
if ! command -v ffmpeg >/dev/null; then
  apt_install ffmpeg || { echo "run.sh: ffmpeg is required (encodes the H.264 stream once)" >&2; exit 2; }
fi
if ! command -v janus >/dev/null; then
  apt_install janus || echo "run.sh: could not install janus; only the project half will run" >&2
fi

if [ "$build" = 1 ] || [ ! -x "$TARGET/noc" ]; then
  (cd "$ROOT" && cargo build --release --bins)
fi

cd "$ROOT"
exec python3 "$HERE/bench.py" --target "$TARGET" "${pass[@]}"
