//! The hostile samples in `sample-extensions/adversarial/`: each attack is refused and
//! leaves the host serving other extensions.

use std::sync::Arc;

use omni_host::{CallError, ImportCheck, LimitExceeded, OmniConfig, OmniError};
use omni_tests::{config_with_standin, host, install_granting_all, runtime, sample, StandIn};
use serde_json::{json, Value};

#[test]
fn undeclared_import_is_refused_at_install_naming_import_and_capability() {
    let (_dir, omni) = host(OmniConfig::default());
    let err = omni.prepare_install(&sample("dev.omni.adversarial.undeclared-import")).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, OmniError::Imports(_)), "{message}");
    assert!(message.contains("omni:caps/kv"), "the error must name the import: {message}");
    assert!(message.contains("storage.persistent"), "the error must name the capability: {message}");
    assert!(omni.list().expect("list").is_empty());
}

#[test]
fn undeclared_import_forced_past_install_fails_at_link_time() {
    let (_dir, omni) = host(OmniConfig::default());
    let plan = omni
        .prepare_install_with(&sample("dev.omni.adversarial.undeclared-import"), ImportCheck::SkipForTesting)
        .expect("prepare without the import check");
    omni.install(&plan, &[]).expect("install without the import check");
    let err = runtime().block_on(omni.call("dev.omni.adversarial.undeclared-import", "run", "{}")).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, OmniError::Call(CallError::Link(_))), "{message}");
    assert!(message.contains("omni:caps/kv"), "the link error must name the import: {message}");
}

