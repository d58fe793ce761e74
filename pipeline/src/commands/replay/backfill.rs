//! `salestalk replay --backfill`: whole UTC days corrected now, tenant by tenant.

use super::*;

/// `--backfill`: corrects whole UTC days now, tenant by tenant, as the corrector of `salestalk
/// run` does when it finds them wrong (ADR 0016): each tenant's day recomputed from the
/// archive (late events and the events dead-lettered as late included, each event once) and
/// written over the live rows at a correction epoch. Only days every task is past, and only
/// days the archive still holds in full.
pub(super) async fn backfill(
    settings: &crate::settings::Settings,
    args: RunArgs,
) -> anyhow::Result<ExitCode> {
    let corrector = settings.corrector();
    let endpoint = &settings.clickhouse;
    if !args.event_ids.is_empty() || !args.event_types.is_empty() || args.correlation_id.is_some() {
        bail!(
            "--backfill corrects whole windows: it takes --since, --until and --tenant only \
             (an event-type or event-id filter would leave part of a window's events out)"
        );
    }
    let (Some(since), Some(until)) = (args.since, args.until) else {
        bail!("--backfill needs --since and --until");
    };
    // Whole days: a day's and an hour's rollup rows are rewritten too, and must hold every
    // minute of theirs.
    let since_s = since.timestamp().div_euclid(DAY_S) * DAY_S;
    let until_s = (until.timestamp() + DAY_S - 1).div_euclid(DAY_S) * DAY_S;
    anyhow::ensure!(since_s < until_s, "--since must be before --until");
    let started = Utc::now();
    let now_ms = started.timestamp_millis().max(0) as u64;
    let oldest = oldest_whole_day(settings.retention.archive_days, now_ms);
    if since_s < oldest {
        bail!(
            "the archive holds whole days from {} on (retention.archive_days = {}): a backfill \
             from {} would need it from {}, and would recompute a day from part of its events",
            date(oldest),
            settings.retention.archive_days,
            date(since_s),
            date(since_s)
        );
    }
    let range = (datetime(since_s), datetime(until_s));
    let mut record = ReplayRecord {
        replay_id: format!("replay-{}", started.format("%Y%m%dT%H%M%S%.3fZ")),
        who: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        selection: ReplaySelection {
            tenants: args.tenants.clone(),
            since: Some(range.0),
            until: Some(range.1),
            ..ReplaySelection::default()
        }
        .to_string(),
        target: "backfill".into(),
        dry_run: u8::from(args.dry_run),
        selected: 0,
        sent: 0,
        started_at: datetime(started.timestamp()),
        finished_at: 0,
    };
    // Every task that wrote the days must be past them for good: checked for the whole range
    // before anything is written.
    let open_from = salestalk_corrections::open_from(&corrector).await?;
    let days: Vec<i64> = (since_s..until_s).step_by(DAY_S as usize).collect();
    for day in &days {
        for task in endpoint.tasks_of_day(*day).await? {
            let open = open_from.get(&task).copied();
            if open.is_none_or(|open| open < day + DAY_S) {
                bail!(
                    "{}: backfill whole days that ended before then (its watermark minus the \
                     allowed lateness) and that it has sealed",
                    Refusal::NotFinal {
                        task,
                        open_from: open
                    }
                );
            }
        }
    }
    let checks: BTreeMap<(String, i64), CorrectionRecord> = endpoint
        .latest_checks(since_s, until_s)
        .await?
        .into_iter()
        .map(|c| ((c.tenant_id.clone(), i64::from(c.day) * DAY_S), c))
        .collect();
    let live = endpoint.live_day_volumes(since_s, until_s).await?;
    let arrivals = endpoint.late_arrivals(since_s, until_s).await?;
    let (mut events, mut late, mut rows) = (0i64, 0i64, 0u64);
    let mut held = Corrections::default();
    for day in days {
        let mut tenants: BTreeSet<String> = args.tenants.iter().cloned().collect();
        if tenants.is_empty() {
            tenants.extend(live.iter().filter(|r| r.1 == day).map(|r| r.0.clone()));
            tenants.extend(arrivals.iter().filter(|r| r.1 == day).map(|r| r.0.clone()));
            tenants.extend(
                endpoint
                    .archived_per_tenant(day)
                    .await?
                    .into_iter()
                    .map(|r| r.0),
            );
        }
        for tenant in tenants {
            let total = |rows: &[(String, i64, i64)]| {
                rows.iter()
                    .find(|r| r.0 == tenant && r.1 == day)
                    .map_or(0, |r| r.2)
            };
            let correction = DayCorrection {
                settings: &corrector,
                tenant: &tenant,
                day,
                trigger: Trigger::Backfill,
                before: Before::new(
                    total(&live),
                    total(&arrivals),
                    checks.get(&(tenant.clone(), day)),
                ),
            };
            if args.dry_run {
                continue;
            }
            match correction.prepare(&open_from, now_ms, true).await? {
                Ok(prepared) => {
                    let done = &prepared.record;
                    events += done.events;
                    late += done.late_events;
                    rows += done.rows_written;
                    eprintln!(
                        "{tenant} {}: {} events ({} late, {} counted twice before), {} rows",
                        date(day),
                        done.events,
                        done.late_events,
                        done.duplicates_removed,
                        done.rows_written
                    );
                    held.add(&corrector, prepared).await?;
                }
                Err(refusal) => bail!("{tenant} {}: {refusal}", date(day)),
            }
        }
    }
    held.write(&corrector).await?;
    record.selected = events.max(0) as u64;
    record.sent = record.selected;
    finish(endpoint, &mut record).await?;
    println!(
        "{} {events} events ({late} of them late) over {}: {rows} window rows rewritten",
        if args.dry_run {
            "would backfill"
        } else {
            "backfilled"
        },
        record.selection
    );
    Ok(ExitCode::SUCCESS)
}

fn date(seconds: i64) -> String {
    DateTime::from_timestamp(seconds, 0)
        .map_or_else(|| seconds.to_string(), |t| t.date_naive().to_string())
}
