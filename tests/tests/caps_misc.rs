//! The integration capabilities (clipboard, devices, automation, version control, MCP,
//! code intelligence, debugging, sub-agents, flowcharts) and `storage.persistent`, driven
//! through the `dev.omni.probe` sample with fake backends that record every call.
//!
//! For each capability: an allowed call reaches the backend with the right arguments; a
//! call outside the scope is refused before the backend, audited, and the host keeps
//! serving; an ungranted capability is refused. The `hostile_*` tests play the attacks.

use std::sync::{Arc, Mutex};

use omni_host::audit::{AuditRecord, EventKind};
use omni_host::caps::agent::{AgentBackend, AgentOutcome, AgentRequest};
use omni_host::caps::automation::AutomationBackend;
use omni_host::caps::clipboard::ClipboardBackend;
use omni_host::caps::code_intel::{self, CodeIntelBackend};
use omni_host::caps::debugger::{
    Breakpoint, DebugBackend, DebugSession, LaunchConfig, StackFrame, StepKind, StopReason, Variable,
};
use omni_host::caps::device::{Audio, CameraBackend, Image, LocationBackend, MicrophoneBackend, Position};
use omni_host::caps::flowchart::FlowchartBackend;
use omni_host::caps::mcp::{CallResult, McpBackend, ToolInfo};
use omni_host::caps::vcs::{Change, CommitInfo, FileStatus, VcsBackend};
use omni_host::caps::{BackendFuture, Integrations};
use omni_host::policy::Decision;
use omni_host::{Omni, OmniConfig};
use omni_tests::{
    assert_reason, audit_records, engine, install_from, install_granting_all, runtime, sample_with_manifest,
};
use serde_json::{json, Value};
use tempfile::TempDir;

const PROBE: &str = "dev.omni.probe";

/// Every capability the probe exercises, with a call that uses it.
fn every_capability() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("clipboard.read", "clipboard_read", json!({})),
        ("clipboard.write", "clipboard_write", json!({"text": "x"})),
        ("device.camera", "camera", json!({})),
        ("device.microphone", "microphone", json!({"duration_ms": 100})),
        ("device.location", "location", json!({})),
        ("app.automation", "automation", json!({"app": "com.example.editor", "action": "open"})),
        ("vcs.operations", "vcs", json!({"repo": "/srv/repos/project", "op": "status"})),
        ("mcp.server", "mcp", json!({"op": "call", "server": "files", "tool": "read_file"})),
        ("code.intelligence", "code_intel", json!({"op": "symbols", "path": "/srv/repos/project/src/lib.rs"})),
        ("debug.session", "debug", json!({"program": "/srv/bin/app"})),
        ("agent.spawn", "agent", json!({"instructions": "say hi"})),
        ("flowchart.invoke", "flowchart", json!({"name": "summarize", "input": "{}"})),
        ("storage.persistent", "storage", json!({"op": "usage"})),
    ]
}

// ---------------------------------------------------------------------------------------
// A fake backend for every integration: records each call, answers something checkable.
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
    clipboard: Mutex<Option<String>>,
    /// When set, sub-agents wait for a permit before answering.
    agent_gate: Option<tokio::sync::Semaphore>,
    /// When set, a debug session's `resume` waits for a permit before answering.
    debug_gate: Option<tokio::sync::Semaphore>,
    /// When set, automation runs wait for a permit before answering.
    automation_gate: Option<tokio::sync::Semaphore>,
}

impl Fake {
    fn record(&self, call: String) {
        self.calls.lock().expect("lock").push(call);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }
    fn integrations(self: &Arc<Self>) -> Integrations {
        Integrations::default()
            .with_clipboard(self.clone())
            .with_camera(self.clone())
            .with_microphone(self.clone())
            .with_location(self.clone())
            .with_automation(self.clone())
            .with_vcs(self.clone())
            .with_mcp(self.clone())
            .with_code_intel(self.clone())
            .with_debugger(Arc::new(FakeDebugger(self.clone())))
            .with_agent(self.clone())
            .with_flowchart(self.clone())
    }
}

fn ready<'a, T: Send + 'a>(v: T) -> BackendFuture<'a, T> {
    Box::pin(std::future::ready(Ok(v)))
}

impl ClipboardBackend for Fake {
    fn read_text(&self) -> BackendFuture<'_, Option<String>> {
        self.record("clipboard.read".into());
        ready(self.clipboard.lock().expect("lock").clone())
    }
    fn write_text(&self, text: String) -> BackendFuture<'_, ()> {
        self.record(format!("clipboard.write {text}"));
        *self.clipboard.lock().expect("lock") = Some(text);
        ready(())
    }
}

impl CameraBackend for Fake {
    fn capture(
        &self,
        device: Option<String>,
        max_width: Option<u32>,
        max_height: Option<u32>,
    ) -> BackendFuture<'_, Image> {
        self.record(format!("camera.capture {device:?} {max_width:?} {max_height:?}"));
        ready(Image {
            data: vec![0xff, 0xd8, 0xff],
            mime: "image/jpeg".into(),
            width: max_width.unwrap_or(640),
            height: max_height.unwrap_or(480),
        })
    }
    fn devices(&self) -> BackendFuture<'_, Vec<String>> {
        self.record("camera.devices".into());
        ready(vec!["front".into(), "back".into()])
    }
}

impl MicrophoneBackend for Fake {
    fn record(&self, duration_ms: u32, device: Option<String>) -> BackendFuture<'_, Audio> {
        Fake::record(self, format!("microphone.record {duration_ms} {device:?}"));
        ready(Audio { data: vec![1, 2, 3, 4], mime: "audio/wav".into(), duration_ms, sample_rate: 16_000 })
    }
    fn devices(&self) -> BackendFuture<'_, Vec<String>> {
        Fake::record(self, "microphone.devices".into());
        ready(vec!["mic".into()])
    }
}

impl LocationBackend for Fake {
    fn current(&self, timeout_ms: u32) -> BackendFuture<'_, Position> {
        self.record(format!("location.current {timeout_ms}"));
        ready(Position {
            latitude: 38.72,
            longitude: -9.14,
            accuracy_m: 12.5,
            altitude_m: None,
            timestamp_ms: 1_700_000_000_000,
        })
    }
}

impl AutomationBackend for Fake {
    fn run(&self, app: String, action: String, arguments: Value) -> BackendFuture<'_, Value> {
        self.record(format!("automation {app} {action} {arguments}"));
        Box::pin(async move {
            if let Some(gate) = &self.automation_gate {
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
            }
            Ok(json!({"done": action}))
        })
    }
}

