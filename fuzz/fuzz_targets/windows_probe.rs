//! Feeds arbitrary text, as a Windows host's answer to the shell probe, through what the
//! collector builds from it: `parse_probe`, `agent_paths` and the start and `icacls` command
//! lines. None may panic; paths it accepts stay inside the profile and hold nothing either
//! shell would interpret inside quotes, and the cmd start command quotes exactly the path.
//! An input starting with an odd byte is not the answer itself but its four values (user,
//! domain, profile, `%LOCALAPPDATA%`, split at newlines) in a well-formed cmd.exe answer, so
//! that the path checks see every kind of value, not only what survives the parser.
#![no_main]

use edgemon::collect::ssh::windows::{Shell, acl_command, agent_paths, parse_probe, start_command};
use libfuzzer_sys::fuzz_target;

const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let text = match data.split_first() {
        Some((mode, values)) if mode % 2 == 1 => {
            let Ok(values) = std::str::from_utf8(values) else {
                return;
            };
            let mut values = values.split('\n');
            let mut next = || values.next().unwrap_or_default();
            let (user, domain, home, local) = (next(), next(), next(), next());
            format!(
                "\"edgemon-probe|Windows_NT|${{env:OS}}|{user}|${{env:USERNAME}}|{domain}|${{env:USERDOMAIN}}|{home}|${{env:USERPROFILE}}|{local}|${{env:LOCALAPPDATA}}|end\"\r\n"
            )
        }
        _ => match std::str::from_utf8(data) {
            Ok(text) => text.to_string(),
            Err(_) => return,
        },
    };
    let Ok(profile) = parse_probe(&text) else {
        return;
    };
    let Ok(paths) = agent_paths(&profile, HASH) else {
        return;
    };
    assert!(!paths.file.contains(['"', '%']), "{paths:?}");
    assert!(!paths.file.chars().any(char::is_control), "{paths:?}");
    assert!(
        paths.dir.to_lowercase().starts_with(&format!(
            "{}\\",
            profile.home.trim_end_matches('\\').to_lowercase()
        )),
        "{paths:?} outside {profile:?}"
    );
    assert!(paths.sftp_file.starts_with('/') && !paths.sftp_file.contains('\\'));
    for shell in [Shell::Cmd, Shell::PowerShell] {
        let start = start_command(shell, &paths.file, Some(600), Some("00ff"));
        let _ = acl_command(shell, &profile, &paths.dir);
        if shell == Shell::Cmd {
            assert!(start.starts_with(&format!("\"{}\" ", paths.file)), "{start}");
            assert_eq!(start.matches('"').count(), 2, "{start}");
        }
    }
});
