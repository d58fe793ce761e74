//! Sealing (ADR 0023): once a task's hours and days are final, the runtime writes their rows
//! from the durable minutes, and the next checkpoint records how far it got. Traffic over a
//! day and more of event time, the pipeline killed at random moments (between a seal and the
//! checkpoint that records it, among others): every view still equals the recomputation, each
//! task's sealed rows are the sums of its minutes, and the checkpoints show hours and a day
//! sealed. A partition that goes quiet seals its last hours too, once its clocks run on with
//! the machine's (`pipeline.idle_after_ms`).

use std::time::Duration;

use clickhouse::Row;
use serde::Deserialize;

use crate::exactness::{
    LATENESS_MS, Setup, TRAFFIC, assert_sealed_rows_sum_their_minutes,
    assert_views_equal_recomputation, assert_views_match, durable, kill_at_random_moments,
    pipeline_env, produce_over, read_back, spawn_run,
};
use crate::support::{Isolated, KillIfPanicking, salestalk, stdout_of};

#[derive(Debug, Row, Deserialize)]
struct Marks {
    task: String,
    first_minute: u32,
    event_watermark_ms: i64,
    broker_watermark_ms: i64,
    sealed_hours_before: i64,
    sealed_days_before: i64,
}

/// Each task's newest checkpoint (ints 2, 3: the watermarks; 5, 6: the seals) beside the first
/// minute it counted.
async fn marks(isolated: &Isolated) -> Vec<Marks> {
    isolated
        .endpoint()
        .client()
        .query(
            "SELECT task, first_minute, last[2] AS event_watermark_ms, \
             last[3] AS broker_watermark_ms, last[5] AS sealed_hours_before, \
             last[6] AS sealed_days_before \
             FROM (SELECT task, argMax(ints, epoch) AS last FROM window_state \
             WHERE family = 'checkpoint' GROUP BY task) \
             ALL INNER JOIN (SELECT task, toUInt32(min(window_start)) AS first_minute \
             FROM window_state WHERE family = 'volume' GROUP BY task) USING task",
        )
        .fetch_all()
        .await
        .expect("checkpoints")
}

#[tokio::test(flavor = "multi_thread")]
async fn hours_and_days_sealed_across_kills_change_no_view() {
    let isolated = Isolated::create("it-seal", 4).await;
    let mut env = pipeline_env(&isolated);
    // Small batches: the watermarks cross the hours over many flushes, not in one.
    env.push(("SALESTALK__PIPELINE__BATCH_SIZE", "150".to_string()));
    // 26 hours of event time: at least one midnight with hours of traffic after it.
    produce_over("--kafka", &env, 29, 9_000, 26 * 3_600, 120);
    let setup = crate::exactness::Setup { isolated, env };
    let total: i64 = read_back(&setup.isolated)
        .values()
        .map(|m| m.len() as i64)
        .sum();
    kill_at_random_moments(&setup, total, 4, 2, 13, Duration::from_millis(1_500)).await;
    assert_views_match(&setup).await;
    let sealed = assert_sealed_rows_sum_their_minutes(&setup.isolated.endpoint()).await;
    assert!(sealed > 0, "nothing sealed");

    let marks = marks(&setup.isolated).await;
    assert!(!marks.is_empty(), "no task counted anything");
    for m in &marks {
        // Never ahead of what is final: the first open minute, by the clocks it has.
        let open = [m.event_watermark_ms, m.broker_watermark_ms]
            .into_iter()
            .filter(|wm| *wm != i64::MIN)
            .map(|wm| (wm - LATENESS_MS).div_euclid(60_000) * 60)
            .min()
            .expect("a task that counted has a watermark");
        assert!(
            m.sealed_hours_before <= open / 3_600 * 3_600
                && m.sealed_days_before <= open / 86_400 * 86_400,
            "{}: sealed beyond its first open minute {open}: {m:?}",
            m.task
        );
    }
    let sealed_hours = |m: &Marks| m.sealed_hours_before - i64::from(m.first_minute);
    let busiest = marks
        .iter()
        .max_by_key(|m| sealed_hours(m))
        .expect("a task");
    assert!(
        sealed_hours(busiest) >= 20 * 3_600,
        "{busiest:?}: 26 hours of traffic, fewer than 20 sealed"
    );
    assert!(
        busiest.sealed_days_before > i64::from(busiest.first_minute),
        "{busiest:?}: no day sealed"
    );
    setup.isolated.remove().await;
}

/// Traffic that ended two hours ago (event time: 2,000 events over the two hours before), read to its end, then nothing: once the
/// partitions have been quiet for `pipeline.idle_after_ms`, their clocks run on with the
/// machine's and the hours up to the last one are sealed, with every view unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_partition_s_hours_are_sealed_by_the_machine_s_clock() {
    let isolated = Isolated::create("it-seal-quiet", 2).await;
    let mut env = pipeline_env(&isolated);
    env.push(("SALESTALK__PIPELINE__IDLE_AFTER_MS", "60000".to_string()));
    // The tests' traffic, but no event stamped ahead of its broker time: one within the
    // allowed skew would move a clock on by itself.
    let start = (chrono::Utc::now() - chrono::Duration::hours(4)).to_rfc3339();
    let mut args = vec![
        "generate", "--kafka", "--seed", "31", "--count", "2000", "--start", &start, "--rate",
        "0.28",
    ];
    let mut traffic = TRAFFIC;
    let skew = traffic
        .iter()
        .position(|arg| *arg == "--future-skew")
        .expect("the tests' traffic has clock skew");
    traffic[skew + 1] = "0";
    args.extend(traffic);
    stdout_of(&salestalk(&args, &env));
    let setup = Setup { isolated, env };
    let total: i64 = read_back(&setup.isolated)
        .values()
        .map(|m| m.len() as i64)
        .sum();
    let mut watched = KillIfPanicking::default();
    let mut run = spawn_run(&setup.env, false);
    watched.watch(&run);
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while durable(&setup.isolated).await < total {
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not catch up"
        );
        assert!(run.try_wait().expect("status").is_none(), "the run stopped");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Read to the end: the event clocks stand where the traffic ended, two hours ago, and
    // nothing after that hour is sealed.
    let caught_up_s = chrono::Utc::now().timestamp();
    let recent_hour = (caught_up_s - 600) / 3_600 * 3_600;
    let with_clocks = |marks: Vec<Marks>| -> Vec<Marks> {
        marks
            .into_iter()
            .filter(|m| m.event_watermark_ms != i64::MIN)
            .collect()
    };
    let before = with_clocks(marks(&setup.isolated).await);
    assert!(!before.is_empty(), "no task counted anything");
    for m in &before {
        assert!(
            m.sealed_hours_before < recent_hour,
            "sealed before the partition went quiet: {m:?}"
        );
    }
    // Quiet for a minute, looked at once a minute, then one flush: the clocks move on to
    // about the machine's time less a minute, which makes every hour before the last final.
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let now = with_clocks(marks(&setup.isolated).await);
        if now.iter().all(|m| m.sealed_hours_before >= recent_hour) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "quiet partitions never sealed up to {recent_hour}: {now:?}"
        );
        assert!(run.try_wait().expect("status").is_none(), "the run stopped");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    run.kill().expect("SIGKILL");
    run.wait().expect("reaped");
    assert_views_equal_recomputation(&setup, false).await;
    let sealed = assert_sealed_rows_sum_their_minutes(&setup.isolated.endpoint()).await;
    assert!(sealed > 0, "nothing sealed");
    setup.isolated.remove().await;
}
