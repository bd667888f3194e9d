#!/usr/bin/env bash
# Fleet-scale SSH round benchmark (issue 14): 1000 host entries spread over
# several loopback sshd processes, edgemon's real collector against
# parallel-ssh on the same entries, in the same run, repeated; prints each
# repetition and the medians.
#
#   benches/ssh_round/fleet.sh [ENTRIES] [SSHDS] [PARALLELISM] [REPEATS]
#   e.g. benches/ssh_round/fleet.sh 1000 8 100 3      (the defaults)
#
# Per repetition, with a fresh data dir and agent dir (so round 1 pins host
# keys, uploads the agent once per sshd and starts a resident agent per
# entry): the `ssh_round` bench runs ROUNDS (default 6) rounds in one
# process and reports per round wall and its own CPU (/proc/self/stat), and
# its peak RSS (VmHWM); rounds 2..ROUNDS are the steady state. The key
# pairs a round uses are made after the previous round (`keys N:` lines),
# counted into steady_total_cpu_ms_host. Then (or
# before, alternating) `parallel-ssh -p PARALLELISM ... true` on the same
# entries under /usr/bin/time -v. Entry i goes to sshd (i mod SSHDS), so no
# single sshd's MaxStartups or MaxSessions is the measure.
#
# Both tools log in as a throwaway system user whose shell is /bin/sh with
# no rc files (created here, removed on exit): root's ~/.bashrc on this
# machine runs `pyenv init`, which would make every exec cost far more than
# SSH itself. Needs root, /usr/sbin/sshd, parallel-ssh (Debian pssh),
# /usr/bin/time, useradd. Uses CARGO_TARGET_DIR if set. Loopback only. Raw
# logs stay in $WORK (printed). BENCH=path skips the release build; PSSH=0
# runs edgemon only (for experiments).
set -euo pipefail

N=${1:-1000}
K=${2:-8}
PAR=${3:-100}
REPS=${4:-3}
ROUNDS=${ROUNDS:-6}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/edgemon-fleet-bench.XXXXXX)
chmod 755 "$WORK"
BUSER=emfleet$$
HOMEDIR=$WORK/home

for tool in /usr/sbin/sshd parallel-ssh /usr/bin/time useradd; do
  command -v "$tool" >/dev/null || { echo "fleet.sh: $tool is missing" >&2; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "fleet.sh: run as root (it creates a throwaway user)" >&2; exit 1; }

cleanup() {
  for pid in "$WORK"/sshd*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null; done
  # Resident agents end on EOF when their session closes (or after their idle timeout).
  sleep 1
  userdel -f "$BUSER" 2>/dev/null || true
  rm -rf "$HOMEDIR"
}
trap cleanup EXIT

useradd --system --no-user-group --gid nogroup --home-dir "$HOMEDIR" --create-home \
  --shell /bin/sh --password "*" "$BUSER"   # "*": no password, but not a locked account (sshd refuses those)
rm -f "$HOMEDIR"/.bashrc "$HOMEDIR"/.profile "$HOMEDIR"/.bash_logout
echo "work dir: $WORK   user: $BUSER   $N entries over $K sshds, parallelism $PAR, $REPS repetitions"

ssh-keygen -q -N "" -t ed25519 -f "$WORK/id_ed25519"
cp "$WORK/id_ed25519.pub" "$WORK/authorized_keys"
chmod 644 "$WORK/authorized_keys"
mkdir -p /run/sshd
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORTS=()
for s in $(seq 0 $((K - 1))); do
  port=$(free_port)
  PORTS+=("$port")
  ssh-keygen -q -N "" -t ed25519 -f "$WORK/host$s"
  cat > "$WORK/sshd$s.config" <<CFG
ListenAddress 127.0.0.1
Port $port
HostKey $WORK/host$s
PidFile $WORK/sshd$s.pid
AuthorizedKeysFile $WORK/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
MaxStartups 2000
MaxSessions 100
UseDNS no
LogLevel ERROR
CFG
  /usr/sbin/sshd -f "$WORK/sshd$s.config" -E "$WORK/sshd$s.log"
done
for port in "${PORTS[@]}"; do
  for _ in $(seq 50); do nc -z 127.0.0.1 "$port" 2>/dev/null && break; sleep 0.1; done
done

# BENCH=path uses an already built ssh_round binary (e.g. a debug one, to try the script).
if [[ -z ${BENCH:-} ]]; then
  (cd "$REPO" && cargo bench --bench ssh_round --no-run 2>&1 | tail -1)
  BENCH=$(ls -t "${CARGO_TARGET_DIR:-$REPO/target}"/release/deps/ssh_round-* | grep -v '\.d$' | head -1)
fi

for i in $(seq 0 $((N - 1))); do echo "127.0.0.1:${PORTS[$((i % K))]}"; done > "$WORK/pssh_hosts"

