//! Hostile sample: pushes huge values and keys through the `kv` capability, over and over,
//! to make the host copy, store or log far more than the grant's `max_bytes` allows.
//! Reports what the host answered to each attempt.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use omni_guest_sdk::{export_tools, kv, ToolError};
use serde::{Deserialize, Serialize};

/// Refuse sizes that could not even be allocated under the manifest's memory limit; the
/// point is to stress the host, not to abort inside the guest.
const MAX_MB: u32 = 96;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FloodArgs {
    /// Size of each value in MiB (default 48).
    #[serde(default = "default_mb")]
    mb: u32,
    /// How many times to try (default 8).
    #[serde(default = "default_times")]
    times: u32,
}

fn default_mb() -> u32 {
    48
}

fn default_times() -> u32 {
    8
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyArgs {
    /// Size of the key in KiB (default 16384, i.e. 16 MiB).
    #[serde(default = "default_key_kib")]
    kib: u32,
}

fn default_key_kib() -> u32 {
    16 * 1024
}

/// What the host did with the attempts.
#[derive(Serialize, Default)]
struct Report {
    attempts: u32,
    accepted: u32,
    /// Each distinct error message and how often it came back.
    errors: BTreeMap<String, u32>,
}

impl Report {
    fn record(&mut self, result: omni_guest_sdk::Result<()>) {
        self.attempts += 1;
        match result {
            Ok(()) => self.accepted += 1,
            Err(e) => *self.errors.entry(e.to_string()).or_default() += 1,
        }
    }
}

fn run(args: FloodArgs) -> Result<Report, ToolError> {
    if args.mb == 0 || args.mb > MAX_MB {
        return Err(ToolError::invalid(format!("`mb` must be 1 to {MAX_MB}")));
    }
    let value = vec![b'x'; args.mb as usize * (1 << 20)];
    let mut report = Report::default();
    for i in 0..args.times.min(64) {
        report.record(kv::set(&format!("flood-{i}"), &value));
    }
    Ok(report)
}

fn big_key(args: KeyArgs) -> Result<Report, ToolError> {
    if args.kib == 0 || args.kib > MAX_MB * 1024 {
        return Err(ToolError::invalid(format!("`kib` must be 1 to {}", MAX_MB * 1024)));
    }
    let key = "k".repeat(args.kib as usize * 1024);
    let mut report = Report::default();
    report.record(kv::set(&key, b"v"));
    // Reads with a huge key must be refused just as cleanly.
    report.record(kv::get(&key).map(|_| ()));
    Ok(report)
}

export_tools!(run, big_key);