impl VcsBackend for Fake {
    fn status(&self, repo: String) -> BackendFuture<'_, Vec<FileStatus>> {
        self.record(format!("vcs.status {repo}"));
        ready(vec![FileStatus { path: "src/lib.rs".into(), change: Change::Modified, staged: false }])
    }
    fn log(&self, repo: String, max_count: u32) -> BackendFuture<'_, Vec<CommitInfo>> {
        self.record(format!("vcs.log {repo} {max_count}"));
        ready(vec![CommitInfo {
            id: "a".repeat(40),
            author: "A".into(),
            author_email: "a@example.com".into(),
            time_ms: 1,
            summary: "first".into(),
        }])
    }
    fn diff(&self, repo: String, staged: bool, paths: Vec<String>) -> BackendFuture<'_, String> {
        self.record(format!("vcs.diff {repo} {staged} {paths:?}"));
        ready("--- a\n+++ b\n".into())
    }
    fn add(&self, repo: String, paths: Vec<String>) -> BackendFuture<'_, ()> {
        self.record(format!("vcs.add {repo} {paths:?}"));
        ready(())
    }
    fn commit(&self, repo: String, message: String) -> BackendFuture<'_, String> {
        self.record(format!("vcs.commit {repo} {message}"));
        ready("b".repeat(40))
    }
    fn branches(&self, repo: String) -> BackendFuture<'_, (Vec<String>, Option<String>)> {
        self.record(format!("vcs.branches {repo}"));
        ready((vec!["main".into(), "dev".into()], Some("main".into())))
    }
    fn checkout(&self, repo: String, branch: String, create: bool) -> BackendFuture<'_, ()> {
        self.record(format!("vcs.checkout {repo} {branch} {create}"));
        ready(())
    }
}

impl McpBackend for Fake {
    fn servers(&self) -> BackendFuture<'_, Vec<String>> {
        self.record("mcp.servers".into());
        ready(vec!["files".into(), "shell".into()])
    }
    fn list_tools(&self, server: String) -> BackendFuture<'_, Vec<ToolInfo>> {
        self.record(format!("mcp.tools {server}"));
        let tool = |name: &str| ToolInfo { name: name.into(), description: String::new(), input_schema: "{}".into() };
        ready(vec![tool("read_file"), tool("write_file"), tool("list_dir")])
    }
    fn call_tool(&self, server: String, tool: String, arguments: Value) -> BackendFuture<'_, CallResult> {
        self.record(format!("mcp.call {server} {tool} {arguments}"));
        ready(CallResult { content: r#"[{"type":"text","text":"contents"}]"#.into(), is_error: false })
    }
}

impl CodeIntelBackend for Fake {
    fn symbols(&self, path: String) -> BackendFuture<'_, Vec<code_intel::Symbol>> {
        self.record(format!("code.symbols {path}"));
        let at = code_intel::Position { line: 0, column: 3 };
        let span = code_intel::Span { path, start: at, end: code_intel::Position { line: 0, column: 7 } };
        ready(vec![code_intel::Symbol {
            name: "main".into(),
            kind: code_intel::SymbolKind::Function,
            span,
            container: None,
        }])
    }
    fn definition(&self, path: String, at: code_intel::Position) -> BackendFuture<'_, Vec<code_intel::Span>> {
        self.record(format!("code.definition {path} {}:{}", at.line, at.column));
        ready(Vec::new())
    }
    fn references(
        &self,
        path: String,
        at: code_intel::Position,
        decl: bool,
    ) -> BackendFuture<'_, Vec<code_intel::Span>> {
        self.record(format!("code.references {path} {}:{} {decl}", at.line, at.column));
        ready(Vec::new())
    }
    fn diagnostics(&self, path: String) -> BackendFuture<'_, Vec<code_intel::Diagnostic>> {
        self.record(format!("code.diagnostics {path}"));
        ready(Vec::new())
    }
    fn hover(&self, path: String, at: code_intel::Position) -> BackendFuture<'_, Option<String>> {
        self.record(format!("code.hover {path} {}:{}", at.line, at.column));
        ready(Some("docs".into()))
    }
}

struct FakeSession {
    fake: Arc<Fake>,
}

impl Drop for FakeSession {
    fn drop(&mut self) {
        self.fake.record("debug.drop".into());
    }
}

impl DebugSession for FakeSession {
    fn set_breakpoint(&mut self, path: String, line: u32, condition: Option<String>) -> BackendFuture<'_, Breakpoint> {
        self.fake.record(format!("debug.breakpoint {path} {line} {condition:?}"));
        ready(Breakpoint { id: 7, path, line, verified: true })
    }
    fn remove_breakpoint(&mut self, id: u32) -> BackendFuture<'_, ()> {
        self.fake.record(format!("debug.remove {id}"));
        ready(())
    }
    fn resume(&mut self, timeout_ms: u32) -> BackendFuture<'_, StopReason> {
        self.fake.record(format!("debug.resume {timeout_ms}"));
        Box::pin(async move {
            if let Some(gate) = &self.fake.debug_gate {
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
            }
            Ok(StopReason::Breakpoint(7))
        })
    }
    fn step(&mut self, kind: StepKind) -> BackendFuture<'_, StopReason> {
        self.fake.record(format!("debug.step {kind:?}"));
        ready(StopReason::Step)
    }
    fn stack_trace(&mut self) -> BackendFuture<'_, Vec<StackFrame>> {
        self.fake.record("debug.stack".into());
        ready(vec![StackFrame { id: 1, name: "main".into(), path: Some("src/main.rs".into()), line: 3, column: 1 }])
    }
    fn variables(&mut self, frame_id: u32) -> BackendFuture<'_, Vec<Variable>> {
        self.fake.record(format!("debug.variables {frame_id}"));
        ready(vec![Variable { name: "x".into(), value: "41".into(), type_name: Some("i32".into()) }])
    }
    fn evaluate(&mut self, expression: String, frame_id: Option<u32>) -> BackendFuture<'_, String> {
        self.fake.record(format!("debug.evaluate {expression} {frame_id:?}"));
        ready("42".into())
    }
    fn terminate(&mut self) -> BackendFuture<'_, ()> {
        self.fake.record("debug.terminate".into());
        ready(())
    }
}

/// The debugger hands each session the fake, so sessions record too.
struct FakeDebugger(Arc<Fake>);