run_edgemon() { # rep
  local d="$WORK/r$1"
  mkdir -p "$d"
  {
    echo "[appliance]"; echo "id = \"fleet\""; echo "data_dir = \"$d/data\""
    echo "[collect]"; echo "concurrency = $PAR"
    echo "connect_timeout = \"60s\""; echo "auth_timeout = \"120s\""; echo "command_timeout = \"120s\""
    echo "agent_dir = \"$HOMEDIR/agent-r$1\""
    echo "[defaults]"; echo "user = \"$BUSER\""; echo "identity_file = \"$WORK/id_ed25519\""
    echo "[sync]"; echo "url = \"mysql://nobody@127.0.0.1:1/none\""
    for i in $(seq 0 $((N - 1))); do
      printf '[[hosts]]\nname = "h%04d"\naddress = "127.0.0.1"\nport = %s\n' "$i" "${PORTS[$((i % K))]}"
    done
  } > "$d/edgemon.toml"
  /usr/bin/time -v -o "$d/edgemon.time" "$BENCH" "$d/edgemon.toml" "$ROUNDS" --bench > "$d/edgemon.log" 2>&1 \
    || echo "  (edgemon bench exited $?)" >&2
  grep -E "^round|first error|peak RSS" "$d/edgemon.log" | sed 's/^/    /'
}

run_pssh() { # rep
  local d="$WORK/r$1"
  mkdir -p "$d"
  /usr/bin/time -v -o "$d/pssh.time" parallel-ssh -h "$WORK/pssh_hosts" -p "$PAR" -t 300 -l "$BUSER" \
    -x "-i $WORK/id_ed25519 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR" \
    true > "$d/pssh.log" 2>&1 || echo "  (parallel-ssh exited $?)" >&2
  echo "    parallel-ssh: $(grep -c SUCCESS "$d/pssh.log") successes, $(grep 'Elapsed' "$d/pssh.time" | sed 's/.*: //') wall"
}

for rep in $(seq 1 "$REPS"); do
  echo "repetition $rep (load average $(cut -d' ' -f1 /proc/loadavg))"
  # Alternate the order, so neither tool always meets a warmer or busier machine.
  if [[ ${PSSH:-1} == 0 ]]; then run_edgemon "$rep"; continue; fi
  if (( rep % 2 )); then run_edgemon "$rep"; run_pssh "$rep"; else run_pssh "$rep"; run_edgemon "$rep"; fi
done
[[ ${PSSH:-1} == 0 ]] && exit 0   # experiments only: no comparison, no table

python3 - "$WORK" "$N" "$REPS" "$ROUNDS" "$K" "$PAR" <<'PY'
import re, statistics, sys
work, n, reps, rounds, k, par = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
def timev(path):
    t = open(path).read()
    f = lambda key: re.search(re.escape(key) + r": (.*)", t).group(1).strip()
    parts = [float(p) for p in f("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
    wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    cpu = float(f("User time (seconds)")) + float(f("System time (seconds)"))
    return wall, cpu, int(f("Maximum resident set size (kbytes)")) / 1024
rows = []
for r in range(1, reps + 1):
    log = open(f"{work}/r{r}/edgemon.log").read()
    rounds_ = [(float(w), float(c), int(ok)) for w, c, ok in
               re.findall(r"^round \d+: wall ([0-9.]+) s  cpu ([0-9.]+) s  ok (\d+)/", log, re.M)]
    rss = int(re.search(r"peak RSS: (\d+) KiB", log).group(1)) / 1024
    # Key pairs made after round i (between rounds) serve round i+1.
    keygen = [float(c) for c in re.findall(r"^keys \d+: wall [0-9.]+ s  cpu ([0-9.]+) s", log, re.M)]
    keygen += [0.0] * (len(rounds_) - len(keygen))
    first, steady = rounds_[0], rounds_[1:]
    pw, pc, _ = timev(f"{work}/r{r}/pssh.time")
    pok = open(f"{work}/r{r}/pssh.log").read().count("SUCCESS")
    rows.append(dict(
        first_wall=first[0], first_cpu_ms_host=first[1] / n * 1000, first_ok=first[2],
        steady_wall=statistics.median(w for w, _, _ in steady),
        steady_cpu_ms_host=statistics.median(c for _, c, _ in steady) / n * 1000,
        steady_keys_cpu_ms_host=statistics.median(keygen[:len(steady)]) / n * 1000,
        steady_total_cpu_ms_host=statistics.median(c + kc for (_, c, _), kc in zip(steady, keygen)) / n * 1000,
        steady_ok=min(ok for _, _, ok in steady), rss=rss, pssh_wall=pw, pssh_cpu_ms_host=pc / n * 1000, pssh_ok=pok))
    rows[-1]["pssh_over_first"] = pw / first[0]
keys = ["first_wall", "first_ok", "first_cpu_ms_host", "steady_wall", "steady_ok", "steady_cpu_ms_host",
        "steady_keys_cpu_ms_host", "steady_total_cpu_ms_host", "rss",
        "pssh_wall", "pssh_ok", "pssh_cpu_ms_host", "pssh_over_first"]
print(f"\n{n} entries, {k} sshds, parallelism {par}; steady = median of rounds 2..{rounds} within a repetition")
print("%-22s" % "measure" + "".join("%12s" % f"rep {i + 1}" for i in range(reps)) + "%12s" % "median")
for key in keys:
    vals = [row[key] for row in rows]
    print("%-22s" % key + "".join("%12.3f" % v for v in vals) + "%12.3f" % statistics.median(vals))
m = lambda key: statistics.median(row[key] for row in rows)
print(f"\ntargets: steady wall {m('steady_wall'):.3f} s (<= 1.5), steady CPU {m('steady_cpu_ms_host'):.3f} ms/host"
      f" + keys between rounds {m('steady_keys_cpu_ms_host'):.3f} = {m('steady_total_cpu_ms_host'):.3f} (<= 2),"
      f" peak RSS {m('rss'):.1f} MiB (<= 128), parallel-ssh wall / edgemon round 1 = {m('pssh_over_first'):.2f}x (>= 1)")
PY
