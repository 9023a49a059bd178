//! `channel.send`, `messaging.sms`, `messaging.email` and `messaging.chat`: outgoing
//! messages, all through one [`MessagingBackend`].
//!
//! The host checks the grant, the scope (every channel name exactly, every recipient
//! against the scope's patterns) and the rate limit, then hands a [`Delivery`] to the
//! backend. The default backend, [`BusBackend`], publishes it on the host's
//! [`ChannelBus`], which an embedder reads with `Omni::subscribe_channel`; with
//! `[messaging] webhook_url` set, [`WebhookBackend`] POSTs it as JSON instead. Sending
//! real SMS or email is the embedder's business: subscribe to the bus, or point the
//! webhook at a relay.
//!
//! The bus is shared: channel names are not namespaced per extension, so two extensions
//! granted `"alerts"` publish on the same channel. Every [`Delivery`] names the sending
//! extension in [`Delivery::extension`], set by the host; a subscriber that acts on a
//! channel checks who sent each message. What the bus holds for a slow subscriber is
//! bounded in bytes as well as messages ([`MessagingConfig::bus_slots`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use omni_capabilities::{MessagingKind, Scope};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::try_budget;
use crate::bindings::omni::caps::{channel, chat, email, sms};
use crate::bindings::CapError;
use crate::sandbox::CallState;

const CHANNEL: &str = "channel.send";
const SMS: &str = "messaging.sms";
const EMAIL: &str = "messaging.email";
const CHAT: &str = "messaging.chat";

/// Longest channel name accepted.
pub const MAX_CHANNEL_NAME: usize = 256;

/// `[messaging]` settings.
///
/// ```toml
/// [messaging]
/// webhook_url = "https://relay.example.org/omni"
/// webhook_timeout_ms = 10000
/// bus_capacity = 1024
/// bus_max_bytes = 16777216
/// max_message_bytes = 262144
/// max_recipients = 50
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessagingConfig {
    /// When set, every message is POSTed to this URL as JSON (see [`Delivery`]) instead of
    /// being published on the channel bus.
    pub webhook_url: Option<String>,
    /// Longest a webhook POST may take, in milliseconds.
    pub webhook_timeout_ms: u64,
    /// Messages the channel bus keeps for a slow subscriber before it starts dropping the
    /// oldest (the subscriber is told how many it missed).
    pub bus_capacity: usize,
    /// Bytes of messages the channel bus may hold for a slow subscriber: with messages
    /// of up to `max_message_bytes`, it keeps at most `bus_max_bytes / max_message_bytes`
    /// of them (and at most `bus_capacity`).
    pub bus_max_bytes: usize,
    /// Largest message accepted (body, or email body plus attachments), in bytes.
    pub max_message_bytes: usize,
    /// Most recipients one message may have.
    pub max_recipients: usize,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        MessagingConfig {
            webhook_url: None,
            webhook_timeout_ms: 10_000,
            bus_capacity: 1024,
            bus_max_bytes: 16 * 1024 * 1024,
            max_message_bytes: 256 * 1024,
            max_recipients: 50,
        }
    }
}

/// A file attached to an email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailAttachment {
    /// The file name shown to the recipient.
    pub filename: String,
    /// Its media type.
    pub mime: String,
    /// Its bytes; base64 (standard alphabet) in JSON.
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// What an extension sent, after every host check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutboundMessage {
    /// `channel.send`.
    Channel {
        /// The channel name (one of the grant's `channels`).
        channel: String,
        /// The message text.
        body: String,
    },
    /// `messaging.sms`.
    Sms {
        /// E.164 numbers, as the extension wrote them (each matched the scope).
        recipients: Vec<String>,
        /// The text.
        body: String,
    },
    /// `messaging.email`.
    Email {
        /// Main recipients.
        to: Vec<String>,
        /// Copy recipients.
        cc: Vec<String>,
        /// Blind-copy recipients.
        bcc: Vec<String>,
        /// Subject line.
        subject: String,
        /// Plain-text body.
        body_text: String,
        /// HTML alternative.
        body_html: Option<String>,
        /// Where replies should go.
        reply_to: Option<String>,
        /// Attached files.
        attachments: Vec<EmailAttachment>,
    },
    /// `messaging.chat`.
    Chat {
        /// `service:target`, as the extension wrote it (it matched the scope).
        recipient: String,
        /// The text.
        text: String,
        /// The thread to reply in.
        thread_id: Option<String>,
    },
}