impl DebugBackend for FakeDebugger {
    fn launch(&self, config: LaunchConfig) -> BackendFuture<'_, Box<dyn DebugSession>> {
        self.0.record(format!("debug.launch {} {:?}", config.program, config.args));
        let session: Box<dyn DebugSession> = Box::new(FakeSession { fake: self.0.clone() });
        ready(session)
    }
}

impl AgentBackend for Fake {
    fn spawn(&self, r: AgentRequest) -> BackendFuture<'_, AgentOutcome> {
        self.record(format!(
            "agent {} {} {:?} {} {:?}",
            r.extension, r.instructions, r.tools, r.max_iterations, r.model
        ));
        Box::pin(async move {
            if let Some(gate) = &self.agent_gate {
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
            }
            Ok(AgentOutcome {
                output: format!("done: {}", r.instructions),
                iterations: 1,
                tool_calls: 0,
                completed: true,
            })
        })
    }
}

impl FlowchartBackend for Fake {
    fn invoke(&self, name: String, input: Value) -> BackendFuture<'_, Value> {
        self.record(format!("flowchart {name} {input}"));
        ready(json!({"summary": "short"}))
    }
}

// ---------------------------------------------------------------------------------------
// The harness for these tests.
// ---------------------------------------------------------------------------------------

struct Probe {
    rt: tokio::runtime::Runtime,
    omni: Arc<Omni>,
    fake: Arc<Fake>,
    _data: TempDir,
    sources: Vec<TempDir>,
}

impl Probe {
    /// A host whose integrations are all `fake`.
    fn with(config: OmniConfig, fake: Fake) -> Probe {
        let fake = Arc::new(fake);
        let integrations = fake.integrations();
        Probe::open(config, fake, Some(integrations))
    }

    fn new() -> Probe {
        Probe::with(OmniConfig::default(), Fake::default())
    }

    /// A host with the default integrations (the fake is never plugged in).
    fn defaults() -> Probe {
        Probe::open(OmniConfig::default(), Arc::new(Fake::default()), None)
    }

    fn open(config: OmniConfig, fake: Arc<Fake>, integrations: Option<Integrations>) -> Probe {
        let data = tempfile::tempdir().expect("temp dir");
        let mut builder = Omni::builder(data.path()).engine(engine()).config(config);
        if let Some(i) = integrations {
            builder = builder.integrations(i);
        }
        let omni = Arc::new(builder.open().expect("host opens"));
        Probe { rt: runtime(), omni, fake, _data: data, sources: Vec::new() }
    }

    /// Installs the probe with its manifest rewritten by `edits` (exact text
    /// replacements, each of which must apply), granting everything Always except the
    /// capabilities in `decide`, which get the decision given.
    fn install(&mut self, edits: &[(&str, &str)], decide: &[(&str, Decision)]) {
        let src = sample_with_manifest(PROBE, |manifest| {
            let mut manifest = manifest.to_string();
            for (from, to_text) in edits {
                assert!(manifest.contains(from), "the probe manifest has no {from:?}");
                manifest = manifest.replace(from, to_text);
            }
            manifest
        });
        install_from(&self.omni, src.path(), |cap| {
            decide.iter().find(|(c, _)| *c == cap).map_or(Decision::Allow, |(_, d)| *d)
        });
        self.sources.push(src);
    }

    fn call_ext(&self, id: &str, tool: &str, args: Value) -> Value {
        let out = self
            .rt
            .block_on(self.omni.call(id, tool, &args.to_string()))
            .unwrap_or_else(|e| panic!("{id}/{tool} {args}: {e}"));
        serde_json::from_str(&out.output).unwrap_or_else(|e| panic!("{tool} returned {}: {e}", out.output))
    }

    fn call(&self, tool: &str, args: Value) -> Value {
        self.call_ext(PROBE, tool, args)
    }

    fn records(&self, extension: &str, capability: &str, decision: Decision, kind: EventKind) -> Vec<AuditRecord> {
        audit_records(&self.omni, extension, capability, Some(decision), Some(kind))
    }

    /// Asserts a call-time deny record for `capability` whose reason holds every word of
    /// `reason_has`.
    fn assert_denied(&self, capability: &str, reason_has: &[&str]) {
        self.assert_denied_for(PROBE, capability, reason_has);
    }

    fn assert_denied_for(&self, extension: &str, capability: &str, reason_has: &[&str]) {
        assert_reason(
            &self.records(extension, capability, Decision::Deny, EventKind::Decision),
            capability,
            reason_has,
        );
    }

    /// The host still serves: an allowed call goes through to the backend.
    fn assert_still_serves(&self) {
        let before = self.fake.calls().len();
        let out = self.call("clipboard_write", json!({"text": "still here"}));
        ok(&out);
        assert_eq!(self.fake.calls().len(), before + 1, "the follow-up call must reach the backend");
    }
}

fn ok(out: &Value) -> &Value {
    out.get("ok").unwrap_or_else(|| panic!("expected success, got {out}"))
}

/// The error message, after checking its kind.
fn error(out: &Value, kind: &str) -> String {
    assert_eq!(out["error"]["kind"], kind, "expected {kind}, got {out}");
    out["error"]["message"].as_str().expect("message").to_string()
}

// ---------------------------------------------------------------------------------------
// Allowed calls reach the backend with the right arguments.
// ---------------------------------------------------------------------------------------

#[test]
fn clipboard_read_and_write_reach_the_backend() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    ok(&p.call("clipboard_write", json!({"text": "héllo\nworld"})));
    assert_eq!(ok(&p.call("clipboard_read", json!({}))), "héllo\nworld");
    assert_eq!(p.fake.calls(), vec!["clipboard.write héllo\nworld", "clipboard.read"]);
}

#[test]
fn the_default_clipboard_is_private_to_the_host() {
    let mut a = Probe::defaults();
    a.install(&[], &[]);
    let b = {
        let mut b = Probe::defaults();
        b.install(&[], &[]);
        b
    };
    assert_eq!(ok(&a.call("clipboard_read", json!({}))), &Value::Null);
    ok(&a.call("clipboard_write", json!({"text": "secret"})));
    assert_eq!(ok(&a.call("clipboard_read", json!({}))), "secret");
    assert_eq!(ok(&b.call("clipboard_read", json!({}))), &Value::Null, "another host has its own clipboard");
}

