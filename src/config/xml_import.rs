//! Import of the original Config.xml format into edgemon's TOML:
//!
//! ```xml
//! <client ip="127.0.0.1" port="22" username="user" password="password" mail="asa@asda.com">
//!   <alert type="memory" limit="50%" />
//! </client>
//! ```
//!
//! `<client>` elements may sit under any root element or none (several at
//! the top level are read as a fragment). Every error carries the line and
//! column in the source; typographic quotes, common in files edited with a
//! word processor, get their own message. This module only converts text:
//! the result is meant to be checked with `config::load` like any file.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::hosts::normalize_host_name;
use super::resolve::is_mail_address;
use super::units::parse_limit;

/// A problem in a Config.xml, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ImportError {
    /// Line of the problem.
    pub line: usize,
    /// Column (in characters) of the problem.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// One `<client>`, as read.
#[derive(Debug, Default)]
struct Client {
    /// Byte offset of the `<client>` tag (for errors).
    start: usize,
    ip: String,
    port: u16,
    username: String,
    password: Option<String>,
    mail: Option<String>,
    /// (type, limit text) in file order.
    alerts: Vec<(String, String)>,
}

/// Converts a Config.xml into the equivalent TOML configuration.
pub fn import(source: &[u8]) -> Result<String, ImportError> {
    let text = std::str::from_utf8(source).map_err(|err| {
        let (line, column) = line_column(
            &String::from_utf8_lossy(&source[..err.valid_up_to()]),
            err.valid_up_to(),
        );
        ImportError {
            line,
            column,
            message: "the file is not UTF-8 text".to_string(),
        }
    })?;
    check_quotes(text)?;
    let clients = parse(text)?;
    let names = names(text, &clients)?;
    Ok(render(&clients, &names))
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    (line, column)
}

fn error_at(text: &str, offset: usize, message: impl Into<String>) -> ImportError {
    let (line, column) = line_column(text, offset);
    ImportError {
        line,
        column,
        message: message.into(),
    }
}

