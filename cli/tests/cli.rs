//! The `omni` command end to end: install with review, call, list, revoke, uninstall.

use std::path::Path;
use std::process::{Command, Output};

use omni_tests::{sample, StandIn};
use serde_json::Value;

fn omni(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omni"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("omni runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

#[test]
fn calculator_notes_and_weather_through_the_cli() {
    let data = tempfile::tempdir().expect("temp dir");
    let standin = StandIn::start().expect("stand-in");
    std::fs::write(
        data.path().join("omni.toml"),
        format!("[network.resolve]\n\"api.open-meteo.com\" = \"{}\"\n", standin.base_url()),
    )
    .expect("config");
    let calc = sample("dev.omni.calculator");
    let notes = sample("dev.omni.notes");
    let weather = sample("dev.omni.weather");

    let out = omni(data.path(), &["install", calc.to_str().unwrap(), "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("asks for no capabilities"), "{}", text(&out));
    let out = omni(data.path(), &["--json", "call", "dev.omni.calculator", "evaluate", r#"{"expression":"2*(3+4)"}"#]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json_of(&out)["output"], 14.0);

    // The review table names capability, severity, scope, reason and whether it is required.
    let out = omni(data.path(), &["install", notes.to_str().unwrap(), "--grant", "storage.persistent"]);
    assert!(out.status.success(), "{}", text(&out));
    let review = text(&out);
    for word in ["storage.persistent", "low", "max_bytes", "Keep your notes", "required"] {
        assert!(review.contains(word), "review lacks {word}: {review}");
    }
    let out = omni(data.path(), &["call", "dev.omni.notes", "add", r#"{"title":"tea","body":"green and black"}"#]);
    assert!(out.status.success(), "{}", text(&out));
    let out = omni(data.path(), &["--json", "call", "dev.omni.notes", "search", "-"]);
    // `-` reads stdin, which is empty here: not JSON, a clear error.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = omni(data.path(), &["--json", "call", "dev.omni.notes", "search", r#"{"query":"GREEN"}"#]);
    assert_eq!(json_of(&out)["output"][0]["title"], "tea", "{}", text(&out));

    let out = omni(data.path(), &["install", weather.to_str().unwrap(), "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = omni(data.path(), &["--json", "call", "dev.omni.weather", "get_weather", r#"{"latitude":52.52,"longitude":13.41}"#]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(json_of(&out)["output"]["temperature"].is_number(), "{}", text(&out));

    let out = omni(data.path(), &["--json", "list"]);
    let listed = json_of(&out);
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");

    // Revoked: the call is refused with exit code 3 and the reason.
    let out = omni(data.path(), &["grants", "revoke", "dev.omni.weather", "network.http"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = omni(data.path(), &["call", "dev.omni.weather", "get_weather", r#"{"latitude":52.52,"longitude":13.41}"#]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("network.http"), "{}", text(&out));

    let out = omni(data.path(), &["uninstall", "dev.omni.notes"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = omni(data.path(), &["call", "dev.omni.notes", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("omni list"), "{}", text(&out));
}

#[test]
fn install_refusals_are_clear() {
    let data = tempfile::tempdir().expect("temp dir");
    let out = omni(data.path(), &["install", sample("dev.omni.adversarial.undeclared-import").to_str().unwrap(), "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let message = text(&out);
    assert!(message.contains("omni:caps/kv") && message.contains("storage.persistent"), "{message}");

    // No terminal and no --grant: nothing is granted, so a required capability refuses.
    let out = omni(data.path(), &["install", sample("dev.omni.notes").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("storage.persistent"), "{}", text(&out));

    let out = omni(data.path(), &["install", sample("dev.omni.notes").to_str().unwrap(), "--grant", "network.http"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("does not declare"), "{}", text(&out));

    let out = omni(data.path(), &["install", data.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("manifest.toml"), "{}", text(&out));

    let out = omni(data.path(), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}
