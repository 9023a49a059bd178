//! Hostile sample: generic file and process tools the security suite points at places
//! the grant does not cover (traversals, symbolic links out, devices, blocked paths,
//! programs off the allow-list, shell metacharacters, working folders outside).
//!
//! Every tool reports the host's answer as data instead of failing, so the suite can
//! check which error case the guest saw: `{"ok": ...}` or
//! `{"error": {"kind": "out-of-scope", "message": "..."}}`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use omni_guest_sdk::process::Command;
use omni_guest_sdk::{export_tools, fs, Error, ToolError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Deserialize)]
struct PathArgs {
    path: String,
    #[serde(default)]
    recursive: bool,
}

#[derive(Deserialize)]
struct WriteArgs {
    path: String,
    content: String,
}

#[derive(Deserialize)]
struct RenameArgs {
    from: String,
    to: String,
}

#[derive(Deserialize)]
struct SpawnArgs {
    program: String,
    #[serde(default)]
    args: Vec<String>,
    cwd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    stdin: Option<String>,
    timeout_ms: Option<u32>,
}

/// The error case's name, as in the WIT `error` variant.
fn kind(e: &Error) -> &'static str {
    e.host_case().unwrap_or("other")
}

fn report<T: Serialize>(r: Result<T, Error>) -> Result<Value, ToolError> {
    Ok(match r {
        Ok(v) => json!({ "ok": v }),
        Err(e) => json!({ "error": { "kind": kind(&e), "message": e.to_string() } }),
    })
}

fn read(a: PathArgs) -> Result<Value, ToolError> {
    report(fs::read(&a.path).map(|b| String::from_utf8_lossy(&b).into_owned()))
}

fn write(a: WriteArgs) -> Result<Value, ToolError> {
    report(fs::write(&a.path, a.content.as_bytes()))
}

fn append(a: WriteArgs) -> Result<Value, ToolError> {
    report(fs::append(&a.path, a.content.as_bytes()))
}

fn list(a: PathArgs) -> Result<Value, ToolError> {
    report(fs::list(&a.path).map(|v| v.into_iter().map(|e| e.name).collect::<Vec<_>>()))
}

fn metadata(a: PathArgs) -> Result<Value, ToolError> {
    report(fs::metadata(&a.path).map(|m| json!({ "size": m.size, "readonly": m.readonly })))
}

fn remove(a: PathArgs) -> Result<Value, ToolError> {
    report(if a.recursive { fs::remove_all(&a.path) } else { fs::remove(&a.path) })
}

fn rename(a: RenameArgs) -> Result<Value, ToolError> {
    report(fs::rename(&a.from, &a.to))
}

fn spawn(a: SpawnArgs) -> Result<Value, ToolError> {
    let mut cmd = Command::new(a.program).args(a.args);
    if let Some(cwd) = a.cwd {
        cmd = cmd.current_dir(cwd);
    }
    for (k, v) in a.env {
        cmd = cmd.env(k, v);
    }
    if let Some(input) = a.stdin {
        cmd = cmd.stdin(input.into_bytes());
    }
    if let Some(t) = a.timeout_ms {
        cmd = cmd.timeout_ms(t);
    }
    report(cmd.run().map(|o| {
        json!({
            "exit_code": o.exit_code,
            "stdout": o.stdout_text(),
            "stderr": o.stderr_text(),
            "timed_out": o.timed_out,
        })
    }))
}

export_tools!(read, write, append, list, metadata, remove, rename, spawn);
