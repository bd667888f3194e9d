//! Tests of the harness itself: each server helper is proven against a real
//! client (OpenSSH's `ssh`, the `ssh2` crate, the `mysql` crate, `lettre`),
//! so a failing product test can be trusted to be about the product.

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use lettre::message::Mailbox;
use lettre::{Message, SmtpTransport, Transport};
use mysql::prelude::Queryable;

use crate::skip_or_fail;
use crate::support::mariadb::MariaDb;
use crate::support::smtp::Smtp;
use crate::support::sshd::{Sshd, Tarpit};
use crate::support::{Edgemon, temp_dir, wait_until};

const PATIENCE: Duration = Duration::from_secs(30);

/// Logs in with `ssh2` using `key`, runs `command`; (stdout, exit status).
fn ssh2_exec(sshd: &Sshd, key: &Path, command: &str) -> (Vec<u8>, i32, ssh2::Session) {
    let tcp = TcpStream::connect(("127.0.0.1", sshd.port())).expect("connect to sshd");
    let mut session = ssh2::Session::new().expect("new ssh2 session");
    session.set_timeout(30_000);
    session.set_tcp_stream(tcp);
    session.handshake().expect("ssh handshake");
    session
        .userauth_pubkey_file(sshd.user(), None, key, None)
        .expect("public key authentication");
    let mut channel = session.channel_session().expect("open a session channel");
    channel.exec(command).expect("exec");
    let mut out = Vec::new();
    channel.read_to_end(&mut out).expect("read stdout");
    channel.wait_close().expect("close the channel");
    let status = channel.exit_status().expect("exit status");
    (out, status, session)
}

/// The server's host key fingerprint as ssh2 sees it, in `ssh-keygen -l` form.
fn seen_fingerprint(session: &ssh2::Session) -> String {
    let hash = session
        .host_key_hash(ssh2::HashType::Sha256)
        .expect("a SHA-256 host key hash");
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(hash);
    format!("SHA256:{b64}")
}

#[test]
fn sshd_accepts_openssh_client_with_both_user_keys() {
    let sshd = skip_or_fail!(Sshd::start());
    let dir = temp_dir();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, sshd.known_hosts_line() + "\n").expect("write known_hosts");
    for key in [sshd.ed25519_key(), sshd.rsa_key()] {
        let out = Command::new("ssh")
            .arg("-i")
            .arg(key)
            .args(["-p", &sshd.port().to_string()])
            // Strict checking against our own line proves known_hosts_line().
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(["-o", "IdentitiesOnly=yes", "-F", "/dev/null"])
            .arg(format!("{}@127.0.0.1", sshd.user()))
            .arg("echo ok")
            .output()
            .expect("run ssh");
        assert!(
            out.status.success() && out.stdout == b"ok\n",
            "ssh with {} failed: {}\nstdout: {}\nstderr: {}\nsshd log:\n{}",
            key.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            sshd.log()
        );
    }
}

#[test]
fn sshd_accepts_ssh2_crate_and_reports_its_fingerprint() {
    let sshd = skip_or_fail!(Sshd::start());
    let (out, status, session) = ssh2_exec(&sshd, sshd.ed25519_key(), "echo ok");
    assert_eq!((out.as_slice(), status), (b"ok\n".as_slice(), 0));
    assert_eq!(seen_fingerprint(&session), sshd.host_key_fingerprint());
    let (out, _, _) = ssh2_exec(&sshd, sshd.rsa_key(), "echo rsa");
    assert_eq!(out, b"rsa\n");
}

#[test]
fn sshd_restart_with_new_host_key_keeps_port_changes_key() {
    let mut sshd = skip_or_fail!(Sshd::start());
    let (port, old) = (sshd.port(), sshd.host_key_fingerprint().to_string());
    sshd.restart_with_new_host_key().expect("restart sshd");
    assert_eq!(sshd.port(), port);
    assert_ne!(sshd.host_key_fingerprint(), old);
    let (out, _, session) = ssh2_exec(&sshd, sshd.ed25519_key(), "echo again");
    assert_eq!(out, b"again\n");
    assert_eq!(seen_fingerprint(&session), sshd.host_key_fingerprint());
}

#[test]
fn sshd_password_user_logs_in_with_password() {
    let sshd = skip_or_fail!(Sshd::with_password_user());
    let (user, password) = sshd.password_user().expect("a password user");
    let tcp = TcpStream::connect(("127.0.0.1", sshd.port())).expect("connect to sshd");
    let mut session = ssh2::Session::new().expect("new ssh2 session");
    session.set_timeout(30_000);
    session.set_tcp_stream(tcp);
    session.handshake().expect("ssh handshake");
    assert!(session.userauth_password(user, "wrong").is_err());
    session
        .userauth_password(user, password)
        .unwrap_or_else(|e| panic!("password login failed: {e}\nsshd log:\n{}", sshd.log()));
    let mut channel = session.channel_session().expect("open a channel");
    channel.exec("id -un").expect("exec");
    let mut out = String::new();
    channel.read_to_string(&mut out).expect("read stdout");
    assert_eq!(out.trim(), user);
}

