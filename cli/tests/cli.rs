//! The `omni` command end to end: install with review, call, list, revoke, uninstall.

use std::path::Path;
use std::process::{Command, Output};

use omni_tests::{sample, StandIn};
use serde_json::Value;

fn omni(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omni")).arg("--data-dir").arg(data).args(args).output().expect("omni runs")
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
    let out = omni(
        data.path(),
        &["--json", "call", "dev.omni.weather", "get_weather", r#"{"latitude":52.52,"longitude":13.41}"#],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(json_of(&out)["output"]["temperature"].is_number(), "{}", text(&out));

    let out = omni(data.path(), &["--json", "list"]);
    let listed = json_of(&out);
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");

    // Revoked: the call is refused with exit code 3 and the reason.
    let out = omni(data.path(), &["grants", "revoke", "dev.omni.weather", "network.http"]);
    assert!(out.status.success(), "{}", text(&out));
    let out =
        omni(data.path(), &["call", "dev.omni.weather", "get_weather", r#"{"latitude":52.52,"longitude":13.41}"#]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("network.http"), "{}", text(&out));
    // The tool passed the refusal on; it is said once.
    assert_eq!(text(&out).matches("was not granted").count(), 1, "{}", text(&out));

    let out = omni(data.path(), &["uninstall", "dev.omni.notes"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = omni(data.path(), &["call", "dev.omni.notes", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("omni list"), "{}", text(&out));
}

#[test]
fn install_refusals_are_clear() {
    let data = tempfile::tempdir().expect("temp dir");
    let out =
        omni(data.path(), &["install", sample("dev.omni.adversarial.undeclared-import").to_str().unwrap(), "--yes"]);
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

    // No terminal and no --grant for an optional capability: installed without it, and
    // the person is told so, with the flag that would grant it.
    let out = omni(data.path(), &["install", sample("dev.omni.adversarial.output-injection").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(said.contains("not granted") && said.contains("--grant storage.persistent"), "{said}");

    // A folder with a manifest but no component: the cause is said once.
    let folder = tempfile::tempdir().expect("temp dir");
    std::fs::copy(sample("dev.omni.weather").join("manifest.toml"), folder.path().join("manifest.toml"))
        .expect("copy the manifest");
    let out = omni(data.path(), &["install", folder.path().to_str().unwrap(), "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(said.contains("weather.wasm"), "{said}");
    assert_eq!(said.matches("os error 2").count(), 1, "the cause is printed once: {said}");

    let out = omni(data.path(), &["install", data.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("manifest.toml"), "{}", text(&out));

    let out = omni(data.path(), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn scheduled_jobs_are_listed_and_run_under_current_grants() {
    let data = tempfile::tempdir().expect("temp dir");
    let probe = sample("dev.omni.adversarial.ai-probe");
    let out = omni(data.path(), &["install", probe.to_str().unwrap(), "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    let args = serde_json::json!({ "tool": "ping", "at": now + 1_000 }).to_string();
    let out = omni(data.path(), &["call", "dev.omni.adversarial.ai-probe", "schedule", &args]);
    assert!(out.status.success(), "{}", text(&out));
    let job = json_of(&out)["ok"].as_str().unwrap_or_else(|| panic!("a job id: {}", text(&out))).to_string();

    let out = omni(data.path(), &["--json", "schedules", "list"]);
    let jobs = json_of(&out);
    assert_eq!(jobs[0]["id"], job.as_str(), "{jobs}");
    assert_eq!(jobs[0]["tool"], "ping", "{jobs}");

    // Wait until the job is due (no timing is asserted: run just needs it to be due).
    while std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64
        <= now + 1_000
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = omni(data.path(), &["schedules", "run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("{job} dev.omni.adversarial.ai-probe ping: completed")), "{}", text(&out));
    // A one-off job is gone once it ran.
    let out = omni(data.path(), &["schedules", "list"]);
    assert!(text(&out).contains("no scheduled jobs"), "{}", text(&out));

    // Revoking system.scheduling deletes the extension's jobs: a later grant cannot
    // revive them.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    let args = serde_json::json!({ "tool": "ping", "at": now + 1_000 }).to_string();
    let out = omni(data.path(), &["call", "dev.omni.adversarial.ai-probe", "schedule", &args]);
    assert!(out.status.success(), "{}", text(&out));
    let out = omni(data.path(), &["grants", "revoke", "dev.omni.adversarial.ai-probe", "system.scheduling"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = omni(data.path(), &["schedules", "list"]);
    assert!(text(&out).contains("no scheduled jobs"), "{}", text(&out));
}
