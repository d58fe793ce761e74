//! The hostile-input fuzz suite: the committed corpus (`tests/fuzz/corpus`, one request body a
//! file) mutated at random, through the code a network client reaches first: the gateway's
//! reading and judging of a request (`ingest::judge_request`, the handler's own code), the
//! contract parser, the reading of an API key from a header, and the expansion of the
//! dashboards' macros with a tenant value. Nothing may panic; no entry may be accepted for a
//! tenant the key does not hold, or with a payload naming another tenant; no tenant value may
//! change a query outside its string literal. See tests/fuzz/README.md for longer runs.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use salestalk::settings::Settings;
use salestalk_dashboards::{PanelRange, Tenants, expand, sql_string};
use salestalk_gateway::{Rules, judge_request, read_batch};
use salestalk_http::access::bearer;
use salestalk_store::tables::api_keys::{ApiKey, MAX_KEY_LEN, Role, well_formed};
use salestalk_store::tables::ingest_outcomes::IngestOutcome;

/// The corpus, file by file.
fn corpus() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fuzz/corpus");
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("the corpus")
        .map(|entry| {
            let path = entry.expect("an entry").path();
            (
                path.display().to_string(),
                std::fs::read(&path).expect("a seed"),
            )
        })
        .filter(|(name, _)| name.ends_with(".json"))
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 8, "the corpus is missing: {}", seeds.len());
    seeds.into_iter().map(|(_, bytes)| bytes).collect()
}

/// Tokens a mutation may insert: what breaks parsers, quotes and tenancy.
const TOKENS: [&str; 16] = [
    "\"",
    "\\",
    "'",
    "{",
    "[",
    "]}",
    "\"tenantId\":\"tenant-b\",",
    "\"tenantId\":\"tenant-a\",",
    "1e999",
    "-0",
    "\\ud800",
    "$__tenantFilter",
    "${tenant:sqlstring}",
    "\u{0}",
    "\u{feff}",
    "null",
];

/// One change to a seed.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, usize),
    Delete(usize, usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip(at, byte)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Insert(at, token)),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (any::<usize>(), 1usize..256).prop_map(|(at, len)| Mutation::Duplicate(at, len)),
    ]
}

/// `seed` with `mutations` applied (positions wrap around its length).
fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = bytes.len().max(1);
        match *mutation {
            Mutation::Flip(at, byte) => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b = byte;
                }
            }
            Mutation::Insert(at, token) => {
                let at = (at % len).min(bytes.len());
                bytes.splice(at..at, TOKENS[token].bytes());
            }
            Mutation::Delete(at, n) => {
                let at = (at % len).min(bytes.len());
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
            Mutation::Duplicate(at, n) => {
                let at = (at % len).min(bytes.len());
                let end = (at + n).min(bytes.len());
                let copy: Vec<u8> = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
        }
    }
    bytes
}

fn hostile_body() -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus();
    (0..seeds.len(), prop::collection::vec(mutation(), 0..8))
        .prop_map(move |(seed, mutations)| mutate(seeds[seed].clone(), &mutations))
}

/// A publisher key for `tenant-a`, granted every event type.
fn key() -> ApiKey {
    ApiKey {
        id: "0123456789abcdef".into(),
        role: Role::Publisher,
        tenants: vec!["tenant-a".into()],
        created_at: 0,
        revoked_at: None,
        event_types: vec!["*".into(), "tenant.provisioned.*".into()],
        expires_at: None,
    }
}

proptest! {
    // PROPTEST_CASES overrides the count; a failure is saved where the next run replays it.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/hostile_inputs.txt",
        ))),
        ..ProptestConfig::default()
    })]

    /// Any body: an answer for each entry or one for the body, never a panic; an accepted
    /// entry is a valid event of the key's tenant whose payload names no other tenant.
    #[test]
    fn the_gateway_judges_any_body_and_never_crosses_a_tenant(body in hostile_body()) {
        let settings = Settings::load_from(None, Some(Vec::new())).expect("the defaults");
        let rules = Rules { settings: &settings.ingest, kafka: &settings.kafka, kinesis: None };
        let Ok(verdicts) = judge_request(&rules, &key(), &body) else {
            return Ok(());
        };
        let batch = read_batch(&settings.ingest, &body).expect("judged, so read");
        prop_assert_eq!(verdicts.len(), batch.entries.len());
        for ((outcome, message), raw) in verdicts.iter().zip(&batch.entries) {
            prop_assert!(message.len() <= 2_048, "a long message: {}", message.len());
            if *outcome == IngestOutcome::Accepted {
                let bytes = raw.get().as_bytes();
                prop_assert!(salestalk_contracts::check(bytes, 1 << 20).is_empty());
                let entry: serde_json::Value = serde_json::from_slice(bytes).expect("a valid event");
                prop_assert_eq!(entry["tenantId"].as_str(), Some("tenant-a"));
                if let Some(named) = entry["data"].get("tenantId") {
                    prop_assert_eq!(named.as_str(), Some("tenant-a"));
                }
            }
        }
    }

    /// Any bytes: the contract parser answers, with pointers, never a panic.
    #[test]
    fn the_contract_parser_answers_any_bytes(body in hostile_body()) {
        for violation in salestalk_contracts::check(&body, 1 << 20) {
            prop_assert!(violation.path.is_empty() || violation.path.starts_with('/'));
        }
    }

    /// Any header value: a key is read without a panic, and only a key's shape is ever
    /// looked up.
    #[test]
    fn only_well_formed_keys_are_read_from_any_header(value in "\\PC{0,300}", raw in prop::collection::vec(any::<u8>(), 0..300)) {
        for text in [value.clone(), format!("Bearer {value}"), String::from_utf8_lossy(&raw).into_owned()] {
            let mut headers = axum::http::HeaderMap::new();
            if let Ok(header) = axum::http::HeaderValue::from_str(&text) {
                headers.insert(axum::http::header::AUTHORIZATION, header);
            }
            if let Some(presented) = bearer(&headers) {
                prop_assert!(!well_formed(presented) || presented.len() <= MAX_KEY_LEN);
            }
        }
    }

    /// Any tenant value: the query is the harmless one with the literal swapped.
    #[test]
    fn no_tenant_value_changes_a_panel_query(tenant in "\\PC{0,80}", token in 0..TOKENS.len()) {
        let tenant = format!("{tenant}{}", TOKENS[token]);
        let scope = |tenant: &str| PanelRange {
            from: 1_790_000_000,
            to: 1_790_086_400,
            tenant: tenant.to_string(),
            tenants: Tenants::Only(vec!["tenant-a".into()]),
        };
        for dashboard in salestalk_dashboards::dashboards() {
            for panel in &dashboard.panels {
                let salestalk_dashboards::panels::Source::Sql(sql) = &panel.source else {
                    continue;
                };
                let harmless = expand(sql, &scope("TENANT"));
                let expanded = expand(sql, &scope(&tenant));
                prop_assert_eq!(expanded, harmless.replace("'TENANT'", &sql_string(&tenant)));
            }
        }
    }
}
