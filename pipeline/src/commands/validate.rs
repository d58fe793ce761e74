//! `salestalk validate`: check JSON Lines events against the contracts.

use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::tools::validate::{OutputFormat, validate_stream};

/// `salestalk validate` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// File to read; `-` or nothing for standard input.
    #[arg(value_name = "FILE|-")]
    input: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: OutputFormat,
    /// Lines longer than this are reported as oversized without being parsed.
    #[arg(long, default_value_t = 64 << 20)]
    max_line_bytes: usize,
}

/// Exit 0 when every line is valid, 1 when some are not.
pub fn execute(args: Args) -> anyhow::Result<ExitCode> {
    let out = BufWriter::new(io::stdout().lock());
    let summary = match args.input.filter(|p| p.as_os_str() != "-") {
        Some(path) => {
            let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            validate_stream(
                BufReader::with_capacity(1 << 20, file),
                out,
                args.format,
                args.max_line_bytes,
            )
        }
        None => validate_stream(io::stdin().lock(), out, args.format, args.max_line_bytes),
    }
    .context("validating")?;
    eprintln!(
        "{} line(s): {} valid ({} with contract warnings), {} invalid",
        summary.lines, summary.valid, summary.warned, summary.invalid
    );
    Ok(if summary.invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
