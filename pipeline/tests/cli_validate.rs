//! `salestalk validate` as a user runs it: exit codes, output formats, hostile input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const CASES: &str = include_str!("../../contracts/tests/corpus/cli-cases.jsonl");
const EXPECTED: &str = include_str!("../../contracts/tests/corpus/cli-cases.expected.json");
const SPEC_EXAMPLES: &str = "../contracts/tests/corpus/spec-examples.jsonl";

fn validate(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_salestalk"))
        .arg("validate")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut input = child.stdin.take().expect("stdin");
    let bytes = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // The validator may stop reading early only on error; ignore a closed pipe.
        let _ = input.write_all(&bytes);
    });
    let output = child.wait_with_output().expect("finishes");
    writer.join().expect("writer thread");
    output
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect()
}

#[test]
fn spec_examples_are_valid_and_exit_zero() {
    let output = validate(&[SPEC_EXAMPLES], b"");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        output.stdout.is_empty(),
        "human output is silent for valid lines"
    );
}

#[test]
fn json_output_classifies_a_hand_written_corpus_with_exact_pointers() {
    let expected: Vec<Vec<String>> = serde_json::from_str(EXPECTED).expect("expectations");
    let output = validate(&["--format", "json", "-"], CASES.as_bytes());
    assert_eq!(output.status.code(), Some(1));
    let records = json_lines(&output);
    assert_eq!(records.len(), expected.len(), "one object per input line");
    for (index, (record, pointers)) in records.iter().zip(&expected).enumerate() {
        assert_eq!(record["line"], index + 1);
        assert_eq!(
            record["valid"],
            pointers.is_empty(),
            "line {}: {record}",
            index + 1
        );
        let mut got: Vec<String> = record["errors"]
            .as_array()
            .expect("errors array")
            .iter()
            .map(|e| {
                assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
                e["path"].as_str().expect("path").to_string()
            })
            .collect();
        got.sort();
        got.dedup();
        assert_eq!(&got, pointers, "line {}", index + 1);
    }
}

#[test]
fn hostile_input_gets_one_clear_verdict_per_line() {
    let mut input = Vec::new();
    input.extend_from_slice(b"\x00\xff\xfe garbage \x81\n");
    input.extend_from_slice(&vec![b'['; 10_000]);
    input.extend_from_slice(&vec![b']'; 10_000]);
    input.push(b'\n');
    let mut huge = br#"{"eventId":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', 10 << 20));
    huge.extend_from_slice(b"\"}\n");
    input.extend_from_slice(&huge);
    input.extend_from_slice(b"{\"a\": \"\xc3\x28\"}\n");
    input.extend_from_slice(b"{\"n\": 1e999}\n");
    let output = validate(&["--format", "json"], &input);
    assert_eq!(output.status.code(), Some(1));
    let records = json_lines(&output);
    assert_eq!(records.len(), 5);
    assert!(records.iter().all(|r| r["valid"] == false));
    // The 10 MB line is read and judged on its fields, not refused for its size.
    assert!(
        records[2]["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .any(|e| e["path"] == "/eventId")
    );
    for index in [0, 1, 3, 4] {
        assert_eq!(
            records[index]["errors"][0]["path"],
            "",
            "line {}",
            index + 1
        );
    }
}

#[test]
fn lines_over_the_limit_are_reported_without_being_buffered() {
    let mut input = vec![b'x'; 5000];
    input.push(b'\n');
    input.extend_from_slice(b"{}\n");
    let output = validate(&["--format", "json", "--max-line-bytes", "1024"], &input);
    let records = json_lines(&output);
    assert_eq!(records.len(), 2);
    let message = records[0]["errors"][0]["message"]
        .as_str()
        .expect("message");
    assert!(message.contains("5000 bytes"), "{message}");
}

#[test]
fn human_output_names_line_pointer_and_reason() {
    let output = validate(&[], CASES.as_bytes());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("line 6: /eventId: required field is missing"),
        "{text}"
    );
    assert!(
        text.contains("/data/classification/confidence: must be between 0 and 1"),
        "{text}"
    );
}

#[test]
fn usage_and_io_errors_exit_two() {
    assert_eq!(
        validate(&["/no/such/file.jsonl"], b"").status.code(),
        Some(2)
    );
    assert_eq!(validate(&["--format", "yaml"], b"").status.code(), Some(2));
}

#[test]
fn empty_input_is_valid() {
    assert_eq!(validate(&[], b"").status.code(), Some(0));
}
