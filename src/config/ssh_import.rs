//! `edgemon hosts import --from ssh-config`: an OpenSSH client config
//! (`~/.ssh/config`) as hosts and bastions.
//!
//! Every `Host` pattern without wildcards or negation is a host; its options
//! are gathered as ssh does: from every matching `Host` block in file order,
//! the first value of each keyword winning (so `Host *` at the end supplies
//! defaults). `HostName`, `User`, `Port`, `IdentityFile` (the first) and
//! `StrictHostKeyChecking` (`yes`, `accept-new`) are mapped; `ProxyJump a,b`
//! becomes the host's `via`, each hop a `[[bastions]]` entry, resolved
//! through the config when it names a `Host` alias, as ssh does; a
//! `ProxyCommand ssh -W %h:%p jump` counts as a jump. `Match` blocks,
//! `Include`, tokens such as `%h` and every other keyword are listed as not
//! mapped, with their line.

use std::collections::HashMap;

use super::host_import::{self, Host, Import, Login};

/// One `Host` block: its patterns and its `keyword value` lines (keyword lowercase).
struct Block {
    patterns: Vec<String>,
    options: Vec<(usize, String, String)>,
}

/// Converts the text of an ssh_config.
pub fn import(text: &str) -> Import {
    let mut import = Import::default();
    let mut blocks: Vec<Block> = vec![Block {
        patterns: vec!["*".to_string()],
        options: Vec::new(),
    }];
    let mut in_match = false;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keyword, value) = split_keyword(line);
        let keyword = keyword.to_ascii_lowercase();
        match keyword.as_str() {
            "host" => {
                in_match = false;
                blocks.push(Block {
                    patterns: host_import::shell_words(&value),
                    options: Vec::new(),
                });
            }
            "match" => {
                in_match = true;
                import.unmapped(format!(
                    "line {line_no}: Match {value} (its options are not applied)"
                ));
            }
            "include" => import.unmapped(format!(
                "line {line_no}: Include {value} (import each included file on its own)"
            )),
            _ if in_match => import.unmapped(format!("line {line_no}: {line} (inside Match)")),
            _ => {
                if let Some(block) = blocks.last_mut() {
                    block.options.push((line_no, keyword, value));
                }
            }
        }
    }
    let aliases: Vec<String> = blocks
        .iter()
        .flat_map(|b| b.patterns.iter())
        .filter(|p| !p.contains(['*', '?', '!']))
        .fold(Vec::new(), |mut all, p| {
            if !all.contains(p) {
                all.push(p.clone());
            }
            all
        });
    for alias in &aliases {
        let options = options_of(&blocks, alias, &mut import);
        let login = login_of(alias, &options, &mut import);
        let via = match options.get("proxyjump").or(options.get("proxycommand")) {
            Some((line, value)) => {
                let spec = if options.contains_key("proxyjump") {
                    Ok(value.clone())
                } else {
                    host_import::jump_of_proxy_command(value)
                };
                match spec {
                    Ok(spec) => jumps(&spec, *line, &blocks, &mut import, 0),
                    Err(why) => {
                        import.unmapped(format!(
                            "line {line}: {why}; host {alias} is imported as direct"
                        ));
                        Vec::new()
                    }
                }
            }
            None => Vec::new(),
        };
        import.hosts.push(Host {
            name: alias.clone(),
            login: Some(login),
            via,
        });
    }
    import.dedup();
    import
}

/// `Keyword value` or `Keyword=value`.
fn split_keyword(line: &str) -> (String, String) {
    let cut = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = line[..cut].to_string();
    let rest = line[cut..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
    let value = match (rest.strip_prefix('"'), rest.ends_with('"')) {
        (Some(inner), true) if rest.len() >= 2 => inner[..inner.len() - 1].to_string(),
        _ => rest.to_string(),
    };
    (keyword, value)
}

/// Whether OpenSSH's `Host` patterns match `alias` (`*`, `?`, `!negation`).
fn matches(patterns: &[String], alias: &str) -> bool {
    let mut any = false;
    for p in patterns {
        if let Some(negated) = p.strip_prefix('!') {
            if glob(negated, alias) {
                return false;
            }
        } else if glob(p, alias) {
            any = true;
        }
    }
    any
}

fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(&p, &t)
}

