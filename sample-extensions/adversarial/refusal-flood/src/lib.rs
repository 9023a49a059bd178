//! Hostile sample: loops on host calls the host refuses (a URL outside the granted
//! domains, a capability that was never granted) for as long as the call may run. Each
//! refusal costs the host a permission check, a message and an audit record; the host
//! must keep all three bounded, and stop the call once it has met enough refusals.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use omni_guest_sdk::http::Request;
use omni_guest_sdk::{clipboard, export_tools, ToolError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Default)]
struct Report {
    calls: u64,
    refused: u64,
    /// Length of the longest refusal message the guest was handed.
    longest_message: usize,
}

impl Report {
    fn record<T>(&mut self, result: omni_guest_sdk::Result<T>) {
        self.calls += 1;
        if let Err(e) = result {
            self.refused += 1;
            self.longest_message = self.longest_message.max(e.to_string().len());
        }
    }
}

#[derive(Deserialize)]
struct HttpArgs {
    url: String,
    seconds: u64,
}

fn http_flood(args: HttpArgs) -> Result<Report, ToolError> {
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let mut report = Report::default();
    while Instant::now() < until {
        report.record(Request::get(args.url.as_str()).send());
    }
    Ok(report)
}

#[derive(Deserialize)]
struct ClipboardArgs {
    seconds: u64,
}

fn clipboard_flood(args: ClipboardArgs) -> Result<Report, ToolError> {
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let mut report = Report::default();
    while Instant::now() < until {
        report.record(clipboard::read_text());
    }
    Ok(report)
}

export_tools!(http_flood, clipboard_flood);
