//! `[kafka.security]`: how the clients reach the brokers (TLS, SASL), passed to librdkafka as
//! its `security.protocol`, `ssl.*` and `sasl.*` properties on every client the pipeline
//! makes (consumer, producers, admin). Checked at start-up, each problem naming its key;
//! what only librdkafka can judge (a CA file it cannot parse) fails the client's creation,
//! with librdkafka's message naming its property.

use rdkafka::config::ClientConfig;
use serde::Deserialize;

/// The protocols librdkafka speaks to brokers.
const PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
/// The SASL mechanisms librdkafka has built in (GSSAPI needs Kerberos libraries; not built).
const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// `[kafka.security]`.
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KafkaSecurity {
    /// `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub protocol: String,
    /// PEM CA certificates to trust for the brokers (`ssl.ca.location`); empty: the system's.
    pub ca_file: String,
    /// The client's certificate, for brokers that ask for one (`ssl.certificate.location`).
    pub certificate_file: String,
    /// Its private key (`ssl.key.location`).
    pub key_file: String,
    /// The key's password, if it has one (`ssl.key.password`).
    pub key_password: String,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (`sasl.mechanism`).
    pub sasl_mechanism: String,
    /// SASL user (`sasl.username`).
    pub sasl_username: String,
    /// SASL password (`sasl.password`).
    pub sasl_password: String,
}

/// Debug output never shows a password.
impl std::fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |s: &str| if s.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("KafkaSecurity")
            .field("protocol", &self.protocol)
            .field("ca_file", &self.ca_file)
            .field("certificate_file", &self.certificate_file)
            .field("key_file", &self.key_file)
            .field("key_password", &redacted(&self.key_password))
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &redacted(&self.sasl_password))
            .finish()
    }
}

impl KafkaSecurity {
    fn protocol(&self) -> String {
        let protocol = self.protocol.trim().to_ascii_uppercase();
        if protocol.is_empty() {
            "PLAINTEXT".into()
        } else {
            protocol
        }
    }

    fn uses_tls(&self) -> bool {
        self.protocol().ends_with("SSL")
    }

    fn uses_sasl(&self) -> bool {
        self.protocol().starts_with("SASL")
    }

    /// Every problem, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let protocol = self.protocol();
        if !PROTOCOLS.contains(&protocol.as_str()) {
            out.push(format!(
                "kafka.security.protocol: '{}' is not one of {}",
                self.protocol,
                PROTOCOLS.join(", ")
            ));
            return out;
        }
        let files = [
            ("ca_file", &self.ca_file),
            ("certificate_file", &self.certificate_file),
            ("key_file", &self.key_file),
        ];
        for (key, path) in files {
            if path.is_empty() {
                continue;
            }
            if !self.uses_tls() {
                out.push(format!(
                    "kafka.security.{key}: set, but kafka.security.protocol {protocol} has no TLS"
                ));
            } else if let Err(error) = std::fs::metadata(path) {
                out.push(format!(
                    "kafka.security.{key}: cannot read '{path}': {error}"
                ));
            }
        }
        if self.certificate_file.is_empty() != self.key_file.is_empty() {
            out.push("kafka.security.certificate_file and key_file: give both or neither".into());
        }
        let sasl = [
            ("sasl_mechanism", &self.sasl_mechanism),
            ("sasl_username", &self.sasl_username),
            ("sasl_password", &self.sasl_password),
        ];
        if self.uses_sasl() {
            let mechanism = self.sasl_mechanism.trim().to_ascii_uppercase();
            if !MECHANISMS.contains(&mechanism.as_str()) {
                out.push(format!(
                    "kafka.security.sasl_mechanism: '{}' is not one of {}",
                    self.sasl_mechanism,
                    MECHANISMS.join(", ")
                ));
            }
            if self.sasl_username.is_empty() {
                out.push(format!(
                    "kafka.security.sasl_username: needed with protocol {protocol}"
                ));
            }
        } else {
            for (key, value) in sasl {
                if !value.is_empty() {
                    out.push(format!(
                        "kafka.security.{key}: set, but kafka.security.protocol {protocol} has no SASL"
                    ));
                }
            }
        }
        out
    }

    /// Sets librdkafka's properties for these settings on `config`.
    pub fn apply(&self, config: &mut ClientConfig) {
        config.set("security.protocol", self.protocol().to_ascii_lowercase());
        let optional = [
            ("ssl.ca.location", &self.ca_file),
            ("ssl.certificate.location", &self.certificate_file),
            ("ssl.key.location", &self.key_file),
            ("ssl.key.password", &self.key_password),
            ("sasl.username", &self.sasl_username),
            ("sasl.password", &self.sasl_password),
        ];
        for (property, value) in optional {
            if !value.is_empty() {
                config.set(property, value.as_str());
            }
        }
        if self.uses_sasl() {
            config.set(
                "sasl.mechanism",
                self.sasl_mechanism.trim().to_ascii_uppercase(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_plaintext_with_nothing_else() {
        let security = KafkaSecurity::default();
        assert!(security.problems().is_empty());
        let mut config = ClientConfig::new();
        security.apply(&mut config);
        assert_eq!(config.get("security.protocol"), Some("plaintext"));
        assert_eq!(config.get("ssl.ca.location"), None);
    }

    #[test]
    fn sasl_over_tls_is_passed_through_and_its_password_never_printed() {
        let security = KafkaSecurity {
            protocol: "sasl_ssl".into(),
            sasl_mechanism: "scram-sha-512".into(),
            sasl_username: "pipeline".into(),
            sasl_password: "hunter2".into(),
            ..KafkaSecurity::default()
        };
        assert!(security.problems().is_empty(), "{:?}", security.problems());
        let mut config = ClientConfig::new();
        security.apply(&mut config);
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.password"), Some("hunter2"));
        assert!(!format!("{security:?}").contains("hunter2"));
    }

    #[test]
    fn every_wrong_setting_is_named() {
        let security = KafkaSecurity {
            protocol: "SASL_PLAINTEXT".into(),
            ca_file: "/nonexistent/ca.pem".into(),
            certificate_file: "/nonexistent/client.pem".into(),
            sasl_mechanism: "GSSAPI".into(),
            ..KafkaSecurity::default()
        };
        let problems = security.problems().join("\n");
        for key in [
            "kafka.security.ca_file",
            "kafka.security.certificate_file",
            "give both or neither",
            "kafka.security.sasl_mechanism",
            "kafka.security.sasl_username",
        ] {
            assert!(problems.contains(key), "{key} missing from:\n{problems}");
        }
        let unknown = KafkaSecurity {
            protocol: "TLS".into(),
            ..KafkaSecurity::default()
        };
        assert!(unknown.problems()[0].contains("kafka.security.protocol"));
    }
}
