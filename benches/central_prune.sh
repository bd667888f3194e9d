#!/bin/sh
# Central retention, side by side in one run on one throwaway MariaDB: `edgemon central prune`
# (batched deletes along the primary keys) against one `DELETE ... WHERE received_at < cutoff`
# transaction by the mariadb client, on identical copies of the same rows. Each repetition
# loads both copies afresh (HOSTS x SAMPLES samples a minute apart, CORES per-core values each,
# the older half before the cutoff), then prunes copy A with edgemon and copy B with the client,
# alternating which goes first. While each prune runs, a probe session inserts one sample a
# 100 ms into the same table (as an appliance's sync would) and the slowest insert is reported:
# what a live writer feels.
#
#   cargo build --release && benches/central_prune.sh [REPS] [HOSTS] [SAMPLES] [CORES]
#
# Prints one line per repetition and side, then the medians. Needs mariadbd, mariadb-install-db
# and mariadb (Debian: mariadb-server, mariadb-client). Leaves nothing running.
set -eu
REPS=${1:-3}
HOSTS=${2:-50}
SAMPLES=${3:-4000}
CORES=${4:-8}
BIN=${EDGEMON:-target/release/edgemon}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 2; }
DIR=$(mktemp -d /tmp/edgemon-prune-bench.XXXXXX)
PORT=$(( 20000 + $$ % 20000 ))
AS_ROOT=; [ "$(id -u)" = 0 ] && AS_ROOT=--user=root
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
mariadb-install-db --no-defaults $AS_ROOT --datadir="$DIR/data" --auth-root-authentication-method=normal \
    --skip-test-db >/dev/null 2>&1
mkdir -p "$DIR/tmp"
mariadbd --no-defaults $AS_ROOT --datadir="$DIR/data" --tmpdir="$DIR/tmp" --socket="$DIR/sock" --port="$PORT" \
    --bind-address=127.0.0.1 --innodb-buffer-pool-size=512M --innodb-log-file-size=256M \
    --innodb-flush-log-at-trx-commit=1 --skip-log-bin --log-error="$DIR/err.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do
    mariadb --no-defaults -S "$DIR/sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.2
done
sql() { mariadb --no-defaults -S "$DIR/sock" -uroot -N -B "$@"; }
sql -e "CREATE DATABASE a; CREATE DATABASE b; CREATE USER e@'%' IDENTIFIED BY 'e';
        GRANT ALL ON a.* TO e@'%'; GRANT ALL ON b.* TO e@'%';"
for db in a b; do
    touch "$DIR/$db.toml"; chmod 600 "$DIR/$db.toml"
    cat > "$DIR/$db.toml" <<EOF
[appliance]
id = "bench"
data_dir = "$DIR/data-$db"
[[hosts]]
name = "localhost"
transport = "local"
[sync]
url = "mysql://e:e@127.0.0.1:$PORT/$db"
timeout = "10m"
EOF
    # The central schema as edgemon applies it (an empty prune creates it).
    "$BIN" central prune -c "$DIR/$db.toml" --older-than 36500d >/dev/null 2>&1
done

