//! `salestalk validate`: checks JSON Lines files against the event contracts.

use std::io::{self, BufRead, Write};

use salestalk_contracts::{ContractWarning, ViolationKind, assess};
use serde::Serialize;

use crate::tools::lines::{Line, LineReader};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One line per violation or contract warning, for people; clean lines print nothing.
    Human,
    /// Exactly one JSON object per input line.
    Json,
}

/// Counts of one validation run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Lines read.
    pub lines: u64,
    /// Lines that hold a valid event.
    pub valid: u64,
    /// Valid lines carrying contract warnings (counted, but departing from the tables).
    pub warned: u64,
    /// Lines that do not.
    pub invalid: u64,
}

#[derive(Serialize)]
struct JsonLine<'a> {
    line: u64,
    valid: bool,
    errors: Vec<JsonError<'a>>,
    /// Where a valid event departs from the contract's tables (it is still counted).
    warnings: Vec<JsonError<'a>>,
}

#[derive(Serialize)]
struct JsonError<'a> {
    path: &'a str,
    message: String,
}

/// Validates every line of `input`, writing results to `output`.
pub fn validate_stream(
    input: impl BufRead,
    mut output: impl Write,
    format: OutputFormat,
    max_line_bytes: usize,
) -> io::Result<Summary> {
    let mut reader = LineReader::new(input, max_line_bytes);
    let mut buf = Vec::new();
    let mut summary = Summary::default();
    while let Some(line) = reader.next_line(&mut buf)? {
        summary.lines += 1;
        let verdict = match line {
            Line::Complete => assess(&buf, max_line_bytes),
            Line::TooLong(size) => Err(vec![salestalk_contracts::Violation {
                path: String::new(),
                kind: ViolationKind::TooLarge {
                    size,
                    limit: max_line_bytes,
                },
            }]),
        };
        let (violations, warnings): (Vec<_>, Vec<ContractWarning>) = match verdict {
            Ok(warnings) => (Vec::new(), warnings),
            Err(violations) => (violations, Vec::new()),
        };
        if violations.is_empty() {
            summary.valid += 1;
            summary.warned += u64::from(!warnings.is_empty());
        } else {
            summary.invalid += 1;
        }
        match format {
            OutputFormat::Json => {
                let listed = |path, kind: &ViolationKind| JsonError {
                    path,
                    message: kind.to_string(),
                };
                let record = JsonLine {
                    line: summary.lines,
                    valid: violations.is_empty(),
                    errors: violations
                        .iter()
                        .map(|v| listed(&v.path, &v.kind))
                        .collect(),
                    warnings: warnings.iter().map(|w| listed(&w.path, &w.kind)).collect(),
                };
                serde_json::to_writer(&mut output, &record)?;
                output.write_all(b"\n")?;
            }
            OutputFormat::Human => {
                for violation in &violations {
                    let path = if violation.path.is_empty() {
                        "(whole line)"
                    } else {
                        &violation.path
                    };
                    writeln!(output, "line {}: {path}: {}", summary.lines, violation.kind)?;
                }
                for warning in &warnings {
                    writeln!(
                        output,
                        "line {}: {}: warning: {} (accepted and counted)",
                        summary.lines, warning.path, warning.kind
                    )?;
                }
            }
        }
    }
    output.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str, format: OutputFormat) -> (Summary, String) {
        let mut out = Vec::new();
        let summary =
            validate_stream(input.as_bytes(), &mut out, format, 1 << 20).expect("in memory");
        (summary, String::from_utf8(out).expect("utf-8 output"))
    }

    #[test]
    fn json_output_has_one_object_per_line() {
        let (summary, out) = run("{}\n[]\n", OutputFormat::Json);
        assert_eq!(
            summary,
            Summary {
                lines: 2,
                valid: 0,
                warned: 0,
                invalid: 2
            }
        );
        let records: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1]["line"], 2);
        assert_eq!(records[1]["errors"][0]["path"], "");
        assert!(
            records[0]["errors"]
                .as_array()
                .expect("array")
                .iter()
                .any(|e| e["path"] == "/eventId")
        );
    }

    #[test]
    fn a_contract_warning_is_printed_and_the_line_stays_valid() {
        let example = include_str!("../../../contracts/tests/corpus/spec-examples.jsonl")
            .lines()
            .next()
            .expect("an example");
        let mut event: serde_json::Value = serde_json::from_str(example).expect("json");
        event.as_object_mut().expect("object").remove("metadata");
        let line = format!("{event}\n");
        let (summary, out) = run(&line, OutputFormat::Human);
        assert_eq!((summary.valid, summary.warned), (1, 1));
        assert!(out.starts_with("line 1: /metadata: warning: "), "{out}");
        let (_, out) = run(&line, OutputFormat::Json);
        let record: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        assert_eq!(record["valid"], true);
        assert_eq!(record["warnings"][0]["path"], "/metadata");
    }

    #[test]
    fn human_output_names_line_and_field() {
        let (_, out) = run("nope\n", OutputFormat::Human);
        assert!(
            out.starts_with("line 1: (whole line): not valid JSON"),
            "{out}"
        );
    }
}
