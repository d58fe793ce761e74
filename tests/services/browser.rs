//! The built-in dashboards in a real browser: headless Chromium loads every page of
//! `salestalk serve` over generated traffic, and the numbers the panels show (each panel
//! element carries them in data attributes) equal the batch recomputation of the topics.
//! Screenshots land in `target/dashboard-screenshots/`.

use std::collections::BTreeMap;
use std::process::Command;

use crate::exactness::{PARTITIONS, read_back, recompute, setup_on};
use crate::support::eventually::becomes_ready;
use crate::support::{
    Isolated, KillOnDrop, api_key, free_port, http_get_as, salestalk, salestalk_command, stdout_of,
    tool_output,
};

const SCREENSHOTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/dashboard-screenshots"
);

/// Headless Chromium with the flags this machine needs (no sandbox as root, no background
/// networking: the network is closed).
fn chromium(profile: &std::path::Path, extra: &[String], url: &str) -> Vec<u8> {
    let mut command = Command::new("chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url);
    tool_output(&mut command, "deploy/tools/install")
}

/// Every panel element of a dumped page: id -> its data attributes.
fn panels(dom: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for tag in dom.split("<section").skip(1) {
        let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
        let mut attributes = BTreeMap::new();
        for part in tag.split("\" ") {
            if let Some((name, value)) = part.trim().split_once("=\"") {
                attributes.insert(name.to_string(), value.trim_end_matches('"').to_string());
            }
        }
        if let Some(id) = attributes.get("data-panel").cloned() {
            out.insert(id, attributes);
        }
    }
    out
}

fn number(
    panels: &BTreeMap<String, BTreeMap<String, String>>,
    panel: &str,
    attribute: &str,
) -> f64 {
    panels
        .get(panel)
        .and_then(|p| p.get(attribute))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "panel {panel} shows no {attribute}: {:?}",
                panels.get(panel)
            )
        })
}

/// The `data-value`s of a table panel's cells in `column`.
fn cells(dom: &str, panel: &str, column: &str) -> Vec<String> {
    texts(dom, panel, column)
        .into_iter()
        .map(|(value, _)| value)
        .collect()
}

/// The text a person reads in a table panel's cells in `column`, with each cell's value.
fn texts(dom: &str, panel: &str, column: &str) -> Vec<(String, String)> {
    let start = dom
        .find(&format!("data-panel=\"{panel}\""))
        .unwrap_or_else(|| panic!("no panel {panel}"));
    let end = dom[start..]
        .find("</section>")
        .map_or(dom.len(), |e| start + e);
    dom[start..end]
        .split(&format!("data-column=\"{column}\" data-value=\""))
        .skip(1)
        .map(|rest| {
            let value = rest[..rest.find('"').unwrap_or(0)].to_string();
            let text = rest[rest.find('>').map_or(0, |i| i + 1)..]
                .split('<')
                .next()
                .unwrap_or_default()
                .to_string();
            (value, text)
        })
        .collect()
}

