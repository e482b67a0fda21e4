# Shared helpers for running nginx (the Latchkey sidecar, Deploy/nginx/) from
# scripts without root: sourced by Deploy/nginx/check.
#
# nginx runs with a prefix directory (-p) that holds everything it writes: the
# pid file, temp directories and logs, so neither /run nor /var/lib/nginx nor
# /var/log/nginx need to be writable. Deploy/nginx/nginx.conf keeps those paths
# relative for exactly this reason. Debian's nginx is built with
# --error-log-path=stderr, so nothing is written outside the prefix even before
# the configuration is read.

# These three are also defined by postgres.sh; define them only when missing
# so both libraries can be sourced together.
declare -F log >/dev/null || log() { printf '==> %s\n' "$*" >&2; }
declare -F die >/dev/null || die() { printf 'error: %s\n' "$*" >&2; exit 1; }
declare -F free_port >/dev/null || free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

# The nginx binary (NGINX overrides), or nothing.
nginx_bin() {
  if [ -n "${NGINX:-}" ]; then printf '%s\n' "$NGINX"; return 0; fi
  command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && printf '%s\n' /usr/sbin/nginx; }
}

# Installs nginx from Debian's packages when it is missing. Debian's nginx has
# ngx_http_auth_request_module compiled in (checked below); the package's own
# service is not needed and does not start inside containers.
ensure_nginx_installed() {
  if [ -z "$(nginx_bin)" ]; then
    apt_install nginx --no-install-recommends nginx
    [ -n "$(nginx_bin)" ] || die "nginx installation did not provide an nginx binary"
  fi
  "$(nginx_bin)" -V 2>&1 | grep -q -- '--with-http_auth_request_module' \
    || die "$(nginx_bin) was built without ngx_http_auth_request_module, which the sidecar needs"
}

# Creates a prefix directory for nginx_start: $1 prefix. Started as root,
# nginx runs its workers as nobody: they must be able to reach the prefix's
# temp directories (nginx creates and chowns the directories under tmp/, but
# every parent of the prefix needs to be searchable by others, which a
# `mktemp -d` directory is not until chmod 755).
# logs/ is for nginx builds whose compiled-in error log is logs/error.log
# under the prefix (a build from source); Debian's logs to stderr until the
# configuration is read.
nginx_prepare_prefix() {
  local prefix="$1"
  mkdir -p "$prefix/logs" "$prefix/tmp"
  if [ "$(id -u)" -eq 0 ]; then chmod 755 "$prefix" "$prefix/tmp"; fi
}

# Checks a configuration: $1 prefix, $2 config file. Prints nginx's output on failure.
nginx_test_config() {
  local prefix="$1" conf="$2" out
  nginx_prepare_prefix "$prefix"
  if ! out=$("$(nginx_bin)" -q -t -p "$prefix" -c "$conf" 2>&1); then
    printf '%s\n' "$out" >&2
    return 1
  fi
}

# Starts nginx: $1 prefix (writable; pid file, temp files and logs go there),
# $2 config file, $3 "foreground" to run with `daemon off` in this process
# (exec-style, for containers), otherwise it daemonizes and this waits until
# the pid file exists. Extra global directives may be passed in NGINX_GLOBALS.
nginx_start() {
  local prefix="$1" conf="$2" mode="${3:-background}" pidfile="$1/nginx.pid" i
  nginx_prepare_prefix "$prefix"
  if [ "$mode" = "foreground" ]; then
    exec "$(nginx_bin)" -p "$prefix" -c "$conf" -g "daemon off; ${NGINX_GLOBALS:-}"
  fi
  rm -f "$pidfile"
  if [ -n "${NGINX_GLOBALS:-}" ]; then
    "$(nginx_bin)" -p "$prefix" -c "$conf" -g "$NGINX_GLOBALS" || return 1
  else
    "$(nginx_bin)" -p "$prefix" -c "$conf" || return 1
  fi
  for i in $(seq 1 100); do
    [ -s "$pidfile" ] && return 0
    sleep 0.05
  done
  log "nginx did not write $pidfile"
  return 1
}

# The master process id of an nginx started by nginx_start, or nothing.
nginx_pid() {
  local pidfile="$1/nginx.pid"
  [ -s "$pidfile" ] && cat "$pidfile"
}

# Stops an nginx started by nginx_start with $1 prefix: fast shutdown (TERM)
# of the master whose pid is in the prefix, waiting until it has exited.
nginx_stop() {
  local prefix="$1" pid i
  pid=$(nginx_pid "$prefix") || return 0
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# Waits until 127.0.0.1:$1 (or $2:$1) accepts TCP connections, up to ~5 s.
wait_for_port() {
  local port="$1" host="${2:-127.0.0.1}" i
  for i in $(seq 1 100); do
    if python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 0.2).close()' "$host" "$port" 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  return 1
}