# Received times: the older half of each host's samples, then a day without samples, then the
# newer half, ending an hour ago; the cutoff falls in the middle of that day, so the minutes
# between loading a copy and pruning it change nothing.
AGE_MIN=$(( SAMPLES / 2 + 60 + 720 ))
load() {
    sql "$1" -e "
      SET time_zone = '+00:00';
      DELETE FROM sample_cores; DELETE FROM samples; DELETE FROM watermarks; DELETE FROM prune_horizons;
      INSERT IGNORE INTO appliances (id, name) VALUES (1, 'bench');
      INSERT IGNORE INTO buffers (appliance_id, epoch) VALUES (1, 1);
      INSERT IGNORE INTO hosts (id, appliance_id, name, address)
        SELECT seq, 1, CONCAT('host-', seq), 'h:22' FROM seq_1_to_$((HOSTS + 1));
      INSERT INTO samples (appliance_id, epoch, host_id, seq, collected_at, received_at, cpu, mem_used,
                           mem_total, swap_used, swap_total, uptime_s, hostname, checksum)
        SELECT 1, 1, h.seq, s.seq, z.t0 + INTERVAL s.seq + IF(s.seq > $SAMPLES / 2, 1440, 0) MINUTE,
               z.t0 + INTERVAL s.seq + IF(s.seq > $SAMPLES / 2, 1440, 0) MINUTE, 12.5,
               1000000, 8000000000, 0, 2000000000, s.seq, 'node', s.seq
          FROM seq_1_to_$HOSTS h JOIN seq_1_to_$SAMPLES s
          JOIN (SELECT UTC_TIMESTAMP(3) - INTERVAL 1 HOUR - INTERVAL $SAMPLES MINUTE - INTERVAL 1 DAY AS t0) z;
      INSERT INTO sample_cores (appliance_id, epoch, host_id, seq, core, cpu)
        SELECT 1, 1, s.host_id, s.seq, c.seq - 1, 50 FROM samples s JOIN seq_1_to_$CORES c;
      INSERT INTO watermarks (appliance_id, epoch, host_id, first_seq, last_seq, stored_last_seq, samples_stored)
        SELECT 1, 1, seq, 1, $SAMPLES, $SAMPLES, $SAMPLES FROM seq_1_to_$HOSTS;"
}
# One insert a 100 ms into $1's samples (host HOSTS+1, its own seq range) until told to stop;
# prints the slowest in ms.
probe() {
    db=$1; stop=$2; n=0; worst=0
    while [ ! -e "$stop" ]; do
        n=$((n + 1))
        t=$(sql "$db" -e "SET @t = NOW(6);
          INSERT INTO samples (appliance_id, epoch, host_id, seq, collected_at, received_at, cpu, mem_used,
                               mem_total, swap_used, swap_total, uptime_s)
            VALUES (1, 1, $((HOSTS + 1)), $n + $(date +%s%N | cut -c1-13), UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), 1, 1, 1, 0, 0, 1);
          SELECT ROUND(TIMESTAMPDIFF(MICROSECOND, @t, NOW(6)) / 1000);")
        [ "$t" -gt "$worst" ] && worst=$t
        sleep 0.1
    done
    echo "$worst"
}
now_ms() { date +%s%3N; }
run_edgemon() {
    rm -f "$DIR/stop"; probe a "$DIR/stop" > "$DIR/probe" & p=$!
    t0=$(now_ms)
    out=$("$BIN" central prune -c "$DIR/a.toml" --older-than "${AGE_MIN}m")
    t1=$(now_ms); touch "$DIR/stop"; wait $p
    longest=$(echo "$out" | sed -n 's/.*the longest \([0-9]*\) ms.*/\1/p')
    rows=$(echo "$out" | sed -n 's/^samples: \([0-9]*\) (per-core values: \([0-9]*\)).*/\1 + \2/p')
    echo "edgemon rep=$1 wall_ms=$(( t1 - t0 )) longest_tx_ms=$longest slowest_insert_ms=$(cat "$DIR/probe") rows=$(( $rows ))"
}
run_client() {
    rm -f "$DIR/stop"; probe b "$DIR/stop" > "$DIR/probe" & p=$!
    t0=$(now_ms)
    sql b -e "SET time_zone = '+00:00';
      SET @cut = UTC_TIMESTAMP(3) - INTERVAL $AGE_MIN MINUTE;
      START TRANSACTION;
      DELETE c FROM sample_cores c JOIN samples s
        ON s.appliance_id = c.appliance_id AND s.epoch = c.epoch AND s.host_id = c.host_id AND s.seq = c.seq
       WHERE s.received_at < @cut;
      DELETE FROM samples WHERE received_at < @cut;
      COMMIT;"
    t1=$(now_ms); touch "$DIR/stop"; wait $p
    echo "client rep=$1 wall_ms=$(( t1 - t0 )) longest_tx_ms=$(( t1 - t0 )) slowest_insert_ms=$(cat "$DIR/probe")"
}
echo "# $HOSTS hosts x $SAMPLES samples x (1 + $CORES cores) per copy; the older half pruned"
for rep in $(seq 1 "$REPS"); do
    load a; load b
    if [ $((rep % 2)) -eq 1 ]; then run_edgemon "$rep"; run_client "$rep"; else run_client "$rep"; run_edgemon "$rep"; fi
    sql a -e "SELECT CONCAT('check: copy a keeps ', COUNT(*), ' samples') FROM samples WHERE host_id <= $HOSTS"
    sql b -e "SELECT CONCAT('check: copy b keeps ', COUNT(*), ' samples') FROM samples WHERE host_id <= $HOSTS"
done 2>&1 | tee "$DIR/out"
med() { grep "^$1 " "$DIR/out" | sed -n "s/.* $2=\([0-9]*\).*/\1/p" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for f in wall_ms longest_tx_ms slowest_insert_ms; do
    echo "median $f: edgemon $(med edgemon $f), client $(med client $f)"
done
