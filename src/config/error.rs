//! Configuration errors: every problem found in one file, each with the
//! file (or environment variable), the key path, and the line when known.
//!
//! This module only formats; finding lines is `source_map`'s job.

use std::fmt;

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `$EDGEMON__...` when the value came from the environment.
    pub file: String,
    /// Where in the configuration, e.g. `hosts[3].alerts.cpu` (empty for the whole file).
    pub key_path: String,
    /// 1-based line in `file`, when known.
    pub line: Option<usize>,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key_path.is_empty() {
            write!(f, ": {}", self.key_path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one configuration, in file order where possible.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// A list holding one error about the file as a whole.
    pub fn single(file: impl Into<String>, message: impl Into<String>) -> ConfigErrors {
        ConfigErrors(vec![ConfigError {
            file: file.into(),
            key_path: String::new(),
            line: None,
            message: message.into(),
        }])
    }

    /// The errors.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// Whether an error names `key_path` and its message contains `needle` (for tests and callers).
    pub fn mentions(&self, key_path: &str, needle: &str) -> bool {
        self.0
            .iter()
            .any(|e| e.key_path == key_path && e.message.contains(needle))
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
