//! A throwaway OpenSSH server on 127.0.0.1, and a tarpit.
//!
//! [`Sshd`] generates its own host key and user keys (ed25519 and RSA) with
//! `ssh-keygen` in a temporary directory, writes an `sshd_config` there that
//! lets the current user (root in CI) log in with those keys, and runs
//! `/usr/sbin/sshd -D` on a free port until the guard drops. Builder options
//! make a "hostile host" (`ForceCommand`), enable passwords with a throwaway
//! Linux user, and [`Sshd::restart_with_new_host_key`] simulates a
//! reinstalled host. [`Tarpit`] accepts TCP connections and never speaks, for
//! connect and handshake timeouts. This module does not know edgemon's SSH
//! code; it only provides servers for it.

use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use tempfile::TempDir;

use super::{
    ChildGuard, Unavailable, current_user, greets_with, require_file, run_tool, with_free_port,
};

const SSHD: &str = "/usr/sbin/sshd";
const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";

/// Options for an [`Sshd`]; see [`Sshd::builder`].
#[derive(Debug, Clone, Default)]
pub struct SshdBuilder {
    force_command: Option<String>,
    password_auth: bool,
    password_user: bool,
    ipv6: bool,
    max_startups: Option<String>,
    extra: Vec<String>,
}

impl SshdBuilder {
    /// Every session runs `command` instead of what the client asked for,
    /// e.g. `head -c 4096 /dev/urandom`, `exit 3` or `sleep 3600`.
    pub fn force_command(mut self, command: &str) -> SshdBuilder {
        self.force_command = Some(command.to_string());
        self
    }

    /// Sets `PasswordAuthentication yes` (default no).
    pub fn password_auth(mut self, enabled: bool) -> SshdBuilder {
        self.password_auth = enabled;
        self
    }

    /// Enables passwords and creates a throwaway Linux user with a known
    /// password (needs root; otherwise start() is [`Unavailable`]).
    pub fn password_user(mut self) -> SshdBuilder {
        self.password_user = true;
        self.password_auth = true;
        self
    }

    /// `MaxStartups` as given (default here 1000; sshd's own default is `10:30:100`).
    pub fn max_startups(mut self, value: &str) -> SshdBuilder {
        self.max_startups = Some(value.to_string());
        self
    }

    /// Appends `line` to `sshd_config` (e.g. `VersionAddendum ...`).
    pub fn config_line(mut self, line: &str) -> SshdBuilder {
        self.extra.push(line.to_string());
        self
    }

    /// Also listens on `[::1]` (same port).
    pub fn ipv6(mut self) -> SshdBuilder {
        self.ipv6 = true;
        self
    }

    /// Generates keys, writes the config, starts sshd and waits for its
    /// `SSH-2.0` banner.
    pub fn start(self) -> Result<Sshd> {
        require_file(SSHD, "OpenSSH server")?;
        require_file(SSH_KEYGEN, "ssh-keygen")?;
        let password_user = if self.password_user {
            Some(LocalUser::with_password()?)
        } else {
            None
        };
        let dir = super::temp_dir();
        let path = dir.path();
        // sshd's privilege-separation directory; it refuses to start without it.
        std::fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
        let ed25519_key = path.join("id_ed25519");
        let rsa_key = path.join("id_rsa");
        keygen(&ed25519_key, &["-t", "ed25519"])?;
        keygen(&rsa_key, &["-t", "rsa", "-b", "2048"])?;
        let mut authorized = read_public(&ed25519_key)?;
        authorized.push_str(&read_public(&rsa_key)?);
        std::fs::write(path.join("authorized_keys"), authorized)
            .context("writing authorized_keys")?;
        let config = path.join("sshd_config");
        let mut sshd = Sshd {
            port: 0,
            user: current_user()?,
            ed25519_key,
            rsa_key,
            host_key_fingerprint: String::new(),
            host_public_key: String::new(),
            password_user,
            child: None,
            dir,
        };
        sshd.new_host_key()?;
        with_free_port(|port| {
            let dir = sshd.dir.path();
            let mut listen = vec![format!("127.0.0.1:{port}")];
            if self.ipv6 {
                listen.push(format!("[::1]:{port}"));
            }
            let text = self.config_text(
                &listen,
                &dir.join("host_ed25519"),
                &dir.join("authorized_keys"),
                &dir.join("sshd.pid"),
            );
            std::fs::write(&config, text)
                .with_context(|| format!("writing {}", config.display()))?;
            sshd.port = port;
            sshd.spawn()
        })?;
        Ok(sshd)
    }

