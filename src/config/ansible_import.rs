//! `edgemon hosts import --from ansible`: an Ansible inventory, INI or YAML,
//! as hosts and bastions.
//!
//! Groups (`[web]`, `[web:vars]`, `[prod:children]`; YAML `hosts`, `vars`,
//! `children` under `all`) give each host its variables as Ansible merges
//! them: `all` first, then parent groups before their children, then the
//! host's own. `ansible_host`, `ansible_port`, `ansible_user`,
//! `ansible_ssh_private_key_file` (and their older `ansible_ssh_*` names)
//! are mapped; a `-J`, `-o ProxyJump=` or `-o ProxyCommand="ssh -W %h:%p …"`
//! in `ansible_ssh_common_args` or `ansible_ssh_extra_args` becomes the
//! host's `via`; `ansible_connection=local` the local transport. Host ranges
//! (`web[01:10]`) are expanded. Every other `ansible_*` variable, a password
//! and any other connection type are listed as not mapped, with the hosts
//! they concern; plain variables (not `ansible_*`) are the playbooks'
//! business and are ignored.

use std::collections::{BTreeMap, BTreeSet};

use yaml_rust2::{Yaml, YamlLoader};

use super::host_import::{self, Host, Import, Login};

type Vars = BTreeMap<String, String>;

#[derive(Default)]
struct Group {
    hosts: Vec<(String, Vars)>,
    vars: Vars,
    children: Vec<String>,
}

#[derive(Default)]
struct Inventory {
    groups: BTreeMap<String, Group>,
    /// Host names in the order first seen.
    order: Vec<String>,
}

impl Inventory {
    fn group(&mut self, name: &str) -> &mut Group {
        self.groups.entry(name.to_string()).or_default()
    }

    fn add_host(&mut self, group: &str, name: String, vars: Vars) {
        if !self.order.contains(&name) {
            self.order.push(name.clone());
        }
        self.group(group).hosts.push((name, vars));
    }
}

/// Converts an inventory; YAML when it parses as a YAML mapping, else INI.
pub fn import(text: &str) -> Result<Import, String> {
    let mut import = Import::default();
    let inventory = match YamlLoader::load_from_str(text) {
        Ok(docs) if matches!(docs.first(), Some(Yaml::Hash(_))) => {
            yaml_inventory(&docs[0], &mut import)?
        }
        _ => ini_inventory(text, &mut import)?,
    };
    resolve(&inventory, &mut import);
    import.dedup();
    Ok(import)
}

fn ini_inventory(text: &str, import: &mut Import) -> Result<Inventory, String> {
    let mut inv = Inventory::default();
    let mut section = ("ungrouped".to_string(), "hosts".to_string());
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = match header.split_once(':') {
                Some((group, kind)) => (group.to_string(), kind.to_string()),
                None => (header.to_string(), "hosts".to_string()),
            };
            inv.group(&section.0);
            continue;
        }
        let words = host_import::shell_words(line);
        let Some(first) = words.first() else {
            continue;
        };
        match section.1.as_str() {
            "hosts" => {
                let mut vars = Vars::new();
                for word in &words[1..] {
                    match word.split_once('=') {
                        Some((k, v)) => {
                            vars.insert(k.to_string(), v.to_string());
                        }
                        None => {
                            import.unmapped(format!("line {line_no}: {word:?} (not key=value)"))
                        }
                    }
                }
                let (pattern, port) = split_host_port(first);
                if let Some(port) = port {
                    vars.entry("ansible_port".into()).or_insert(port);
                }
                for name in
                    expand_range(&pattern).map_err(|why| format!("line {line_no}: {why}"))?
                {
                    inv.add_host(&section.0, name, vars.clone());
                }
            }
            "vars" => match line.split_once('=') {
                Some((k, v)) => {
                    let v = host_import::shell_words(v.trim()).join(" ");
                    inv.group(&section.0).vars.insert(k.trim().to_string(), v);
                }
                None => import.unmapped(format!("line {line_no}: {line:?} (not key=value)")),
            },
            "children" => {
                let child = first.clone();
                inv.group(&child);
                inv.group(&section.0).children.push(child);
            }
            other => import.unmapped(format!("line {line_no}: section [{}:{other}]", section.0)),
        }
    }
    Ok(inv)
}

/// `host:port` of an INI host line (not an IPv6 address).
fn split_host_port(word: &str) -> (String, Option<String>) {
    if word.matches(':').count() == 1
        && let Some((host, port)) = word.split_once(':')
        && port.chars().all(|c| c.is_ascii_digit())
        && !port.is_empty()
    {
        return (host.to_string(), Some(port.to_string()));
    }
    (word.to_string(), None)
}