/// Finds typographic quotes used as attribute quotes (inside a tag, outside
/// an ASCII-quoted value), which XML does not allow.
fn check_quotes(text: &str) -> Result<(), ImportError> {
    let mut in_tag = false;
    let mut quote: Option<char> = None;
    for (offset, c) in text.char_indices() {
        match (in_tag, quote, c) {
            (false, _, '<') => in_tag = true,
            (true, None, '>') => in_tag = false,
            (true, None, '"' | '\'') => quote = Some(c),
            (true, Some(open), _) if c == open => quote = None,
            (
                true,
                None,
                '\u{201C}' | '\u{201D}' | '\u{2018}' | '\u{2019}' | '\u{201E}' | '\u{00AB}'
                | '\u{00BB}',
            ) => {
                return Err(error_at(
                    text,
                    offset,
                    format!("attribute quotes must be plain ASCII quotes (\" or '), found {c}"),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn parse(text: &str) -> Result<Vec<Client>, ImportError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut clients = Vec::new();
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut current: Option<Client> = None;
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|err| {
            error_at(
                text,
                reader.error_position() as usize,
                format!("malformed XML: {err}"),
            )
        })?;
        let after = reader.buffer_position() as usize;
        // The event's tag starts at the last '<' before its end.
        let start = text
            .get(before..after)
            .and_then(|s| s.rfind('<'))
            .map_or(before, |i| before + i);
        match event {
            Event::Start(tag) | Event::Empty(tag) => {
                let empty = text.get(..after).is_some_and(|s| s.ends_with("/>"));
                let name = String::from_utf8_lossy(tag.name().as_ref()).into_owned();
                match name.as_str() {
                    "client" if current.is_some() => {
                        return Err(error_at(text, start, "<client> inside another <client>"));
                    }
                    "client" => current = Some(client(text, start, &tag)?),
                    "alert" => match current.as_mut() {
                        Some(client) => client.alerts.push(alert(text, start, &tag)?),
                        None => return Err(error_at(text, start, "<alert> outside a <client>")),
                    },
                    other if current.is_some() => {
                        return Err(error_at(
                            text,
                            start,
                            format!("unknown element <{other}> inside <client> (expected <alert>)"),
                        ));
                    }
                    _ => {}
                }
                if empty {
                    if name == "client" {
                        clients.extend(current.take());
                    }
                } else {
                    open.push((name, start));
                }
            }
            Event::End(tag) => {
                let name = String::from_utf8_lossy(tag.name().as_ref()).into_owned();
                match open.pop() {
                    Some((expected, _)) if expected == name => {}
                    Some((expected, at)) => {
                        let (line, column) = line_column(text, at);
                        return Err(error_at(
                            text,
                            start,
                            format!(
                                "</{name}> closes <{expected}> opened at line {line} column {column}"
                            ),
                        ));
                    }
                    None => {
                        return Err(error_at(
                            text,
                            start,
                            format!("</{name}> without a matching start tag"),
                        ));
                    }
                }
                if name == "client" {
                    clients.extend(current.take());
                }
            }
            Event::Text(_) if current.is_some() => {
                return Err(error_at(text, before, "unexpected text inside <client>"));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some((name, at)) = open.pop() {
        return Err(error_at(text, at, format!("<{name}> is never closed")));
    }
    if clients.is_empty() {
        return Err(error_at(text, text.len(), "no <client> element found"));
    }
    Ok(clients)
}

/// The attributes of a tag as (name, value, offset of the tag).
fn attributes(
    text: &str,
    start: usize,
    tag: &BytesStart<'_>,
) -> Result<Vec<(String, String)>, ImportError> {
    let mut out = Vec::new();
    for attribute in tag.attributes() {
        let attribute = attribute
            .map_err(|err| error_at(text, start, format!("malformed attribute: {err}")))?;
        let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
        let value = attribute
            .unescape_value()
            .map_err(|err| error_at(text, start, format!("attribute {key}: {err}")))?
            .into_owned();
        out.push((key, value));
    }
    Ok(out)
}

fn client(text: &str, start: usize, tag: &BytesStart<'_>) -> Result<Client, ImportError> {
    let mut client = Client {
        start,
        port: 22,
        ..Client::default()
    };
    for (key, value) in attributes(text, start, tag)? {
        match key.as_str() {
            "ip" => client.ip = value.trim().to_string(),
            "port" => {
                client.port = value
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|port| *port > 0)
                    .ok_or_else(|| {
                        error_at(text, start, format!("port {value:?} is not a port 1-65535"))
                    })?;
            }
            "username" => client.username = value,
            "password" => client.password = Some(value),
            "mail" if is_mail_address(value.trim()) => client.mail = Some(value.trim().to_string()),
            "mail" => {
                return Err(error_at(
                    text,
                    start,
                    format!("mail {value:?} is not a mail address"),
                ));
            }
            other => {
                return Err(error_at(
                    text,
                    start,
                    format!(
                        "unknown attribute {other:?} on <client> (expected ip, port, username, password, mail)"
                    ),
                ));
            }
        }
    }
    if client.ip.is_empty() {
        return Err(error_at(text, start, "<client> needs an ip attribute"));
    }
    if client.username.is_empty() {
        return Err(error_at(text, start, "<client> needs a username attribute"));
    }
    Ok(client)
}

fn alert(text: &str, start: usize, tag: &BytesStart<'_>) -> Result<(String, String), ImportError> {
    let (mut kind, mut limit) = (None, None);
    for (key, value) in attributes(text, start, tag)? {
        match key.as_str() {
            "type" => kind = Some(value),
            "limit" => limit = Some(value),
            other => {
                return Err(error_at(
                    text,
                    start,
                    format!("unknown attribute {other:?} on <alert> (expected type, limit)"),
                ));
            }
        }
    }
    let kind = kind.ok_or_else(|| error_at(text, start, "<alert> needs a type attribute"))?;
    if !["memory", "cpu", "swap"].contains(&kind.as_str()) {
        return Err(error_at(
            text,
            start,
            format!("unknown alert type {kind:?} (expected memory, cpu or swap)"),
        ));
    }
    let limit = limit.ok_or_else(|| error_at(text, start, "<alert> needs a limit attribute"))?;
    parse_limit(&limit).map_err(|message| error_at(text, start, message))?;
    Ok((kind, limit.trim().to_string()))
}

/// A host name from an address: IPs get `-` for `.`/`:`, names are kept.
fn host_name(address: &str) -> String {
    if address.parse::<IpAddr>().is_ok() {
        address.replace(['.', ':'], "-")
    } else {
        address.to_ascii_lowercase()
    }
}

fn quoted(value: &str) -> String {
    toml::Value::String(value.to_string()).to_string()
}

/// Unique host names for `clients` (`10-0-0-5`, `10-0-0-5-2`), each
/// normalised and validated as `config::load` will check it.
fn names(text: &str, clients: &[Client]) -> Result<Vec<String>, ImportError> {
    let mut used = HashSet::new();
    let mut names = Vec::with_capacity(clients.len());
    for client in clients {
        let base = host_name(&client.ip);
        let mut name = base.clone();
        let mut n = 2;
        while !used.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        let name = normalize_host_name(&name).map_err(|message| {
            error_at(
                text,
                client.start,
                format!("ip {:?} gives no usable host name: {message}", client.ip),
            )
        })?;
        names.push(name);
    }
    Ok(names)
}

fn render(clients: &[Client], names: &[String]) -> String {
    let mut out = String::from(
        "# Imported from Config.xml by `edgemon config import-xml`.\n\
         # WARNING: the passwords below are inline, as they were in Config.xml. Move\n\
         # each to password_file or password_env, or chmod 600 this file.\n\
         # Only the limits set in Config.xml are on; the others are \"off\".\n\n\
         [appliance]\n# No id: derived from this box's /etc/machine-id. Set one, unique per box, to choose it.\n\
         data_dir = \"/var/lib/edgemon\"\n\n\
         [sync]\n# Point this at the central database (or use url_env / url_file).\n\
         url = \"mysql://edgemon@127.0.0.1:3306/edgemon\"\n",
    );
    for (client, name) in clients.iter().zip(names) {
        let _ = write!(
            out,
            "\n[[hosts]]\nname = {}\naddress = {}\nport = {}\nuser = {}\n",
            quoted(name),
            quoted(&client.ip),
            client.port,
            quoted(&client.username)
        );
        match &client.password {
            Some(password) => {
                let _ = writeln!(
                    out,
                    "password = {}  # move to password_file or password_env",
                    quoted(password)
                );
            }
            None => out.push_str("use_agent = true  # Config.xml gave no password\n"),
        }
        if let Some(mail) = &client.mail {
            let _ = writeln!(out, "mail = {}", quoted(mail));
        }
        out.push_str("[hosts.alerts]\n");
        for kind in ["cpu", "memory", "swap"] {
            let limit = client
                .alerts
                .iter()
                .rev()
                .find(|(k, _)| k == kind)
                .map_or("off", |(_, l)| l.as_str());
            let _ = writeln!(out, "{kind} = {}", quoted(limit));
        }
    }
    out
}

#[cfg(test)]
mod tests;