#[test]
fn device_camera_reaches_the_backend() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    let shot = p.call("camera", json!({"device": "front", "max_width": 320}));
    assert_eq!(ok(&shot)["width"], 320);
    assert_eq!(ok(&shot)["bytes"], 3);
    assert_eq!(ok(&p.call("camera_devices", json!({}))), &json!(["front", "back"]));
    assert_eq!(p.fake.calls(), vec!["camera.capture Some(\"front\") Some(320) None", "camera.devices"]);
    // A bound the host enforces never reaches the backend.
    error(&p.call("camera", json!({"max_width": 0})), "invalid-input");
    assert_eq!(p.fake.calls().len(), 2);
}

#[test]
fn device_microphone_reaches_the_backend_with_the_length_capped() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    assert_eq!(ok(&p.call("microphone", json!({"duration_ms": 1500, "device": "mic"})))["duration_ms"], 1500);
    ok(&p.call("microphone", json!({"duration_ms": 10_000_000})));
    assert_eq!(p.fake.calls(), vec!["microphone.record 1500 Some(\"mic\")", "microphone.record 60000 None"]);
}

#[test]
fn device_location_reaches_the_backend() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    let fix = p.call("location", json!({"timeout_ms": 2000}));
    assert_eq!(ok(&fix)["latitude"], 38.72);
    assert_eq!(p.fake.calls(), vec!["location.current 2000"]);
}

