//! Probe: one generic tool per integration capability (clipboard, devices, automation,
//! version control, MCP, code intelligence, debugging, sub-agents, flowcharts, storage).
//!
//! Each tool makes the capability call its arguments describe and reports what the host
//! answered, success or refusal, as `{"ok": ...}` or `{"error": {"kind", "message"}}`,
//! so a person (or a test) can see exactly how a grant and its scope behave.
#![forbid(unsafe_code)]

// The raw bindings, so each tool reports the host's exact error case.
use omni_guest_sdk::bindings::omni::caps as host;
use omni_guest_sdk::bindings::omni::caps::types::Error as HostError;
use omni_guest_sdk::{export_tools, NoArgs, ToolError};
use serde::Deserialize;
use serde_json::{json, Value};

/// The host's answer as the probe reports it.
fn report<T: serde::Serialize>(result: Result<T, HostError>) -> Result<Value, ToolError> {
    Ok(match result {
        Ok(v) => json!({ "ok": v }),
        Err(e) => {
            let (kind, message) = match e {
                HostError::PermissionDenied(m) => ("permission-denied", m),
                HostError::OutOfScope(m) => ("out-of-scope", m),
                HostError::RateLimited(i) => ("rate-limited", i.reason),
                HostError::Unavailable(m) => ("unavailable", m),
                HostError::InvalidInput(m) => ("invalid-input", m),
                HostError::Io(m) => ("io", m),
            };
            json!({ "error": { "kind": kind, "message": message } })
        }
    })
}

fn clipboard_read(_: NoArgs) -> Result<Value, ToolError> {
    report(host::clipboard_read::read_text())
}

#[derive(Deserialize)]
struct TextArgs {
    text: String,
}

fn clipboard_write(args: TextArgs) -> Result<Value, ToolError> {
    report(host::clipboard_write::write_text(&args.text))
}

#[derive(Deserialize)]
struct CameraArgs {
    device: Option<String>,
    max_width: Option<u32>,
    max_height: Option<u32>,
}

fn camera(args: CameraArgs) -> Result<Value, ToolError> {
    report(
        host::camera::capture(args.device.as_deref(), args.max_width, args.max_height)
            .map(|i| json!({ "mime": i.mime, "width": i.width, "height": i.height, "bytes": i.data.len() })),
    )
}

fn camera_devices(_: NoArgs) -> Result<Value, ToolError> {
    report(host::camera::devices())
}

#[derive(Deserialize)]
struct MicArgs {
    duration_ms: u32,
    device: Option<String>,
}

fn microphone(args: MicArgs) -> Result<Value, ToolError> {
    report(
        host::microphone::record_audio(args.duration_ms, args.device.as_deref())
            .map(|a| json!({ "mime": a.mime, "duration_ms": a.duration_ms, "sample_rate": a.sample_rate, "bytes": a.data.len() })),
    )
}

#[derive(Deserialize)]
struct LocationArgs {
    timeout_ms: Option<u32>,
}

fn location(args: LocationArgs) -> Result<Value, ToolError> {
    report(host::location::current(args.timeout_ms))
}

#[derive(Deserialize)]
struct AutomationArgs {
    app: String,
    action: String,
    #[serde(default = "empty_object")]
    arguments: String,
}

fn empty_object() -> String {
    "{}".into()
}

fn automation(args: AutomationArgs) -> Result<Value, ToolError> {
    report(host::automation::run(&args.app, &args.action, &args.arguments))
}

#[derive(Deserialize)]
struct VcsArgs {
    repo: String,
    op: String,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    staged: bool,
    message: Option<String>,
    branch: Option<String>,
    #[serde(default)]
    create: bool,
    max_count: Option<u32>,
}

fn vcs(args: VcsArgs) -> Result<Value, ToolError> {
    let repo = args.repo.as_str();
    match args.op.as_str() {
        "status" => report(host::vcs::status(repo)),
        "log" => report(host::vcs::log(repo, args.max_count.unwrap_or(10))),
        "diff" => report(host::vcs::diff(repo, args.staged, &args.paths)),
        "add" => report(host::vcs::add(repo, &args.paths)),
        "commit" => report(host::vcs::commit(repo, args.message.as_deref().unwrap_or_default())),
        "branches" => report(host::vcs::branches(repo)),
        "checkout" => report(host::vcs::checkout(repo, args.branch.as_deref().unwrap_or_default(), args.create)),
        other => Err(ToolError::invalid(format!(
            "unknown op {other:?}; use status, log, diff, add, commit, branches or checkout"
        ))),
    }
}

#[derive(Deserialize)]
struct McpArgs {
    op: String,
    server: Option<String>,
    tool: Option<String>,
    #[serde(default = "empty_object")]
    arguments: String,
}

