# Shared helpers for the project's scripts (sourced, not run).

# Installs Debian packages, running apt-get update once per script run.
apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ -z "${APT_UPDATED:-}" ]; then
        $sudo apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# Makes sure a Postgres server answers on 127.0.0.1:5432, installing and starting Debian's when
# missing. Tests connect as postgres/postgres (the password matters only where auth is not trust).
ensure_postgres() {
    command -v pg_isready >/dev/null || apt_install postgresql
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        local version
        version=$(ls /etc/postgresql | sort -V | tail -n 1)
        pg_ctlcluster --skip-systemctl-redirect "$version" main start
        for _ in $(seq 100); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.1; done
    fi
    su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
}

# Drops the databases that test runs created (their names start with chat_test_).
drop_test_databases() {
    su postgres -c "psql -Atq -c \"SELECT datname FROM pg_database WHERE datname LIKE 'chat\\_test\\_%'\"" |
        while read -r db; do su postgres -c "psql -q -c 'DROP DATABASE IF EXISTS \"$db\"'" >/dev/null; done
}

# Tests start their own redis-server processes (so they can kill them); they need the binary.
ensure_redis_server() {
    command -v redis-server >/dev/null || apt_install redis-server
}
