//! Test hosts in network namespaces: a [`Site`] of [`NetnsHost`]s, each a
//! small "machine" with its own network stack, its own sshd, its own tmpfs
//! `/tmp` and its own home for the login user, reached from the root
//! namespace over a veth pair.
//!
//! Addresses come only from 198.18.0.0/15 (the benchmarking range): each host
//! gets a /30, `.1` on the root-side end, `.2` on the host's `eth0`; IPv6 is
//! off on both ends so no link-local address appears. /30s are allocated under
//! a lock file by looking at what the root namespace already uses, and every
//! name carries the test process's pid, so concurrent runs never clash.
//!
//! The host's sshd (keys and config from [`super::sshd`]) runs under
//! `ip netns exec NS unshare -m`: in that mount namespace a fresh tmpfs is
//! mounted on `/tmp` and the host's own directory on the login user's home.
//! [`NetnsHost::cut`] drops every packet on `eth0` inside the namespace with
//! nftables (silent: no RST, no ICMP), [`NetnsHost::heal`] removes the rule,
//! [`NetnsHost::reboot`] kills every process in the namespace (`ip netns pids`)
//! and boots again: fresh `/tmp`, same host key, same home.
//! [`NetnsHost::change_host_key`] reboots with a new key and
//! [`NetnsHost::mount_tmp_noexec`] remounts `/tmp` noexec. Latency and loss
//! use `tc netem` where the kernel has it; otherwise loss is an nftables
//! `numgen random` drop on `eth0` and latency a small relay inside the
//! namespace that holds each chunk for half the delay in each direction
//! (`port()` is then the relay's).
//!
//! The site creates two throwaway local accounts (removed on drop): the login
//! user, whose home is private on every host, and a second account for tests
//! that plant files. Drop removes every process, the veth, the namespace
//! (with it the mounts) and the files. Needs root, iproute2 and nftables;
//! without them `start` is [`Unavailable`].

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::sshd::{HostKey, LocalUser, SshdBuilder, keygen};
use super::{
    ChildGuard, START_TIMEOUT, Unavailable, greets_at, require_file, run_tool, wait_until,
};

const IP: &str = "/usr/sbin/ip";
const NFT: &str = "/usr/sbin/nft";
const SSHD: &str = "/usr/sbin/sshd";
const UNSHARE: &str = "/usr/bin/unshare";
const NSENTER: &str = "/usr/bin/nsenter";
const SETPRIV: &str = "/usr/bin/setpriv";
const PYTHON: &str = "/usr/bin/python3";

/// Serialises /30 allocation between concurrent test processes.
const ALLOC_LOCK: &str = "/run/edgemon-test-netns.lock";

/// Port of the delay relay when netem is missing.
const RELAY_PORT: u16 = 2222;

static NEXT_HOST: AtomicUsize = AtomicUsize::new(0);

/// /30 slots used behind bastions by this process (not visible in the root namespace).
static BEHIND_SLOTS: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

/// `ip route add blackhole 198.18.0.0/15` in the root namespace while it lives, so that an
/// address behind a bastion can never leave the machine by the default route. The route's
/// metric is this process's own, so concurrent runs add and remove their own routes; rigs of
/// one process share it (counted, removed with the last).
#[derive(Debug)]
pub struct Blackhole {
    metric: String,
}

static BLACKHOLES: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

