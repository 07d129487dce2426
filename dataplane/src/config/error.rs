//! The one error type of the configuration: every problem is one line naming the key.

use std::path::PathBuf;

/// A configuration error: one line naming the field and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config line {line}, column {column}: invalid TOML: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("config {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("reading this host's interfaces: {what}: {source}")]
    Host {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    /// The key path of an `Invalid` error (`vni[0].mtu`).
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    /// A TOML syntax error at its line and column.
    pub(super) fn syntax(text: &str, err: &toml::de::Error) -> ConfigError {
        let at = err.span().map_or(0, |s| s.start).min(text.len());
        let before = text.get(..at).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
        // toml's messages span lines; ours are one line.
        let message = err
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        ConfigError::Syntax {
            line,
            column,
            message,
        }
    }
}

/// A value that is not acceptable: `config FIELD: REASON`.
pub(super) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}
