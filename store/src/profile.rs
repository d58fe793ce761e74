//! What a ClickHouse server can do, decided once at start-up from its version, so the schema
//! uses modern features where they exist and stays within 18.16 where they do not.

use std::fmt;

/// A ClickHouse version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Year-based major version (18, 24, 26, ...).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl Version {
    /// Parses `SELECT version()` output such as `18.16.1` or `26.9.1.1`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next()??;
        let patch = parts.next().flatten().unwrap_or(0);
        Some(Self {
            major,
            minor,
            patch,
        })
    }

    const fn new(major: u32, minor: u32) -> Self {
        Self {
            major,
            minor,
            patch: 0,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Features the schema and the writers may rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerProfile {
    /// The server's version.
    pub version: Version,
    /// `TTL` clauses on MergeTree tables (19.6+).
    pub ttl: bool,
    /// `DateTime64` columns (20.1+).
    pub datetime64: bool,
    /// `LowCardinality` without the experimental setting (19.3+).
    pub low_cardinality: bool,
    /// The `insert_deduplication_token` setting (22.2+).
    pub insert_deduplication_token: bool,
}

impl ServerProfile {
    /// The features of `version`.
    pub fn for_version(version: Version) -> Self {
        Self {
            version,
            ttl: version >= Version::new(19, 6),
            datetime64: version >= Version::new(20, 1),
            low_cardinality: version >= Version::new(19, 3),
            insert_deduplication_token: version >= Version::new(22, 2),
        }
    }

    /// Whether this is a current server (24.x or later), the kind users run.
    pub fn is_modern(&self) -> bool {
        self.version >= Version::new(24, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_version_strings() {
        assert_eq!(
            Version::parse("18.16.1"),
            Some(Version {
                major: 18,
                minor: 16,
                patch: 1
            })
        );
        assert_eq!(
            Version::parse("26.9.1.1"),
            Some(Version {
                major: 26,
                minor: 9,
                patch: 1
            })
        );
        assert_eq!(
            Version::parse("24.8"),
            Some(Version {
                major: 24,
                minor: 8,
                patch: 0
            })
        );
        assert_eq!(Version::parse("latest"), None);
    }

    #[test]
    fn old_servers_get_the_conservative_profile() {
        let old = ServerProfile::for_version(Version::new(18, 16));
        assert!(
            !old.ttl && !old.datetime64 && !old.low_cardinality && !old.insert_deduplication_token
        );
        assert!(!old.is_modern());
        let modern = ServerProfile::for_version(Version::new(26, 9));
        assert!(
            modern.ttl
                && modern.datetime64
                && modern.low_cardinality
                && modern.insert_deduplication_token
        );
        assert!(modern.is_modern());
    }
}