impl Blackhole {
    /// Adds the route (once per process).
    pub fn add() -> Result<Blackhole> {
        let metric = (1_000_000 + std::process::id() % 1_000_000).to_string();
        let mut count = BLACKHOLES.lock().unwrap_or_else(|p| p.into_inner());
        if *count == 0 {
            run_tool(Command::new(IP).args([
                "route",
                "add",
                "blackhole",
                "198.18.0.0/15",
                "metric",
                &metric,
            ]))?;
        }
        *count += 1;
        Ok(Blackhole { metric })
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let mut count = BLACKHOLES.lock().unwrap_or_else(|p| p.into_inner());
        *count = count.saturating_sub(1);
        if *count == 0 {
            let _ = Command::new(IP)
                .args([
                    "route",
                    "del",
                    "blackhole",
                    "198.18.0.0/15",
                    "metric",
                    &self.metric,
                ])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The relay used for latency when the kernel has no netem: holds every chunk for the given
/// delay before passing it on, in both directions, keeping order.
const RELAY_PY: &str = r#"
import asyncio, sys, time
listen, port, target, tport, delay = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
async def pipe(reader, writer):
    queue = asyncio.Queue()
    async def pump():
        while True:
            data = await reader.read(65536)
            await queue.put((time.monotonic() + delay, data))
            if not data:
                return
    async def send():
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if not data:
                try:
                    writer.write_eof()
                except OSError:
                    pass
                return
            writer.write(data)
            await writer.drain()
    await asyncio.gather(pump(), send())
async def handle(r1, w1):
    try:
        r2, w2 = await asyncio.open_connection(target, tport)
    except OSError:
        w1.close()
        return
    try:
        await asyncio.gather(pipe(r1, w2), pipe(r2, w1))
    except Exception:
        pass
    finally:
        w1.close()
        w2.close()
async def main():
    server = await asyncio.start_server(handle, listen, port)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"#;

/// What a site's hosts share: the accounts, the user key, the base directory.
#[derive(Debug)]
struct SiteInner {
    login: LocalUser,
    other: LocalUser,
    key: PathBuf,
    authorized_keys: PathBuf,
    markers: PathBuf,
    // Last: removed after the accounts.
    base: tempfile::TempDir,
}

impl SiteInner {
    fn login_home(&self) -> PathBuf {
        self.base.path().join("home").join("login")
    }
}

/// A set of namespace hosts sharing a login account and key; see the module doc.
#[derive(Debug, Clone)]
pub struct Site {
    inner: Arc<SiteInner>,
}

/// Network conditions of a host: one-way latency and packet loss.
#[derive(Debug, Clone, Copy, Default)]
pub struct Conditions {
    /// Added delay (round trip, split between directions for the relay).
    pub latency: Option<Duration>,
    /// Loss in percent, 0-100, applied to each direction.
    pub loss_percent: u32,
}

impl Site {
    /// Creates the accounts, the user key and the base directory (under /var/tmp, so a host's
    /// tmpfs `/tmp` does not hide it).
    pub fn start() -> Result<Site> {
        if !super::is_root() {
            return Err(Unavailable("namespace hosts need root (ip netns)".into()).into());
        }
        for (path, what) in [
            (IP, "iproute2"),
            (NFT, "nftables"),
            (SSHD, "OpenSSH server"),
            (UNSHARE, "util-linux unshare"),
            (NSENTER, "util-linux nsenter"),
            (SETPRIV, "util-linux setpriv"),
        ] {
            require_file(path, what)?;
        }
        let base = tempfile::Builder::new()
            .prefix("edgemon-site-")
            .tempdir_in("/var/tmp")
            .context("creating the site directory in /var/tmp")?;
        // The accounts must reach their homes and the authorized keys.
        chmod(base.path(), 0o755)?;
        let home = base.path().join("home");
        std::fs::create_dir(&home).context("creating the homes directory")?;
        chmod(&home, 0o755)?;
        let markers = base.path().join("markers");
        std::fs::create_dir(&markers).context("creating the markers directory")?;
        chmod(&markers, 0o1777)?;
        let login_home = home.join("login");
        let other_home = home.join("other");
        let login = LocalUser::create("emsite", &login_home, None)?;
        let other = LocalUser::create("emother", &other_home, None)?;
        for (dir, user) in [(&login_home, &login), (&other_home, &other)] {
            std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
            chown(dir, user)?;
            chmod(dir, 0o700)?;
        }
        let key = base.path().join("id_ed25519");
        keygen(&key, &["-t", "ed25519"])?;
        let authorized_keys = base.path().join("authorized_keys");
        std::fs::copy(key.with_extension("pub"), &authorized_keys)
            .context("writing authorized_keys")?;
        chmod(&authorized_keys, 0o644)?;
        std::fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
        Ok(Site {
            inner: Arc::new(SiteInner {
                login,
                other,
                key,
                authorized_keys,
                markers,
                base,
            }),
        })
    }

    /// A new host on a fresh /30, booted (sshd answering).
    pub fn host(&self, conditions: Conditions) -> Result<NetnsHost> {
        NetnsHost::create(self.inner.clone(), conditions, None)
    }

    /// A new host reachable only through `bastion`: the near end of its veth is a second
    /// interface in the bastion's namespace, so the root namespace has no route to it.
    pub fn host_behind(&self, bastion: &NetnsHost) -> Result<NetnsHost> {
        NetnsHost::create(
            self.inner.clone(),
            Conditions::default(),
            Some(bastion.ns.clone()),
        )
    }

    /// The login account's name.
    pub fn user(&self) -> &str {
        self.inner.login.name()
    }

    /// The private key that logs in as [`Site::user`] on every host.
    pub fn key(&self) -> &Path {
        &self.inner.key
    }

    /// The second local account (for planting files).
    pub fn other_user(&self) -> &LocalUser {
        &self.inner.other
    }

    /// The login account's home path (each host mounts its own directory there).
    pub fn login_home(&self) -> PathBuf {
        self.inner.login_home()
    }

    /// A world-writable directory outside every host's `/tmp`, for marker files.
    pub fn markers(&self) -> &Path {
        &self.inner.markers
    }
}

/// One namespace host; everything it started goes on drop.
#[derive(Debug)]
pub struct NetnsHost {
    site: Arc<SiteInner>,
    ns: String,
    veth: String,
    address: Ipv4Addr,
    dir: PathBuf,
    host_key: HostKey,
    conditions: Conditions,
    netem: bool,
    noexec: bool,
    sshd: Option<ChildGuard>,
    relay: Option<ChildGuard>,
    /// The namespace holding the near end of the veth (`None`: the root namespace).
    parent: Option<String>,
}

impl NetnsHost {
    fn create(
        site: Arc<SiteInner>,
        conditions: Conditions,
        parent: Option<String>,
    ) -> Result<NetnsHost> {
        let n = NEXT_HOST.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let dir = site.base.path().join(format!("host{n}"));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        chmod(&dir, 0o755)?;
        let home = dir.join("home");
        std::fs::create_dir(&home).context("creating the host's home")?;
        chown(&home, &site.login)?;
        chmod(&home, 0o700)?;
        let host_key = HostKey::generate(&dir.join("host_ed25519"))?;
        let ns = format!("em{pid}-{n}");
        let veth = format!("emr{pid}x{n}");
        run_tool(Command::new(IP).args(["netns", "add", &ns]))
            .map_err(|e| Unavailable(format!("cannot create network namespace {ns}: {e:#}")))?;
        // From here on, Drop cleans up whatever exists.
        let mut host = NetnsHost {
            site,
            ns,
            veth,
            address: Ipv4Addr::UNSPECIFIED,
            dir,
            host_key,
            conditions,
            netem: false,
            noexec: false,
            sshd: None,
            relay: None,
            parent,
        };
        host.wire()?;
        host.shape()?;
        host.boot()?;
        Ok(host)
    }

    /// The veth pair and its /30, allocated under the lock; the near end in the root namespace
    /// or, behind a bastion, in the bastion's.
    fn wire(&mut self) -> Result<()> {
        run_tool(Command::new(IP).args([
            "link", "add", &self.veth, "type", "veth", "peer", "name", "eth0", "netns", &self.ns,
        ]))?;
        if let Some(parent) = &self.parent {
            run_tool(Command::new(IP).args(["link", "set", &self.veth, "netns", parent]))?;
        }
        // No IPv6, so no link-local address on either end.
        self.near(&[
            "sh",
            "-c",
            &format!(
                "echo 1 > /proc/sys/net/ipv6/conf/{}/disable_ipv6 2>/dev/null; true",
                self.veth
            ),
        ])?;
        self.in_ns(&[
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6 2>/dev/null; true",
        ])?;
        let lock = File::create(ALLOC_LOCK).with_context(|| format!("creating {ALLOC_LOCK}"))?;
        lock.lock()
            .with_context(|| format!("locking {ALLOC_LOCK}"))?;
        let used = used_slots()?;
        let mut behind = BEHIND_SLOTS.lock().unwrap_or_else(|p| p.into_inner());
        let start = (std::process::id() as usize * 64 + NEXT_HOST.load(Ordering::Relaxed)) % SLOTS;
        let slot = (0..SLOTS)
            .map(|i| (start + i) % SLOTS)
            .find(|s| !used.contains(s) && !behind.contains(s))
            .context("no free /30 left in 198.18.0.0/15")?;
        let (root, host) = slot_addresses(slot);
        self.near(&[
            "ip",
            "addr",
            "add",
            &format!("{root}/30"),
            "dev",
            &self.veth,
        ])?;
        if self.parent.is_some() {
            // Invisible to `used_slots` (not in the root namespace): remember it here.
            behind.push(slot);
        }
        drop(behind);
        drop(lock);
        self.address = host;
        self.near(&["ip", "link", "set", &self.veth, "up"])?;
        self.in_ns(&["ip", "addr", "add", &format!("{host}/30"), "dev", "eth0"])?;
        self.in_ns(&["ip", "link", "set", "eth0", "up"])?;
        self.in_ns(&["ip", "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Runs a command where the near end of the veth lives.
    fn near(&self, args: &[&str]) -> Result<Output> {
        match &self.parent {
            Some(parent) => run_tool(Command::new(IP).args(["netns", "exec", parent]).args(args)),
            None => run_tool(Command::new(args[0]).args(&args[1..])),
        }
    }

    /// Latency and loss: netem if the kernel has it, else nftables loss (and the relay, started
    /// at boot, for latency).
    fn shape(&mut self) -> Result<()> {
        let Conditions {
            latency,
            loss_percent,
        } = self.conditions;
        if latency.is_none() && loss_percent == 0 {
            return Ok(());
        }
        let mut netem = vec!["tc", "qdisc", "add", "dev", "eth0", "root", "netem"];
        let delay = latency.map(|d| format!("{}ms", d.as_millis()));
        let loss = format!("{loss_percent}%");
        if let Some(delay) = &delay {
            netem.extend(["delay", delay]);
        }
        if loss_percent > 0 {
            netem.extend(["loss", &loss]);
        }
        if self.in_ns(&netem).is_ok() {
            self.netem = true;
            return Ok(());
        }
        if loss_percent > 0 {
            let rules = format!(
                "table inet emloss {{\n\
                   chain i {{ type filter hook input priority -5; iifname \"eth0\" numgen random mod 100 < {loss_percent} drop; }}\n\
                   chain o {{ type filter hook output priority -5; oifname \"eth0\" numgen random mod 100 < {loss_percent} drop; }}\n\
                 }}\n"
            );
            self.nft(&rules)?;
        }
        Ok(())
    }

    /// Starts sshd (and the relay) in a fresh mount namespace; waits for the banner.
    fn boot(&mut self) -> Result<()> {
        let config = self.dir.join("sshd_config");
        let text = SshdBuilder::default().config_text(
            &[format!("{}:22", self.address), "127.0.0.1:22".to_string()],
            &self.dir.join("host_ed25519"),
            &self.site.authorized_keys,
            &self.dir.join("sshd.pid"),
        );
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let log = self.dir.join("sshd.log");
        let tmp_options = if self.noexec {
            "mode=1777,noexec,nosuid,nodev"
        } else {
            "mode=1777"
        };
        let script = format!(
            "mount -t tmpfs -o {tmp_options} tmpfs /tmp && mount --bind '{home}' '{login_home}' \
             && exec {SSHD} -D -E '{log}' -f '{config}'",
            home = self.dir.join("home").display(),
            login_home = self.site.login_home().display(),
            log = log.display(),
            config = config.display(),
        );
        let mut cmd = Command::new(IP);
        cmd.args([
            "netns",
            "exec",
            &self.ns,
            UNSHARE,
            "-m",
            "--propagation",
            "private",
        ])
        .args(["/bin/sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let booted_before = std::fs::read_to_string(&log)
            .map(|text| {
                text.matches(&format!("Server listening on {} port 22.", self.address))
                    .count()
            })
            .unwrap_or(0);
        let mut sshd = ChildGuard::spawn("namespace sshd", &mut cmd)?;
        let address = SocketAddr::from((self.address, 22));
        // Behind a bastion the root namespace has no route to it: sshd's log says when it
        // listens.
        let listening = format!("Server listening on {} port 22.", self.address);
        let behind = self.parent.is_some();
        let count = |log: &Path| {
            std::fs::read_to_string(log)
                .map(|text| text.matches(&listening).count())
                .unwrap_or(0)
        };
        sshd.wait_ready(&log, || {
            if behind {
                count(&log) > booted_before
            } else {
                greets_at(address, "SSH-2.0")
            }
        })
        .with_context(|| format!("starting sshd in {} on {address}", self.ns))?;
        self.sshd = Some(sshd);
        if let (Some(latency), false) = (self.conditions.latency, self.netem) {
            require_file(PYTHON, "python3")?;
            let half = latency.as_secs_f64() / 2.0;
            let mut cmd = Command::new(IP);
            cmd.args(["netns", "exec", &self.ns, PYTHON, "-c", RELAY_PY])
                .args([&self.address.to_string(), &RELAY_PORT.to_string()])
                .args(["127.0.0.1", "22", &half.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut relay = ChildGuard::spawn("delay relay", &mut cmd)?;
            let address = SocketAddr::from((self.address, RELAY_PORT));
            relay
                .wait_ready(&log, || greets_at(address, "SSH-2.0"))
                .with_context(|| format!("starting the delay relay on {address}"))?;
            self.relay = Some(relay);
        }
        Ok(())
    }

    /// Kills every process in the namespace and reaps the ones this guard started.
    fn kill_all(&mut self) -> Result<()> {
        let gone = wait_until(START_TIMEOUT, || {
            let pids = self.pids();
            for pid in &pids {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
            pids.is_empty()
        });
        for guard in [self.sshd.take(), self.relay.take()].into_iter().flatten() {
            let mut guard = guard;
            guard.kill()?;
        }
        if !gone {
            bail!(
                "processes in {} survived SIGKILL: {:?}",
                self.ns,
                self.pids()
            );
        }
        Ok(())
    }

    fn pids(&self) -> Vec<u32> {
        Command::new(IP)
            .args(["netns", "pids", &self.ns])
            .output()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn in_ns(&self, args: &[&str]) -> Result<Output> {
        run_tool(
            Command::new(IP)
                .args(["netns", "exec", &self.ns])
                .args(args),
        )
    }

    fn nft(&self, rules: &str) -> Result<()> {
        let file = self.dir.join("rules.nft");
        std::fs::write(&file, rules).context("writing nftables rules")?;
        self.in_ns(&[NFT, "-f", &file.display().to_string()])?;
        Ok(())
    }

    /// The host's address, 198.18.x.y.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// The SSH port to connect to (22, or the delay relay's).
    pub fn port(&self) -> u16 {
        if self.relay.is_some() { RELAY_PORT } else { 22 }
    }

    /// The network namespace's name.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// The current host key's fingerprint (`SHA256:...`).
    pub fn host_key_fingerprint(&self) -> &str {
        &self.host_key.fingerprint
    }

    /// The root-namespace path of this host's home for the login user (bind-mounted at
    /// [`Site::login_home`] inside the host).
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// Drops every packet on the host's `eth0`, both ways, silently (no RST, no ICMP).
    pub fn cut(&self) -> Result<()> {
        self.nft(
            "table inet emcut {\n\
               chain i { type filter hook input priority -10; iifname \"eth0\" drop; }\n\
               chain o { type filter hook output priority -10; oifname \"eth0\" drop; }\n\
             }\n",
        )
    }

    /// Undoes [`NetnsHost::cut`].
    pub fn heal(&self) -> Result<()> {
        self.in_ns(&[NFT, "delete", "table", "inet", "emcut"])?;
        Ok(())
    }

    /// Kills every process in the namespace and boots again: fresh `/tmp`, same host key,
    /// same home; returns once sshd answers.
    pub fn reboot(&mut self) -> Result<()> {
        self.kill_all()?;
        self.boot()
    }

    /// Kills every process in the namespace (sshd and its sessions): the host is down.
    pub fn stop(&mut self) -> Result<()> {
        self.kill_all()
    }

    /// Boots a stopped host again (same key, same home); returns once sshd answers.
    pub fn start(&mut self) -> Result<()> {
        self.boot()
    }

    /// Established TCP connections to this host's sshd (port 22), as `ss` counts them inside
    /// the namespace.
    pub fn ssh_connections(&self) -> Result<usize> {
        let out = self.in_ns(&["ss", "-Htn", "state", "established", "( sport = :22 )"])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count())
    }

    /// A reinstall: a new host key, then a reboot.
    pub fn change_host_key(&mut self) -> Result<()> {
        self.host_key = HostKey::generate(&self.dir.join("host_ed25519"))?;
        self.reboot()
    }

    /// Remounts the host's `/tmp` noexec (and keeps it so across reboots).
    pub fn mount_tmp_noexec(&mut self) -> Result<()> {
        self.noexec = true;
        let pid = self.sshd.as_ref().context("the host is not running")?.pid();
        run_tool(
            Command::new(NSENTER)
                .args(["-t", &pid.to_string(), "-m"])
                .args(["mount", "-o", "remount,noexec,nosuid,nodev", "/tmp"]),
        )?;
        Ok(())
    }

    /// Runs `script` with `/bin/sh` inside the host (its network and mounts) as `user`, or as
    /// root when `None`.
    pub fn run_as(&self, user: Option<&LocalUser>, script: &str) -> Result<Output> {
        let pid = self.sshd.as_ref().context("the host is not running")?.pid();
        let mut cmd = Command::new(NSENTER);
        cmd.args(["-t", &pid.to_string(), "-m", "-n"]);
        if let Some(user) = user {
            cmd.arg(SETPRIV)
                .arg(format!("--reuid={}", user.uid()))
                .arg(format!("--regid={}", user.gid()))
                .arg("--clear-groups");
        }
        cmd.args(["/bin/sh", "-c", script]);
        run_tool(&mut cmd)
    }
}

impl Drop for NetnsHost {
    fn drop(&mut self) {
        let _ = self.kill_all();
        let _ = self.near(&["ip", "link", "del", &self.veth]);
        if let Some(slot) = self.address_slot() {
            BEHIND_SLOTS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|s| *s != slot);
        }
        let _ = Command::new(IP)
            .args(["netns", "del", &self.ns])
            .stderr(Stdio::null())
            .status();
    }
}

impl NetnsHost {
    /// The /30 slot of this host's address, if it has one.
    fn address_slot(&self) -> Option<usize> {
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
        let a = u32::from(self.address);
        (a >= base && self.parent.is_some()).then(|| ((a - base) / 4) as usize)
    }
}

/// /30 blocks in 198.18.0.0/15.
const SLOTS: usize = 1 << 15;

/// The root-side and host-side addresses of /30 number `slot`.
fn slot_addresses(slot: usize) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (slot as u32) * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// The /30 slots of 198.18.0.0/15 that addresses in the root namespace already fall in.
fn used_slots() -> Result<Vec<usize>> {
    let out = run_tool(Command::new(IP).args(["-o", "-4", "addr", "show"]))?;
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|word| word.split('/').next()?.parse::<Ipv4Addr>().ok())
        .map(u32::from)
        .filter(|a| (base..base + (SLOTS as u32) * 4).contains(a))
        .map(|a| ((a - base) / 4) as usize)
        .collect())
}

fn chmod(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

fn chown(path: &Path, user: &LocalUser) -> Result<()> {
    std::os::unix::fs::chown(path, Some(user.uid()), Some(user.gid()))
        .with_context(|| format!("chown {} {}", user.name(), path.display()))
}