    /// The `sshd_config` text: listening on each `address:port` of `listen`, with the given
    /// host key, authorized keys (for every user) and pid file.
    pub fn config_text(
        &self,
        listen: &[String],
        host_key: &Path,
        authorized_keys: &Path,
        pid_file: &Path,
    ) -> String {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let mut text = String::new();
        for address in listen {
            // Writing to a String cannot fail.
            let _ = writeln!(text, "ListenAddress {address}");
        }
        text += &format!(
            "HostKey {host_key}\n\
             PidFile {pid_file}\n\
             AuthorizedKeysFile {authorized_keys}\n\
             PermitRootLogin yes\n\
             StrictModes no\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication {pw}\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             MaxStartups {max_startups}\n\
             MaxSessions 100\n\
             MaxAuthTries 10\n\
             LoginGraceTime 60\n\
             UseDNS no\n\
             PrintMotd no\n\
             LogLevel VERBOSE\n\
             Subsystem sftp internal-sftp\n",
            host_key = host_key.display(),
            pid_file = pid_file.display(),
            authorized_keys = authorized_keys.display(),
            pw = yes_no(self.password_auth),
            max_startups = self.max_startups.as_deref().unwrap_or("1000"),
        );
        if let Some(command) = &self.force_command {
            // Writing to a String cannot fail.
            let _ = writeln!(text, "ForceCommand {command}");
        }
        for line in &self.extra {
            // Writing to a String cannot fail.
            let _ = writeln!(text, "{line}");
        }
        text
    }
}

/// A running sshd on 127.0.0.1; killed on drop (and its test user deleted).
#[derive(Debug)]
pub struct Sshd {
    port: u16,
    user: String,
    ed25519_key: PathBuf,
    rsa_key: PathBuf,
    host_key_fingerprint: String,
    host_public_key: String,
    password_user: Option<LocalUser>,
    child: Option<ChildGuard>,
    // Last, so the server is killed before its files go.
    dir: TempDir,
}

impl Sshd {
    /// An sshd with key authentication only and no forced command.
    pub fn start() -> Result<Sshd> {
        SshdBuilder::default().start()
    }

    /// Options for a non-default sshd.
    pub fn builder() -> SshdBuilder {
        SshdBuilder::default()
    }

    /// An sshd that also accepts [`Sshd::password_user`]'s password.
    pub fn with_password_user() -> Result<Sshd> {
        SshdBuilder::default().password_user().start()
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user the keys log in as (the current user, from `id -un`).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The ed25519 user private key (public key next to it, `.pub`).
    pub fn ed25519_key(&self) -> &Path {
        &self.ed25519_key
    }

    /// The RSA user private key (OpenSSH format; public key at `.pub`).
    pub fn rsa_key(&self) -> &Path {
        &self.rsa_key
    }

    /// The host key's fingerprint as `ssh-keygen -lf` prints it:
    /// `SHA256:` and unpadded base64.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.host_key_fingerprint
    }

    /// The host public key as `ssh-ed25519 AAAA...` (no comment).
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// A known_hosts line for this server: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_public_key)
    }

    /// `(user, password)` of the throwaway password user, if one was made.
    pub fn password_user(&self) -> Option<(&str, &str)> {
        self.password_user
            .as_ref()
            .map(|u| (u.name.as_str(), u.password.as_str()))
    }

    /// The server's temporary directory (config, keys, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Stops sshd, replaces its host key with a fresh one and starts it
    /// again on the same port; waits for the banner.
    pub fn restart_with_new_host_key(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
        }
        self.new_host_key()?;
        self.spawn()
    }

    fn new_host_key(&mut self) -> Result<()> {
        let key = HostKey::generate(&self.dir.path().join("host_ed25519"))?;
        self.host_public_key = key.public;
        self.host_key_fingerprint = key.fingerprint;
        Ok(())
    }

    fn spawn(&mut self) -> Result<()> {
        let dir = self.dir.path();
        let log = dir.join("sshd.log");
        let mut cmd = Command::new(SSHD);
        cmd.arg("-D")
            .arg("-E")
            .arg(&log)
            .arg("-f")
            .arg(dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = ChildGuard::spawn("sshd", &mut cmd)?;
        let port = self.port;
        child
            .wait_ready(&log, || greets_with(port, "SSH-2.0"))
            .with_context(|| format!("starting sshd on 127.0.0.1:{port}"))?;
        self.child = Some(child);
        Ok(())
    }
}

/// A freshly generated ed25519 host key.
#[derive(Debug, Clone)]
pub struct HostKey {
    /// `ssh-ed25519 AAAA...` (no comment).
    pub public: String,
    /// `SHA256:...` as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
}

impl HostKey {
    /// Replaces `path` (and `path.pub`) with a new ed25519 key.
    pub fn generate(path: &Path) -> Result<HostKey> {
        for old in [path.to_path_buf(), path.with_extension("pub")] {
            if old.exists() {
                std::fs::remove_file(&old)
                    .with_context(|| format!("removing {}", old.display()))?;
            }
        }
        keygen(path, &["-t", "ed25519"])?;
        let public = read_public(path)?
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let listing = run_tool(
            Command::new(SSH_KEYGEN)
                .arg("-lf")
                .arg(path.with_extension("pub")),
        )?;
        let fingerprint = String::from_utf8_lossy(&listing.stdout)
            .split_whitespace()
            .nth(1)
            .context("ssh-keygen -lf printed no fingerprint")?
            .to_string();
        Ok(HostKey {
            public,
            fingerprint,
        })
    }
}

