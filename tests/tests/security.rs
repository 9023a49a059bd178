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
        let err =
            rt.block_on(omni.call("dev.omni.adversarial.host-flood", "run", r#"{"mb": 48, "times": 8}"#)).unwrap_err();
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

/// An HTTP transport that answers from a script and records every URL it was asked for.
struct Scripted {
    answers: std::sync::Mutex<Vec<omni_host::caps::http::InboundResponse>>,
    seen: std::sync::Mutex<Vec<String>>,
    /// Each answer waits for a permit, so a test can hold a call inside its host call.
    gate: tokio::sync::Semaphore,
}

impl Scripted {
    fn redirect_to(location: &str) -> omni_host::caps::http::InboundResponse {
        omni_host::caps::http::InboundResponse {
            status: 302,
            headers: vec![("location".into(), location.into())],
            body: Vec::new(),
        }
    }
}

impl omni_host::caps::http::HttpBackend for Scripted {
    fn send(&self, request: omni_host::caps::http::OutboundRequest) -> omni_host::caps::http::SendFuture<'_> {
        self.seen.lock().expect("lock").push(request.url.to_string());
        let next = self.answers.lock().expect("lock").pop();
        Box::pin(async move {
            if let Ok(permit) = self.gate.acquire().await {
                permit.forget();
            }
            next.ok_or_else(|| omni_host::caps::http::HttpError::Io("script exhausted".into()))
        })
    }
}

fn weather_with(
    answers: Vec<omni_host::caps::http::InboundResponse>,
) -> (tempfile::TempDir, omni_host::Omni, Arc<Scripted>) {
    weather_gated(answers, tokio::sync::Semaphore::MAX_PERMITS)
}

fn weather_gated(
    answers: Vec<omni_host::caps::http::InboundResponse>,
    permits: usize,
) -> (tempfile::TempDir, omni_host::Omni, Arc<Scripted>) {
    let scripted = Arc::new(Scripted {
        answers: std::sync::Mutex::new(answers),
        seen: Default::default(),
        gate: tokio::sync::Semaphore::new(permits),
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let omni = omni_host::Omni::builder(dir.path())
        .engine(omni_tests::engine())
        .http_backend(scripted.clone())
        .open()
        .expect("host");
    install_granting_all(&omni, "dev.omni.weather");
    (dir, omni, scripted)
}

#[test]
fn redirect_out_of_scope_is_refused_before_anything_is_sent_to_it() {
    for target in [
        "https://evil.example.com/steal",
        "https://api.open-meteo.com.evil.com/x",
        "https://api.open-meteo.com@evil.com/x",
        "http://api.open-meteo.com/v1/forecast",
        "https://api.open-meteo.com:8443/v1/forecast",
        "https://127.0.0.1/admin",
    ] {
        let (_dir, omni, scripted) = weather_with(vec![Scripted::redirect_to(target)]);
        let err = runtime()
            .block_on(omni.call("dev.omni.weather", "get_weather", r#"{"latitude": 1, "longitude": 2}"#))
            .unwrap_err();
        let seen = scripted.seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1, "only the first, in-scope request may be sent ({target}): {seen:?}");
        assert!(seen[0].starts_with("https://api.open-meteo.com/"), "{seen:?}");
        match err {
            OmniError::Call(CallError::Tool { denials, .. }) => {
                assert!(!denials.is_empty(), "the refused hop to {target} must be reported");
            }
            other => panic!("redirect to {target} should be refused, got {other}"),
        }
    }
}

#[test]
fn redirects_within_scope_are_followed_at_most_five_times() {
    let ok = omni_host::caps::http::InboundResponse {
        status: 200,
        headers: vec![],
        body: br#"{"latitude":1,"longitude":2,"timezone":"GMT","current_units":{"temperature_2m":"C","wind_speed_10m":"km/h","weather_code":"wmo"},"current":{"time":"t","interval":900,"temperature_2m":1.5,"wind_speed_10m":2.0,"weather_code":0}}"#.to_vec(),
    };
    let hop = || {
        Scripted::redirect_to("https://api.open-meteo.com/v1/forecast?latitude=1&longitude=2&current=temperature_2m,wind_speed_10m,weather_code")
    };
    // Answers pop from the end: two hops, then the data.
    let (_dir, omni, scripted) = weather_with(vec![ok, hop(), hop()]);
    let out = runtime()
        .block_on(omni.call("dev.omni.weather", "get_weather", r#"{"latitude": 1, "longitude": 2}"#))
        .expect("in-scope redirects are followed");
    assert!(out.output.contains("1.5"), "{}", out.output);
    assert_eq!(scripted.seen.lock().expect("lock").len(), 3);

    let (_dir, omni, scripted) = weather_with((0..10).map(|_| hop()).collect());
    runtime().block_on(omni.call("dev.omni.weather", "get_weather", r#"{"latitude": 1, "longitude": 2}"#)).unwrap_err();
    assert_eq!(scripted.seen.lock().expect("lock").len(), 6, "the first request and five redirects, no more");
}

#[test]
fn kill_switch_refuses_a_call_in_flight_at_its_next_host_call() {
    // The first answer is a redirect within scope; following it is the call's next
    // authorization, which must see the kill switch pulled while the call waited.
    let hop = Scripted::redirect_to("https://api.open-meteo.com/v1/forecast?latitude=1&longitude=2");
    let (_dir, omni, scripted) = weather_gated(vec![hop], 0);
    let omni = Arc::new(omni);
    let rt = runtime();
    let call = rt.spawn({
        let omni = omni.clone();
        async move { omni.call("dev.omni.weather", "get_weather", r#"{"latitude": 1, "longitude": 2}"#).await }
    });
    for _ in 0..500 {
        if !scripted.seen.lock().expect("lock").is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(scripted.seen.lock().expect("lock").len(), 1, "the call should be waiting in its first request");
    omni.policy().kill_switch().expect("kill switch");
    scripted.gate.add_permits(10);
    let err = rt.block_on(call).expect("task").unwrap_err();
    match &err {
        OmniError::Call(CallError::Tool { denials, .. }) => assert!(!denials.is_empty(), "{err}"),
        other => panic!("the in-flight call must be refused after the kill switch, got {other}"),
    }
    assert_eq!(scripted.seen.lock().expect("lock").len(), 1, "nothing more may be sent after the kill switch");
}

/// `allowed_args = ["/--version)|(.*/"]` read as "--version only" at review, compiled to
/// `^(?:--version)|(.*)$` and let `env sh -c ...` run. The manifest is now refused at
/// install, naming the field and the unbalanced parenthesis.
#[test]
fn hostile_argument_regex_that_closes_its_anchor_is_refused_at_install() {
    let (_dir, omni) = host(OmniConfig::default());
    let ext = omni_tests::sample_with_manifest("dev.omni.adversarial.fs-escape", |m| {
        m.replace(
            "scope = { executables = [\"/usr/bin/env\"] }",
            "scope = { executables = [\"/usr/bin/env\"], allowed_args = [\"/--version)|(.*/\"] }",
        )
    });
    let err = match omni.prepare_install(ext.path()) {
        Ok(plan) => panic!("installable: {:?}", plan.manifest.permissions),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("allowed_args[0]") && err.contains("not a valid regular expression"), "{err}");
}

/// An update that changes nothing but a limit installed with "no new capability or wider
/// scope; current grants carry over": `max_concurrent = 1024` where the grant left it
/// unset (host default 4), and raised `[runtime]` limits.
#[test]
fn hostile_update_raising_a_limit_needs_a_new_review() {
    const PROBE: &str = "dev.omni.adversarial.fs-escape";
    let (_dir, omni) = host(OmniConfig::default());
    install_granting_all(&omni, PROBE);
    let same = omni_tests::sample_with_manifest(PROBE, |m| m.to_string());
    assert!(!omni.prepare_install(same.path()).expect("same").needs_review, "an unchanged update needs none");
    let edits: [(&str, &str); 4] = [
        (
            "scope = { executables = [\"/usr/bin/env\"] }",
            "scope = { executables = [\"/usr/bin/env\"], max_concurrent = 1024 }",
        ),
        ("max_memory_mb = 64", "max_memory_mb = 4096"),
        ("max_cpu_ms_per_call = 5000", "max_cpu_ms_per_call = 600000"),
        ("max_concurrent_calls = 4", "max_concurrent_calls = 256"),
    ];
    for (from, to) in edits {
        let update = omni_tests::sample_with_manifest(PROBE, |m| {
            assert!(m.contains(from), "the probe's manifest has {from:?}");
            m.replacen(from, to, 1)
        });
        let plan = omni.prepare_install(update.path()).unwrap_or_else(|e| panic!("{to}: {e}"));
        assert!(plan.needs_review, "{to:?} carried the grants over without a review");
    }
}

/// On a host whose `[process] max_concurrent` is below the built-in default, a newly set
/// `max_concurrent` between the two still lets more programs run than were approved.
#[test]
fn hostile_update_raising_process_slots_above_this_hosts_default_needs_a_new_review() {
    const PROBE: &str = "dev.omni.adversarial.fs-escape";
    let mut config = OmniConfig::default();
    config.process.max_concurrent = 1;
    let (_dir, omni) = host(config);
    install_granting_all(&omni, PROBE);
    let from = "scope = { executables = [\"/usr/bin/env\"] }";
    let update = |n: u32| {
        omni_tests::sample_with_manifest(PROBE, |m| {
            m.replacen(from, &format!("scope = {{ executables = [\"/usr/bin/env\"], max_concurrent = {n} }}"), 1)
        })
    };
    let plan = omni.prepare_install(update(3).path()).expect("update");
    assert!(plan.needs_review, "1 -> 3 programs at once carried the grants over without a review");
    let plan = omni.prepare_install(update(1).path()).expect("update");
    assert!(!plan.needs_review, "the same effective limit needs no review");
}

/// A two-kilobyte parameter schema whose definitions each refer to the next one twice
/// (through `allOf`), 28 levels deep: checking arguments against it walks 2^28 schemas.
fn doubling_parameters(depth: usize) -> String {
    let mut defs: Vec<String> = (0..depth)
        .map(|i| {
            format!(r##""d{i}": {{"allOf": [{{"$ref": "#/$defs/d{n}"}}, {{"$ref": "#/$defs/d{n}"}}]}}"##, n = i + 1)
        })
        .collect();
    defs.push(format!(r#""d{depth}": {{"type": "string"}}"#));
    format!(
        r##"parameters = '{{"type": "object", "properties": {{"expression": {{"$ref": "#/$defs/d0"}}}}, "$defs": {{{}}}}}'"##,
        defs.join(", ")
    )
}

#[test]
fn hostile_parameter_schema_that_doubles_per_level_is_refused_at_install() {
    let (_dir, omni) = host(OmniConfig::default());
    let copy = omni_tests::sample_with_manifest("dev.omni.calculator", |text| {
        let start = text.find("parameters = {").expect("the calculator's parameters");
        let end = start + text[start..].find('\n').expect("one line");
        format!("{}{}{}", &text[..start], doubling_parameters(28), &text[end..])
    });
    let err = omni.prepare_install(copy.path()).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("tools[0].parameters"), "{message}");
    assert!(message.contains("tool \"evaluate\"") || message.contains("of tool"), "names the tool: {message}");
    assert!(message.contains("20000"), "names the bound: {message}");
    assert!(omni.list().expect("list").is_empty());

    // The same tool with a schema that uses a few references installs and works.
    let (_dir, omni) = host(OmniConfig::default());
    let copy = omni_tests::sample_with_manifest("dev.omni.calculator", |text| {
        let start = text.find("parameters = {").expect("the calculator's parameters");
        let end = start + text[start..].find('\n').expect("one line");
        let few = r##"parameters = '{"type": "object", "properties": {"expression": {"$ref": "#/$defs/text"}}, "required": ["expression"], "$defs": {"text": {"allOf": [{"$ref": "#/$defs/short"}, {"type": "string"}]}, "short": {"maxLength": 10000}}}'"##;
        format!("{}{}{}", &text[..start], few, &text[end..])
    });
    let plan = omni.prepare_install(copy.path()).expect("a schema with a few refs installs");
    omni.install(&plan, &[]).expect("install");
    let out = runtime().block_on(omni.call("dev.omni.calculator", "evaluate", r#"{"expression": "1+2"}"#));
    assert!(out.is_ok(), "{out:?}");
    let bad = runtime().block_on(omni.call("dev.omni.calculator", "evaluate", r#"{"expression": 5}"#));
    assert!(matches!(bad, Err(OmniError::Arguments { .. })), "{bad:?}");
}
