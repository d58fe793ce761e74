//! The Prometheus alert rules for the pipeline's `/metrics` (deploy/prometheus/) are valid and
//! fire on the series they are meant for, per `promtool test rules`. Every metric they name
//! must be one the pipeline exports, so a renamed metric cannot leave a rule silently dead.

use std::process::Command;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/prometheus");

fn promtool(args: &[&str]) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(DIR)
        .output()
        .unwrap_or_else(|e| panic!("promtool does not run ({e}); deploy/tools/install installs it"))
}

#[test]
fn the_rules_are_valid_and_their_unit_tests_pass() {
    for args in [
        &["check", "rules", "salestalk.rules.yml"][..],
        &["test", "rules", "salestalk.rules.test.yml"][..],
    ] {
        let output = promtool(args);
        assert!(
            output.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn every_metric_the_rules_name_is_exported() {
    let rules = std::fs::read_to_string(format!("{DIR}/salestalk.rules.yml")).expect("rules");
    let exported = salestalk::telemetry::Telemetry::default();
    exported.count("read", 1);
    exported.set_sink_up("clickhouse", true);
    exported
        .dead_letters
        .get_or_create(&salestalk::telemetry::ReasonLabels {
            reason: "not_json".into(),
        })
        .inc();
    exported
        .partition_lag
        .get_or_create(&salestalk::telemetry::PartitionLabels {
            topic: "t".into(),
            partition: 0,
        })
        .set(1);
    exported
        .consumer_group_lag_seconds
        .get_or_create(&salestalk::telemetry::GroupLabels {
            group: "g".into(),
            topic: "t".into(),
        })
        .set(1.0);
    exported
        .consumer_group_commit_latency_seconds
        .get_or_create(&salestalk::telemetry::GroupLabels {
            group: "g".into(),
            topic: "t".into(),
        })
        .observe(1.0);
    let text = exported.render();
    let named: std::collections::BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("salestalk_"))
        .collect();
    assert!(!named.is_empty());
    for metric in named {
        assert!(
            text.lines().any(|line| line.starts_with(metric)),
            "{metric} is named by a rule but not exported:\n{text}"
        );
    }
}
