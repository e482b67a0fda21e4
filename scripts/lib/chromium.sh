# Chromium for the connect flow's browser test (Tests/LatchkeyTests/ConnectTests.swift):
# installed from Debian's packages when missing; sourced by scripts/test.
declare -F log >/dev/null || log() { printf '==> %s\n' "$*" >&2; }
declare -F die >/dev/null || die() { printf 'error: %s\n' "$*" >&2; exit 1; }

. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

ensure_chromium_installed() {
  command -v chromium >/dev/null 2>&1 && return 0
  apt_install chromium --no-install-recommends chromium
  command -v chromium >/dev/null 2>&1 || die "installing chromium did not provide a chromium binary"
}