/// `web[01:03]` -> web01, web02, web03; `db-[a:c]` -> db-a, db-b, db-c.
fn expand_range(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|c| c + open)
        .ok_or_else(|| format!("host pattern {pattern:?}: '[' without ']'"))?;
    let (head, range, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let (from, to) = range
        .split_once(':')
        .ok_or_else(|| format!("host pattern {pattern:?}: expected [start:end]"))?;
    let mut out = Vec::new();
    let tails = expand_range(tail)?;
    let items: Vec<String> = match (from.parse::<u32>(), to.parse::<u32>()) {
        (Ok(a), Ok(b)) if a <= b && b - a < 10_000 => {
            let width = if from.starts_with('0') { from.len() } else { 0 };
            (a..=b).map(|n| format!("{n:0width$}")).collect()
        }
        _ => match (from.chars().next(), to.chars().next()) {
            (Some(a), Some(b)) if from.len() == 1 && to.len() == 1 && a <= b => {
                (a..=b).map(|c| c.to_string()).collect()
            }
            _ => return Err(format!("host pattern {pattern:?}: not a range")),
        },
    };
    for item in items {
        for t in &tails {
            out.push(format!("{head}{item}{t}"));
        }
    }
    Ok(out)
}

fn yaml_inventory(doc: &Yaml, import: &mut Import) -> Result<Inventory, String> {
    let mut inv = Inventory::default();
    let Yaml::Hash(top) = doc else {
        return Err("the YAML inventory is not a mapping of groups".into());
    };
    for (name, group) in top {
        let name = scalar(name).ok_or("a group name is not a string")?;
        yaml_group(&mut inv, &name, group, import)?;
    }
    Ok(inv)
}

fn yaml_group(
    inv: &mut Inventory,
    name: &str,
    group: &Yaml,
    import: &mut Import,
) -> Result<(), String> {
    inv.group(name);
    let Yaml::Hash(map) = group else {
        if !matches!(group, Yaml::Null) {
            import.unmapped(format!(
                "group {name}: not a mapping of hosts, vars and children"
            ));
        }
        return Ok(());
    };
    for (key, value) in map {
        match scalar(key).as_deref() {
            Some("hosts") => {
                if let Yaml::Hash(hosts) = value {
                    for (host, vars) in hosts {
                        let host = scalar(host).ok_or("a host name is not a string")?;
                        let vars = yaml_vars(vars, &format!("host {host}"), import);
                        for name_ in expand_range(&host)? {
                            inv.add_host(name, name_, vars.clone());
                        }
                    }
                }
            }
            Some("vars") => {
                let vars = yaml_vars(value, &format!("group {name}"), import);
                inv.group(name).vars.extend(vars);
            }
            Some("children") => {
                if let Yaml::Hash(children) = value {
                    for (child, body) in children {
                        let child = scalar(child).ok_or("a group name is not a string")?;
                        inv.group(name).children.push(child.clone());
                        yaml_group(inv, &child, body, import)?;
                    }
                }
            }
            other => import.unmapped(format!(
                "group {name}: key {:?} (not hosts, vars or children)",
                other.unwrap_or("?")
            )),
        }
    }
    Ok(())
}

fn yaml_vars(value: &Yaml, at: &str, import: &mut Import) -> Vars {
    let mut vars = Vars::new();
    if let Yaml::Hash(map) = value {
        for (k, v) in map {
            match (scalar(k), scalar(v)) {
                (Some(k), Some(v)) => {
                    vars.insert(k, v);
                }
                (Some(k), None) if k.starts_with("ansible_") => {
                    import.unmapped(format!("{at}: {k} is not a plain value"));
                }
                _ => {}
            }
        }
    }
    vars
}

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Each group's depth under `all` (parents before children when merging variables).
fn depths(inv: &Inventory) -> BTreeMap<String, usize> {
    let mut depth: BTreeMap<String, usize> = BTreeMap::new();
    let roots: Vec<&String> = inv
        .groups
        .keys()
        .filter(|g| !inv.groups.values().any(|x| x.children.contains(g)))
        .collect();
    let mut queue: Vec<(String, usize)> = roots.into_iter().map(|g| (g.clone(), 0)).collect();
    while let Some((g, d)) = queue.pop() {
        let current = depth.entry(g.clone()).or_insert(d);
        if *current < d {
            *current = d;
        } else if *current > d {
            continue;
        }
        if d > 64 {
            continue;
        }
        if let Some(group) = inv.groups.get(&g) {
            for child in &group.children {
                queue.push((child.clone(), d + 1));
            }
        }
    }
    depth
}

/// The groups `host` is in, directly or through children, with their depth.
fn groups_of(inv: &Inventory, host: &str, depth: &BTreeMap<String, usize>) -> Vec<(usize, String)> {
    let mut direct: BTreeSet<String> = inv
        .groups
        .iter()
        .filter(|(_, g)| g.hosts.iter().any(|(h, _)| h == host))
        .map(|(n, _)| n.clone())
        .collect();
    // Ancestors: every group one of whose children holds it.
    loop {
        let more: Vec<String> = inv
            .groups
            .iter()
            .filter(|(n, g)| !direct.contains(*n) && g.children.iter().any(|c| direct.contains(c)))
            .map(|(n, _)| n.clone())
            .collect();
        if more.is_empty() {
            break;
        }
        direct.extend(more);
    }
    direct.insert("all".to_string());
    let mut out: Vec<(usize, String)> = direct
        .into_iter()
        .map(|g| {
            let d = if g == "all" {
                0
            } else {
                depth.get(&g).copied().unwrap_or(0) + 1
            };
            (d, g)
        })
        .collect();
    out.sort();
    out
}

