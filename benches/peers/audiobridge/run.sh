#!/usr/bin/env bash
# Janus AudioBridge vs this project's mode=mix: same scenario, same driver, one run.
# Usage: benches/peers/audiobridge/run.sh [--build] [--no-install] [bench.py options]
#   --participants N (50)  --talkers K (3)  --duration D (20)  --warmup S (3)
#   --listener-media silence|once|none  --only janus|project|both  --order janus-first|project-first
#   --rounds R (1)  --content-check SECS (5, 0 = off)  --json FILE (/tmp/audiobridge-last-run.json)
#   --audio-level on|off (off; on: an RFC 6464 level on every packet, as WebRTC clients send)
#   --janus-bitrate BPS (32000)  --janus-quality Q (Janus default)  --project-driver python|confclient
# See README.md next to this script. Loopback (127.0.0.1) only.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../common.sh
. "$HERE/../common.sh"
peers_main 8 "encodes the Opus streams once" "$@"