impl MessagingConfig {
    /// Messages the channel bus keeps for a slow subscriber: `bus_capacity`, but no more
    /// than fit in `bus_max_bytes` at `max_message_bytes` each (at least one).
    pub fn bus_slots(&self) -> usize {
        self.bus_capacity.min(self.bus_max_bytes / self.max_message_bytes.max(1)).max(1)
    }
}

/// One message handed to a [`MessagingBackend`], and what the bus carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// A host-assigned id, unique within this host process.
    pub id: String,
    /// The sending extension.
    pub extension: String,
    /// When it was sent, RFC 3339 UTC.
    pub sent_at: String,
    /// The message.
    pub message: OutboundMessage,
}

/// What a backend reports for a delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The id the guest gets back (the provider's, or the delivery's own).
    pub id: String,
    /// How many listeners received it (for `channel.send`).
    pub receivers: u32,
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    /// The backend cannot deliver this kind of message.
    #[error("{0}")]
    Unavailable(String),
    /// Delivery was attempted and failed.
    #[error("{0}")]
    Io(String),
}

/// Future returned by [`MessagingBackend::deliver`].
pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Result<Receipt, MessagingError>> + Send + 'a>>;

/// Where messages go; an embedder replaces it to reach a real SMS, mail or chat service.
///
/// The host has already checked grant, scope and rate limit when it calls `deliver`.
pub trait MessagingBackend: Send + Sync {
    /// Delivers one message.
    fn deliver(&self, delivery: Delivery) -> DeliverFuture<'_>;
}

/// The in-process channel bus: every delivery is broadcast to every subscriber.
#[derive(Clone, Debug)]
pub struct ChannelBus {
    sender: broadcast::Sender<Delivery>,
}

impl ChannelBus {
    /// A bus keeping up to `capacity` messages for slow subscribers (at least 1).
    pub fn new(capacity: usize) -> ChannelBus {
        ChannelBus { sender: broadcast::channel(capacity.max(1)).0 }
    }

    /// A new subscriber; it receives every message published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Delivery> {
        self.sender.subscribe()
    }

    /// Publishes `delivery`; how many subscribers will receive it.
    pub fn publish(&self, delivery: Delivery) -> u32 {
        // Sending with no subscriber is not an error: the message reached nobody.
        self.sender.send(delivery).map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
    }
}

/// The default backend: publishes every message on the [`ChannelBus`].
pub struct BusBackend {
    bus: ChannelBus,
}

impl BusBackend {
    /// Publishes on `bus`.
    pub fn new(bus: ChannelBus) -> BusBackend {
        BusBackend { bus }
    }
}

impl MessagingBackend for BusBackend {
    fn deliver(&self, delivery: Delivery) -> DeliverFuture<'_> {
        Box::pin(async move {
            let id = delivery.id.clone();
            let receivers = self.bus.publish(delivery);
            Ok(Receipt { id, receivers })
        })
    }
}

/// POSTs every message as JSON ([`Delivery`]) to one URL from `[messaging] webhook_url`.
///
/// A 2xx answer counts as delivered; when its body is a JSON object with a string `id`,
/// that id is returned to the guest.
pub struct WebhookBackend {
    client: reqwest::Client,
    url: url::Url,
    timeout: Duration,
}

