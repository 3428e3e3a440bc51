# Shared by the peers' run.sh scripts: their flags, installing ffmpeg and janus when missing,
# the release build, then the folder's bench.py. The caller sets HERE (its folder) and calls
#   peers_main HELP_LAST_LINE "what ffmpeg is for" "$@"
# Loopback (127.0.0.1) only.

apt_install() {  # apt_install PKG...: install when missing, apt-get update and retry once on failure
  [ "$install" = 1 ] || return 1
  [ "$(id -u)" = 0 ] || { echo "run.sh: not root, cannot apt-get install $*" >&2; return 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null 2>&1 && return 0
  apt-get update >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null 2>&1
}

peers_main() {
  local help_end=$1 ffmpeg_use=$2
  shift 2
  local root target build=0 a
  root="$(cd "$HERE/../../.." && pwd)"
  target="${CARGO_TARGET_DIR:-$root/target}/release"
  install=1
  local pass=()
  for a in "$@"; do
    case "$a" in
      --build) build=1 ;;
      --no-install) install=0 ;;
      -h|--help) sed -n "2,${help_end}p" "$0"; echo; exec python3 "$HERE/bench.py" --help ;;
      *) pass+=("$a") ;;
    esac
  done

  command -v python3 >/dev/null || { echo "run.sh: python3 is required" >&2; exit 2; }
  if ! command -v ffmpeg >/dev/null; then
    apt_install ffmpeg || { echo "run.sh: ffmpeg is required ($ffmpeg_use)" >&2; exit 2; }
  fi
  if ! command -v janus >/dev/null; then
    # The project half still runs without it; bench.py records why Janus is missing. The
    # Debian package may ship a service; the bench starts its own janus with its own config.
    apt_install janus || echo "run.sh: could not install janus; only the project half will run" >&2
  fi

  if [ "$build" = 1 ] || [ ! -x "$target/noc" ]; then
    (cd "$root" && cargo build --release --bins)
  fi

  cd "$root"
  exec python3 "$HERE/bench.py" --target "$target" "${pass[@]}"
}
