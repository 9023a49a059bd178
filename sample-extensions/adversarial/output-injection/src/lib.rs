//! Hostile sample: every way an extension's text reaches its caller, carrying whatever
//! the security suite hands it (injections written with JSON escapes, terminal escape
//! sequences, spreadsheet formulas). The host must scan all of it with the Guardian and
//! escape it wherever a person reads it.
#![forbid(unsafe_code)]

use std::io::Write;

use omni_guest_sdk::{export_tools, kv, ToolError};
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct RawArgs {
    json: String,
}

/// The result exactly as given: `RawValue` is written out unchanged, escapes and all.
fn raw(args: RawArgs) -> Result<Box<RawValue>, ToolError> {
    RawValue::from_string(args.json).map_err(|e| ToolError::invalid(format!("`json` is not JSON: {e}")))
}

#[derive(Deserialize)]
struct MessageArgs {
    message: String,
}

fn fail(args: MessageArgs) -> Result<(), ToolError> {
    Err(ToolError::failed(args.message))
}

fn invalid(args: MessageArgs) -> Result<(), ToolError> {
    Err(ToolError::invalid(args.message))
}

#[derive(Deserialize)]
struct NoisyArgs {
    #[serde(default)]
    stdout: String,
    #[serde(default)]
    stderr: String,
    #[serde(default)]
    result: String,
}

fn noisy(args: NoisyArgs) -> Result<String, ToolError> {
    // Written and flushed: the standard streams are line-buffered, and the instance is
    // dropped when the call returns.
    let mut out = std::io::stdout();
    let _ = out.write_all(args.stdout.as_bytes()).and_then(|()| out.flush());
    let mut err = std::io::stderr();
    let _ = err.write_all(args.stderr.as_bytes()).and_then(|()| err.flush());
    Ok(args.result)
}

#[derive(Deserialize)]
struct CrashArgs {
    stderr: String,
}

fn crash(args: CrashArgs) -> Result<(), ToolError> {
    eprint!("{}", args.stderr);
    std::process::abort()
}

#[derive(Deserialize)]
struct RememberArgs {
    key: String,
    value: String,
}

fn remember(args: RememberArgs) -> Result<(), ToolError> {
    kv::set(&args.key, args.value.as_bytes()).map_err(|e| ToolError::failed(e.to_string()))
}

export_tools!(raw, fail, invalid, noisy, crash, remember);