#[test]
fn cpu_spin_and_memory_hog_are_stopped_while_another_extension_keeps_working() {
    let (_dir, omni) = host(OmniConfig::default());
    for id in ["dev.omni.adversarial.cpu-spin", "dev.omni.adversarial.memory-hog", "dev.omni.calculator"] {
        install_granting_all(&omni, id);
    }
    let omni = Arc::new(omni);
    let rt = runtime();
    let (spin, hog, calcs) = rt.block_on(async {
        let spin = tokio::spawn({
            let omni = omni.clone();
            async move { omni.call("dev.omni.adversarial.cpu-spin", "run", "{}").await }
        });
        let hog = tokio::spawn({
            let omni = omni.clone();
            async move { omni.call("dev.omni.adversarial.memory-hog", "run", "{}").await }
        });
        let calcs = tokio::spawn({
            let omni = omni.clone();
            async move {
                let mut results = Vec::new();
                // Keep calling while the hostile calls run.
                while results.len() < 40 {
                    results.push(omni.call("dev.omni.calculator", "evaluate", r#"{"expression":"6*7"}"#).await);
                }
                results
            }
        });
        (spin.await, hog.await, calcs.await)
    });
    match spin.expect("task") {
        Err(OmniError::Call(CallError::Limit(LimitExceeded::Time { limit_ms }))) => assert_eq!(limit_ms, 500),
        other => panic!("cpu-spin should hit its 500 ms limit, got {other:?}"),
    }
    match hog.expect("task") {
        Err(OmniError::Call(CallError::Limit(LimitExceeded::Memory { limit_mb, wanted_mb }))) => {
            assert_eq!(limit_mb, 32);
            // Stopped at the first growth past the limit, not later.
            assert!(wanted_mb <= limit_mb + 8, "stopped at {wanted_mb} MiB");
        }
        other => panic!("memory-hog should hit its 32 MiB limit, got {other:?}"),
    }
    for r in calcs.expect("task") {
        let out = r.expect("the calculator keeps answering");
        assert_eq!(serde_json::from_str::<f64>(&out.output).ok(), Some(42.0), "{}", out.output);
    }
}

fn rss_bytes() -> u64 {
    // Linux: resident pages are the second field of /proc/self/statm.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

#[test]
fn host_flood_is_refused_and_host_memory_stays_bounded() {
    let (_dir, omni) = host(OmniConfig::default());
    install_granting_all(&omni, "dev.omni.adversarial.host-flood");
    let rt = runtime();
    let before = rss_bytes();
    for _ in 0..5 {
        let err = rt
            .block_on(omni.call("dev.omni.adversarial.host-flood", "run", r#"{"mb": 48, "times": 8}"#))
            .unwrap_err();
        assert!(
            matches!(err, OmniError::Call(CallError::Limit(LimitExceeded::HostBytes { .. }))),
            "a flood must end the call at the host's byte bound: {err}"
        );
    }
    // A key larger than one argument may be is refused without storing anything.
    match rt.block_on(omni.call("dev.omni.adversarial.host-flood", "big_key", r#"{"kib": 9000}"#)) {
        Ok(out) => {
            let report: Value = serde_json::from_str(&out.output).expect("report");
            assert_eq!(report["accepted"], 0, "{report}");
        }
        Err(OmniError::Call(CallError::Limit(LimitExceeded::HostBytes { .. }))) => {}
        Err(e) => panic!("unexpected: {e}"),
    }
    // Each flooded argument is bounded by the guest's 128 MiB memory and freed at once,
    // so five floods leave the host far below five times that.
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 256 * 1024 * 1024, "host memory grew by {} MiB", grown / (1024 * 1024));
    // The extension is still served: an ordinary write goes through.
    let small = rt
        .block_on(omni.call("dev.omni.adversarial.host-flood", "big_key", r#"{"kib": 1}"#))
        .expect("a small write still works");
    let report: Value = serde_json::from_str(&small.output).expect("report");
    assert!(report["accepted"].as_u64() >= Some(1), "{report}");
}

#[test]
fn env_snoop_sees_no_environment_no_arguments_and_no_files() {
    std::env::set_var("OMNI_TEST_SECRET", "hunter2");
    let (_dir, omni) = host(OmniConfig::default());
    install_granting_all(&omni, "dev.omni.adversarial.env-snoop");
    let out = runtime().block_on(omni.call("dev.omni.adversarial.env-snoop", "run", "{}")).expect("call");
    assert!(!out.output.contains("hunter2"));
    let seen: Value = serde_json::from_str(&out.output).expect("findings");
    assert_eq!(seen["env"], json!({}), "{seen}");
    assert_eq!(seen["args"], json!([]), "{seen}");
    let probes = seen["probes"].as_object().expect("probes");
    assert!(!probes.is_empty());
    for (probe, result) in probes {
        // The working directory is the root of an empty file system; everything that
        // would touch a file must fail.
        if probe == "current_dir" {
            continue;
        }
        assert_eq!(result["outcome"], "failed", "probe `{probe}` must fail, got {result}");
    }
}

#[test]
fn revoked_capability_is_refused_at_the_next_host_call_and_others_keep_working() {
    let standin = StandIn::start().expect("stand-in");
    let (_dir, omni) = host(config_with_standin(&standin));
    install_granting_all(&omni, "dev.omni.weather");
    install_granting_all(&omni, "dev.omni.notes");
    let rt = runtime();
    let args = r#"{"latitude": 1, "longitude": 2}"#;
    rt.block_on(omni.call("dev.omni.weather", "get_weather", args)).expect("granted call works");
    omni.policy().revoke("dev.omni.weather", Some("network.http")).expect("revoke");
    let err = rt.block_on(omni.call("dev.omni.weather", "get_weather", args)).unwrap_err();
    match &err {
        OmniError::Call(CallError::Tool { denials, .. }) => {
            assert!(!denials.is_empty(), "the refusal must be reported: {err}");
            assert!(denials[0].contains("network.http"), "{denials:?}");
        }
        other => panic!("expected a refused call, got {other}"),
    }
    let requests = standin.requests();
    assert_eq!(requests, 1, "nothing may reach the network after the revoke");
    rt.block_on(omni.call("dev.omni.notes", "list", "{}")).expect("another extension is unaffected");
}

#[test]
fn a_call_waiting_in_a_host_function_is_stopped_at_its_time_limit() {
    let standin = StandIn::start().expect("stand-in");
    standin.hold();
    let (_dir, omni) = host(config_with_standin(&standin));
    install_granting_all(&omni, "dev.omni.weather");
    let err = runtime()
        .block_on(omni.call("dev.omni.weather", "get_weather", r#"{"latitude": 1, "longitude": 2}"#))
        .unwrap_err();
    assert!(
        matches!(err, OmniError::Call(CallError::Limit(LimitExceeded::Time { .. }))),
        "a call parked in an HTTP request must be stopped by its time limit: {err}"
    );
    standin.release();
}
