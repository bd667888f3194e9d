//! The shape of the TOML file, checked against the source text itself: every
//! unknown key and every value of the wrong type is reported with its full
//! path (`hosts[3].alerts.cpu`) and line, all at once, and a line index is
//! kept so that later validation errors can point at their line too.
//!
//! The schema is the table of keys (`keys::KEYS`): a name is known where a
//! key's path has it, and the key's kind says which TOML type it takes.
//! What passes is handed on as a clean `toml::Table` (the `config` crate
//! then layers defaults and the environment on it, and serde's
//! `deny_unknown_fields` stays as a backstop). This module does not judge
//! values (bounds, units, addresses): that is `keys::check_value`'s and
//! `resolve`'s job.

use std::collections::HashMap;

use toml_edit::{ImDocument, Item, TableLike, Value};

use super::error::ConfigError;
use super::keys::{self, Kind, Node};

/// Lines of the keys of one TOML source, by key path.
#[derive(Debug, Default)]
pub(crate) struct SourceMap {
    lines: HashMap<String, usize>,
}

impl SourceMap {
    /// The line of `path`, or of its nearest enclosing table that has one.
    pub(crate) fn line_of(&self, path: &str) -> Option<usize> {
        let mut current = path;
        loop {
            if let Some(line) = self.lines.get(current) {
                return Some(*line);
            }
            let cut = current.rfind(['.', '['])?;
            current = &current[..cut];
        }
    }
}

/// The outcome of [`check`]: the well-shaped part of the file, where its keys
/// are, and what was wrong with the rest.
pub(crate) struct Checked {
    /// Known keys with values of the right type.
    pub(crate) table: toml::Table,
    /// Line index.
    pub(crate) map: SourceMap,
    /// Unknown keys, wrong types, or a syntax error.
    pub(crate) errors: Vec<ConfigError>,
}

/// Parses `source` and checks every key against the schema.
pub(crate) fn check(file: &str, source: &str) -> Checked {
    let mut walker = Walker {
        file,
        source,
        map: SourceMap::default(),
        errors: Vec::new(),
    };
    let table = match ImDocument::parse(source) {
        Ok(document) => walker.table(document.as_table(), ""),
        Err(err) => {
            let line = err.span().map(|span| walker.line_at(span.start));
            walker.errors.push(ConfigError {
                file: file.to_string(),
                key_path: String::new(),
                line,
                message: format!("invalid TOML: {}", err.message().trim()),
            });
            toml::Table::new()
        }
    };
    Checked {
        table,
        map: walker.map,
        errors: walker.errors,
    }
}

struct Walker<'a> {
    file: &'a str,
    source: &'a str,
    map: SourceMap,
    errors: Vec<ConfigError>,
}