const MAPPED: &[&str] = &[
    "ansible_host",
    "ansible_ssh_host",
    "ansible_port",
    "ansible_ssh_port",
    "ansible_user",
    "ansible_ssh_user",
    "ansible_ssh_private_key_file",
    "ansible_private_key_file",
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
    "ansible_connection",
];

fn resolve(inv: &Inventory, import: &mut Import) {
    let depth = depths(inv);
    let mut not_mapped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for host in &inv.order {
        let mut vars = Vars::new();
        for (_, group) in groups_of(inv, host, &depth) {
            if let Some(g) = inv.groups.get(&group) {
                vars.extend(g.vars.clone());
            }
        }
        for g in inv.groups.values() {
            for (h, own) in &g.hosts {
                if h == host {
                    vars.extend(own.clone());
                }
            }
        }
        for key in vars.keys() {
            if key.starts_with("ansible_") && !MAPPED.contains(&key.as_str()) {
                not_mapped
                    .entry(key.clone())
                    .or_default()
                    .push(host.clone());
            }
        }
        let get = |names: &[&str]| names.iter().find_map(|n| vars.get(*n).cloned());
        match get(&["ansible_connection"]).as_deref() {
            Some("local") => {
                import.hosts.push(Host {
                    name: host.clone(),
                    login: None,
                    via: Vec::new(),
                });
                continue;
            }
            None | Some("ssh" | "smart" | "paramiko" | "ansible.builtin.ssh") => {}
            Some(other) => {
                import.unmapped(format!(
                    "host {host}: ansible_connection={other} (only ssh and local map); not imported"
                ));
                continue;
            }
        }
        let mut login = Login {
            address: get(&["ansible_host", "ansible_ssh_host"]).unwrap_or_else(|| host.clone()),
            ..Login::default()
        };
        if let Some(port) = get(&["ansible_port", "ansible_ssh_port"]) {
            match port.parse::<u16>() {
                Ok(p) if p > 0 => login.port = Some(p),
                _ => import.unmapped(format!("host {host}: ansible_port={port} (not a port)")),
            }
        }
        login.user = get(&["ansible_user", "ansible_ssh_user"]);
        login.identity_file = get(&["ansible_ssh_private_key_file", "ansible_private_key_file"])
            .map(|k| host_import::expand_home(&k));
        if [
            &login.address,
            login.user.as_deref().unwrap_or(""),
            login.identity_file.as_deref().unwrap_or(""),
        ]
        .iter()
        .any(|v| v.contains("{{"))
        {
            import.unmapped(format!(
                "host {host}: a Jinja template in its login (not evaluated)"
            ));
        }
        let mut via = Vec::new();
        for key in ["ansible_ssh_common_args", "ansible_ssh_extra_args"] {
            let Some(args) = vars.get(key) else {
                continue;
            };
            let (spec, other) = host_import::jumps_in_ssh_args(args);
            for arg in other {
                not_mapped
                    .entry(format!("{key} {arg}"))
                    .or_default()
                    .push(host.clone());
            }
            if let Some(spec) = spec.filter(|s| !s.eq_ignore_ascii_case("none")) {
                for hop in spec.split(',') {
                    match host_import::parse_jump(hop) {
                        Ok(jump) => {
                            let alias = jump.address.clone();
                            via.push(import.bastion(&alias, jump));
                        }
                        Err(why) => import.unmapped(format!("host {host}: {why}")),
                    }
                }
            }
        }
        import.hosts.push(Host {
            name: host.clone(),
            login: Some(login),
            via,
        });
    }
    let bare: Vec<String> = import
        .bastions
        .iter()
        .filter(|(_, login)| login.identity_file.is_none())
        .map(|(name, _)| name.clone())
        .collect();
    for name in bare {
        import.unmapped(format!(
            "bastion {name}: the inventory names no key for it (ssh's own defaults); [defaults] applies"
        ));
    }
    for (key, hosts) in not_mapped {
        let shown = if hosts.len() > 5 {
            format!("{} and {} more", hosts[..5].join(", "), hosts.len() - 5)
        } else {
            hosts.join(", ")
        };
        let why = if key.starts_with("ansible_ssh_common_args ")
            || key.starts_with("ansible_ssh_extra_args ")
        {
            "an ssh argument other than a jump"
        } else if key.contains("pass") {
            "secret: set password_file or password_env by hand"
        } else {
            "no edgemon equivalent"
        };
        import.unmapped(format!("{key} ({why}): {shown}"));
    }
}
