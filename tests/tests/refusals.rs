//! A guest that loops on refused host calls: the host's memory, its audit log and what it
//! hands the caller stay bounded, and the call is stopped after enough refusals.

use omni_host::audit::AuditFilter;
use omni_host::policy::Decision;
use omni_host::{CallError, LimitExceeded, OmniConfig, OmniError};
use omni_tests::{audit_records, host, install_from, runtime, sample, sample_with_manifest};
use serde_json::Value;

const ID: &str = "dev.omni.adversarial.refusal-flood";

fn rss_bytes() -> u64 {
    // Linux: resident pages are the second field of /proc/self/statm.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

/// 256 granted domains of 251 characters each (a 65 KB scope, which the manifest
/// accepts): before refusals were bounded, each out-of-scope message carried this list
/// twice.
fn huge_scope_manifest(text: &str, cpu_ms: u64) -> String {
    let label = |c: char, i: usize| format!("{}{i:03}", c.to_string().repeat(56));
    let domains: Vec<String> = (0..256)
        .map(|i| format!("\"{}.{}.{}.{}.example.com\"", label('a', i), label('b', i), label('c', i), label('d', i)))
        .collect();
    let text = text.replace(
        "scope = { domains = [\"api.example.com\"], methods = [\"GET\"] }",
        &format!("scope = {{ domains = [{}], methods = [\"GET\"] }}", domains.join(", ")),
    );
    text.replace("max_cpu_ms_per_call = 5000", &format!("max_cpu_ms_per_call = {cpu_ms}"))
}

fn report(out: &omni_host::CallOutput) -> Value {
    serde_json::from_str(&out.output).expect("a JSON report")
}

/// The acceptance figure for refusal floods: 20 s of out-of-scope calls under a 67 KB
/// scope, with the per-call refusal limit lifted so the flood runs its whole course.
#[test]
fn twenty_second_refusal_flood_keeps_memory_audit_and_output_bounded() {
    let mut config = OmniConfig::default();
    config.limits.max_refusals_per_call = u64::MAX;
    let (dir, omni) = host(config);
    let source = sample_with_manifest(ID, |m| huge_scope_manifest(m, 25_000));
    let manifest_bytes = std::fs::metadata(source.path().join("manifest.toml")).expect("manifest").len();
    assert!(manifest_bytes > 60_000, "the scope is {manifest_bytes} bytes");
    install_from(&omni, source.path(), |cap| if cap == "network.http" { Decision::Allow } else { Decision::Deny });
    let rt = runtime();
    // Warm up (instance pool, first compile) so the measure is the flood's own.
    rt.block_on(omni.call(ID, "http_flood", r#"{"url": "https://evil.example.net/x", "seconds": 0}"#)).expect("warm");
    let records_before = omni.audit().query(&AuditFilter::default()).expect("audit").len();
    let db = dir.path().join("omni.redb");
    let db_before = std::fs::metadata(&db).map_or(0, |m| m.len());
    let rss_before = rss_bytes();

    let out = rt
        .block_on(omni.call(ID, "http_flood", r#"{"url": "https://evil.example.net/x", "seconds": 20}"#))
        .expect("the flood runs to its end");

    let rss_after = rss_bytes();
    let db_after = std::fs::metadata(&db).map_or(0, |m| m.len());
    let records = omni.audit().query(&AuditFilter::default()).expect("audit");
    let report = report(&out);
    let calls = report["calls"].as_u64().expect("calls");
    let longest = report["longest_message"].as_u64().expect("longest");
    let denial_bytes: usize = out.denials.iter().map(String::len).sum();
    eprintln!(
        "refusal flood, 20 s: {calls} refused calls; resident memory {} -> {} MB; audit +{} records, \
         omni.redb {} -> {} KB; caller got {} denial lines ({denial_bytes} bytes); longest guest message {longest} bytes",
        rss_before / 1_000_000,
        rss_after / 1_000_000,
        records.len() - records_before,
        db_before / 1024,
        db_after / 1024,
        out.denials.len(),
    );
    assert_eq!(report["refused"].as_u64(), Some(calls), "every call is refused: {report}");
    assert!(calls > 1000, "the flood must really run: {report}");
    // What the guest and the caller see names the rule, never the 67 KB scope.
    assert!(longest < 1024, "a refusal message of {longest} bytes");
    assert!(out.denials.len() <= 33, "{} denial lines", out.denials.len());
    assert!(denial_bytes < 20 * 1024, "{denial_bytes} bytes of denials");
    // The audit holds the first refusals one by one and one record for the rest.
    let flood: Vec<_> = records[records_before..].iter().filter(|r| r.extension == ID).collect();
    assert!(flood.len() <= 17, "{} audit records for one call", flood.len());
    let summary = flood.last().expect("a summary record");
    assert!(summary.reason.contains(&format!("and {} more refusals", calls - 16)), "{}", summary.reason);
    assert!(records.iter().all(|r| r.reason.len() <= 4096 + 3), "an audit reason past its bound");
    assert!(db_after.saturating_sub(db_before) < 4 * 1024 * 1024, "omni.redb grew by {} bytes", db_after - db_before);
    // Bounded, with room for the allocator's noise on a shared machine.
    assert!(
        rss_after.saturating_sub(rss_before) < 64 * 1024 * 1024,
        "resident memory grew by {} bytes",
        rss_after - rss_before
    );
    assert!(omni.audit().verify().expect("verify").is_ok(), "the chain stays intact");
}

#[test]
fn refusal_limit_stops_a_loop_on_an_ungranted_capability() {
    let (_dir, omni) = host(OmniConfig::default());
    install_from(&omni, &sample(ID), |cap| if cap == "network.http" { Decision::Allow } else { Decision::Deny });
    let err = runtime().block_on(omni.call(ID, "clipboard_flood", r#"{"seconds": 4}"#)).unwrap_err();
    match err {
        OmniError::Call(CallError::Limit(LimitExceeded::Refusals { limit })) => assert_eq!(limit, 1000),
        other => panic!("the loop must be stopped by max_refusals_per_call, got {other}"),
    }
    let records = audit_records(&omni, ID, "clipboard.read", Some(Decision::Deny), None);
    assert!((17..=18).contains(&records.len()), "{} records: {records:?}", records.len());
    let summary = records.last().expect("summary");
    assert!(summary.reason.contains("more refusals of clipboard.read"), "{}", summary.reason);
}

#[test]
fn refusal_limit_stops_a_loop_on_an_out_of_scope_url() {
    let (_dir, omni) = host(OmniConfig::default());
    install_from(&omni, &sample(ID), |cap| if cap == "network.http" { Decision::Allow } else { Decision::Deny });
    let err = runtime()
        .block_on(omni.call(ID, "http_flood", r#"{"url": "https://evil.example.net/x", "seconds": 4}"#))
        .unwrap_err();
    assert!(
        matches!(err, OmniError::Call(CallError::Limit(LimitExceeded::Refusals { limit: 1000 }))),
        "the loop must be stopped by max_refusals_per_call, got {err}"
    );
    let records = audit_records(&omni, ID, "network.http", Some(Decision::Deny), None);
    assert!(records.len() <= 17, "{} records", records.len());
}
