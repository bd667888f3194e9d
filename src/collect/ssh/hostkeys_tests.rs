use super::*;

/// A syntactically valid ed25519 public key blob with `fill` as its key bytes.
fn blob(fill: u8) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&11u32.to_be_bytes());
    b.extend_from_slice(b"ssh-ed25519");
    b.extend_from_slice(&32u32.to_be_bytes());
    b.extend_from_slice(&[fill; 32]);
    b
}

fn known_line(host: &str, fill: u8) -> String {
    format!("{host} ssh-ed25519 {}\n", STANDARD.encode(blob(fill)))
}

fn store(dir: &tempfile::TempDir, seed: Option<&str>) -> HostKeyStore {
    let seed = seed.map(|text| {
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, text).unwrap();
        path
    });
    HostKeyStore::new(dir.path().join("host-keys"), seed)
}

const HOST: &str = "[127.0.0.1]:2222";

#[test]
fn accept_new_pins_first_key_and_refuses_a_changed_one_naming_both_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    let keys = store(&dir, None);
    assert_eq!(
        keys.verify("web1", HOST, &blob(1), HostKeyPolicy::AcceptNew)
            .unwrap(),
        Verdict::PinnedNew
    );
    assert_eq!(
        keys.verify("web1", HOST, &blob(1), HostKeyPolicy::AcceptNew)
            .unwrap(),
        Verdict::Known
    );
    let err = keys
        .verify("web1", HOST, &blob(2), HostKeyPolicy::AcceptNew)
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HostKeyError::Changed { .. }), "{text}");
    assert!(text.contains(&fingerprint(&blob(1))), "{text}");
    assert!(text.contains(&fingerprint(&blob(2))), "{text}");
    assert!(text.contains("edgemon hosts trust web1"), "{text}");
}

#[test]
fn strict_refuses_an_unknown_key_and_pins_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let keys = store(&dir, None);
    let err = keys
        .verify("web1", HOST, &blob(1), HostKeyPolicy::Strict)
        .unwrap_err();
    assert!(matches!(err, HostKeyError::Unknown { .. }), "{err}");
    assert_eq!(keys.export().unwrap(), "");
}

#[test]
fn strict_accepts_and_pins_a_key_seeded_from_known_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let keys = store(&dir, Some(&known_line("other,[127.0.0.1]:2222", 7)));
    assert_eq!(
        keys.verify("web1", HOST, &blob(7), HostKeyPolicy::Strict)
            .unwrap(),
        Verdict::PinnedFromSeed
    );
    assert!(keys.export().unwrap().contains(HOST));
    let err = keys
        .verify("web1", HOST, &blob(8), HostKeyPolicy::AcceptNew)
        .unwrap_err();
    assert!(matches!(err, HostKeyError::Changed { .. }), "{err}");
}

#[test]
fn a_seeded_host_presenting_another_key_is_changed_even_under_accept_new() {
    let dir = tempfile::tempdir().unwrap();
    let keys = store(&dir, Some(&known_line("[127.0.0.*]:2222", 7)));
    let err = keys
        .verify("web1", HOST, &blob(8), HostKeyPolicy::AcceptNew)
        .unwrap_err();
    assert!(matches!(err, HostKeyError::Changed { .. }), "{err}");
}

#[test]
fn revoked_keys_in_the_seed_or_the_store_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let seed = format!("@revoked * ssh-ed25519 {}\n", STANDARD.encode(blob(3)));
    let keys = store(&dir, Some(&seed));
    let err = keys
        .verify("web1", HOST, &blob(3), HostKeyPolicy::AcceptNew)
        .unwrap_err();
    assert!(matches!(err, HostKeyError::Revoked { .. }), "{err}");

    // An operator revokes a pinned key by editing the store.
    keys.verify("web2", "[10.0.0.2]:22", &blob(4), HostKeyPolicy::AcceptNew)
        .unwrap();
    let mut text = std::fs::read_to_string(keys.path()).unwrap();
    text.push_str(&format!(
        "@revoked * ssh-ed25519 {}\n",
        STANDARD.encode(blob(4))
    ));
    std::fs::write(keys.path(), text).unwrap();
    // Force a reload even on a coarse-mtime file system.
    keys.lock().mtime = None;
    let err = keys
        .verify("web2", "[10.0.0.2]:22", &blob(4), HostKeyPolicy::AcceptNew)
        .unwrap_err();
    assert!(matches!(err, HostKeyError::Revoked { .. }), "{err}");
    assert!(keys.trust("[10.0.0.2]:22", &blob(4)).is_err());
}

