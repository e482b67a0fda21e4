# Chromium for the connect flow's browser test (Tests/LatchkeyTests/ConnectTests.swift):
# installed from Debian's packages when missing; sourced by scripts/test.
declare -F log >/dev/null || log() { printf '==> %s\n' "$*" >&2; }
declare -F die >/dev/null || die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ensure_chromium_installed() {
  command -v chromium >/dev/null 2>&1 && return 0
  log "chromium not found: installing it from Debian's packages"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "chromium is not installed and this user cannot install it (no sudo)"
    sudo="sudo"
  fi
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >&2
  command -v chromium >/dev/null 2>&1 || die "installing chromium did not provide a chromium binary"
}
