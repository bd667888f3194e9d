#!/usr/bin/env bash
# SSH round benchmark: edgemon's collector vs parallel-ssh vs ansible, same
# loopback sshd, same host list, same parallelism, measured in the same run.
#
#   benches/ssh_round/run.sh [SIZES] [PARALLELISM] [ANSIBLE_SIZES]
#   e.g. benches/ssh_round/run.sh "100 300" 100 "100"
#
# Needs: /usr/sbin/sshd, parallel-ssh (Debian pssh), /usr/bin/time, and
# ansible in $ANSIBLE_VENV (default /tmp/ssh-bench-venv: python3 -m venv;
# pip install ansible-core). Uses CARGO_TARGET_DIR if set. Runs as root on
# 127.0.0.1 only. Prints a table; raw logs stay in $WORK (printed).
set -euo pipefail

SIZES=${1:-"100 300"}
PAR=${2:-100}
ANSIBLE_SIZES=${3:-"$SIZES"}
ROUNDS=${ROUNDS:-6}
ANSIBLE_VENV=${ANSIBLE_VENV:-/tmp/ssh-bench-venv}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/edgemon-ssh-bench.XXXXXX)
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
UseDNS no
LogLevel ERROR
CFG
/usr/sbin/sshd -f "$WORK/sshd_config" -E "$WORK/sshd.log"
for _ in $(seq 50); do nc -z 127.0.0.1 "$PORT" 2>/dev/null && break; sleep 0.1; done

(cd "$REPO" && cargo bench --bench ssh_round --no-run 2>&1 | tail -1)
BENCH=$(ls -t "${CARGO_TARGET_DIR:-$REPO/target}"/release/deps/ssh_round-* | grep -v '\.d$' | head -1)

# time -v fields: wall, user+sys CPU, peak RSS (MiB)
measure() { # name logfile -- command...
  local name=$1 log=$2; shift 3
  /usr/bin/time -v -o "$log.time" "$@" > "$log" 2>&1 || echo "  ($name exited $?)" >&2
  python3 - "$log.time" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def f(k):
    return re.search(re.escape(k) + r": (.*)", t).group(1).strip()
wall = f("Elapsed (wall clock) time (h:mm:ss or m:ss)")
parts = [float(p) for p in wall.split(":")]
secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
cpu = float(f("User time (seconds)")) + float(f("System time (seconds)"))
rss = int(f("Maximum resident set size (kbytes)")) / 1024
print(f"{secs:.2f} {cpu:.2f} {rss:.1f}")
PY
}

printf "\n%-6s %-34s %9s %9s %9s\n" hosts tool wall_s cpu_s rss_MiB
for N in $SIZES; do
  D="$WORK/n$N"; mkdir -p "$D"
  # edgemon config: N entries on the one sshd
  {
    echo "[appliance]"; echo "id = \"bench\""; echo "data_dir = \"$D/data\""
    echo "[collect]"; echo "concurrency = $PAR"
    echo "connect_timeout = \"60s\""; echo "auth_timeout = \"120s\""; echo "command_timeout = \"120s\""
    echo "agent_dir = \"$D/remote-agent\""
    echo "[defaults]"; echo "port = $PORT"; echo "user = \"root\""
    echo "identity_file = \"$WORK/id_ed25519\""
    echo "[sync]"; echo "url = \"mysql://nobody@127.0.0.1:1/none\""
    for i in $(seq -w 1 "$N"); do echo "[[hosts]]"; echo "name = \"h$i\""; echo "address = \"127.0.0.1\""; done
  } > "$D/edgemon.toml"
  for i in $(seq "$N"); do echo "127.0.0.1:$PORT"; done > "$D/pssh_hosts"
  { echo "[all]"; for i in $(seq -w 1 "$N"); do echo "h$i ansible_host=127.0.0.1 ansible_port=$PORT ansible_user=root ansible_python_interpreter=/usr/bin/python3"; done; } > "$D/inventory"

  read -r w c r < <(measure edgemon "$D/edgemon.log" -- "$BENCH" "$D/edgemon.toml" "$ROUNDS" --bench)
  first=$(sed -n 's/^round 1: wall \([0-9.]*\) s  cpu \([0-9.]*\) s  ok \(.*\)/\1 \2 \3/p' "$D/edgemon.log")
  steady=$(awk '/^round [2-9]/ {w+=$4; c+=$7; n++} END {if (n) printf "%.3f %.3f", w/n, c/n}' "$D/edgemon.log")
  printf "%-6s %-34s %9s %9s %9s\n" "$N" "edgemon process ($ROUNDS rounds)" "$w" "$c" "$r"
  printf "%-6s %-34s %9s %9s %9s\n" "$N" "edgemon round 1 (upload)" $(echo "$first" | cut -d' ' -f1,2) "" 
  printf "%-6s %-34s %9s %9s %9s\n" "$N" "edgemon steady round (mean 2..$ROUNDS)" $steady ""
  grep -E "^round|first error" "$D/edgemon.log" | sed 's/^/         /'

  read -r pw pc pr < <(measure pssh "$D/pssh.log" -- parallel-ssh -h "$D/pssh_hosts" -p "$PAR" -t 300 \
      -x "-i $WORK/id_ed25519 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR" -l root true)
  printf "%-6s %-34s %9s %9s %9s\n" "$N" "parallel-ssh -p $PAR true" "$pw" "$pc" "$pr"
  grep -c SUCCESS "$D/pssh.log" | sed 's/^/         pssh successes: /'

  aw=""; ac=""; ar=""
  if [[ " $ANSIBLE_SIZES " == *" $N "* ]] && [ -x "$ANSIBLE_VENV/bin/ansible" ]; then
    # No ControlMaster: every entry would otherwise share one multiplexed connection
    # (same address and port), which a real fleet of distinct hosts cannot.
    read -r aw ac ar < <(ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_PRIVATE_KEY_FILE="$WORK/id_ed25519" \
      ANSIBLE_SSH_ARGS="-o ControlMaster=no -o UserKnownHostsFile=/dev/null" \
      measure ansible "$D/ansible.log" -- "$ANSIBLE_VENV/bin/ansible" all -i "$D/inventory" -f "$PAR" -m command -a true)
    printf "%-6s %-34s %9s %9s %9s\n" "$N" "ansible -f $PAR -m command true" "$aw" "$ac" "$ar"
    grep -c "CHANGED\|SUCCESS" "$D/ansible.log" | sed 's/^/         ansible successes: /'
  fi
  python3 - "$N" "$first" "$steady" "$pw" "$pc" "$pr" "$aw" "$ac" "$r" <<'PY'
import sys
n, first, steady, pw, pc, pr, aw, ac, er = sys.argv[1:]
fw, fc = map(float, first.split()[:2]); sw, sc = map(float, steady.split())
pw, pc, pr, er = float(pw), float(pc), float(pr), float(er)
print(f"         ratios at {n}: pssh wall / edgemon first round = {pw/fw:.1f}x; pssh wall / edgemon steady round = {pw/sw:.1f}x")
print(f"                      pssh cpu(client) / edgemon steady cpu = {pc/max(sc,0.001):.1f}x; peak RSS edgemon {er:.1f} MiB vs pssh {pr:.1f} MiB")
if aw:
    aw, ac = float(aw), float(ac)
    print(f"                      ansible wall / edgemon first = {aw/fw:.1f}x, / steady = {aw/sw:.1f}x; ansible cpu / edgemon steady cpu = {ac/max(sc,0.001):.1f}x")
PY
done
