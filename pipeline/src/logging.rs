//! Structured logs to stderr, so stdout stays free for command output, and a throttle for
//! errors that repeat.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// `[log]`: diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LogSettings {
    /// tracing filter directives.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl LogSettings {
    /// Every problem with these settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        match EnvFilter::try_new(&self.level) {
            Ok(_) => Vec::new(),
            Err(_) => vec![format!(
                "log.level: '{}' is not a tracing filter",
                self.level
            )],
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. `RUST_LOG`, when set, wins over the configuration.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // A second init (tests, embedding) keeps the first subscriber.
    drop(result);
}