/// Runs `ssh-keygen` quietly with an empty passphrase, writing `path` and
/// `path.pub`.
pub fn keygen(path: &Path, kind: &[&str]) -> Result<()> {
    run_tool(
        Command::new(SSH_KEYGEN)
            .args(["-q", "-N", "", "-C", "edgemon-test"])
            .args(kind)
            .arg("-f")
            .arg(path),
    )
    .with_context(|| format!("generating key {}", path.display()))?;
    Ok(())
}

/// The `.pub` file next to `private`.
pub fn read_public(private: &Path) -> Result<String> {
    let path = private.with_extension("pub");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// A throwaway Linux user `edgemon-test-<pid>-<n>` (or `<prefix>-<pid>-<n>`), deleted on
/// drop. Created with useradd (and chpasswd for a password), so it needs root.
#[derive(Debug)]
pub struct LocalUser {
    name: String,
    password: String,
    uid: u32,
    gid: u32,
}

/// useradd and userdel lock /etc/passwd; concurrent tests take turns.
static USER_DB: Mutex<()> = Mutex::new(());
static NEXT_USER: AtomicUsize = AtomicUsize::new(0);

impl LocalUser {
    /// A user with a known password and `/tmp` as its home (for password logins).
    fn with_password() -> Result<LocalUser> {
        let n = NEXT_USER.fetch_add(1, Ordering::Relaxed);
        let password = format!("pw-{}-{n}-Secret", std::process::id());
        Self::create("edgemon-test", Path::new("/tmp"), Some(&password))
    }

    /// A user `<prefix>-<pid>-<n>` whose home is `home` (which the caller creates, owns and
    /// removes); no password, but not locked, so key logins work with `UsePAM no`.
    pub fn create(prefix: &str, home: &Path, password: Option<&str>) -> Result<LocalUser> {
        if !super::is_root() {
            return Err(Unavailable("a local user needs root (useradd)".into()).into());
        }
        require_file("/usr/sbin/useradd", "useradd")?;
        require_file("/usr/sbin/chpasswd", "chpasswd")?;
        let n = NEXT_USER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        {
            let _lock = USER_DB
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // "*" rather than useradd's locked "!": sshd without PAM refuses locked accounts.
            run_tool(
                Command::new("/usr/sbin/useradd")
                    .args(["-M", "-p", "*", "-s", "/bin/sh", "-d"])
                    .arg(home)
                    .arg(&name),
            )
            .with_context(|| format!("creating user {name}"))?;
        }
        // From here on, dropping `user` deletes it (and takes the lock itself).
        let mut user = LocalUser {
            name,
            password: password.unwrap_or_default().to_string(),
            uid: 0,
            gid: 0,
        };
        user.uid = numeric_id("-u", &user.name)?;
        user.gid = numeric_id("-g", &user.name)?;
        if let Some(password) = password {
            let mut chpasswd = Command::new("/usr/sbin/chpasswd")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("spawning chpasswd")?;
            if let Some(mut stdin) = chpasswd.stdin.take() {
                use std::io::Write;
                writeln!(stdin, "{}:{password}", user.name).context("writing to chpasswd")?;
            }
            let out = chpasswd
                .wait_with_output()
                .context("waiting for chpasswd")?;
            anyhow::ensure!(
                out.status.success(),
                "chpasswd for {} failed: {}",
                user.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(user)
    }

    /// The login name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The numeric user id.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The numeric primary group id.
    pub fn gid(&self) -> u32 {
        self.gid
    }
}

/// `id FLAG NAME` as a number.
fn numeric_id(flag: &str, name: &str) -> Result<u32> {
    let out = run_tool(Command::new("id").arg(flag).arg(name))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| format!("id {flag} {name}"))
}

impl Drop for LocalUser {
    fn drop(&mut self) {
        let _lock = USER_DB
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = Command::new("/usr/sbin/userdel")
            .arg(&self.name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A TCP listener on 127.0.0.1 that accepts connections and never sends or
/// reads a byte, holding them open until dropped.
#[derive(Debug)]
pub struct Tarpit {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Tarpit {
    /// Binds a free port and starts accepting.
    pub fn start() -> Result<Tarpit> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the tarpit")?;
        let port = listener.local_addr().context("tarpit address")?.port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        held.push(stream);
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        };
        Ok(Tarpit {
            port,
            accepted,
            stop,
            thread: Some(thread),
        })
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections have been accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Tarpit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag and exits,
        // closing every held connection.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