impl WebhookBackend {
    /// A webhook client for `config.webhook_url`.
    pub fn new(config: &MessagingConfig) -> Result<WebhookBackend, MessagingError> {
        let raw = config
            .webhook_url
            .as_deref()
            .ok_or_else(|| MessagingError::Unavailable("no webhook_url is set in [messaging] of omni.toml".into()))?;
        let url = url::Url::parse(raw).map_err(|e| {
            MessagingError::Unavailable(format!(
                "[messaging] webhook_url {raw:?} is not a URL ({e}); write it as https://host/path"
            ))
        })?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| MessagingError::Io(e.to_string()))?;
        Ok(WebhookBackend { client, url, timeout: Duration::from_millis(config.webhook_timeout_ms) })
    }
}

impl MessagingBackend for WebhookBackend {
    fn deliver(&self, delivery: Delivery) -> DeliverFuture<'_> {
        Box::pin(async move {
            let body = serde_json::to_vec(&delivery).map_err(|e| MessagingError::Io(e.to_string()))?;
            let send = self.client.post(self.url.clone()).header("content-type", "application/json").body(body).send();
            let response = match tokio::time::timeout(self.timeout, send).await {
                Err(_) => {
                    return Err(MessagingError::Io(format!(
                        "the messaging webhook did not answer within {:?}",
                        self.timeout
                    )))
                }
                Ok(Err(e)) => {
                    return Err(MessagingError::Io(format!("the messaging webhook could not be reached: {e}")))
                }
                Ok(Ok(r)) => r,
            };
            let status = response.status();
            if !status.is_success() {
                return Err(MessagingError::Io(format!("the messaging webhook answered HTTP {}", status.as_u16())));
            }
            let answer = match tokio::time::timeout(self.timeout, response.bytes()).await {
                Ok(Ok(b)) => b,
                _ => bytes::Bytes::new(),
            };
            let id = serde_json::from_slice::<serde_json::Value>(&answer)
                .ok()
                .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned))
                .filter(|i| !i.is_empty() && i.len() <= 256)
                .unwrap_or(delivery.id);
            Ok(Receipt { id, receivers: 1 })
        })
    }
}

fn new_delivery_id(kind: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let tag = crate::digest(format!("{nanos}-{n}-{}", std::process::id()).as_bytes());
    format!("{kind}-{}", &tag[..16])
}

fn to_cap_error(e: MessagingError) -> CapError {
    match e {
        MessagingError::Unavailable(m) => CapError::Unavailable(m),
        MessagingError::Io(m) => CapError::Io(m),
    }
}

/// Refuses text that could smuggle extra headers or lines into a header-like field
/// (including the Unicode line and paragraph separators, which some readers break on).
fn single_line(what: &str, value: &str) -> Result<(), CapError> {
    if value.chars().any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')) {
        return Err(CapError::InvalidInput(format!("{what} contains line breaks or control characters; remove them")));
    }
    Ok(())
}

