//! The deployment files (deploy/k8s, deploy/compose.yaml, deploy/systemd) checked offline by
//! `deploy/check-manifests`, as an operator would before applying them: rendered, validated
//! against the Kubernetes and Compose schemas and systemd, their promises checked and the
//! binary shown every container's settings. And the checks shown to catch broken files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::unique;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds the pipeline crate")
        .to_path_buf()
}

/// `deploy/check-manifests` on the checkout at `root`.
fn check_manifests(root: &Path) -> Output {
    Command::new(repository().join("deploy/check-manifests"))
        .arg(root)
        .env("SALESTALK_BIN", env!("CARGO_BIN_EXE_salestalk"))
        .output()
        .expect("deploy/check-manifests runs (tools: deploy/tools/install)")
}

#[test]
fn the_deployment_files_render_and_validate_offline() {
    let output = check_manifests(&repository());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("deployment files are valid"), "{stderr}");
}

/// A copy of the files the check reads, under a fresh directory.
fn copy_of_deployment_files() -> PathBuf {
    let root = std::env::temp_dir().join(unique("salestalk-deploy-check"));
    for dir in [
        "deploy/k8s/base",
        "deploy/k8s/overlays/local",
        "deploy/k8s/overlays/production-example",
        "deploy/k8s/components/migrate",
        "deploy/systemd",
        "config",
    ] {
        std::fs::create_dir_all(root.join(dir)).expect("create");
        for entry in std::fs::read_dir(repository().join(dir)).expect("read") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                let to = root.join(dir).join(path.file_name().expect("name"));
                std::fs::copy(&path, to).expect("copy");
            }
        }
    }
    std::fs::copy(
        repository().join("deploy/compose.yaml"),
        root.join("deploy/compose.yaml"),
    )
    .expect("copy compose");
    root
}

/// Replaces `from` by `to` in `file` (which must contain it).
fn edit(root: &Path, file: &str, from: &str, to: &str) {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains(from), "{file} has no '{from}'");
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
}

#[test]
fn the_checks_catch_broken_deployment_files() {
    // (file, text, replacement, what the check must say)
    // The untouched copy passes, so each failure below is its edit's.
    let control = copy_of_deployment_files();
    let output = check_manifests(&control);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::remove_dir_all(&control).ok();
    let breakages: [(&str, &str, &str, &str); 13] = [
        (
            "deploy/k8s/base/pipeline.yaml",
            "readinessProbe:",
            "readinessProbeX:",
            "does not validate against Kubernetes",
        ),
        (
            "deploy/k8s/base/ingest.yaml",
            "          readinessProbe:\n            httpGet:\n              path: /health\n              port: http\n            periodSeconds: 10\n",
            "",
            "readinessProbe must GET /health",
        ),
        (
            "deploy/k8s/base/pipeline.yaml",
            "              path: /health/live\n              port: metrics\n            periodSeconds: 20",
            "              path: /health\n              port: metrics\n            periodSeconds: 20",
            "livenessProbe must GET /health/live",
        ),
        (
            "deploy/k8s/base/disruption-budgets.yaml",
            "  maxUnavailable: 1\n  unhealthyPodEvictionPolicy: AlwaysAllow\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: salestalk-ingest",
            "  minAvailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: salestalk-ingest",
            "use maxUnavailable",
        ),
        (
            "deploy/k8s/base/pipeline.yaml",
            "            - name: SALESTALK__KINESIS__INSTANCES\n              value: \"3\"",
            "            - name: SALESTALK__KINESIS__INSTANCES\n              value: \"2\"",
            "kinesis.instances is 2",
        ),
        (
            "deploy/k8s/overlays/production-example/kustomization.yaml",
            "value: {name: SALESTALK__KINESIS__SECRET_ACCESS_KEY, value: \"\"}",
            "value: {name: SALESTALK__KINESIS__SECRET_ACCESS_KEY, value: \"AKIAEXAMPLE\"}",
            "SALESTALK__KINESIS__SECRET_ACCESS_KEY is a literal",
        ),
        (
            "deploy/k8s/overlays/production-example/salestalk.toml",
            "comparison = \"below\"",
            "comparison = \"under\"",
            "salestalk refuses its settings",
        ),
        (
            "deploy/k8s/base/serve.yaml",
            "valueFrom:\n                secretKeyRef:\n                  name: salestalk-secrets\n                  key: clickhouse-password",
            "value: hunter2",
            "SALESTALK__CLICKHOUSE__PASSWORD is a literal",
        ),
        (
            "deploy/k8s/base/pipeline.yaml",
            "SALESTALK__TELEMETRY__LISTEN",
            "SALESTALK__TELEMETRY__LISTENING",
            "salestalk refuses its settings",
        ),
        (
            "deploy/compose.yaml",
            "stop_grace_period: 60s",
            "stop_grace_period: [60]",
            "not a valid Compose file",
        ),
        (
            "deploy/systemd/salestalk-serve.service",
            "Restart=on-failure",
            "Restrat=on-failure",
            "Unknown key",
        ),
        (
            "deploy/systemd/salestalk.sysusers",
            "u salestalk -",
            "x salestalk -",
            "salestalk.sysusers",
        ),
        (
            "deploy/systemd/salestalk.sysusers",
            "u salestalk -",
            "u salestalks -",
            "salestalk.sysusers",
        ),
    ];
    for (file, from, to, says) in breakages {
        let root = copy_of_deployment_files();
        edit(&root, file, from, to);
        let output = check_manifests(&root);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{file}: '{to}' passed the checks");
        assert!(
            stderr.contains(says),
            "{file}: expected '{says}' in:\n{stderr}"
        );
        std::fs::remove_dir_all(&root).ok();
    }
}