fn mcp(args: McpArgs) -> Result<Value, ToolError> {
    let server = args.server.as_deref().unwrap_or_default();
    match args.op.as_str() {
        "servers" => report(host::mcp::list_servers()),
        "tools" => report(host::mcp::list_tools(server)),
        "call" => report(host::mcp::call_tool(server, args.tool.as_deref().unwrap_or_default(), &args.arguments)),
        other => Err(ToolError::invalid(format!("unknown op {other:?}; use servers, tools or call"))),
    }
}

#[derive(Deserialize)]
struct CodeArgs {
    op: String,
    path: String,
    #[serde(default)]
    line: u32,
    #[serde(default)]
    column: u32,
}

fn code_intel(args: CodeArgs) -> Result<Value, ToolError> {
    let at = host::code_intel::Position { line: args.line, column: args.column };
    let path = args.path.as_str();
    match args.op.as_str() {
        "symbols" => report(host::code_intel::symbols(path)),
        "definition" => report(host::code_intel::definition(path, at)),
        "references" => report(host::code_intel::references(path, at, true)),
        "diagnostics" => report(host::code_intel::diagnostics(path)),
        "hover" => report(host::code_intel::hover(path, at)),
        other => Err(ToolError::invalid(format!(
            "unknown op {other:?}; use symbols, definition, references, diagnostics or hover"
        ))),
    }
}

#[derive(Deserialize)]
struct DebugArgs {
    program: String,
    #[serde(default)]
    args: Vec<String>,
    breakpoint_path: Option<String>,
    #[serde(default = "first_line")]
    line: u32,
    expression: Option<String>,
}

fn first_line() -> u32 {
    1
}

/// Launches, breaks, runs to the breakpoint, reads the stack, evaluates, terminates; each
/// step's answer in order. Stops at the first refusal.
fn debug(args: DebugArgs) -> Result<Value, ToolError> {
    let config = host::debugger::LaunchConfig {
        program: args.program,
        args: args.args,
        working_dir: None,
        adapter: None,
        stop_on_entry: false,
    };
    let session = match host::debugger::Session::launch(&config) {
        Ok(s) => s,
        Err(e) => return report::<()>(Err(e)),
    };
    let run = || -> Result<Value, HostError> {
        let mut steps = serde_json::Map::new();
        if let Some(path) = &args.breakpoint_path {
            steps.insert("breakpoint".into(), json!(session.set_breakpoint(path, args.line, None)?));
        }
        steps.insert("stop".into(), json!(session.resume(Some(5_000))?));
        let frames = session.stack_trace()?;
        let frame = frames.first().map(|f| f.id);
        steps.insert("frames".into(), json!(frames));
        if let Some(expr) = &args.expression {
            steps.insert("value".into(), json!(session.evaluate(expr, frame)?));
        }
        session.terminate()?;
        Ok(Value::Object(steps))
    };
    report(run())
}

#[derive(Deserialize)]
struct AgentArgs {
    instructions: String,
    #[serde(default)]
    tools: Vec<String>,
    max_iterations: Option<u32>,
    model: Option<String>,
}

fn agent(args: AgentArgs) -> Result<Value, ToolError> {
    report(host::agent::spawn(&host::agent::Task {
        instructions: args.instructions,
        tools: args.tools,
        max_iterations: args.max_iterations,
        model: args.model,
    }))
}

#[derive(Deserialize)]
struct FlowArgs {
    name: String,
    #[serde(default = "null")]
    input: String,
}

fn null() -> String {
    "null".into()
}

fn flowchart(args: FlowArgs) -> Result<Value, ToolError> {
    report(host::flowchart::invoke(&args.name, &args.input))
}

#[derive(Deserialize)]
struct KvArgs {
    op: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    prefix: String,
}

fn storage(args: KvArgs) -> Result<Value, ToolError> {
    let key = args.key.as_str();
    match args.op.as_str() {
        "get" => report(host::kv::get(key).map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned()))),
        "set" => report(host::kv::set(key, args.value.as_bytes())),
        "delete" => report(host::kv::delete(key)),
        "exists" => report(host::kv::exists(key)),
        "list" => report(host::kv::list_keys(&args.prefix, 1000)),
        "usage" => report(host::kv::usage().map(|(used, quota)| json!({ "used": used, "quota": quota }))),
        other => Err(ToolError::invalid(format!("unknown op {other:?}; use get, set, delete, exists, list or usage"))),
    }
}

export_tools!(
    clipboard_read,
    clipboard_write,
    camera,
    camera_devices,
    microphone,
    location,
    automation,
    vcs,
    mcp,
    code_intel,
    debug,
    agent,
    flowchart,
    storage
);
