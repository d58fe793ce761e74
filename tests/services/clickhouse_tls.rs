//! ClickHouse over https with a CA of the test's own: a server certificate signed by it, the
//! local server's `https_port` serving it, and the pipeline trusting it through
//! `clickhouse.ca_file`: migrations, keys and reads work over TLS; without the CA the
//! connection is refused as untrusted; a CA file that is not there stops start-up and says so.

use std::process::Command;

use crate::support::{PrivateServices, salestalk, stdout_of, unique};

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA, and a certificate for 127.0.0.1 and localhost that it signed: (ca, cert, key) paths.
fn certificates(dir: &std::path::Path) -> (String, String, String) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=salestalk test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\n",
    )
    .expect("extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    let path = |name: &str| dir.join(name).display().to_string();
    (path("ca.pem"), path("server.pem"), path("server.key"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pipeline_talks_to_clickhouse_over_https_trusting_a_custom_ca() {
    // The server runs as its own user: the files must be readable to it.
    let dir = std::path::PathBuf::from(format!("/var/tmp/{}", unique("it-tls-certs")));
    std::fs::create_dir_all(&dir).expect("dir");
    let (ca, cert, key) = certificates(&dir);
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [
        (dir.display().to_string(), 0o755),
        (cert.clone(), 0o644),
        (key.clone(), 0o644),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("permissions");
    }
    let (_server, https) = PrivateServices::start_clickhouse_https("it-tls", &cert, &key);
    let url = format!("https://127.0.0.1:{https}");
    let env = vec![
        ("SALESTALK__CLICKHOUSE__URL", url.clone()),
        ("SALESTALK__CLICKHOUSE__CA_FILE", ca.clone()),
        ("SALESTALK__CLICKHOUSE__DATABASE", "tls_test".to_string()),
    ];

    // Trusting the CA: the schema, a key written and read back, over TLS.
    stdout_of(&salestalk(&["migrate"], &env));
    let made = stdout_of(&salestalk(
        &["keys", "create", "--role", "reader", "--tenant", "tenant-a"],
        &env,
    ));
    let listed = stdout_of(&salestalk(&["keys", "list"], &env));
    assert!(
        listed.contains(crate::support::key_id(made.trim())),
        "{listed}"
    );
    let endpoint = salestalk_store::Endpoint {
        url: url.clone(),
        ca_file: ca.clone(),
        ..crate::support::endpoint("tls_test")
    };
    let profile = endpoint.probe().await.expect("probed over https");
    assert!(profile.version.major >= 18, "{profile:?}");

    // Without the CA the server is not trusted, and the error says why.
    let untrusted = salestalk_store::Endpoint {
        ca_file: String::new(),
        transport: Default::default(),
        ..endpoint.clone()
    };
    let error = untrusted
        .probe()
        .await
        .expect_err("an unknown CA is refused");
    assert!(
        error.to_string().to_lowercase().contains("certificate")
            || format!("{error:?}").to_lowercase().contains("certificate"),
        "{error:?}"
    );

    // A CA file that is not there stops start-up, naming the key.
    let mut missing = env.clone();
    missing[1].1 = "/nonexistent/ca.pem".to_string();
    let refused = salestalk(&["check"], &missing);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("clickhouse.ca_file"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
