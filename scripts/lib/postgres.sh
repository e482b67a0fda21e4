# Shared helpers for running a local PostgreSQL cluster without root
# privileges inside the cluster: sourced by scripts/up and scripts/test.
#
# PostgreSQL refuses to run as root, so when these scripts run as root they
# create an unprivileged system user (latchkey-pg) to own and run the cluster;
# as any other user, the cluster simply runs as that user.

PG_USER_NAME="${LATCHKEY_PG_SYSTEM_USER:-latchkey-pg}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

# The directory holding initdb/pg_ctl of the newest installed PostgreSQL.
pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && printf '%s\n' "$dir"
}

# Installs PostgreSQL from Debian's packages when it is missing.
ensure_postgres_installed() {
  if [ -n "$(pg_bindir)" ] && command -v psql >/dev/null 2>&1; then return 0; fi
  apt_install PostgreSQL postgresql postgresql-client
  [ -n "$(pg_bindir)" ] || die "PostgreSQL installation did not provide initdb"
}

# Runs a command as the cluster's owner.
as_pg_user() {
  if [ "$(id -u)" -eq 0 ]; then
    if ! id "$PG_USER_NAME" >/dev/null 2>&1; then
      log "creating the unprivileged system user $PG_USER_NAME to run PostgreSQL"
      useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER_NAME"
    fi
    # runuser keeps the environment small and needs no PAM session.
    runuser -u "$PG_USER_NAME" -- "$@"
  else
    "$@"
  fi
}

# Creates the data directory (owned by the cluster user) and runs initdb.
# $1 data dir, $2 auth method for TCP (trust|scram-sha-256), $3 optional password file
init_cluster() {
  local data="$1" auth="$2" pwfile="${3:-}" bindir
  bindir=$(pg_bindir)
  mkdir -p "$data"
  if [ "$(id -u)" -eq 0 ]; then
    as_pg_user true  # make sure the user exists
    chown "$PG_USER_NAME" "$data"
    [ -z "$pwfile" ] || chown "$PG_USER_NAME" "$pwfile"
  fi
  chmod 700 "$data"
  local args=(-D "$data" -U postgres -E UTF8 --no-locale --auth-local=trust "--auth-host=$auth")
  [ -z "$pwfile" ] || args+=("--pwfile=$pwfile")
  as_pg_user "$bindir/initdb" "${args[@]}" >/dev/null
}

# Starts a cluster on 127.0.0.1:$2, with its socket inside the data directory.
start_cluster() {
  local data="$1" port="$2" bindir
  bindir=$(pg_bindir)
  as_pg_user "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -t 30 \
    -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=${PG_FSYNC:-on}" \
    start >/dev/null || { cat "$data/server.log" >&2; die "PostgreSQL did not start (log above)"; }
}

stop_cluster() {
  local data="$1" bindir
  bindir=$(pg_bindir)
  [ -f "$data/postmaster.pid" ] || return 0
  as_pg_user "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
}

cluster_running() {
  local data="$1" bindir
  bindir=$(pg_bindir)
  [ -f "$data/postmaster.pid" ] && as_pg_user "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1
}

# A free TCP port on 127.0.0.1, chosen by the kernel.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
