//! `salestalk publish [FILE|-]`: sends JSON Lines through the ingest gateway in batches, a few
//! in flight at once, resending what the gateway answers as retryable, and prints each entry
//! that failed for good (line, eventId, code, message, pointers). The publisher key comes
//! from `SALESTALK_API_KEY`, never from the command line (where `ps` and shell history would
//! show it).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::future::join_all;

use crate::tools::lines::{Line, LineReader};
use salestalk_gateway::client::{EntryResult, IngestClient};

/// `salestalk publish` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// JSON Lines to publish; `-` or nothing for standard input.
    #[arg(value_name = "FILE|-")]
    input: Option<PathBuf>,
    /// The gateway (default: `http://` + `ingest.listen`).
    #[arg(long)]
    url: Option<String>,
    /// Entries per request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Resends of a retryable entry (Throttled, PublishFailed) before it counts as failed.
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Print a JSON summary (entries, accepted, entries a second, request latency p50/p99)
    /// on standard error at the end.
    #[arg(long)]
    stats: bool,
}

/// Exit 0 when every entry was accepted, 1 when some failed.
pub fn execute(config: Option<&std::path::Path>, args: Args) -> anyhow::Result<ExitCode> {
    let (settings, runtime) = super::start(config)?;
    let Ok(key) = std::env::var("SALESTALK_API_KEY") else {
        bail!("set SALESTALK_API_KEY to a publisher key (salestalk keys create --role publisher)");
    };
    if !(1..=settings.ingest.max_entries).contains(&args.batch) {
        bail!(
            "--batch must be 1 to {} (ingest.max_entries)",
            settings.ingest.max_entries
        );
    }
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", settings.ingest.listen));
    let client = IngestClient::new(&url, &key);
    let input: Box<dyn BufRead> = match args.input.as_ref().filter(|p| p.as_os_str() != "-") {
        Some(path) => Box::new(BufReader::with_capacity(
            1 << 20,
            File::open(path).with_context(|| format!("opening {}", path.display()))?,
        )),
        None => Box::new(io::stdin().lock()),
    };
    let mut lines = LineReader::new(input, settings.ingest.max_request_bytes);
    let mut out = io::stdout().lock();
    let started = Instant::now();
    let (mut entries, mut accepted, mut line_number) = (0u64, 0u64, 0u64);
    let mut latencies: Vec<Duration> = Vec::new();
    let mut buf = Vec::new();
    let mut done = false;
    while !done {
        // A round: up to `concurrency` batches, sent together, reported in order.
        let mut batches: Vec<Vec<(u64, Vec<u8>)>> = Vec::new();
        while batches.len() < args.concurrency.max(1) {
            let mut batch = Vec::with_capacity(args.batch);
            while batch.len() < args.batch {
                match lines.next_line(&mut buf).context("reading the input")? {
                    None => {
                        done = true;
                        break;
                    }
                    Some(Line::TooLong(bytes)) => {
                        line_number += 1;
                        entries += 1;
                        writeln!(
                            out,
                            "line {line_number}: not sent: {bytes} bytes, over the request limit"
                        )?;
                    }
                    Some(Line::Complete) => {
                        line_number += 1;
                        if !buf.iter().all(u8::is_ascii_whitespace) {
                            batch.push((line_number, buf.clone()));
                        }
                    }
                }
            }
            if !batch.is_empty() {
                batches.push(batch);
            }
            if done {
                break;
            }
        }
        let sends = batches.iter().map(|batch| {
            let bodies: Vec<Vec<u8>> = batch.iter().map(|(_, b)| b.clone()).collect();
            let client = &client;
            async move { client.publish(&bodies, args.retries).await }
        });
        for (batch, published) in batches.iter().zip(runtime.block_on(join_all(sends))) {
            let published = published.with_context(|| format!("publishing to {url}"))?;
            latencies.extend(published.request_latencies);
            for ((line, _), result) in batch.iter().zip(&published.results) {
                entries += 1;
                match &result.error_code {
                    None => accepted += 1,
                    Some(_) => report(&mut out, *line, result)?,
                }
            }
        }
    }
    out.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "published {accepted} of {entries} entries ({} failed) in {seconds:.1} s",
        entries - accepted
    );
    if args.stats {
        latencies.sort();
        let quantile = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        eprintln!(
            "{}",
            serde_json::json!({
                "entries": entries,
                "accepted": accepted,
                "seconds": seconds,
                "entries_per_second": entries as f64 / seconds.max(1e-9),
                "requests": latencies.len(),
                "request_ms_p50": quantile(0.5),
                "request_ms_p99": quantile(0.99),
            })
        );
    }
    Ok(if accepted == entries {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One failed entry, as a person reads it.
fn report(out: &mut impl Write, line: u64, result: &EntryResult) -> io::Result<()> {
    writeln!(
        out,
        "line {line}: {} {}: {}",
        if result.event_id.is_empty() {
            "(no eventId)"
        } else {
            &result.event_id
        },
        result.error_code.as_deref().unwrap_or_default(),
        result.error_message.as_deref().unwrap_or_default()
    )?;
    for error in &result.errors {
        writeln!(out, "    {}: {}", error.path, error.message)?;
    }
    Ok(())
}
