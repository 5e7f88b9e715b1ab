# Every scenario against ours and each peer, one JSON line per run appended to $RESULTS
# (sourced after servers.sh by bench/run and scripts/test.d/bench, which set the sizes below).
#
# Sizes: IDLE_STEPS; HOT_MEMBERS, HOT_SENDERS, HOT_RATES; CALM_MEMBERS; MIX_ROOMS, MIX_RATE;
# NETWORK_ROOMS, NETWORK_CHATTING; JOIN_RATE, JOIN_HISTORY; DURABLE_ROOMS, DURABLE_RATES;
# XPOD_ROOMS, XPOD_RATE; SOAK_ROOMS, SOAK_RATE, SOAK_DURATION, SOAK_RING_MEMORY; WARMUP, DURATION.
# Every server is started fresh for each run, so memory and CPU figures are its own.

PEERS=(socketio ws)

# bench NAME ARGS...: one chat-bench run, its line tagged with the repeat it belongs to
# ($REPEAT); a run that cannot complete is recorded and counted.
FAILED_RUNS=0
REPEAT=1
bench() {
    local out
    echo "  $*" | cut -c1-160 >&2
    if ! out=$("$BENCH" "$@"); then
        out=${out:-{\"error\":\"chat-bench failed\"\}}
        FAILED_RUNS=$((FAILED_RUNS + 1))
    fi
    echo "{\"repeat\":$REPEAT,${out#\{}" >>"$RESULTS"
}

# run_repeats N: every scenario, N times over (all of them once, then again: a slow minute of the
# machine then touches one repeat of many scenarios rather than every repeat of one).
run_repeats() {
    for REPEAT in $(seq "$1"); do
        echo "=== repeat $REPEAT of $1" >&2
        run_scenarios
    done
}

# with_server KIND NAME: starts ours (SQLite) or a peer; sets PROTO.
with_server() {
    case $1 in
        ours) start_ours "$2" "$(sqlite_url "$2")"; PROTO=ours ;;
        *) start_peer "$2" "$1"; PROTO=$1 ;;
    esac
}