impl Walker<'_> {
    fn line_at(&self, offset: usize) -> usize {
        let end = offset.min(self.source.len());
        self.source.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn error(&mut self, path: &str, line: Option<usize>, message: String) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            key_path: path.to_string(),
            line,
            message,
        });
    }

    /// Checks the entries of one table; `path` is its key path
    /// (`hosts[2].alerts`), whose normalised form (`hosts[].alerts`) finds
    /// its keys in the table of keys.
    fn table(&mut self, table: &dyn TableLike, path: &str) -> toml::Table {
        let prefix = keys::normalize(path);
        let mut out = toml::Table::new();
        for (name, item) in table.iter() {
            let key_path = if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            };
            let span = table
                .get_key_value(name)
                .and_then(|(key, _)| key.span())
                .or_else(|| item.span());
            let line = span.map(|span| self.line_at(span.start));
            if let Some(line) = line {
                self.map.lines.insert(key_path.clone(), line);
            }
            let Some(node) = keys::node(&prefix, name) else {
                self.error(
                    &key_path,
                    line,
                    format!(
                        "unknown key `{name}` (known here: {})",
                        keys::children(&prefix).join(", ")
                    ),
                );
                continue;
            };
            if let Some(value) = self.value(item, &node, &key_path, line) {
                out.insert(name.to_string(), value);
            }
        }
        out
    }

    fn value(
        &mut self,
        item: &Item,
        node: &Node,
        path: &str,
        line: Option<usize>,
    ) -> Option<toml::Value> {
        let found = item.type_name();
        let (converted, expected) = match node {
            Node::Leaf(key) => {
                let converted = match key.kind {
                    Kind::Int { .. } => item.as_integer().map(toml::Value::Integer),
                    Kind::Bool => item.as_bool().map(toml::Value::Boolean),
                    Kind::Number { .. } => item
                        .as_float()
                        .or_else(|| item.as_integer().map(|i| i as f64))
                        .map(toml::Value::Float),
                    // A single string is a list of one (`via = "bastion"`).
                    Kind::TextList => match item.as_str() {
                        Some(one) => Some(toml::Value::Array(vec![toml::Value::String(
                            one.to_string(),
                        )])),
                        None => item.as_array().and_then(|array| {
                            array
                                .iter()
                                .map(|v| v.as_str().map(|s| toml::Value::String(s.to_string())))
                                .collect::<Option<Vec<_>>>()
                                .map(toml::Value::Array)
                        }),
                    },
                    Kind::Duration { .. }
                    | Kind::DurationOrOff { .. }
                    | Kind::Size { .. }
                    | Kind::Text
                    | Kind::Choice(_)
                    | Kind::Limit => item.as_str().map(|s| toml::Value::String(s.to_string())),
                };
                (converted, keys::expected(&key.kind))
            }
            Node::Table => (
                item.as_table_like()
                    .map(|table| toml::Value::Table(self.table(table, path))),
                "a table",
            ),
            Node::Tables => return self.tables(item, path, line),
        };
        if converted.is_none() {
            self.error(path, line, format!("expected {expected}, found {found}"));
        }
        converted
    }

    fn tables(&mut self, item: &Item, path: &str, line: Option<usize>) -> Option<toml::Value> {
        let mut out = Vec::new();
        if let Some(array) = item.as_array_of_tables() {
            for (index, table) in array.iter().enumerate() {
                let element = format!("{path}[{index}]");
                let header = table.span().map(|span| self.line_at(span.start));
                if let Some(header) = header.or(line) {
                    self.map.lines.insert(element.clone(), header);
                }
                out.push(toml::Value::Table(self.table(table, &element)));
            }
        } else if let Some(array) = item.as_array() {
            for (index, value) in array.iter().enumerate() {
                let element = format!("{path}[{index}]");
                let at = value.span().map(|span| self.line_at(span.start)).or(line);
                if let Some(at) = at {
                    self.map.lines.insert(element.clone(), at);
                }
                match value {
                    Value::InlineTable(table) => {
                        out.push(toml::Value::Table(self.table(table, &element)));
                    }
                    other => self.error(
                        &element,
                        at,
                        format!("expected a table, found {}", other.type_name()),
                    ),
                }
            }
        } else {
            let found = item.type_name();
            self.error(
                path,
                line,
                format!("expected [[{path}]] tables, found {found}"),
            );
            return None;
        }
        Some(toml::Value::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_anywhere_are_reported_with_path_and_line() {
        let source = "[appliance]\nid = \"a\"\ncolour = \"red\"\n\n[[hosts]]\nname = \"a\"\n\n[[hosts]]\nname = \"b\"\n[hosts.alerts]\ncpu = \"50%\"\ncpux = \"1%\"\n";
        let checked = check("f.toml", source);
        let found: Vec<(String, Option<usize>)> = checked
            .errors
            .iter()
            .map(|e| (e.key_path.clone(), e.line))
            .collect();
        assert_eq!(
            found,
            vec![
                ("appliance.colour".to_string(), Some(3)),
                ("hosts[1].alerts.cpux".to_string(), Some(12)),
            ]
        );
        assert_eq!(checked.map.line_of("hosts[1].alerts.cpu"), Some(11));
        assert_eq!(checked.map.line_of("hosts[1].address"), Some(8));
        assert!(checked.table["appliance"].get("colour").is_none());
    }

    #[test]
    fn wrong_types_are_reported_and_dropped() {
        let checked = check(
            "f.toml",
            "[collect]\nconcurrency = \"many\"\npersistent_sessions = 1\n",
        );
        assert_eq!(checked.errors.len(), 2);
        assert!(
            checked.errors[0]
                .message
                .contains("expected an integer, found string")
        );
        assert_eq!(checked.errors[1].line, Some(3));
        assert!(
            checked.table["collect"]
                .as_table()
                .is_some_and(|t| t.is_empty())
        );
    }

    #[test]
    fn syntax_errors_carry_a_line() {
        let checked = check("f.toml", "[sync]\nurl = \"x\"\nbatch_size = = 3\n");
        assert_eq!(checked.errors.len(), 1);
        assert_eq!(checked.errors[0].line, Some(3));
        assert!(checked.errors[0].message.starts_with("invalid TOML"));
    }
}