#[test]
fn app_automation_reaches_the_backend() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    let out = p
        .call("automation", json!({"app": "com.example.editor", "action": "save", "arguments": r#"{"path":"a.txt"}"#}));
    assert_eq!(ok(&out).as_str(), Some(r#"{"done":"save"}"#));
    assert_eq!(p.fake.calls(), vec![r#"automation com.example.editor save {"path":"a.txt"}"#]);
    error(
        &p.call("automation", json!({"app": "com.example.editor", "action": "save", "arguments": "[1]"})),
        "invalid-input",
    );
    assert_eq!(p.fake.calls().len(), 1);
}

#[test]
fn vcs_operations_reach_the_backend() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    let repo = "/srv/repos/project";
    assert_eq!(ok(&p.call("vcs", json!({"repo": repo, "op": "status"})))[0]["change"], "Modified");
    ok(&p.call("vcs", json!({"repo": repo, "op": "add", "paths": ["src/lib.rs", "README.md"]})));
    assert_eq!(
        ok(&p.call("vcs", json!({"repo": repo, "op": "commit", "message": "Fix it"}))).as_str(),
        Some("b".repeat(40).as_str())
    );
    ok(&p.call("vcs", json!({"repo": repo, "op": "diff", "staged": true, "paths": ["src"]})));
    ok(&p.call("vcs", json!({"repo": repo, "op": "log", "max_count": 3})));
    assert_eq!(ok(&p.call("vcs", json!({"repo": repo, "op": "branches"})))[1], "main");
    ok(&p.call("vcs", json!({"repo": repo, "op": "checkout", "branch": "feature", "create": true})));
    assert_eq!(
        p.fake.calls(),
        vec![
            "vcs.status /srv/repos/project",
            "vcs.add /srv/repos/project [\"src/lib.rs\", \"README.md\"]",
            "vcs.commit /srv/repos/project Fix it",
            "vcs.diff /srv/repos/project true [\"src\"]",
            "vcs.log /srv/repos/project 3",
            "vcs.branches /srv/repos/project",
            "vcs.checkout /srv/repos/project feature true",
        ]
    );
}

#[test]
fn mcp_server_reaches_the_backend_and_listings_are_filtered() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    assert_eq!(
        ok(&p.call("mcp", json!({"op": "servers"}))),
        &json!(["files"]),
        "`shell` is configured but not granted"
    );
    let tools = p.call("mcp", json!({"op": "tools", "server": "files"}));
    let names: Vec<&str> = ok(&tools).as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, vec!["read_file", "list_dir"], "`write_file` is not granted");
    let out =
        p.call("mcp", json!({"op": "call", "server": "files", "tool": "read_file", "arguments": r#"{"path":"/a"}"#}));
    assert_eq!(ok(&out)["is_error"], false);
    assert_eq!(p.fake.calls(), vec!["mcp.servers", "mcp.tools files", r#"mcp.call files read_file {"path":"/a"}"#]);
}

#[test]
fn code_intelligence_reaches_the_backend_with_the_normalized_path() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    let out = p.call("code_intel", json!({"op": "symbols", "path": "/srv/repos/./project/x/../src/lib.rs"}));
    assert_eq!(ok(&out)[0]["name"], "main");
    ok(&p.call("code_intel", json!({"op": "hover", "path": "/srv/repos/project/src/lib.rs", "line": 4, "column": 2})));
    assert_eq!(
        p.fake.calls(),
        vec!["code.symbols /srv/repos/project/src/lib.rs", "code.hover /srv/repos/project/src/lib.rs 4:2"]
    );
}

#[test]
fn code_intelligence_applies_the_blocked_paths() {
    let blocked = tempfile::tempdir().expect("temp dir");
    let mut config = OmniConfig::default();
    config.security.blocked_paths = vec![blocked.path().display().to_string()];
    let mut p = Probe::with(config, Fake::default());
    p.install(&[], &[]);
    let inside = format!("{}/other/../key.rs", blocked.path().display());
    let message = error(&p.call("code_intel", json!({"op": "symbols", "path": inside})), "out-of-scope");
    assert!(message.contains("blocked path"), "{message}");
    p.assert_denied("code.intelligence", &["blocked path"]);
    assert!(p.fake.calls().is_empty(), "the backend must not see a blocked path");
    p.assert_still_serves();
}

#[test]
fn debug_session_reaches_the_backend_and_ends_with_the_call() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    let out = p.call("debug", json!({"program": "/srv/bin/app", "args": ["-v"], "breakpoint_path": "src/main.rs", "line": 3, "expression": "x + 1"}));
    let steps = ok(&out);
    assert_eq!(steps["value"], "42");
    assert_eq!(steps["breakpoint"]["verified"], true);
    assert_eq!(
        p.fake.calls(),
        vec![
            "debug.launch /srv/bin/app [\"-v\"]",
            "debug.breakpoint src/main.rs 3 None",
            "debug.resume 5000",
            "debug.stack",
            "debug.evaluate x + 1 Some(1)",
            "debug.terminate",
            "debug.drop",
        ]
    );
}

#[test]
fn agent_spawn_reaches_the_backend_within_the_scope() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    let out = p.call(
        "agent",
        json!({"instructions": "sum up", "tools": ["dev.omni.weather/get_weather"], "max_iterations": 3}),
    );
    assert_eq!(ok(&out)["output"], "done: sum up");
    // No number asked: the scope's bound applies.
    ok(&p.call("agent", json!({"instructions": "again", "model": "small"})));
    assert_eq!(
        p.fake.calls(),
        vec![
            "agent dev.omni.probe sum up [\"dev.omni.weather/get_weather\"] 3 None",
            "agent dev.omni.probe again [] 5 Some(\"small\")",
        ]
    );
}

#[test]
fn flowchart_invoke_reaches_the_backend() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    let out = p.call("flowchart", json!({"name": "summarize", "input": r#"{"text":"long"}"#}));
    assert_eq!(ok(&out).as_str(), Some(r#"{"summary":"short"}"#));
    assert_eq!(p.fake.calls(), vec![r#"flowchart summarize {"text":"long"}"#]);
}

#[test]
fn the_default_flowchart_registry_runs_what_the_embedder_registered() {
    let flows = omni_host::caps::flowchart::FlowchartRegistry::new().register("summarize", |input| {
        Ok(json!({"words": input["text"].as_str().unwrap_or("").split_whitespace().count()}))
    });
    let mut p = Probe::open(
        OmniConfig::default(),
        Arc::new(Fake::default()),
        Some(Integrations::default().with_flowchart(Arc::new(flows))),
    );
    p.install(&[(r#"allowed_flowcharts = ["summarize"]"#, r#"allowed_flowcharts = ["summarize", "missing"]"#)], &[]);
    let out = p.call("flowchart", json!({"name": "summarize", "input": r#"{"text":"one two three"}"#}));
    assert_eq!(ok(&out).as_str(), Some(r#"{"words":3}"#));
    let message = error(&p.call("flowchart", json!({"name": "missing"})), "unavailable");
    assert!(message.contains("summarize") && message.contains("FlowchartRegistry::register"), "{message}");
}

#[test]
fn storage_persistent_allowed_round_trip() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    ok(&p.call("storage", json!({"op": "set", "key": "k", "value": "v1"})));
    assert_eq!(ok(&p.call("storage", json!({"op": "get", "key": "k"}))), "v1");
    assert_eq!(ok(&p.call("storage", json!({"op": "usage"}))), &json!({"used": 3, "quota": 4096}));
    assert_eq!(ok(&p.call("storage", json!({"op": "list", "prefix": ""}))), &json!(["k"]));
    assert_eq!(ok(&p.call("storage", json!({"op": "delete", "key": "k"}))), true);
    assert_eq!(ok(&p.call("storage", json!({"op": "exists", "key": "k"}))), false);
}

#[test]
fn default_backends_are_unavailable_and_name_the_builder_method() {
    let mut p = Probe::defaults();
    p.install(&[], &[]);
    for (tool, args, method) in [
        ("camera", json!({}), "with_camera"),
        ("microphone", json!({"duration_ms": 10}), "with_microphone"),
        ("location", json!({}), "with_location"),
        ("automation", json!({"app": "com.example.editor", "action": "open"}), "with_automation"),
        ("vcs", json!({"repo": "/srv/repos/project", "op": "status"}), "with_vcs"),
        ("mcp", json!({"op": "servers"}), "with_mcp"),
        ("code_intel", json!({"op": "symbols", "path": "/srv/x.rs"}), "with_code_intel"),
        ("debug", json!({"program": "/srv/bin/app"}), "with_debugger"),
        ("agent", json!({"instructions": "hi"}), "with_agent"),
    ] {
        let message = error(&p.call(tool, args), "unavailable");
        assert!(message.contains(method) && message.contains("OmniBuilder::integrations"), "{tool}: {message}");
    }
    let message = error(&p.call("flowchart", json!({"name": "summarize"})), "unavailable");
    assert!(message.contains("no flowchart named"), "{message}");
}

// ---------------------------------------------------------------------------------------
// Out of scope: refused before the backend, audited with the reason, host still serves.
// ---------------------------------------------------------------------------------------

#[test]
fn app_automation_action_out_of_scope() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    let message =
        error(&p.call("automation", json!({"app": "com.example.editor", "action": "delete_all"})), "out-of-scope");
    assert!(message.contains("allowed_actions"), "{message}");
    p.assert_denied("app.automation", &["delete_all", "allowed_actions"]);
    assert!(p.fake.calls().is_empty());
    p.assert_still_serves();
}

#[test]
fn vcs_operation_out_of_scope() {
    let mut p = Probe::new();
    p.install(&[(r#""add", "commit", "branches", "checkout""#, r#""branches""#)], &[]);
    let message =
        error(&p.call("vcs", json!({"repo": "/srv/repos/project", "op": "commit", "message": "m"})), "out-of-scope");
    assert!(message.contains("allowed_operations"), "{message}");
    p.assert_denied("vcs.operations", &["\"commit\"", "allowed_operations"]);
    assert!(p.fake.calls().is_empty());
    ok(&p.call("vcs", json!({"repo": "/srv/repos/project", "op": "status"})));
    p.assert_still_serves();
}

#[test]
fn mcp_server_out_of_scope() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    for args in
        [json!({"op": "tools", "server": "shell"}), json!({"op": "call", "server": "shell", "tool": "read_file"})]
    {
        let message = error(&p.call("mcp", args), "out-of-scope");
        assert!(message.contains("allowed_servers"), "{message}");
    }
    p.assert_denied("mcp.server", &["\"shell\"", "allowed_servers"]);
    assert!(p.fake.calls().is_empty());
    p.assert_still_serves();
}

#[test]
fn agent_spawn_out_of_scope() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    let message = error(&p.call("agent", json!({"instructions": "work hard", "max_iterations": 6})), "out-of-scope");
    assert!(message.contains("max_iterations: 5"), "{message}");
    p.assert_denied("agent.spawn", &["6 iterations", "max_iterations"]);
    assert!(p.fake.calls().is_empty());
    p.assert_still_serves();
}

#[test]
fn flowchart_invoke_out_of_scope() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    for name in ["delete_everything", "Summarize", "summarize "] {
        let message = error(&p.call("flowchart", json!({"name": name})), "out-of-scope");
        assert!(message.contains("allowed_flowcharts"), "{message}");
    }
    p.assert_denied("flowchart.invoke", &["delete_everything", "allowed_flowcharts"]);
    assert!(p.fake.calls().is_empty());
    p.assert_still_serves();
}

#[test]
fn app_automation_rate_limit_is_enforced() {
    let mut p = Probe::new();
    p.install(&[(r#"rate_limit = "1000/minute""#, r#"rate_limit = "2/hour""#)], &[]);
    let args = json!({"app": "com.example.editor", "action": "open"});
    ok(&p.call("automation", args.clone()));
    ok(&p.call("automation", args.clone()));
    error(&p.call("automation", args), "rate-limited");
    assert_eq!(p.fake.calls().len(), 2, "the third call must not reach the backend");
    p.assert_denied("app.automation", &["limit"]);
    p.assert_still_serves();
}

#[test]
fn app_automation_max_concurrent_is_enforced() {
    let fake = Fake { automation_gate: Some(tokio::sync::Semaphore::new(0)), ..Fake::default() };
    let mut p = Probe::with(OmniConfig::default(), fake);
    p.install(&[], &[]);
    // The scope allows two runs at once; hold two in the backend.
    let running: Vec<_> = (0..2)
        .map(|_| {
            let omni = p.omni.clone();
            p.rt.spawn(async move {
                omni.call(PROBE, "automation", r#"{"app":"com.example.editor","action":"open"}"#).await
            })
        })
        .collect();
    for _ in 0..1000 {
        if p.fake.calls().len() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(p.fake.calls().len(), 2, "two runs should be in the backend");
    let message = error(&p.call("automation", json!({"app": "com.example.editor", "action": "save"})), "rate-limited");
    assert!(message.contains("max_concurrent"), "{message}");
    p.assert_denied("app.automation", &["max_concurrent"]);
    assert_eq!(p.fake.calls().len(), 2, "the third run must not start");
    p.fake.automation_gate.as_ref().expect("gate").add_permits(10);
    for call in running {
        let out = p.rt.block_on(call).expect("task").expect("call");
        assert!(out.output.contains("done"), "{}", out.output);
    }
    ok(&p.call("automation", json!({"app": "com.example.editor", "action": "save"})));
}

// ---------------------------------------------------------------------------------------
// Ungranted: refused at link time (denied at install) and at call time (a person says no).
// ---------------------------------------------------------------------------------------

#[test]
fn ungranted_capabilities_are_refused() {
    // Denied at install: each import is linked to a refusal; the backend is unreachable.
    let mut p = Probe::new();
    let denied: Vec<(&str, Decision)> = every_capability().iter().map(|(c, _, _)| (*c, Decision::Deny)).collect();
    p.install(&[], &denied);
    install_granting_all(&p.omni, "dev.omni.notes");
    for (cap, tool, args) in every_capability() {
        let message = error(&p.call(tool, args), "permission-denied");
        assert!(message.contains(cap) && message.contains("not granted"), "{cap}: {message}");
        assert!(
            !p.records(PROBE, cap, Decision::Deny, EventKind::Grant).is_empty(),
            "the refusal of {cap} at install is audited"
        );
        let calls = p.records(PROBE, cap, Decision::Deny, EventKind::Decision);
        assert!(
            calls
                .iter()
                .any(|r| r.reason.contains("not granted") && r.target.as_deref().is_some_and(|t| !t.is_empty())),
            "the refused call to {cap} is audited with its function and reason: {calls:?}"
        );
    }
    assert!(p.fake.calls().is_empty(), "no backend may be reached: {:?}", p.fake.calls());
    p.call_ext("dev.omni.notes", "list", json!({}));

    // Left to a prompt that the person (here, no prompter) refuses: refused at call time,
    // with a deny record per capability.
    let mut p = Probe::new();
    let prompted: Vec<(&str, Decision)> = every_capability().iter().map(|(c, _, _)| (*c, Decision::Prompt)).collect();
    p.install(&[], &prompted);
    install_granting_all(&p.omni, "dev.omni.notes");
    for (cap, tool, args) in every_capability() {
        error(&p.call(tool, args), "permission-denied");
        let records = p.records(PROBE, cap, Decision::Deny, EventKind::Decision);
        assert!(!records.is_empty(), "the refusal of {cap} is audited");
        assert!(records.iter().all(|r| !r.reason.is_empty()), "{cap}: a deny record says why");
    }
    assert!(p.fake.calls().is_empty(), "no backend may be reached: {:?}", p.fake.calls());
    p.call_ext("dev.omni.notes", "list", json!({}));
}

#[test]
fn revoked_capability_stops_at_the_next_call() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    ok(&p.call("vcs", json!({"repo": "/srv/repos/project", "op": "status"})));
    p.omni.policy().revoke(PROBE, Some("vcs.operations")).expect("revoke");
    error(&p.call("vcs", json!({"repo": "/srv/repos/project", "op": "status"})), "permission-denied");
    assert_eq!(p.fake.calls().len(), 1);
    p.assert_still_serves();
}

// ---------------------------------------------------------------------------------------
// Hostile extensions.
// ---------------------------------------------------------------------------------------

#[test]
fn hostile_kv_quota_overflow() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    let chunk = "x".repeat(3000);
    ok(&p.call("storage", json!({"op": "set", "key": "a", "value": chunk})));
    // A second chunk would take the namespace to 6002 bytes of a 4096-byte quota.
    let message = error(&p.call("storage", json!({"op": "set", "key": "b", "value": chunk})), "out-of-scope");
    assert!(message.contains("quota of 4096 bytes"), "{message}");
    p.assert_denied("storage.persistent", &["quota of 4096 bytes"]);
    // Growing an existing key past the quota is refused too, and nothing changed.
    error(&p.call("storage", json!({"op": "set", "key": "a", "value": "y".repeat(5000)})), "out-of-scope");
    assert_eq!(ok(&p.call("storage", json!({"op": "exists", "key": "b"}))), false);
    assert_eq!(ok(&p.call("storage", json!({"op": "usage"})))["used"], 3001);
    // Freeing space makes room again; the host still serves.
    ok(&p.call("storage", json!({"op": "delete", "key": "a"})));
    ok(&p.call("storage", json!({"op": "set", "key": "b", "value": chunk})));
    p.assert_still_serves();
}

#[test]
fn hostile_kv_read_other_extension_keys() {
    const OTHER: &str = "dev.omni.probe.other";
    // The second extension's id extends the first's, so a naive prefix scheme would
    // confuse their namespaces.
    let mut p = Probe::new();
    p.install(&[], &[]);
    p.install(&[(r#"id = "dev.omni.probe""#, &format!("id = {OTHER:?}"))], &[]);
    let secrets = ["token", "a/b", "dev.omni.probe.other:token", "tökén/ключ", ""];
    for (i, key) in secrets.iter().enumerate().filter(|(_, k)| !k.is_empty()) {
        ok(&p.call_ext(OTHER, "storage", json!({"op": "set", "key": key, "value": format!("secret-{i}")})));
    }
    // Every way the probe might name them: plain, with separators and prefixes that a
    // flattened `namespace + separator + key` scheme would use, unicode look-alikes.
    let crafted = [
        "token",
        "a/b",
        "dev.omni.probe.other:token",
        "dev.omni.probe.other/token",
        "dev.omni.probe.other\u{0}token",
        ".other:token",
        "\u{0}token",
        "../dev.omni.probe.other/token",
        "tökén/ключ",
        "tökén/ключ\u{200b}",
        "to\u{301}ken",
    ];
    for key in crafted {
        if omni_capabilities::text::first_unsafe(key).is_some() {
            // A key no person could read in a prompt or the audit is refused outright.
            for op in ["get", "exists", "delete"] {
                error(&p.call("storage", json!({"op": op, "key": key})), "invalid-input");
            }
            continue;
        }
        assert_eq!(
            ok(&p.call("storage", json!({"op": "get", "key": key}))),
            &Value::Null,
            "{key:?} must not be readable"
        );
        assert_eq!(ok(&p.call("storage", json!({"op": "exists", "key": key}))), false, "{key:?}");
        assert_eq!(ok(&p.call("storage", json!({"op": "delete", "key": key}))), false, "{key:?} must not be deletable");
    }
    error(&p.call("storage", json!({"op": "list", "prefix": "\u{0}"})), "invalid-input");
    for prefix in ["", "t", "dev.omni.probe", "a", "tö"] {
        assert_eq!(ok(&p.call("storage", json!({"op": "list", "prefix": prefix}))), &json!([]), "prefix {prefix:?}");
    }
    assert_eq!(ok(&p.call("storage", json!({"op": "usage"})))["used"], 0);
    // The probe's own writes under the same names do not touch the other's values.
    ok(&p.call("storage", json!({"op": "set", "key": "token", "value": "mine"})));
    assert_eq!(ok(&p.call_ext(OTHER, "storage", json!({"op": "get", "key": "token"}))), "secret-0");
    assert_eq!(ok(&p.call_ext(OTHER, "storage", json!({"op": "get", "key": "tökén/ключ"}))), "secret-3");
    assert_eq!(ok(&p.call("storage", json!({"op": "list", "prefix": ""}))), &json!(["token"]));
    // An empty key is refused rather than mapped onto something else.
    error(&p.call("storage", json!({"op": "get", "key": ""})), "invalid-input");
    // Uninstalling one clears its namespace only.
    assert!(p.omni.uninstall(PROBE).expect("uninstall"));
    assert_eq!(ok(&p.call_ext(OTHER, "storage", json!({"op": "get", "key": "token"}))), "secret-0");
    // A reinstall under the same id starts empty: nothing of the old namespace survives.
    p.install(&[], &[]);
    assert_eq!(ok(&p.call("storage", json!({"op": "get", "key": "token"}))), &Value::Null);
    assert_eq!(ok(&p.call("storage", json!({"op": "usage"})))["used"], 0);
}

#[test]
fn hostile_automation_app_not_allowed() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    for app in ["com.apple.Terminal", "com.example.editor.evil", "com.example.Editor", "com.example.edito"] {
        let message = error(&p.call("automation", json!({"app": app, "action": "open"})), "out-of-scope");
        assert!(message.contains("allowed_apps"), "{app:?}: {message}");
    }
    // Names with control or invisible characters are refused before the scope is asked.
    for app in ["com.example.editor\n", "com.example.editor\u{200b}"] {
        error(&p.call("automation", json!({"app": app, "action": "open"})), "invalid-input");
    }
    p.assert_denied("app.automation", &["com.apple.Terminal", "allowed_apps"]);
    assert!(p.fake.calls().is_empty(), "{:?}", p.fake.calls());
    ok(&p.call("automation", json!({"app": "com.example.editor", "action": "open"})));
    p.assert_still_serves();
}

#[test]
fn hostile_vcs_repo_out_of_scope() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    for repo in [
        "/srv/repos/other",
        "/srv/repos/project/",
        "/srv/repos/project/../other",
        "/srv/repos/project/.",
        "/srv/repos/projectx",
        "~/.ssh",
        "https://github.com/evil/repo",
    ] {
        let message = error(&p.call("vcs", json!({"repo": repo, "op": "status"})), "out-of-scope");
        assert!(message.contains("allowed_repos"), "{repo}: {message}");
    }
    p.assert_denied("vcs.operations", &["/srv/repos/other", "allowed_repos"]);
    // Inside the right repository, paths that climb out are refused and audited too.
    for path in ["../other/secret", "/etc/passwd", "src/../../x"] {
        let message = error(
            &p.call("vcs", json!({"repo": "/srv/repos/project", "op": "add", "paths": ["ok.txt", path]})),
            "out-of-scope",
        );
        assert!(message.contains(path), "{message}");
    }
    p.assert_denied("vcs.operations", &["climbs out"]);
    p.assert_denied("vcs.operations", &["absolute"]);
    // A branch name that would read as an option never reaches the backend.
    error(
        &p.call("vcs", json!({"repo": "/srv/repos/project", "op": "checkout", "branch": "--orphan"})),
        "invalid-input",
    );
    assert!(p.fake.calls().is_empty(), "{:?}", p.fake.calls());
    ok(&p.call("vcs", json!({"repo": "/srv/repos/project", "op": "status"})));
    p.assert_still_serves();
}

#[test]
fn hostile_mcp_tool_not_allowed() {
    let mut p = Probe::new();
    p.install(&[], &[]);
    for tool in ["write_file", "READ_FILE", "read_file ", "read_file/../write_file", "execute"] {
        let message = error(&p.call("mcp", json!({"op": "call", "server": "files", "tool": tool})), "out-of-scope");
        assert!(message.contains("allowed_tools"), "{tool:?}: {message}");
    }
    p.assert_denied("mcp.server", &["\"write_file\"", "allowed_tools"]);
    error(
        &p.call("mcp", json!({"op": "call", "server": "files", "tool": "read_file", "arguments": "not json"})),
        "invalid-input",
    );
    assert!(p.fake.calls().is_empty(), "{:?}", p.fake.calls());
    ok(&p.call("mcp", json!({"op": "call", "server": "files", "tool": "list_dir"})));
    p.assert_still_serves();
}

#[test]
fn hostile_agent_limit() {
    let fake = Fake { agent_gate: Some(tokio::sync::Semaphore::new(0)), ..Fake::default() };
    let mut p = Probe::with(OmniConfig::default(), fake);
    p.install(&[], &[]);
    // Past max_iterations.
    let message =
        error(&p.call("agent", json!({"instructions": "loop forever", "max_iterations": 1_000_000})), "out-of-scope");
    assert!(message.contains("max_iterations"), "{message}");
    p.assert_denied("agent.spawn", &["1000000 iterations"]);
    assert!(p.fake.calls().is_empty());

    // Past max_concurrent = 1: a second sub-agent while the first runs.
    let first = p.rt.spawn({
        let omni = p.omni.clone();
        async move { omni.call(PROBE, "agent", r#"{"instructions":"first"}"#).await }
    });
    for _ in 0..1000 {
        if !p.fake.calls().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(p.fake.calls().len(), 1, "the first sub-agent should be running");
    let message = error(&p.call("agent", json!({"instructions": "second"})), "rate-limited");
    assert!(message.contains("max_concurrent"), "{message}");
    p.assert_denied("agent.spawn", &["max_concurrent"]);
    assert_eq!(p.fake.calls().len(), 1, "the second sub-agent must not start");

    // Once the first finishes, a new one may run: the slot was freed.
    p.fake.agent_gate.as_ref().expect("gate").add_permits(10);
    let out = p.rt.block_on(first).expect("task").expect("first call");
    assert!(out.output.contains("done: first"), "{}", out.output);
    ok(&p.call("agent", json!({"instructions": "third"})));
    p.assert_still_serves();
}

#[test]
fn hostile_debug_session_after_kill_switch() {
    // A session cannot outlive the kill switch: launching after it is refused, and no
    // backend session is created.
    let mut p = Probe::new();
    p.install(&[], &[]);
    p.omni.policy().kill_switch().expect("kill switch");
    error(&p.call("debug", json!({"program": "/srv/bin/app"})), "permission-denied");
    assert!(p.fake.calls().is_empty(), "{:?}", p.fake.calls());
}

#[test]
fn hostile_debug_session_is_stopped_by_a_revocation_mid_session() {
    // Every method of a live session is authorized again: a revocation while the program
    // runs refuses the session's next step, and the session (and its program) is dropped.
    let fake = Fake { debug_gate: Some(tokio::sync::Semaphore::new(0)), ..Fake::default() };
    let mut p = Probe::with(OmniConfig::default(), fake);
    p.install(&[], &[]);
    let call = p.rt.spawn({
        let omni = p.omni.clone();
        async move { omni.call(PROBE, "debug", r#"{"program":"/srv/bin/app","expression":"secret"}"#).await }
    });
    for _ in 0..1000 {
        if p.fake.calls().iter().any(|c| c.starts_with("debug.resume")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        p.fake.calls().iter().any(|c| c.starts_with("debug.resume")),
        "the session should be running: {:?}",
        p.fake.calls()
    );
    p.omni.policy().revoke(PROBE, Some("debug.session")).expect("revoke");
    p.fake.debug_gate.as_ref().expect("gate").add_permits(10);
    let out = p.rt.block_on(call).expect("task").expect("the call itself completes");
    let report: Value = serde_json::from_str(&out.output).expect("report");
    error(&report, "permission-denied");
    let calls = p.fake.calls();
    assert!(
        !calls.iter().any(|c| c == "debug.stack" || c.starts_with("debug.evaluate")),
        "nothing may run after the revocation: {calls:?}"
    );
    assert_eq!(calls.last().map(String::as_str), Some("debug.drop"), "the session is dropped with the call: {calls:?}");
    assert!(
        !p.records(PROBE, "debug.session", Decision::Deny, EventKind::Decision).is_empty(),
        "the refusal is audited"
    );
    p.assert_still_serves();
}

#[test]
fn read_only_refuses_clipboard_write_but_not_read() {
    let mut config = OmniConfig::default();
    config.security.read_only = true;
    let mut p = Probe::with(config, Fake::default());
    p.install(&[], &[]);
    let message = error(&p.call("clipboard_write", json!({"text": "x"})), "permission-denied");
    assert!(message.contains("read_only"), "{message}");
    p.assert_denied("clipboard.write", &["read_only"]);
    assert_eq!(ok(&p.call("clipboard_read", json!({}))), &Value::Null);
    assert_eq!(p.fake.calls(), vec!["clipboard.read"]);
}

#[test]
fn hostile_debug_sessions_are_bounded_per_extension() {
    // Each session is a running program: an extension may hold only a few at once,
    // whatever its handle bound, and a refused launch never reaches the backend.
    let fake = Fake { debug_gate: Some(tokio::sync::Semaphore::new(0)), ..Fake::default() };
    let mut p = Probe::with(OmniConfig::default(), fake);
    p.install(&[("max_concurrent_calls = 4", "max_concurrent_calls = 8")], &[]);
    let bound = omni_host::caps::debugger::MAX_SESSIONS as usize;
    let held: Vec<_> = (0..bound)
        .map(|_| {
            let omni = p.omni.clone();
            p.rt.spawn(async move { omni.call(PROBE, "debug", r#"{"program":"/srv/bin/app"}"#).await })
        })
        .collect();
    let launched = |p: &Probe| p.fake.calls().iter().filter(|c| c.starts_with("debug.resume")).count();
    for _ in 0..1000 {
        if launched(&p) == bound {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(launched(&p), bound, "{bound} sessions should be open: {:?}", p.fake.calls());
    let message = error(&p.call("debug", json!({"program": "/srv/bin/other"})), "rate-limited");
    assert!(message.contains("debug sessions"), "{message}");
    p.assert_denied("debug.session", &["debug sessions"]);
    assert!(
        !p.fake.calls().iter().any(|c| c.contains("/srv/bin/other")),
        "the refused launch must not reach the backend"
    );
    p.fake.debug_gate.as_ref().expect("gate").add_permits(100);
    for call in held {
        let out = p.rt.block_on(call).expect("task").expect("call");
        assert!(out.output.contains("\"ok\""), "{}", out.output);
    }
    // Every session was dropped with its call, so the bound is free again.
    let drops = p.fake.calls().iter().filter(|c| *c == "debug.drop").count();
    assert_eq!(drops, bound);
    ok(&p.call("debug", json!({"program": "/srv/bin/other"})));
}