# The servers in the order this repeat runs them: each repeat starts one further along (ours,
# socketio, ws; then socketio, ws, ours; then ws, ours, socketio), so over three repeats each
# server runs once first, once second and once last.
servers_in_turn() {
    local all=(ours "${PEERS[@]}") i
    for ((i = 0; i < ${#all[@]}; i++)); do echo "${all[$(((i + REPEAT - 1) % ${#all[@]}))]}"; done
}

run_scenarios() {
    local kind rate
    for kind in $(servers_in_turn); do
        echo "== idle: $kind" >&2
        with_server "$kind" "idle-$kind"
        bench idle --server "$kind" --proto "$PROTO" --url "$SERVER_URL" --server-pid "$SERVER_PID" --steps "$IDLE_STEPS"
        stop_servers
    done

    for kind in $(servers_in_turn); do
        for rate in $HOT_RATES; do
            echo "== hot post: $kind at $rate msg/s" >&2
            with_server "$kind" "hot-$kind-$rate"
            bench traffic --scenario hot --server "$kind" --proto "$PROTO" --url "$SERVER_URL" --server-pid "$SERVER_PID" \
                --rooms 1 --per-room "$HOT_MEMBERS" --senders-per-room "$HOT_SENDERS" --rate "$rate" \
                --warmup "$WARMUP" --duration "$DURATION"
            stop_servers
        done
    done

    # The same shape well below saturation: what a reader waits when the machine has room.
    for kind in $(servers_in_turn); do
        echo "== calm post: $kind" >&2
        with_server "$kind" "calm-$kind"
        bench traffic --scenario calm --server "$kind" --proto "$PROTO" --url "$SERVER_URL" --server-pid "$SERVER_PID" \
            --rooms 1 --per-room "$CALM_MEMBERS" --senders-per-room 10 --rate 10 --warmup "$WARMUP" --duration "$DURATION"
        stop_servers
    done

    for kind in $(servers_in_turn); do
        echo "== blog mix: $kind" >&2
        with_server "$kind" "mix-$kind"
        bench traffic --scenario mix --server "$kind" --proto "$PROTO" --url "$SERVER_URL" --server-pid "$SERVER_PID" \
            --rooms "$MIX_ROOMS" --per-room 5 --senders-per-room 5 --rate "$MIX_RATE" --warmup "$WARMUP" --duration "$DURATION"
        stop_servers
    done

    # A blog host: many posts with a reader or two each, a few of them chatting (a message per
    # chatting room per second). Memory per room and per socket, and the chatting rooms' latency.
    for kind in $(servers_in_turn); do
        echo "== blog network: $kind" >&2
        with_server "$kind" "network-$kind"
        bench traffic --scenario network --server "$kind" --proto "$PROTO" --url "$SERVER_URL" --server-pid "$SERVER_PID" \
            --rooms "$NETWORK_ROOMS" --per-room 2 --senders-per-room 1 --chatting-rooms "$NETWORK_CHATTING" \
            --rate "$NETWORK_CHATTING" --warmup "$WARMUP" --duration "$DURATION"
        stop_servers
    done

    for kind in $(servers_in_turn); do
        echo "== join storm: $kind" >&2
        with_server "$kind" "join-$kind"
        bench join --server "$kind" --proto "$PROTO" --url "$SERVER_URL" --server-pid "$SERVER_PID" \
            --rate "$JOIN_RATE" --history "$JOIN_HISTORY" --warmup "$WARMUP" --duration "$DURATION"
        stop_servers
    done

    # Durable writes: only the engine stores messages; the peers keep them in memory only.
    local store url
    for store in sqlite postgres; do
        for rate in $DURABLE_RATES; do
            echo "== durable writes: ours on $store at $rate msg/s" >&2
            if [ "$store" = sqlite ]; then url=$(sqlite_url "durable-$rate"); else new_postgres_db "durable_$rate"; url=$PG_URL; fi
            start_ours "durable-$store-$rate" "$url"
            bench traffic --scenario "durable-$store" --server ours --proto ours --url "$SERVER_URL" --server-pid "$SERVER_PID" \
                --rooms "$DURABLE_ROOMS" --per-room 2 --senders-per-room 1 --rate "$rate" --warmup "$WARMUP" --duration "$DURATION"
            stop_servers
            drop_databases
        done
    done

    # Three pods and Redis: ours on one Postgres database, Socket.IO with its Redis adapter.
    # Member j of a room joins pod j mod 3 and only member 0 (on pod 0) sends, so the figure
    # that counts is the cross-pod latency (readers on pods 1 and 2).
    local urls pids i
    for kind in ours socketio; do
        echo "== cross-pod: $kind" >&2
        start_redis
        urls=() pids=()
        new_postgres_db xpod
        url=$PG_URL
        for i in 0 1 2; do
            if [ "$kind" = ours ]; then
                start_ours "xpod-ours-$i" "$url" --redis-url "$REDIS_URL" --pod-name "pod-$i"
            else
                start_peer "xpod-socketio-$i" socketio "REDIS_URL=$REDIS_URL"
            fi
            urls+=(--url "$SERVER_URL") pids+=(--server-pid "$SERVER_PID")
        done
        bench traffic --scenario xpod --server "$kind" --proto "$kind" "${urls[@]}" "${pids[@]}" \
            --rooms "$XPOD_ROOMS" --per-room 6 --senders-per-room 1 --rate "$XPOD_RATE" --warmup "$WARMUP" --duration "$DURATION"
        stop_servers
        stop_redis
        drop_databases
    done

    # A blog network on Postgres: many rooms, every reader sending, for long enough that the
    # rooms' rings reach the pod's ring budget (smaller than the default so it happens within the
    # run). RSS must level off at about the budget plus the sockets; nothing may be lost.
    echo "== blog network soak: ours on postgres" >&2
    new_postgres_db soak
    start_ours soak "$PG_URL" --ring-memory "$SOAK_RING_MEMORY"
    bench traffic --scenario soak --server ours --proto ours --url "$SERVER_URL" --server-pid "$SERVER_PID" \
        --rooms "$SOAK_ROOMS" --per-room 5 --senders-per-room 5 --rate "$SOAK_RATE" --warmup "$WARMUP" --duration "$SOAK_DURATION"
    stop_servers
    drop_databases
}
