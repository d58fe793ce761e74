//! `salestalk check` against the real services, and against a broken configuration.

use crate::support::{salestalk, stdout_of};

#[test]
fn check_passes_against_the_running_services() {
    let output = salestalk(&["check"], &[]);
    let text = stdout_of(&output);
    assert!(text.contains("kafka      ok"), "{text}");
    assert!(text.contains("clickhouse ok"), "{text}");
}

#[test]
fn check_fails_and_names_the_service_that_does_not_answer() {
    let output = salestalk(
        &["check"],
        &[(
            "SALESTALK__CLICKHOUSE__URL",
            "http://127.0.0.1:1".to_string(),
        )],
    );
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("clickhouse PROBLEM"), "{text}");
}

#[test]
fn a_bad_configuration_lists_every_problem_before_anything_starts() {
    let output = salestalk(
        &["run"],
        &[
            ("SALESTALK__KAFKA__BROKERS", "nowhere".to_string()),
            ("SALESTALK__CLICKHOUSE__DATABASE", "1bad".to_string()),
            ("SALESTALK__KAFKA__GROUPID", "typo".to_string()),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("3 problem(s)"), "{text}");
    for needle in [
        "kafka.brokers",
        "clickhouse.database",
        "kafka.groupid: unknown key",
    ] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }
}

/// Kafka TLS and SASL settings are checked before anything starts, each wrong one named; a
/// well-formed TLS setting reaches librdkafka (built with OpenSSL), and against a broker
/// that does not speak TLS `check` says Kafka does not answer instead of hanging.
#[test]
fn kafka_security_settings_are_checked_and_reach_librdkafka() {
    let output = salestalk(
        &["check"],
        &[
            (
                "SALESTALK__KAFKA__SECURITY__PROTOCOL",
                "SASL_SSL".to_string(),
            ),
            (
                "SALESTALK__KAFKA__SECURITY__CA_FILE",
                "/nonexistent/ca.pem".to_string(),
            ),
            (
                "SALESTALK__KAFKA__SECURITY__SASL_MECHANISM",
                "GSSAPI".to_string(),
            ),
            (
                "SALESTALK__KAFKA__SECURITY__SASL_PASSWORD",
                "do-not-print-me".to_string(),
            ),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8_lossy(&output.stderr);
    for needle in [
        "kafka.security.ca_file: cannot read '/nonexistent/ca.pem'",
        "kafka.security.sasl_mechanism",
        "kafka.security.sasl_username: needed",
    ] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }
    assert!(!text.contains("do-not-print-me"), "{text}");

    // TLS towards the plaintext local broker, trusting the system's CAs: librdkafka takes
    // the setting (it was built with OpenSSL), the handshake fails, and check says so.
    let output = salestalk(
        &["check"],
        &[("SALESTALK__KAFKA__SECURITY__PROTOCOL", "SSL".to_string())],
    );
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("kafka      PROBLEM"), "{text}");
    assert!(text.contains("clickhouse ok"), "{text}");
}
