#!/usr/bin/env bash
# Browser join time (issue 12's figure): headless Chromium opens the web client's /join
# link 20 times against a release `noc` with a confclient talking in the room, and the
# page measures from its first WebSocket to the first remote audio frame it played out.
# Prints p50/p99 and writes target/webrtc-join-time.json. Loopback (127.0.0.1) only.
# Usage: benches/webrtc_join.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cargo test --release -p noc --test webrtc_join_time -- --ignored --nocapture 2>&1 |
  grep -E '^(join [0-9]+|webrtc join)'
