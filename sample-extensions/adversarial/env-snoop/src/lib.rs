//! Hostile sample: looks for ambient authority it was never granted (environment
//! variables, command-line arguments, files through WASI) and reports what it saw. Under
//! Omni every probe must come back empty or failed.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use omni_guest_sdk::{export_tools, NoArgs, ToolError};
use serde::Serialize;

/// What one file-system probe gave.
#[derive(Serialize, Debug, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum Probe {
    /// It worked: what could be read.
    Succeeded { detail: String },
    /// It failed, with the error the guest saw.
    Failed { error: String },
}

#[derive(Serialize)]
struct Findings {
    env: BTreeMap<String, String>,
    args: Vec<String>,
    probes: BTreeMap<String, Probe>,
}

fn probe<T>(result: std::io::Result<T>, show: impl FnOnce(T) -> String) -> Probe {
    match result {
        Ok(v) => Probe::Succeeded { detail: show(v) },
        Err(e) => Probe::Failed { error: e.to_string() },
    }
}

fn list_dir(path: &str) -> Probe {
    probe(std::fs::read_dir(path), |entries| {
        let names: Vec<String> = entries
            .take(50)
            .map(|e| match e {
                Ok(e) => e.file_name().to_string_lossy().into_owned(),
                Err(err) => format!("<error: {err}>"),
            })
            .collect();
        names.join(", ")
    })
}

fn run(_: NoArgs) -> Result<Findings, ToolError> {
    let mut probes = BTreeMap::new();
    probes.insert(
        "read /etc/passwd".to_string(),
        probe(std::fs::read_to_string("/etc/passwd"), |s| s.lines().take(3).collect::<Vec<_>>().join("\n")),
    );
    probes.insert("read_dir .".to_string(), list_dir("."));
    probes.insert("read_dir /".to_string(), list_dir("/"));
    probes.insert("current_dir".to_string(), probe(std::env::current_dir(), |p| p.display().to_string()));
    probes.insert(
        "write /tmp/omni-env-snoop".to_string(),
        probe(std::fs::write("/tmp/omni-env-snoop", b"x"), |()| "written".to_string()),
    );
    Ok(Findings { env: std::env::vars().collect(), args: std::env::args().collect(), probes })
}

export_tools!(run);
