# Installing what a script needs from Debian's packages, as root or through
# sudo: sourced by postgres.sh, nginx.sh and chromium.sh.
declare -F log >/dev/null || log() { printf '==> %s\n' "$*" >&2; }
declare -F die >/dev/null || die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# apt_install WHAT [apt-get install options] PACKAGE...
apt_install() {
  local what="$1" sudo=""
  shift
  log "$what not found: installing it from Debian's packages"
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "$what is not installed and this user cannot install it (no sudo)"
    sudo="sudo"
  fi
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2
}
