//! The Prometheus endpoint of `salestalk run`: it serves its counters while running, the lag
//! of every partition falls to zero once the backlog is durable, and the dedup budget is
//! shared among the partitions the instance owns.

use std::time::{Duration, Instant};

use crate::support::{
    Isolated, free_port, read_and_lags, salestalk, salestalk_command, scrape, stdout_of,
};

#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_progress_and_lag_returns_to_zero() {
    let isolated = Isolated::create("it-metrics", 2).await;
    let port = free_port();
    let env = &isolated.env;
    let produced = salestalk(
        &[
            "generate",
            "--kafka",
            "--count",
            "3000",
            "--start",
            "now",
            "--invalid",
            "0.02",
        ],
        env,
    );
    let report: serde_json::Value =
        serde_json::from_str(stdout_of(&produced).trim()).expect("report");
    let sent = report["delivered"].as_f64().expect("delivered");

    let mut child = salestalk_command(&["run", "--idle-exit", "15s"], env)
        .env("SALESTALK__TELEMETRY__LISTEN", format!("127.0.0.1:{port}"))
        .env("SALESTALK__PIPELINE__DEDUP_MEMORY_MIB", "10")
        .spawn()
        .expect("run starts");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    let caught_up = loop {
        if let Some(body) = scrape(port) {
            let (read, lags) = read_and_lags(&body);
            let done = read >= sent && lags.len() == 10 && lags.iter().all(|lag| *lag == 0.0);
            last = body;
            if done {
                break true;
            }
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    child.kill().ok();
    child.wait().ok();
    assert!(
        caught_up,
        "never saw all {sent} messages read with zero lag:\n{last}"
    );
    for series in [
        "salestalk_messages_total{outcome=\"accepted\"}",
        "salestalk_dead_letters_total{reason=",
        "salestalk_flush_seconds_count",
        "salestalk_batch_size_count",
        "salestalk_sink_up{sink=\"clickhouse\"} 1",
        "salestalk_sink_up{sink=\"dlq_topic\"} 1",
        "salestalk_dlq_depth ",
        "salestalk_watermark_lag_seconds{",
        "salestalk_open_windows",
        // The retention job ran at start, on schedule, and found nothing expired.
        "salestalk_retention_runs_total{outcome=\"ok\"} 1",
        // 10 MiB at 24 bytes an id (436,906 ids) over the 10 partitions this one instance owns.
        "salestalk_dedup_cap_ids 43690\n",
    ] {
        assert!(last.contains(series), "{series} missing from:\n{last}");
    }
    isolated.remove().await;
}
