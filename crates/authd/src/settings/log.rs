//! `[log]`: log format, level and the access log.

use serde::{Deserialize, Serialize};

/// Log output format. The filter comes from `RUST_LOG` (default `info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Level of the access log line (`log.access_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLevel {
    /// No access line (server errors are still logged at `warn`).
    Off,
    /// One line per request at `debug` (the default: shown with `RUST_LOG=authd=debug`).
    #[default]
    Debug,
    /// One line per request at `info`.
    Info,
}

/// Log settings.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// Level of the one access line per request (`off`, `debug` (default), `info`);
    /// server errors are logged at `warn` regardless.
    pub access_level: AccessLevel,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { format: LogFormat::Text, access_level: AccessLevel::Debug }
    }
}
