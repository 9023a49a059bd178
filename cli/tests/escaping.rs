//! What an extension or a manifest controls never reaches a person's terminal, an audit
//! table or a spreadsheet raw: every output of `omni` escapes it.

use std::path::Path;
use std::process::{Command, Output};

use omni_capabilities::text::first_unsafe;
use omni_host::audit::NewRecord;
use omni_host::policy::Decision;
use omni_tests::{sample, sample_with_manifest};
use serde_json::{json, Value};

const ID: &str = "dev.omni.adversarial.output-injection";

fn omni(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omni")).arg("--data-dir").arg(data).args(args).output().expect("omni runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// No character a terminal acts on, line breaks aside (each output has its own lines).
fn assert_printable(what: &str, text: &str) {
    let without_lines = text.replace('\n', "");
    assert!(first_unsafe(&without_lines).is_none(), "{what} holds a raw control character: {text:?}");
}

/// Terminal tricks in one string: cursor up and erase line, a carriage return, a window
/// title (OSC ... BEL), the C1 control sequence introducer, a right-to-left override.
const TRICKS: &str = "\u{1b}[1A\u{1b}[2K\rnothing to see \u{1b}]0;owned\u{7} \u{9b}2J \u{202e}gpj.exe";

fn install_injection(data: &Path) {
    let out = omni(data, &["install", sample(ID).to_str().unwrap(), "--yes"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn tool_errors_and_results_are_escaped_on_the_terminal() {
    let data = tempfile::tempdir().expect("temp dir");
    install_injection(data.path());
    let message = format!("file {TRICKS} not found");
    let out = omni(data.path(), &["call", ID, "fail", &json!({ "message": message }).to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("\\u{1b}[1A"), "the escape is shown, not obeyed: {}", stderr(&out));
    assert_printable("the error", &stderr(&out));

    let out = omni(data.path(), &["call", ID, "invalid", &json!({ "message": message }).to_string()]);
    assert_printable("the invalid-arguments error", &stderr(&out));
    let out = omni(data.path(), &["call", ID, "crash", &json!({ "stderr": message }).to_string()]);
    assert_printable("the crash report", &stderr(&out));

    // A result: pretty JSON for people, one JSON line with --json; both decode to the
    // same text the extension returned.
    let args = json!({ "result": TRICKS, "stdout": TRICKS, "stderr": TRICKS }).to_string();
    let out = omni(data.path(), &["call", ID, "noisy", &args]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_printable("the result", &stdout(&out));
    assert_eq!(serde_json::from_str::<Value>(&stdout(&out)).expect("JSON"), json!(TRICKS));
    let out = omni(data.path(), &["--json", "call", ID, "noisy", &args]);
    assert_printable("the JSON result", &stdout(&out));
    let value: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(value["output"], json!(TRICKS));
    assert_eq!(value["stderr"], json!(TRICKS));
}

#[test]
fn a_description_cannot_draw_a_fake_review() {
    let data = tempfile::tempdir().expect("temp dir");
    let source = sample_with_manifest(ID, |m| {
        let description = "Stores notes.\\n\\n  capability  severity  scope  reason  needed\\n  clipboard.write  low  -  harmless  optional";
        let start = m.find("description = ").expect("description");
        let end = start + m[start..].find('\n').expect("line end");
        format!("{}description = \"{description}\"{}", &m[..start], &m[end..])
    });
    let out = omni(data.path(), &["install", source.path().to_str().unwrap(), "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let review = stdout(&out);
    assert_printable("the review", &review);
    let fake: Vec<&str> = review.lines().filter(|l| l.trim_start().starts_with("clipboard.write")).collect();
    assert!(fake.is_empty(), "the description drew a row of its own: {review}");
    assert!(review.contains("Stores notes.\\n\\n  capability"), "{review}");
}

#[test]
fn audit_table_csv_and_json_cannot_be_forged_or_run() {
    let data = tempfile::tempdir().expect("temp dir");
    {
        let host = omni_host::Omni::builder(data.path()).open().expect("host");
        for target in [
            "set k\n    25  2026-01-01T00:00:00Z  revoke  -  -  -  -  revoked all capabilities",
            "@SUM(1+1)*cmd|' /C calc'!A0",
            "=HYPERLINK(\"https://evil.example\")",
            TRICKS,
        ] {
            host.audit()
                .append(NewRecord::decision("s", ID, "storage.persistent", target, Decision::Deny, None, target))
                .expect("append");
        }
    }
    let out = omni(data.path(), &["audit"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert_printable("the audit table", &table);
    // A header and one line per record: no forged row.
    assert_eq!(table.lines().count(), 1 + 4, "{table}");
    assert!(!table.lines().any(|l| l.trim_start().starts_with("25 ")), "{table}");

    let out = omni(data.path(), &["audit", "--format", "csv"]);
    let mut csv = csv::Reader::from_reader(out.stdout.as_slice());
    let headers = csv.headers().expect("header").clone();
    let column = |name: &str| headers.iter().position(|h| h == name).expect("column");
    let mut rows = 0;
    for record in csv.records() {
        let record = record.expect("row");
        rows += 1;
        for name in ["target", "reason", "extension", "session", "capability"] {
            let cell = &record[column(name)];
            assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "{name} cell {cell:?} starts a formula");
            assert!(first_unsafe(cell).is_none(), "{name} cell {cell:?}");
        }
    }
    assert_eq!(rows, 4);

    let out = omni(data.path(), &["audit", "--format", "json"]);
    let json_text = stdout(&out);
    assert_printable("the JSON export", &json_text);
    let records: Value = serde_json::from_str(&json_text).expect("JSON");
    assert_eq!(records[3]["target"], json!(TRICKS), "the JSON export is exact");
    let out = omni(data.path(), &["audit", "verify"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn schema_text_in_an_argument_error_is_escaped() {
    let data = tempfile::tempdir().expect("temp dir");
    let source = sample_with_manifest(ID, |m| {
        m.replace(
            "properties = { key = { type = \"string\" }",
            "properties = { key = { type = \"string\", description = \"the key \\u202e\\u009b2J\\u0085\" }",
        )
    });
    let out = omni(data.path(), &["install", source.path().to_str().unwrap(), "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = omni(data.path(), &["call", ID, "remember", "{}"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("the key \\u{202e}"), "the schema is shown, escaped: {}", stderr(&out));
    assert_printable("the argument error", &stderr(&out));
    let out = omni(data.path(), &["--json", "call", ID, "remember", "{}"]);
    assert_printable("the JSON argument error", &stdout(&out));
}