#[test]
fn trust_replaces_the_pin_and_survives_a_new_store_instance() {
    let dir = tempfile::tempdir().unwrap();
    let keys = store(&dir, None);
    keys.verify("web1", HOST, &blob(1), HostKeyPolicy::AcceptNew)
        .unwrap();
    keys.trust(HOST, &blob(2)).unwrap();
    let again = store(&dir, None);
    assert_eq!(
        again
            .verify("web1", HOST, &blob(2), HostKeyPolicy::Strict)
            .unwrap(),
        Verdict::Known
    );
    assert!(
        again
            .verify("web1", HOST, &blob(1), HostKeyPolicy::Strict)
            .is_err()
    );
    let exported = again.export().unwrap();
    assert_eq!(exported.lines().count(), 1, "{exported}");
    assert_eq!(exported, known_line(HOST, 2));
}

#[test]
fn patterns_follow_openssh_rules() {
    assert!(host_matches("a,[127.0.0.1]:2222", "[127.0.0.1]:2222"));
    assert!(host_matches("*.example.com", "db.EXAMPLE.com"));
    assert!(!host_matches(
        "*.example.com,!db.example.com",
        "db.example.com"
    ));
    assert!(host_matches("10.0.0.?", "10.0.0.7"));
    assert!(!host_matches("10.0.0.?", "10.0.0.17"));
    assert_eq!(known_hosts_name("h", 22), "h");
    assert_eq!(known_hosts_name("h", 2222), "[h]:2222");
}

#[test]
fn fingerprints_match_ssh_keygen_format() {
    // ssh-keygen -lf prints SHA256: + unpadded base64 (43 characters for 32 bytes).
    let fp = fingerprint(&blob(1));
    assert!(fp.starts_with("SHA256:"));
    assert_eq!(fp.len(), 7 + 43);
    assert_eq!(key_type(&blob(1)), Some("ssh-ed25519"));
    assert_eq!(key_type(&[0, 0, 0, 50, b'x']), None);
}

/// Written by `ssh-keygen -H` (OpenSSH 9) from plain lines for `[127.0.0.1]:2222` (key
/// `blob(7)`) and `web1.example.com` (port 22, key `blob(9)`): known answers from OpenSSH.
const HASHED_BY_SSH_KEYGEN: &str = "\
|1|2es/ZWGJ/OEWNCr92m4PfwyQ4Ts=|Xp3VMA7rb9WDJ769V85icf5ZIBg= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH
|1|lw8X70k5AUHNZhvdeWgFYsKGRLI=|W/ZP2y//8/cjmwdVGyXm9zsS6CI= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJ
";

#[test]
fn hashed_names_written_by_ssh_keygen_match_their_host_and_no_other() {
    let lines: Vec<Line> = HASHED_BY_SSH_KEYGEN
        .lines()
        .filter_map(parse_line)
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(host_matches(&lines[0].patterns, HOST));
    assert!(!host_matches(&lines[0].patterns, "[127.0.0.1]:2223"));
    assert!(!host_matches(&lines[0].patterns, "127.0.0.1"));
    assert!(host_matches(&lines[1].patterns, "web1.example.com"));
    assert!(host_matches(&lines[1].patterns, "WEB1.example.com"));
    assert!(!host_matches(&lines[1].patterns, "[web1.example.com]:2222"));
    // Malformed hashes are not lines at all.
    assert!(parse_line("|1|bm90LWJhc2U2NA|xx ssh-ed25519 AAAA").is_none());
    assert!(parse_line(&format!("|2|a|b ssh-ed25519 {}", STANDARD.encode(blob(1)))).is_none());
}

