# Starting and stopping the servers under test (sourced by bench/run and scripts/test.d/bench).
# Each start_* sets SERVER_PID and SERVER_URL (ws://127.0.0.1:port) once the server logs
# "listening addr=...". Servers run in their own process group so stop_servers ends all of them.

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
# BENCH_PROFILE=debug: the smoke run's unoptimised builds (it checks that every scenario runs and
# loses nothing, never how fast).
ENGINE="$ROOT/target/${BENCH_PROFILE:-release}/chat-engine"
BENCH="$ROOT/target/${BENCH_PROFILE:-release}/chat-bench"
WORK="$(mktemp -d /tmp/chat-bench.XXXXXX)"
SERVER_PIDS=()

# Waits for "listening addr=HOST:PORT" in a log; prints the port.
wait_listening() {
    local log=$1 pid=$2
    for _ in $(seq 300); do
        if grep -q 'listening addr=' "$log" 2>/dev/null; then
            grep -o 'listening addr=[0-9.]*:[0-9]*' "$log" | head -n1 | sed 's/.*://'
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "server did not start; its log:" >&2
    cat "$log" >&2
    return 1
}

# start_ours NAME DATABASE_URL [extra engine flags...]
start_ours() {
    local name=$1 db=$2
    shift 2
    local log="$WORK/$name.log"
    # Per-event logs would cost the engine more than the traffic does: warnings only, plus the
    # line that says where it listens. Every simulated reader comes from 127.0.0.1, so the
    # per-address and per-room limits are lifted along with the send limit.
    RUST_LOG=warn,chat_engine::server=info "$ENGINE" --bind 127.0.0.1:0 --database-url "$db" \
        --send-rate 1000000 --send-burst 1000000 --max-connections 19000 --outbound-queue 1024 \
        --room-send-rate 1000000 --room-send-burst 1000000 \
        --max-connections-per-ip 19000 --joins-per-ip 1000000 --join-burst-per-ip 1000000 \
        "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    SERVER_PIDS+=("$SERVER_PID")
    SERVER_URL="ws://127.0.0.1:$(wait_listening "$log" "$SERVER_PID")"
}

# start_peer NAME socketio|ws [ENV=VALUE...]
start_peer() {
    local name=$1 kind=$2
    shift 2
    local log="$WORK/$name.log"
    env PORT=0 "$@" node "$BENCH_DIR/peers/$kind-server.js" >"$log" 2>&1 &
    SERVER_PID=$!
    SERVER_PIDS+=("$SERVER_PID")
    SERVER_URL="ws://127.0.0.1:$(wait_listening "$log" "$SERVER_PID")"
}

stop_servers() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${SERVER_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    SERVER_PIDS=()
}

# A fresh SQLite file for one engine.
sqlite_url() { echo "sqlite://$WORK/$1.db"; }

# A fresh Postgres database for one run, its URL in PG_URL (dropped by drop_databases).
PG_SERVER="${CHAT_BENCH_POSTGRES:-postgres://postgres:postgres@127.0.0.1:5432}"
PG_DATABASES=()
new_postgres_db() {
    local db="chat_bench_$1_$$"
    PGOPTIONS=--client-min-messages=warning psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    PG_DATABASES+=("$db")
    PG_URL="$PG_SERVER/$db"
}
drop_databases() {
    local db
    for db in "${PG_DATABASES[@]}"; do psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null || true; done
    PG_DATABASES=()
}

# Our own throwaway redis-server for the multi-pod scenario; sets REDIS_URL.
REDIS_PID=""
start_redis() {
    local port
    for _ in $(seq 20); do
        port=$((20000 + RANDOM % 10000))
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
        REDIS_PID=$!
        for _ in $(seq 50); do
            grep -q "Ready to accept" "$WORK/redis.log" && break 2
            kill -0 "$REDIS_PID" 2>/dev/null || break
            sleep 0.1
        done
    done
    REDIS_URL="redis://127.0.0.1:$port"
}
stop_redis() {
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null
    REDIS_PID=""
}

cleanup() {
    stop_servers
    stop_redis
    drop_databases
    rm -rf "$WORK"
}