/// Why an attachment's name or media type is refused, if it is.
///
/// An embedder may build the MIME message itself, perhaps without quoting: a `"` or `;` in
/// a name would then close the `filename` parameter and add parameters of the
/// extension's choosing, and a path separator or `..` could make a careless receiver save
/// the file elsewhere. Names are 1 to 255 bytes without control, line-separator or
/// bidirectional-override characters, quotes, `;`, `/` or `\`, and are not `.` or `..`;
/// a media type is `type/subtype` in token characters, without parameters.
fn attachment_problem(filename: &str, mime: &str) -> Option<String> {
    let name = shown(filename);
    let bad = |c: char| {
        c.is_control()
            || matches!(c, '"' | ';' | '/' | '\\' | '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    if filename.is_empty() || filename.len() > 255 || filename == "." || filename == ".." {
        return Some(format!("the attachment name {name:?} must be 1 to 255 bytes and not . or .."));
    }
    if filename.chars().any(bad) {
        return Some(format!(
            "the attachment name {name:?} holds a quote, ';', a slash, a backslash, a control or a bidirectional character; name the file plainly (report.pdf)"
        ));
    }
    let token = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
    match mime.split_once('/') {
        Some((kind, sub)) if token(kind) && token(sub) => None,
        _ => Some(format!(
            "the attachment type {:?} is not a plain media type; write type/subtype without parameters (application/pdf)",
            shown(mime)
        )),
    }
}

/// Recipients in the form the scope matched them in, which is the form delivered.
fn normalized(kind: MessagingKind, recipients: Vec<String>) -> Result<Vec<String>, CapError> {
    recipients.iter().map(|r| kind.normalize(r).map_err(CapError::InvalidInput)).collect()
}

fn shown(s: &str) -> String {
    let mut t: String = s.chars().take(80).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    t
}

impl CallState {
    fn messaging_limits(&self) -> (usize, usize) {
        let c = &self.host.config.messaging;
        (c.max_message_bytes, c.max_recipients)
    }

    fn check_size(&self, bytes: usize) -> Result<(), CapError> {
        let (max, _) = self.messaging_limits();
        if bytes > max {
            return Err(CapError::InvalidInput(format!(
                "the message is {bytes} bytes, more than the {max} allowed ([messaging] max_message_bytes)"
            )));
        }
        Ok(())
    }

    fn check_recipient_count(&self, n: usize) -> Result<(), CapError> {
        let (_, max) = self.messaging_limits();
        if n == 0 {
            return Err(CapError::InvalidInput("the message has no recipient; name at least one".into()));
        }
        if n > max {
            return Err(CapError::InvalidInput(format!(
                "the message has {n} recipients, more than the {max} allowed ([messaging] max_recipients)"
            )));
        }
        Ok(())
    }

    /// Authorizes a message to `recipients` under `capability`: every recipient must match
    /// the messaging scope. One authorization, so a message takes one rate-limit token.
    async fn authorize_recipients(&mut self, capability: &'static str, recipients: &[String]) -> Result<(), CapError> {
        let target = format!("send to {}", recipients.iter().map(|r| shown(r)).collect::<Vec<_>>().join(", "));
        let list = recipients.to_vec();
        let check = move |scope: &Scope| match scope.as_messaging() {
            Some(m) => list.iter().try_for_each(|r| m.check_recipient(r)),
            None => Err(format!(
                "the grant of {capability} has no recipients scope; reinstall the extension to grant recipients"
            )),
        };
        self.authorize(capability, &target, &check).await
    }

    async fn deliver(&mut self, kind: &str, message: OutboundMessage) -> Result<Receipt, CapError> {
        let delivery = Delivery {
            id: new_delivery_id(kind),
            extension: self.ext.id.clone(),
            sent_at: crate::now_rfc3339(),
            message,
        };
        let backend = self.host.messaging.clone();
        backend.deliver(delivery).await.map_err(to_cap_error)
    }
}

impl channel::Host for CallState {
    async fn send(&mut self, channel_name: String, message: String) -> wasmtime::Result<Result<u32, CapError>> {
        try_budget!(self, channel_name.len() + message.len());
        if channel_name.is_empty() || channel_name.len() > MAX_CHANNEL_NAME {
            return Ok(Err(CapError::InvalidInput(format!("the channel name must be 1 to {MAX_CHANNEL_NAME} bytes"))));
        }
        if let Err(e) = single_line("the channel name", &channel_name).and_then(|_| self.check_size(message.len())) {
            return Ok(Err(e));
        }
        let target = format!("channel {}", shown(&channel_name));
        let name = channel_name.clone();
        let check = move |scope: &Scope| match scope {
            Scope::Channel(c) => c.check_channel(&name),
            _ => Err("the grant of channel.send names no channels; reinstall the extension to grant channels".into()),
        };
        if let Err(e) = self.authorize(CHANNEL, &target, &check).await {
            return Ok(Err(e));
        }
        let receipt = self.deliver("channel", OutboundMessage::Channel { channel: channel_name, body: message }).await;
        Ok(receipt.map(|r| r.receivers))
    }
}

impl sms::Host for CallState {
    async fn send(&mut self, recipients: Vec<String>, body: String) -> wasmtime::Result<Result<String, CapError>> {
        try_budget!(self, recipients.iter().map(String::len).sum::<usize>() + body.len());
        if let Err(e) = self.check_recipient_count(recipients.len()).and_then(|_| self.check_size(body.len())) {
            return Ok(Err(e));
        }
        if let Err(e) = self.authorize_recipients(SMS, &recipients).await {
            return Ok(Err(e));
        }
        let recipients = match normalized(MessagingKind::Sms, recipients) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        Ok(self.deliver("sms", OutboundMessage::Sms { recipients, body }).await.map(|r| r.id))
    }
}

impl email::Host for CallState {
    async fn send(&mut self, msg: email::Message) -> wasmtime::Result<Result<String, CapError>> {
        let addresses: Vec<String> = msg.to.iter().chain(&msg.cc).chain(&msg.bcc).cloned().collect();
        let size = msg.body_text.len()
            + msg.body_html.as_ref().map_or(0, String::len)
            + msg.attachments.iter().map(|a| a.data.len() + a.filename.len() + a.mime.len()).sum::<usize>();
        try_budget!(self, size + msg.subject.len() + addresses.iter().map(String::len).sum::<usize>());
        let shape = self
            .check_recipient_count(addresses.len())
            .and_then(|_| self.check_size(size))
            .and_then(|_| single_line("the subject", &msg.subject))
            .and_then(|_| addresses.iter().try_for_each(|a| single_line("a recipient address", a)))
            .and_then(|_| msg.reply_to.as_deref().map_or(Ok(()), |r| single_line("reply-to", r)))
            .and_then(|_| {
                msg.attachments.iter().try_for_each(|a| match attachment_problem(&a.filename, &a.mime) {
                    Some(problem) => Err(CapError::InvalidInput(problem)),
                    None => Ok(()),
                })
            });
        if let Err(e) = shape {
            return Ok(Err(e));
        }
        if let Err(e) = self.authorize_recipients(EMAIL, &addresses).await {
            return Ok(Err(e));
        }
        let (to, cc, bcc) = match (
            normalized(MessagingKind::Email, msg.to),
            normalized(MessagingKind::Email, msg.cc),
            normalized(MessagingKind::Email, msg.bcc),
        ) {
            (Ok(to), Ok(cc), Ok(bcc)) => (to, cc, bcc),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Ok(Err(e)),
        };
        let message = OutboundMessage::Email {
            to,
            cc,
            bcc,
            subject: msg.subject,
            body_text: msg.body_text,
            body_html: msg.body_html,
            reply_to: msg.reply_to,
            attachments: msg
                .attachments
                .into_iter()
                .map(|a| EmailAttachment { filename: a.filename, mime: a.mime, data: a.data })
                .collect(),
        };
        Ok(self.deliver("email", message).await.map(|r| r.id))
    }
}

impl chat::Host for CallState {
    async fn send(&mut self, msg: chat::Message) -> wasmtime::Result<Result<String, CapError>> {
        try_budget!(self, msg.recipient.len() + msg.text.len() + msg.thread_id.as_ref().map_or(0, String::len));
        let shape = self
            .check_size(msg.text.len())
            .and_then(|_| msg.thread_id.as_deref().map_or(Ok(()), |t| single_line("the thread id", t)));
        if let Err(e) = shape {
            return Ok(Err(e));
        }
        if let Err(e) = self.authorize_recipients(CHAT, std::slice::from_ref(&msg.recipient)).await {
            return Ok(Err(e));
        }
        let message = OutboundMessage::Chat { recipient: msg.recipient, text: msg.text, thread_id: msg.thread_id };
        Ok(self.deliver("chat", message).await.map(|r| r.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(body: &str) -> Delivery {
        Delivery {
            id: new_delivery_id("channel"),
            extension: "dev.example.x".into(),
            sent_at: "2026-01-01T00:00:00Z".into(),
            message: OutboundMessage::Channel { channel: "alerts".into(), body: body.into() },
        }
    }

    #[tokio::test]
    async fn bus_reaches_every_subscriber_and_counts_them() {
        let bus = ChannelBus::new(8);
        let backend = BusBackend::new(bus.clone());
        assert_eq!(backend.deliver(delivery("nobody")).await.unwrap().receivers, 0);
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        let receipt = backend.deliver(delivery("hello")).await.unwrap();
        assert_eq!(receipt.receivers, 2);
        for rx in [&mut a, &mut b] {
            let got = rx.recv().await.unwrap();
            assert_eq!(got.id, receipt.id);
            assert_eq!(got.message, OutboundMessage::Channel { channel: "alerts".into(), body: "hello".into() });
        }
    }

    #[test]
    fn deliveries_serialize_with_a_kind_tag_and_base64_attachments() {
        let d = Delivery {
            message: OutboundMessage::Email {
                to: vec!["a@example.com".into()],
                cc: vec![],
                bcc: vec![],
                subject: "s".into(),
                body_text: "b".into(),
                body_html: None,
                reply_to: None,
                attachments: vec![EmailAttachment {
                    filename: "f".into(),
                    mime: "text/plain".into(),
                    data: b"hi".to_vec(),
                }],
            },
            ..delivery("")
        };
        let json: serde_json::Value = serde_json::to_value(&d).unwrap();
        assert_eq!(json["message"]["kind"], "email");
        assert_eq!(json["message"]["attachments"][0]["data"], "aGk=");
        let back: Delivery = serde_json::from_value(json).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn ids_are_unique_and_header_fields_are_single_line() {
        assert_ne!(new_delivery_id("sms"), new_delivery_id("sms"));
        assert!(single_line("subject", "Weekly report").is_ok());
        assert!(matches!(single_line("subject", "x\r\nBcc: eve@evil.example"), Err(CapError::InvalidInput(_))));
    }

    /// Attachment names with `"` or `;` once passed, for an embedder building MIME
    /// without quoting: `x.pdf"; filename*=utf-8''evil.exe` adds a parameter.
    #[test]
    fn attachment_names_cannot_inject_mime_parameters() {
        assert!(attachment_problem("report 2024 (final).pdf", "application/pdf").is_none());
        assert!(attachment_problem("image.v2.png", "image/svg+xml").is_none());
        for name in [
            "x.pdf\"; filename*=utf-8''evil.exe",
            "x.pdf; name=evil.exe",
            "../../.bashrc",
            "dir/x.pdf",
            "dir\\x.pdf",
            "x\u{202E}fdp.exe",
            "a\u{2028}b",
            "..",
            "",
        ] {
            assert!(attachment_problem(name, "application/pdf").is_some(), "{name:?} passed");
        }
        for mime in ["text/plain; charset=utf-8", "text", "text/plain\"", "/plain", "text/"] {
            assert!(attachment_problem("a.txt", mime).is_some(), "{mime:?} passed");
        }
    }

    #[test]
    fn the_bus_holds_a_bounded_number_of_bytes() {
        let config = MessagingConfig::default();
        assert_eq!(config.bus_slots(), 64, "16 MiB of 256 KiB messages");
        assert!(config.bus_slots() * config.max_message_bytes <= config.bus_max_bytes);
        let small = MessagingConfig { max_message_bytes: 1024, ..MessagingConfig::default() };
        assert_eq!(small.bus_slots(), 1024, "bus_capacity still applies");
        let tiny = MessagingConfig { bus_max_bytes: 0, ..MessagingConfig::default() };
        assert_eq!(tiny.bus_slots(), 1);
    }

    #[test]
    fn webhook_needs_a_url() {
        assert!(matches!(WebhookBackend::new(&MessagingConfig::default()), Err(MessagingError::Unavailable(_))));
        let bad = MessagingConfig { webhook_url: Some("not a url".into()), ..MessagingConfig::default() };
        assert!(WebhookBackend::new(&bad).is_err());
    }
}