/// The options in force for `alias`: the first value of each keyword over the matching blocks.
fn options_of(
    blocks: &[Block],
    alias: &str,
    import: &mut Import,
) -> HashMap<String, (usize, String)> {
    let mut out: HashMap<String, (usize, String)> = HashMap::new();
    for block in blocks.iter().filter(|b| matches(&b.patterns, alias)) {
        for (line, keyword, value) in &block.options {
            match keyword.as_str() {
                "hostname"
                | "user"
                | "port"
                | "identityfile"
                | "proxyjump"
                | "proxycommand"
                | "stricthostkeychecking" => {
                    if keyword == "identityfile"
                        && let Some((first, _)) = out.get("identityfile")
                    {
                        import.unmapped(format!(
                            "line {line}: IdentityFile {value} (one key per host: line {first}'s is used)"
                        ));
                        continue;
                    }
                    out.entry(keyword.clone()).or_insert((*line, value.clone()));
                }
                _ => import.unmapped(format!(
                    "line {line}: {} {value} (no edgemon equivalent)",
                    keyword_case(keyword)
                )),
            }
        }
    }
    out
}

/// Known keywords as ssh_config(5) writes them, for messages.
fn keyword_case(keyword: &str) -> String {
    const KNOWN: &[&str] = &[
        "ForwardAgent",
        "ServerAliveInterval",
        "ServerAliveCountMax",
        "UserKnownHostsFile",
        "ControlMaster",
        "ControlPath",
        "ControlPersist",
        "LocalForward",
        "RemoteForward",
        "Compression",
        "IdentitiesOnly",
        "AddKeysToAgent",
        "PreferredAuthentications",
        "PasswordAuthentication",
        "LogLevel",
        "ConnectTimeout",
    ];
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(keyword))
        .map_or_else(|| keyword.to_string(), |k| k.to_string())
}

fn login_of(alias: &str, options: &HashMap<String, (usize, String)>, import: &mut Import) -> Login {
    let mut login = Login {
        address: alias.to_string(),
        ..Login::default()
    };
    if let Some((line, name)) = options.get("hostname") {
        if name.contains('%') {
            import.unmapped(format!(
                "line {line}: HostName {name} (tokens are not expanded)"
            ));
        }
        login.address = name.clone();
    }
    if let Some((line, port)) = options.get("port") {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => login.port = Some(p),
            _ => import.unmapped(format!("line {line}: Port {port} (not a port)")),
        }
    }
    if let Some((line, user)) = options.get("user") {
        if user.contains('%') {
            import.unmapped(format!(
                "line {line}: User {user} (tokens are not expanded)"
            ));
        } else {
            login.user = Some(user.clone());
        }
    }
    if let Some((line, key)) = options.get("identityfile") {
        if key.contains('%') {
            import.unmapped(format!(
                "line {line}: IdentityFile {key} (tokens are not expanded)"
            ));
        } else {
            login.identity_file = Some(host_import::expand_home(key));
        }
    }
    if let Some((line, value)) = options.get("stricthostkeychecking") {
        match value.to_ascii_lowercase().as_str() {
            "yes" => login.host_key_policy = Some("strict"),
            "accept-new" => login.host_key_policy = Some("accept-new"),
            other => import.unmapped(format!(
                "line {line}: StrictHostKeyChecking {other} (edgemon always checks host keys: \
                 strict or accept-new; the collect.host_key_policy default applies)"
            )),
        }
    }
    login
}

/// The bastions of ProxyJump `spec` (`a,b`), each resolved through the config when it names
/// a Host alias (the first hop's own ProxyJump goes before it, like ssh's recursion).
fn jumps(
    spec: &str,
    line: usize,
    blocks: &[Block],
    import: &mut Import,
    depth: usize,
) -> Vec<String> {
    if spec.trim().eq_ignore_ascii_case("none") {
        return Vec::new();
    }
    let mut via = Vec::new();
    // As ssh does: the first hop is reached by its own ProxyJump, the later ones through the
    // hops before them in this list (their own ProxyJump is overridden).
    for (index, hop) in spec.split(',').enumerate() {
        let hop = hop.trim();
        let parsed = match host_import::parse_jump(hop) {
            Ok(login) => login,
            Err(why) => {
                import.unmapped(format!("line {line}: {why}"));
                continue;
            }
        };
        let alias = parsed.address.clone();
        let known = blocks
            .iter()
            .any(|b| b.patterns.iter().any(|p| p == &alias));
        let mut login = parsed.clone();
        if known {
            let mut scratch = Import::default();
            let options = options_of(blocks, &alias, &mut scratch);
            login = login_of(&alias, &options, &mut scratch);
            login.user = parsed.user.clone().or(login.user);
            login.port = parsed.port.or(login.port);
            if let Some((inner_line, inner)) = options.get("proxyjump")
                && index == 0
                && depth < 8
            {
                via.extend(jumps(inner, *inner_line, blocks, import, depth + 1));
            }
        }
        via.push(import.bastion(&alias, login));
    }
    via
}
