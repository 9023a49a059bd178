//! Probe for the communication capabilities: `ai.inference`, `channel.send`,
//! `messaging.sms`, `messaging.email`, `messaging.chat`, `system.notifications` and
//! `system.scheduling`. Each tool makes exactly the request it is given and reports what
//! the host answered, as `{"ok": ...}` or `{"error": {"kind": ..., "message": ...}}`, so a
//! test can see which error variant a refusal produced.
#![forbid(unsafe_code)]

use omni_guest_sdk::inference::{self, ChatRequest, Message};
use omni_guest_sdk::notifications::{self, Urgency};
use omni_guest_sdk::scheduling::{self, Trigger};
use omni_guest_sdk::{channel, chat, email, export_tools, sms, NoArgs, ToolError};
use serde::Deserialize;
use serde_json::{json, Value};

/// The report of one host call.
fn report<T: serde::Serialize>(result: omni_guest_sdk::Result<T>) -> Result<Value, ToolError> {
    Ok(match result {
        Ok(v) => json!({ "ok": v }),
        Err(e) => {
            let kind = e.host_case().unwrap_or("other");
            json!({ "error": { "kind": kind, "message": e.to_string() } })
        }
    })
}

fn ping(_: NoArgs) -> Result<&'static str, ToolError> {
    Ok("pong")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatArgs {
    prompt: String,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    model: Option<String>,
}

fn ask(args: ChatArgs) -> Result<Value, ToolError> {
    let mut messages = Vec::new();
    if let Some(s) = args.system {
        messages.push(Message::system(s));
    }
    messages.push(Message::user(args.prompt));
    let mut request = ChatRequest::new(messages);
    request.max_tokens = args.max_tokens;
    request.model = args.model;
    report(
        inference::chat(&request)
            .map(|r| json!({ "content": r.content, "model": r.model, "total_tokens": r.usage.total_tokens })),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelArgs {
    channel: String,
    message: String,
}

fn channel_send(args: ChannelArgs) -> Result<Value, ToolError> {
    report(channel::send(&args.channel, &args.message))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SmsArgs {
    recipients: Vec<String>,
    body: String,
}

fn send_sms(args: SmsArgs) -> Result<Value, ToolError> {
    report(sms::send(args.recipients, &args.body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailArgs {
    to: Vec<String>,
    #[serde(default)]
    cc: Vec<String>,
    #[serde(default)]
    bcc: Vec<String>,
    subject: String,
    body: String,
}

fn send_email(args: EmailArgs) -> Result<Value, ToolError> {
    let mut to = args.to.into_iter();
    let first = to.next().unwrap_or_default();
    let mut message = email::Email::new(first, args.subject, args.body);
    message.to.extend(to);
    message.to.retain(|a| !a.is_empty());
    message.cc = args.cc;
    message.bcc = args.bcc;
    report(message.send())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostArgs {
    recipient: String,
    text: String,
    #[serde(default)]
    thread_id: Option<String>,
}

fn post(args: PostArgs) -> Result<Value, ToolError> {
    report(chat::send_message(&chat::Message { recipient: args.recipient, text: args.text, thread_id: args.thread_id }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyArgs {
    title: String,
    body: String,
    #[serde(default)]
    urgency: Option<String>,
}

fn notify(args: NotifyArgs) -> Result<Value, ToolError> {
    let urgency = match args.urgency.as_deref() {
        None | Some("normal") => Urgency::Normal,
        Some("low") => Urgency::Low,
        Some("critical") => Urgency::Critical,
        Some(other) => {
            return Err(ToolError::invalid(format!("unknown urgency {other:?}; use low, normal or critical")))
        }
    };
    report(notifications::notify_with(&args.title, &args.body, urgency))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleArgs {
    tool: String,
    #[serde(default)]
    arguments: Option<Value>,
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    at: Option<u64>,
    #[serde(default)]
    every: Option<u64>,
}

fn schedule(args: ScheduleArgs) -> Result<Value, ToolError> {
    let when = match (args.cron, args.at, args.every) {
        (Some(c), None, None) => Trigger::Cron(c),
        (None, Some(a), None) => Trigger::At(a),
        (None, None, Some(e)) => Trigger::Every(e),
        _ => return Err(ToolError::invalid("give exactly one of `cron`, `at` or `every`")),
    };
    let arguments = args.arguments.unwrap_or_else(|| json!({}));
    report(scheduling::schedule(&args.tool, &arguments, when))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelArgs {
    id: String,
}

fn cancel(args: CancelArgs) -> Result<Value, ToolError> {
    report(scheduling::cancel(&args.id))
}

fn jobs(_: NoArgs) -> Result<Value, ToolError> {
    report(scheduling::jobs().map(|jobs| {
        jobs.into_iter()
            .map(|j| json!({ "id": j.id, "tool": j.tool, "arguments": j.arguments, "next_run_ms": j.next_run_ms }))
            .collect::<Vec<_>>()
    }))
}

export_tools!(ping, ask, channel_send, send_sms, send_email, post, notify, schedule, cancel, jobs);
