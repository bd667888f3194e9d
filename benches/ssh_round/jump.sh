#!/usr/bin/env bash
# Jump-host benchmark (issue 21): N hosts collected directly against the same N behind one
# bastion, edgemon's collector in one process each, same loopback sshd as bastion and as every
# target, same parallelism, same run; then parallel-ssh with ProxyJump on the same targets.
#
#   benches/ssh_round/jump.sh [N] [PARALLELISM] [ROUNDS]     e.g. benches/ssh_round/jump.sh 300 100 6
#
# Needs /usr/sbin/sshd, parallel-ssh (Debian pssh), /usr/bin/time. Runs as root on 127.0.0.1
# only. Uses CARGO_TARGET_DIR if set; BENCH=<ssh_round binary> skips the build. Prints a
# table; raw logs stay in $WORK (printed).
set -euo pipefail

N=${1:-300}
PAR=${2:-100}
ROUNDS=${3:-6}
HANDSHAKES=${HANDSHAKES:-8}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/edgemon-jump-bench.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

cleanup() { [ -f "$WORK/sshd.pid" ] && kill "$(cat "$WORK/sshd.pid")" 2>/dev/null || true; }
trap cleanup EXIT

echo "work dir: $WORK"
ssh-keygen -q -N "" -t ed25519 -f "$WORK/host_ed25519"
ssh-keygen -q -N "" -t ed25519 -f "$WORK/id_ed25519"
cp "$WORK/id_ed25519.pub" "$WORK/authorized_keys"
mkdir -p /run/sshd
cat > "$WORK/sshd_config" <<CFG
ListenAddress 127.0.0.1
Port $PORT
HostKey $WORK/host_ed25519
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
PermitRootLogin yes
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
MaxStartups 2000
MaxSessions 100
AllowTcpForwarding yes
UseDNS no
LogLevel ERROR
CFG
/usr/sbin/sshd -f "$WORK/sshd_config" -E "$WORK/sshd.log"
for _ in $(seq 50); do nc -z 127.0.0.1 "$PORT" 2>/dev/null && break; sleep 0.1; done

if [ -z "${BENCH:-}" ]; then
  (cd "$REPO" && cargo bench --bench ssh_round --no-run 2>&1 | tail -1)
  BENCH=$(ls -t "${CARGO_TARGET_DIR:-$REPO/target}"/release/deps/ssh_round-* | grep -v '\.d$' | head -1)
fi

config() { # dir via?
  local d=$1 via=$2
  mkdir -p "$d"
  {
    echo "[appliance]"; echo "id = \"bench\""; echo "data_dir = \"$d/data\""
    echo "[collect]"; echo "concurrency = $PAR"
    echo "connect_timeout = \"60s\""; echo "auth_timeout = \"120s\""; echo "command_timeout = \"120s\""
    echo "agent_dir = \"$d/remote-agent\""
    echo "[defaults]"; echo "port = $PORT"; echo "user = \"root\""
    echo "identity_file = \"$WORK/id_ed25519\""
    [ "$via" = via ] && echo "via = \"lo-jump\""
    echo "[sync]"; echo "url = \"mysql://nobody@127.0.0.1:1/none\""
    if [ "$via" = via ]; then
      echo "[[bastions]]"; echo "name = \"lo-jump\""; echo "address = \"127.0.0.1\""
      echo "handshakes = $HANDSHAKES"
    fi
    for i in $(seq -w 1 "$N"); do echo "[[hosts]]"; echo "name = \"h$i\""; echo "address = \"127.0.0.1\""; done
  } > "$d/edgemon.toml"
}

measure() { # logfile -- command...
  local log=$1; shift 2
  /usr/bin/time -v -o "$log.time" "$@" > "$log" 2>&1 || echo "  (exited $?)" >&2
  python3 - "$log.time" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def f(k):
    return re.search(re.escape(k) + r": (.*)", t).group(1).strip()
parts = [float(p) for p in f("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
cpu = float(f("User time (seconds)")) + float(f("System time (seconds)"))
print(f"{secs:.2f} {cpu:.2f}")
PY
}

median() { python3 -c 'import sys, statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.3f}")' "$@"; }

printf "\n%-34s %10s %10s %8s %6s\n" "run ($N hosts, concurrency $PAR)" wall_s cpu_s bastions tcp
for mode in direct via; do
  D="$WORK/$mode"; config "$D" "$mode"
  measure "$D/edgemon.log" -- "$BENCH" "$D/edgemon.toml" "$ROUNDS" --bench > /dev/null
  grep -E "^round|first error" "$D/edgemon.log" | sed 's/^/   /'
  read -r fw fc fb ft < <(sed -n 's/^round 1: wall \([0-9.]*\) s  cpu \([0-9.]*\) s.*bastions \([0-9]*\)  tcp \([0-9]*\)/\1 \2 \3 \4/p' "$D/edgemon.log")
  sw=$(median $(awk '/^round [2-9]/ {print $4}' "$D/edgemon.log"))
  sc=$(median $(awk '/^round [2-9]/ {print $7}' "$D/edgemon.log"))
  st=$(awk '/^round [2-9]/ {t=$NF} END {print t}' "$D/edgemon.log")
  sb=$(awk '/^round [2-9]/ {b=$(NF-2)} END {print b}' "$D/edgemon.log")
  printf "%-34s %10s %10s %8s %6s\n" "edgemon $mode round 1" "$fw" "$fc" "$fb" "$ft"
  printf "%-34s %10s %10s %8s %6s\n" "edgemon $mode steady (median 2..$ROUNDS)" "$sw" "$sc" "$sb" "$st"
  echo "$fw $fc $sw $sc" > "$D/summary"
done

cat > "$WORK/ssh_config" <<CFG
Host *
  IdentityFile $WORK/id_ed25519
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
CFG
for i in $(seq "$N"); do echo "127.0.0.1:$PORT"; done > "$WORK/pssh_hosts"
read -r pw pc < <(measure "$WORK/pssh.log" -- parallel-ssh -h "$WORK/pssh_hosts" -p "$PAR" -t 300 \
  -x "-F $WORK/ssh_config -o ProxyJump=root@localhost:$PORT" -l root true)
printf "%-34s %10s %10s %8s %6s\n" "parallel-ssh -O ProxyJump (1 run)" "$pw" "$pc" "$N" "$N"
grep -c SUCCESS "$WORK/pssh.log" | sed 's/^/   pssh successes: /'

python3 - "$WORK/direct/summary" "$WORK/via/summary" "$pw" <<'PY'
import sys
d = list(map(float, open(sys.argv[1]).read().split()))
v = list(map(float, open(sys.argv[2]).read().split()))
pw = float(sys.argv[3])
print(f"\nratios: via/direct first round wall {v[0]/d[0]:.2f}x, cpu {v[1]/max(d[1],0.001):.2f}x; "
      f"steady wall {v[2]/d[2]:.2f}x, cpu {v[3]/max(d[3],0.001):.2f}x (done-when: steady wall <= 2x)")
print(f"        parallel-ssh with ProxyJump / edgemon via steady = {pw/v[2]:.1f}x wall; / edgemon via first = {pw/v[0]:.1f}x")
PY
