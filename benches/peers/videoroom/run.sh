#!/usr/bin/env bash
# Janus VideoRoom vs this project's reflector: video fan-out, same stream, same driver, one run.
# Usage: benches/peers/videoroom/run.sh [--build] [--no-install] [bench.py options]
#   --rooms R (10)  --receivers N (10)  --bitrate B (1M)  --fps F (25)  --size WxH (640x360)
#   --duration D (20)  --warmup S (3)  --rounds K (1)  --only janus|project|both
#   --json FILE (/tmp/videoroom-last-run.json)
# See README.md next to this script. Loopback (127.0.0.1) only.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../common.sh
. "$HERE/../common.sh"
peers_main 7 "encodes the H.264 stream once" "$@"