/// An integer as en-US shows it: `12,345`.
fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_shows_the_recomputed_numbers_in_chromium() {
    let isolated = Isolated::create("it-browser", PARTITIONS).await;
    let mut setup = setup_on(isolated, 6_000, 20);
    // On top of the traffic, keyed by one tenant: an event without `metadata` (accepted with a
    // contract warning), and an event resent with other content (a conflicting duplicate).
    let examples = crate::support::fixtures::Examples::new(0xb0b);
    let mut unwarned = examples.event("classification.performed.v1", "tenant-warned", 1);
    let source = unwarned["source"].as_str().unwrap_or_default().to_string();
    let mut warned = unwarned.clone();
    warned
        .as_object_mut()
        .expect("an object")
        .remove("metadata");
    unwarned["eventId"] =
        examples.event("classification.performed.v1", "tenant-warned", 2)["eventId"].clone();
    let mut conflicting = unwarned.clone();
    conflicting["data"]["processingTimeMs"] = serde_json::json!(4_321);
    crate::support::produce_events(&setup.isolated, &[warned, unwarned, conflicting]).await;
    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &setup.env));
    let input = read_back(&setup.isolated);
    let expected = recompute(&input);
    let messages: usize = input.values().map(Vec::len).sum();

    let port = free_port();
    setup
        .env
        .push(("SALESTALK__SERVE__LISTEN", format!("127.0.0.1:{port}")));
    let _serve = KillOnDrop(
        salestalk_command(&["serve"], &setup.env)
            .spawn()
            .expect("serve"),
    );
    assert!(
        becomes_ready(port).await,
        "never became ready on port {port}"
    );
    let profile = tempfile::tempdir().expect("profile dir");
    std::fs::create_dir_all(SCREENSHOTS).expect("screenshot dir");
    // The page takes its key from the link's fragment (never sent to the server) once.
    let admin = api_key(&setup.env, "admin", &[]);
    let page_as = |key: &str, name: &str, query: &str| {
        let url = format!("http://127.0.0.1:{port}/{name}?{query}#key={key}");
        let dom = String::from_utf8(chromium(profile.path(), &["--dump-dom".into()], &url))
            .expect("utf-8 DOM");
        assert!(
            dom.contains("data-loaded=\"true\""),
            "{name} never finished loading:\n{dom}"
        );
        dom
    };
    let page = |name: &str, query: &str| page_as(&admin, name, query);

    // Without a key the page asks for one and shows nothing.
    let dom = page_as("", "sre", "range=24h");
    assert!(dom.contains("data-auth=\"needed\""), "{dom}");
    assert!(!dom.contains("data-state=\"ok\""), "no panel without a key");

    // SRE: volume, publish success and DLQ depth are the recomputation's.
    let dom = page("sre", "range=24h");
    let sre = panels(&dom);
    assert!(
        !dom.contains("data-unit=\"undeclared\""),
        "every column declares its unit"
    );
    assert!(
        sre.values()
            .all(|p| p.get("data-state").map(String::as_str) != Some("error")),
        "{sre:?}"
    );
    assert_eq!(
        number(&sre, "volume", "data-total"),
        expected.accepted as f64
    );
    assert_eq!(
        number(&sre, "volume_by_type", "data-total"),
        expected.accepted as f64
    );
    assert_eq!(
        number(&sre, "dlq_depth", "data-value"),
        expected.dead_letters.len() as f64
    );
    assert_eq!(
        number(&sre, "dlq_inflow", "data-total"),
        expected.dead_letters.len() as f64
    );
    // A late event was published fine: only the invalid messages are failed publishes.
    let failed = expected
        .dead_letters
        .iter()
        .filter(|d| d.3 != "late")
        .count();
    let success = 1.0 - failed as f64 / messages as f64;
    assert!((number(&sre, "publish_success", "data-value") - success).abs() < 1e-9);
    // The contract's targets and thresholds are drawn: the publish success's level follows
    // its value, and each marked panel says its target and threshold in words.
    let expected_level = if success < 0.99 {
        "alert"
    } else if success < 0.999 {
        "target"
    } else {
        "ok"
    };
    assert_eq!(
        sre["publish_success"].get("data-level").map(String::as_str),
        Some(expected_level),
        "{:?}",
        sre["publish_success"]
    );
    for text in [
        "target: above 99.90 % · alert: below 99.00 %",
        "p95_ms: target: below 5000 ms · alert: above 30000 ms",
        "error_rate: target: below 0.10 % · alert: above 1.00 %",
        "target: 0 · alert: above 10",
    ] {
        assert!(dom.contains(text), "the SRE page does not say {text:?}");
    }
    assert_eq!(
        sre["dlq_depth"].get("data-level").map(String::as_str),
        Some(if expected.dead_letters.len() > 10 {
            "alert"
        } else if expected.dead_letters.is_empty() {
            "ok"
        } else {
            "target"
        })
    );
    // The pipeline's three consumers and the default table's routing targets.
    let targets = crate::support::settings().routing.targets.len() as f64;
    assert_eq!(
        number(&sre, "latency", "data-rows"),
        3.0 + targets,
        "three consumers and the targets"
    );
    assert_eq!(
        number(&sre, "lag", "data-total"),
        0.0,
        "everything is durable"
    );
    // What the contract asks people to watch, as they read it: the warning, the resend with
    // other content, and each version's events and lifecycle.
    assert_eq!(
        texts(&dom, "contract_warnings", "source"),
        [(source.clone(), source.clone())]
    );
    assert_eq!(
        texts(&dom, "contract_warnings", "field"),
        [("/metadata".to_string(), "/metadata".to_string())]
    );
    assert_eq!(cells(&dom, "contract_warnings", "kind"), ["missing"]);
    assert_eq!(cells(&dom, "contract_warnings", "events"), ["1"]);
    assert_eq!(
        texts(&dom, "conflicting_duplicates", "source"),
        [(source.clone(), source.clone())]
    );
    assert_eq!(
        texts(&dom, "conflicting_duplicates", "conflicting"),
        [("1".to_string(), "1".to_string())]
    );
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for ((_, _, event_type, _), n) in &expected.volume {
        *by_type.entry(event_type.clone()).or_default() += n;
    }
    let shown: BTreeMap<String, u64> = cells(&dom, "versions", "event")
        .into_iter()
        .zip(cells(&dom, "versions", "version"))
        .zip(texts(&dom, "versions", "events"))
        .map(|((event, version), (n, text))| {
            let n: u64 = n.parse().expect("a count");
            assert_eq!(text, grouped(n as i64), "a count reads as a count");
            (format!("{event}.{version}"), n)
        })
        .collect();
    assert_eq!(shown, by_type, "events per version");
    assert!(
        cells(&dom, "versions", "lifecycle")
            .iter()
            .all(|l| l == "current"),
        "no version is deprecated by default"
    );

    // Product: conversations completed are the distinct valid conversation.completed events.
    let conversations: u64 = expected
        .volume
        .iter()
        .filter(|((_, _, event_type, _), _)| event_type == "conversation.completed.v1")
        .map(|(_, n)| n)
        .sum();
    let dom = page("product", "range=24h");
    let product = panels(&dom);
    assert_eq!(
        number(&product, "conversations", "data-total"),
        conversations as f64
    );
    assert_eq!(
        cells(&dom, "engagement", "completed"),
        vec![conversations.to_string()]
    );
    assert!(number(&product, "quality", "data-rows") >= 1.0);
    // Tenant tracking and ingestion: one onboarding per distinct valid tenant.provisioned,
    // one batch per distinct valid metrics.ingested, and what a person reads.
    let of_type = |wanted: &str| -> u64 {
        expected
            .volume
            .iter()
            .filter(|((_, _, event_type, _), _)| event_type == wanted)
            .map(|(_, n)| n)
            .sum()
    };
    let onboarded: u64 = cells(&dom, "onboarding", "onboarded")
        .iter()
        .map(|n| n.parse::<u64>().expect("a count"))
        .sum();
    assert_eq!(
        onboarded,
        of_type("tenant.provisioned.v1"),
        "tenants onboarded"
    );
    let batches: u64 = cells(&dom, "ingestion", "uploads")
        .iter()
        .map(|n| n.parse::<u64>().expect("a count"))
        .sum();
    assert_eq!(batches, of_type("metrics.ingested.v1"), "ingestion batches");
    for (value, text) in texts(&dom, "ingestion", "invalid_share") {
        let share: f64 = value.parse().expect("a share");
        assert_eq!(text, format!("{:.2} %", share * 100.0));
    }
    for (value, text) in texts(&dom, "onboarding", "avg_provisioning_ms") {
        let ms: f64 = value.parse().expect("a duration");
        assert_eq!(text, format!("{ms:.0} ms"));
    }
    // What a person reads: each column in its declared unit, whatever its name says.
    let count = &texts(&dom, "engagement", "insights_shared")[0];
    let shared: i64 = count.0.parse().expect("a count");
    assert_eq!(count.1, grouped(shared), "a count reads as a count");
    let duration = &texts(&dom, "engagement", "avg_response_ms")[0];
    let ms: f64 = duration.0.parse().expect("a duration");
    assert_eq!(duration.1, format!("{ms:.0} ms"));
    for (value, text) in texts(&dom, "quality", "hallucination_rate") {
        let share: f64 = value.parse().expect("a share");
        assert_eq!(text, format!("{:.2} %", share * 100.0));
    }
    assert!(
        !dom.contains("data-unit=\"undeclared\""),
        "every column declares its unit"
    );

    // Billing: every tenant's cost to the nanodollar, and the total per day.
    let mut cost_per_tenant: BTreeMap<String, i64> = BTreeMap::new();
    for ((_, tenant, _, _), value) in &expected.cost {
        *cost_per_tenant.entry(tenant.clone()).or_default() += value.0;
    }
    let dom = page("billing", "range=30d");
    let billing = panels(&dom);
    let shown: BTreeMap<String, i64> = cells(&dom, "tenants", "tenant_id")
        .into_iter()
        .zip(cells(&dom, "tenants", "cost_nanos"))
        .map(|(tenant, nanos)| (tenant, nanos.parse().expect("nanos")))
        .collect();
    assert_eq!(shown, cost_per_tenant, "cost per tenant");
    for (nanos, text) in texts(&dom, "tenants", "cost_nanos") {
        let nanos: i64 = nanos.parse().expect("nanos");
        assert_eq!(
            text,
            format!("${}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
        );
    }
    assert!(
        !dom.contains("data-unit=\"undeclared\""),
        "every column declares its unit"
    );
    let total: i64 = cost_per_tenant.values().sum();
    assert!((number(&billing, "daily_cost", "data-total") - total as f64 / 1e9).abs() < 1e-6);

    // The page's download link serves what `salestalk billing export` writes.
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    assert!(
        dom.contains(&format!("/api/billing/export.csv?month={month}")),
        "the link"
    );
    let (status, csv) = http_get_as(
        port,
        &format!("/api/billing/export.csv?month={month}"),
        Some(&admin),
    )
    .expect("the CSV");
    assert_eq!(status, 200);
    let cli = stdout_of(&salestalk(
        &["billing", "export", "--month", &month],
        &setup.env,
    ));
    assert_eq!(csv, cli);
    let (status, _) =
        http_get_as(port, "/api/billing/export.csv?month=2026-13", Some(&admin)).expect("answers");
    assert_eq!(status, 400);

    // A reader key logs in and sees its tenant only: its events, its cost, its row.
    let (tenant, tenant_cost) = cost_per_tenant
        .iter()
        .next()
        .map(|(t, c)| (t.clone(), *c))
        .expect("a tenant with cost");
    let reader = api_key(&setup.env, "reader", &[&tenant]);
    let dom = page_as(&reader, "billing", "range=30d");
    assert!(dom.contains(&format!("data-tenants=\"{tenant}\"")), "{dom}");
    assert_eq!(cells(&dom, "tenants", "tenant_id"), vec![tenant.clone()]);
    let billing = panels(&dom);
    assert!((number(&billing, "daily_cost", "data-total") - tenant_cost as f64 / 1e9).abs() < 1e-6);
    let dom = page_as(&reader, "sre", "range=24h");
    let sre = panels(&dom);
    let tenant_events: u64 = expected
        .volume
        .iter()
        .filter(|((_, t, _, _), _)| *t == tenant)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(number(&sre, "volume", "data-total"), tenant_events as f64);
    assert!(
        tenant_events < expected.accepted as u64,
        "other tenants exist"
    );
    assert_eq!(
        sre["lag"].get("data-state").map(String::as_str),
        Some("restricted"),
        "lag is about the whole pipeline"
    );
    // Asking for another tenant in the address is refused, not quietly widened.
    let other = cost_per_tenant.keys().nth(1).expect("a second tenant");
    let dom = page_as(&reader, "sre", &format!("range=24h&tenant={other}"));
    assert!(dom.contains("this key does not read that tenant"), "{dom}");

    // Empty and error states say so.
    let dom = page("sre", "range=24h&tenant=nobody-has-this-tenant");
    let empty = panels(&dom);
    assert_eq!(
        empty["volume"].get("data-state").map(String::as_str),
        Some("empty")
    );
    assert!(dom.contains("No data in this range."));
    let dom = page("sre", "range=forever");
    assert!(
        dom.contains("Could not load the dashboard: range must be one of"),
        "{dom}"
    );

    for name in ["sre", "product", "billing"] {
        let path = format!("{SCREENSHOTS}/{name}.png");
        let _ = std::fs::remove_file(&path);
        chromium(
            profile.path(),
            &[
                format!("--screenshot={path}"),
                "--window-size=1400,1800".into(),
            ],
            &format!("http://127.0.0.1:{port}/{name}?range=30d#key={admin}"),
        );
        let png = std::fs::read(&path).expect("a screenshot");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 20_000,
            "{path}: {} bytes",
            png.len()
        );
    }
    setup.isolated.remove().await;
}
