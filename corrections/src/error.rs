//! What stops a correction pass or a recomputation, and whether trying again can help.

use salestalk_store::ClickHouseError;

/// Why a correction pass or a recomputation stopped.
#[derive(Debug, thiserror::Error)]
pub enum CorrectionError {
    /// Reading or writing ClickHouse failed while `what`.
    #[error("{what}: {source}")]
    Store {
        /// What the corrector was doing.
        what: &'static str,
        /// The server's error.
        #[source]
        source: ClickHouseError,
    },
    /// The graph's settings do not build (aggregates, routing): a configuration bug that
    /// start-up checks should have caught.
    #[error("{0}")]
    Settings(String),
}

impl CorrectionError {
    /// Whether the next pass may succeed where this one failed (ClickHouse down or busy).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store { source, .. } => source.is_retryable(),
            Self::Settings(_) => false,
        }
    }
}

/// Wraps a ClickHouse error with what the corrector was doing: `.map_err(store("reading …"))`.
pub fn store(what: &'static str) -> impl FnOnce(ClickHouseError) -> CorrectionError {
    move |source| CorrectionError::Store { what, source }
}

impl From<ClickHouseError> for CorrectionError {
    fn from(source: ClickHouseError) -> Self {
        Self::Store {
            what: "reading ClickHouse",
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settings_error_is_not_retryable() {
        assert!(!CorrectionError::Settings("aggregates: x".into()).is_retryable());
    }
}