#[test]
fn accept_new_never_pins_a_key_that_contradicts_a_hashed_seed() {
    let dir = tempfile::tempdir().unwrap();
    let keys = store(&dir, Some(HASHED_BY_SSH_KEYGEN));
    let err = keys
        .verify("web1", HOST, &blob(8), HostKeyPolicy::AcceptNew)
        .unwrap_err();
    assert!(matches!(err, HostKeyError::Changed { .. }), "{err}");
    assert!(err.to_string().contains(&fingerprint(&blob(7))), "{err}");
    assert_eq!(keys.export().unwrap(), "", "nothing pinned");
    assert_eq!(
        keys.verify("web1", HOST, &blob(7), HostKeyPolicy::Strict)
            .unwrap(),
        Verdict::PinnedFromSeed
    );
    assert_eq!(
        keys.verify("web9", "web1.example.com", &blob(9), HostKeyPolicy::Strict)
            .unwrap(),
        Verdict::PinnedFromSeed
    );
    // A host the hashed seed does not name is new.
    assert_eq!(
        keys.verify(
            "other",
            "[127.0.0.1]:2223",
            &blob(8),
            HostKeyPolicy::AcceptNew
        )
        .unwrap(),
        Verdict::PinnedNew
    );
}

#[test]
fn a_hashed_pin_in_the_store_is_honoured_and_replaced_by_trust() {
    let dir = tempfile::tempdir().unwrap();
    let keys = store(&dir, None);
    std::fs::write(keys.path(), HASHED_BY_SSH_KEYGEN).unwrap();
    assert_eq!(
        keys.verify("web1", HOST, &blob(7), HostKeyPolicy::Strict)
            .unwrap(),
        Verdict::Known
    );
    let replaced = keys.trust(HOST, &blob(8)).unwrap();
    assert_eq!(replaced, vec![fingerprint(&blob(7))]);
    let exported = keys.export().unwrap();
    assert!(exported.contains(&known_line(HOST, 8)), "{exported}");
    assert!(
        exported.contains("|1|lw8X70k5"),
        "the other pin stays: {exported}"
    );
}

#[test]
fn editing_the_store_keeps_its_owner_and_mode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let keys = store(&dir, None);
    keys.verify("web1", HOST, &blob(1), HostKeyPolicy::AcceptNew)
        .unwrap();
    let meta = std::fs::metadata(keys.path()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "a new store is private");
    std::fs::set_permissions(keys.path(), std::fs::Permissions::from_mode(0o640)).unwrap();
    // As root (CI), give the store to another user as the package gives it to `edgemon`.
    let owner = match std::os::unix::fs::chown(keys.path(), Some(65534), Some(65534)) {
        Ok(()) => (65534, 65534),
        Err(_) => (meta.uid(), meta.gid()),
    };
    keys.trust(HOST, &blob(2)).unwrap();
    let after = std::fs::metadata(keys.path()).unwrap();
    assert_eq!((after.uid(), after.gid()), owner);
    assert_eq!(after.mode() & 0o7777, 0o640);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_new_store_belongs_to_the_owner_of_its_directory() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let owner = match std::os::unix::fs::chown(&data, Some(65534), Some(65534)) {
        Ok(()) => (65534, 65534),
        Err(_) => {
            let meta = std::fs::metadata(&data).unwrap();
            (meta.uid(), meta.gid())
        }
    };
    let keys = HostKeyStore::new(data.join("host-keys"), None);
    keys.trust(HOST, &blob(2)).unwrap();
    let meta = std::fs::metadata(keys.path()).unwrap();
    assert_eq!((meta.uid(), meta.gid()), owner);
}