#[test]
fn sshd_force_command_makes_a_hostile_host() {
    let garbage = skip_or_fail!(
        Sshd::builder()
            .force_command("head -c 4096 /dev/urandom")
            .start()
    );
    let (out, status, _) = ssh2_exec(&garbage, garbage.ed25519_key(), "echo ok");
    assert_eq!((out.len(), status), (4096, 0));

    let failing = skip_or_fail!(Sshd::builder().force_command("exit 3").start());
    let (out, status, _) = ssh2_exec(&failing, failing.ed25519_key(), "echo ok");
    assert_eq!((out.len(), status), (0, 3));
}

#[test]
fn tarpit_accepts_and_stays_silent() {
    let tarpit = Tarpit::start().expect("start the tarpit");
    let mut stream = TcpStream::connect(("127.0.0.1", tarpit.port())).expect("connect");
    assert!(wait_until(PATIENCE, || tarpit.accepted() == 1));
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("set a read timeout");
    let mut buf = [0u8; 16];
    let err = stream
        .read(&mut buf)
        .expect_err("the tarpit never sends a byte");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "unexpected error {err:?}"
    );
}

#[test]
fn mariadb_keeps_committed_row_across_kill9() {
    let mut db = skip_or_fail!(MariaDb::start());
    let mut conn = mysql::Conn::new(mysql::Opts::from_url(&db.url()).expect("parse url"))
        .expect("connect with url()");
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB")
        .expect("create table");
    conn.query_drop("INSERT INTO t VALUES (1, 'survives')")
        .expect("insert");
    drop(conn);

    db.kill9().expect("kill -9");
    assert!(!db.is_running());
    assert!(db.conn().is_err(), "a killed server still accepts logins");
    db.restart().expect("restart after kill -9");
    assert!(db.is_running());

    let v: Option<String> = db
        .conn()
        .expect("connect after restart")
        .query_first("SELECT v FROM t WHERE id = 1")
        .expect("select");
    assert_eq!(v.as_deref(), Some("survives"));
}

#[test]
fn mariadb_stop_restart_and_wrong_password() {
    let mut db = skip_or_fail!(MariaDb::start());
    let wrong = db.url().replace("edgemon:edgemon@", "edgemon:nope@");
    let opts = mysql::Opts::from_url(&wrong).expect("parse url");
    assert!(mysql::Conn::new(opts).is_err(), "wrong password accepted");
    let port = db.port();
    db.stop().expect("clean stop");
    assert!(!db.is_running());
    db.restart().expect("restart after stop");
    assert_eq!(db.port(), port);
    let one: Option<i64> = db
        .root_conn()
        .expect("root")
        .query_first("SELECT 1")
        .expect("select");
    assert_eq!(one, Some(1));
}

fn mail(to: &str, subject: &str) -> Message {
    Message::builder()
        .from(
            "edgemon <edgemon@example.test>"
                .parse::<Mailbox>()
                .expect("from"),
        )
        .to(to.parse::<Mailbox>().expect("to"))
        .subject(subject)
        .message_id(None)
        .body(String::from("disk full on host-1\n"))
        .expect("build a message")
}

#[test]
fn smtp_stores_mail_rejects_reject_recipients_and_restarts() {
    let mut smtp = skip_or_fail!(Smtp::start());
    let mailer = SmtpTransport::builder_dangerous("127.0.0.1")
        .port(smtp.port())
        .timeout(Some(PATIENCE))
        .build();

    mailer
        .send(&mail("ops@example.test", "first"))
        .expect("send");
    let got = smtp
        .wait_for_messages(1, PATIENCE)
        .expect("one message stored");
    assert_eq!(got[0].subject(), "first");
    assert_eq!(got[0].from(), "edgemon <edgemon@example.test>");
    assert_eq!(got[0].to(), "ops@example.test");
    assert!(
        got[0].message_id().starts_with('<'),
        "no Message-ID: {:?}",
        got[0]
    );
    assert_eq!(got[0].envelope_to, ["ops@example.test"]);
    assert!(got[0].body.contains("disk full on host-1"));

    let err = mailer
        .send(&mail("reject-me@example.test", "bounced"))
        .expect_err("a reject* recipient is refused");
    assert!(err.is_permanent(), "not a 5xx: {err:?}");

    smtp.stop().expect("stop");
    assert!(!smtp.is_running());
    assert!(mailer.send(&mail("ops@example.test", "lost")).is_err());

    smtp.start_again().expect("start again");
    mailer
        .send(&mail("ops@example.test", "second"))
        .expect("send after restart");
    let got = smtp
        .wait_for_messages(2, PATIENCE)
        .expect("two messages stored");
    let subjects: Vec<&str> = got.iter().map(|m| m.subject()).collect();
    assert_eq!(subjects, ["first", "second"]);
}

#[test]
fn edgemon_binary_runs_and_reports_failures() {
    let dir = temp_dir();
    let version = Edgemon::new(dir.path()).arg("--version").stdout();
    assert!(version.starts_with("edgemon "), "{version}");
    let out = Edgemon::new(dir.path())
        .arg("no-such-command")
        .assert_exit_code(2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-command"));
}

#[test]
fn missing_server_skips_unless_servers_are_required() {
    use crate::support::{Unavailable, require_servers, should_skip};
    use anyhow::Context as _;
    let missing: anyhow::Result<()> = Err(Unavailable("no sshd here".into()).into());
    let err = missing.context("starting sshd").expect_err("an error");
    assert_eq!(should_skip(&err), !require_servers());
    assert!(!should_skip(&anyhow::anyhow!("sshd exited during start")));
}
