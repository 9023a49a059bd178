//! `ai.inference`: chat completions through the host's configured provider.
//!
//! Every request passes, in order:
//!
//! 1. the shape checks (at least one message, bounded sizes, a sane temperature);
//! 2. the permission engine: grant, kill switch, the scope's `max_tokens` (an explicit
//!    request above it is out of scope; an unspecified one is capped to it) and the
//!    scope's and `[security.rate_limits]` rate limits;
//! 3. the extension's daily budget (`[inference] daily_token_budget`, and
//!    `daily_cost_budget` at `price_per_1k_tokens`), kept in redb so a restart does not
//!    reset it; a request is also capped to what is left of the budget;
//! 4. the Guardian, on every message of the prompt and on the assembled conversation
//!    (scan point `prompt`);
//! 5. the provider; then the Guardian again on the answer (scan point `model-output`).
//!
//! The API key is read from the environment variable `[inference] api_key_env` names, at
//! each request, and only ever goes into the `Authorization` header: it is never logged,
//! audited or returned, and a provider error that echoes it has it replaced by
//! `[redacted]`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use omni_capabilities::Scope;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::try_budget;
use crate::audit::{EventKind, NewRecord};
use crate::bindings::omni::caps::inference as wit;
use crate::bindings::{CapError, RateLimitedInfo};
use crate::sandbox::CallState;

const CAPABILITY: &str = "ai.inference";
const USAGE: TableDefinition<(&str, u64), u64> = TableDefinition::new("inference_usage");
const MS_PER_DAY: u64 = 86_400_000;

/// Most messages one request may carry.
pub const MAX_MESSAGES: usize = 256;
/// Most stop strings one request may carry (the common provider limit).
pub const MAX_STOP: usize = 4;

/// `[inference]` settings.
///
/// ```toml
/// [inference]
/// endpoint = "https://api.openai.com/v1/chat/completions"
/// model = "gpt-4o-mini"
/// allowed_models = ["gpt-4o-mini"]
/// api_key_env = "OMNI_INFERENCE_KEY"
/// max_tokens = 1024
/// timeout_ms = 60000
/// daily_token_budget = 200000
/// price_per_1k_tokens = 0.0006
/// daily_cost_budget = 0.50
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct InferenceConfig {
    /// The full URL of an OpenAI-compatible chat-completions endpoint. Unset: the
    /// capability answers `unavailable`.
    pub endpoint: Option<String>,
    /// The model used when a request names none. Unset: a request must name one.
    pub model: Option<String>,
    /// Models a request may name (exact names). Empty: any model the provider offers.
    pub allowed_models: Vec<String>,
    /// The environment variable holding the API key. When it is unset or empty, requests
    /// go without an `Authorization` header (local providers need none).
    pub api_key_env: String,
    /// Tokens asked for when a request names no `max-tokens` (the scope may lower it).
    pub max_tokens: u32,
    /// Longest a request may take, in milliseconds.
    pub timeout_ms: u64,
    /// Largest provider response accepted, in bytes.
    pub max_response_bytes: u64,
    /// Tokens (prompt plus answer, as the provider counts them) each extension may use
    /// per UTC day. Unset: no token budget.
    pub daily_token_budget: Option<u64>,
    /// Price of 1,000 tokens, in the currency `daily_cost_budget` uses.
    pub price_per_1k_tokens: Option<f64>,
    /// Spending each extension may reach per UTC day, at `price_per_1k_tokens`. Needs the
    /// price; unset: no cost budget.
    pub daily_cost_budget: Option<f64>,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig {
            endpoint: None,
            model: None,
            allowed_models: Vec::new(),
            api_key_env: "OMNI_INFERENCE_KEY".into(),
            max_tokens: 1024,
            timeout_ms: 60_000,
            max_response_bytes: 4 * 1024 * 1024,
            daily_token_budget: None,
            price_per_1k_tokens: None,
            daily_cost_budget: None,
        }
    }
}

impl InferenceConfig {
    /// Tokens the cost budget allows per day, when both price and budget are set.
    fn cost_budget_tokens(&self) -> Option<u64> {
        match (self.price_per_1k_tokens, self.daily_cost_budget) {
            (Some(price), Some(budget)) if price > 0.0 && budget.is_finite() && budget >= 0.0 => {
                // Truncation is the conservative rounding: never allow more than paid for.
                Some((budget / price * 1000.0).floor().min(u64::MAX as f64) as u64)
            }
            _ => None,
        }
    }

    /// The tightest daily budget in tokens, and which setting sets it.
    fn daily_budget(&self) -> Option<(u64, &'static str)> {
        let tokens = self.daily_token_budget.map(|t| (t, "daily_token_budget"));
        let cost = self.cost_budget_tokens().map(|t| (t, "daily_cost_budget"));
        match (tokens, cost) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// Instructions that frame the conversation.
    System,
    /// The person, or the calling extension.
    User,
    /// The model.
    Assistant,
}

/// One message sent to the provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Its author.
    pub role: ChatRole,
    /// Its text.
    pub content: String,
}

/// A request as it goes to the provider, after every host check and cap.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompletionRequest {
    /// The model name.
    pub model: String,
    /// The conversation, oldest first.
    pub messages: Vec<ChatMessage>,
    /// The most tokens the answer may have (already capped by scope and budget).
    pub max_tokens: u32,
    /// Sampling temperature, 0.0 to 2.0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Stop strings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// It finished or met a stop string.
    Stop,
    /// It reached `max_tokens`.
    Length,
    /// The provider's content filter cut it off.
    ContentFilter,
    /// Anything else.
    Other,
}

/// A provider's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionResponse {
    /// The answer's text.
    pub content: String,
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// Prompt tokens counted by the provider.
    pub prompt_tokens: u32,
    /// Answer tokens counted by the provider.
    pub completion_tokens: u32,
    /// Their sum as the provider reports it.
    pub total_tokens: u32,
    /// The model that answered.
    pub model: String,
}

/// Why a completion failed.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// No provider is configured.
    #[error("no inference provider is configured on this host; set endpoint (and model) in the [inference] section of omni.toml")]
    NotConfigured,
    /// The provider answered with an error status.
    #[error("the inference provider answered HTTP {status}: {message}")]
    Provider {
        /// The status code.
        status: u16,
        /// The provider's message (any API key it echoes is redacted).
        message: String,
    },
    /// The request took too long.
    #[error("the inference request timed out after {0:?} ([inference] timeout_ms)")]
    Timeout(Duration),
    /// The answer was larger than allowed.
    #[error("the provider's answer exceeds {0} bytes ([inference] max_response_bytes)")]
    TooLarge(u64),
    /// The answer was not a chat-completions response.
    #[error("the provider's answer is not a chat-completions response: {0}")]
    BadResponse(String),
    /// Connecting, sending or receiving failed.
    #[error("the inference request failed: {0}")]
    Io(String),
}

/// Future returned by [`InferenceBackend::complete`].
pub type CompletionFuture<'a> = Pin<Box<dyn Future<Output = Result<CompletionResponse, InferenceError>> + Send + 'a>>;

/// The provider an embedder may replace (another API, a local model, a test double).
///
/// The host has already checked grant, scope, rate limits, budget and the Guardian when
/// it calls [`InferenceBackend::complete`], and checks the answer afterwards.
pub trait InferenceBackend: Send + Sync {
    /// Completes one conversation.
    fn complete(&self, request: CompletionRequest) -> CompletionFuture<'_>;
}

/// The default provider: an OpenAI-compatible `POST /chat/completions` over reqwest.
pub struct OpenAiCompatible {
    client: reqwest::Client,
    endpoint: Option<url::Url>,
    api_key_env: String,
    timeout: Duration,
    max_body: u64,
}

impl OpenAiCompatible {
    /// A client for the provider `config` names.
    pub fn new(config: &InferenceConfig) -> Result<OpenAiCompatible, InferenceError> {
        let endpoint = match &config.endpoint {
            None => None,
            Some(e) => Some(url::Url::parse(e).map_err(|err| {
                InferenceError::Io(format!(
                    "[inference] endpoint {e:?} is not a URL ({err}); write the full chat-completions URL, e.g. https://api.openai.com/v1/chat/completions"
                ))
            })?),
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| InferenceError::Io(e.to_string()))?;
        Ok(OpenAiCompatible {
            client,
            endpoint,
            api_key_env: config.api_key_env.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
            max_body: config.max_response_bytes,
        })
    }

    async fn exchange(&self, request: CompletionRequest) -> Result<CompletionResponse, InferenceError> {
        let endpoint = self.endpoint.clone().ok_or(InferenceError::NotConfigured)?;
        let key = std::env::var(&self.api_key_env).ok().filter(|k| !k.is_empty());
        let body = serde_json::to_vec(&request).map_err(|e| InferenceError::Io(e.to_string()))?;
        let mut builder = self
            .client
            .post(endpoint)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(body);
        if let Some(k) = &key {
            builder = builder.bearer_auth(k);
        }
        let scrub = |text: String| match &key {
            Some(k) => text.replace(k.as_str(), "[redacted]"),
            None => text,
        };
        let mut response = builder.send().await.map_err(|e| InferenceError::Io(scrub(without_url(&e))))?;
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| InferenceError::Io(scrub(without_url(&e))))? {
            if (bytes.len() + chunk.len()) as u64 > self.max_body {
                return Err(InferenceError::TooLarge(self.max_body));
            }
            bytes.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if !(200..300).contains(&status) {
            let message = provider_message(&text);
            return Err(InferenceError::Provider { status, message: scrub(message) });
        }
        parse_response(&text, &request.model).map_err(|e| match e {
            InferenceError::BadResponse(m) => InferenceError::BadResponse(scrub(m)),
            other => other,
        })
    }
}

/// reqwest's messages carry the URL; the endpoint is the person's, but keep errors short.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "could not connect to the provider"
    } else if e.is_timeout() {
        "the provider did not answer in time"
    } else if e.is_body() || e.is_decode() {
        "the provider's answer could not be read"
    } else {
        "the request could not be sent"
    };
    match std::error::Error::source(e) {
        Some(src) => format!("{kind} ({src})"),
        None => kind.to_string(),
    }
}

impl InferenceBackend for OpenAiCompatible {
    fn complete(&self, request: CompletionRequest) -> CompletionFuture<'_> {
        Box::pin(async move {
            let timeout = self.timeout;
            match tokio::time::timeout(timeout, self.exchange(request)).await {
                Ok(r) => r,
                Err(_) => Err(InferenceError::Timeout(timeout)),
            }
        })
    }
}

/// The `error.message` of an OpenAI-style error body, else the body's start.
fn provider_message(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| {
        v.get("error").and_then(|e| e.get("message").or(Some(e))).and_then(|m| m.as_str().map(str::to_owned))
    });
    let message = from_json.unwrap_or_else(|| body.chars().take(300).collect());
    if message.is_empty() {
        "(no message)".into()
    } else {
        message
    }
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
    #[serde(default)]
    total_tokens: u32,
}

fn parse_response(body: &str, requested_model: &str) -> Result<CompletionResponse, InferenceError> {
    let wire: WireResponse = serde_json::from_str(body).map_err(|e| InferenceError::BadResponse(e.to_string()))?;
    let choice =
        wire.choices.into_iter().next().ok_or_else(|| InferenceError::BadResponse("it has no choices".into()))?;
    let finish_reason = match choice.finish_reason.as_deref() {
        Some("stop") | None => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("content_filter") => FinishReason::ContentFilter,
        Some(_) => FinishReason::Other,
    };
    let usage = wire.usage.unwrap_or(WireUsage { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 });
    Ok(CompletionResponse {
        content: choice.message.content.unwrap_or_default(),
        finish_reason,
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        total_tokens: usage.total_tokens.max(usage.prompt_tokens.saturating_add(usage.completion_tokens)),
        model: wire.model.unwrap_or_else(|| requested_model.to_owned()),
    })
}

/// Tokens each extension used per UTC day, in redb so a restart does not reset budgets.
///
/// Kept when an extension is uninstalled, so reinstalling does not refill its budget.
pub struct UsageLedger {
    db: Arc<Database>,
}

/// The ledger's storage failed.
#[derive(Debug, thiserror::Error)]
#[error("the inference usage ledger failed: {0}")]
pub struct LedgerError(String);

fn ledger<E: std::fmt::Display>(e: E) -> LedgerError {
    LedgerError(e.to_string())
}

impl UsageLedger {
    /// Uses (and creates if needed) the usage table of `db`.
    pub fn new(db: Arc<Database>) -> Result<UsageLedger, LedgerError> {
        let tx = db.begin_write().map_err(ledger)?;
        tx.open_table(USAGE).map_err(ledger)?;
        tx.commit().map_err(ledger)?;
        Ok(UsageLedger { db })
    }

    /// Tokens `extension` used on `day` (days since the Unix epoch, UTC).
    pub fn used(&self, extension: &str, day: u64) -> Result<u64, LedgerError> {
        let tx = self.db.begin_read().map_err(ledger)?;
        let table = tx.open_table(USAGE).map_err(ledger)?;
        Ok(table.get((extension, day)).map_err(ledger)?.map(|v| v.value()).unwrap_or(0))
    }

    /// Reserves, in one write transaction (so concurrent requests cannot all pass one
    /// check), the prompt's estimated tokens plus as many answer tokens as the budget
    /// leaves, up to `answer_max`. Refused, and nothing is reserved, when the use so far
    /// plus the prompt already reaches `budget`. The reservation is settled with
    /// [`UsageLedger::settle`] once the real use is known. redb lets one process at a
    /// time open the database, so the transaction also serializes other processes.
    pub fn reserve(
        &self,
        extension: &str,
        day: u64,
        prompt: u64,
        answer_max: u64,
        budget: u64,
    ) -> Result<Reservation, LedgerError> {
        let tx = self.db.begin_write().map_err(ledger)?;
        let reservation = {
            let mut table = tx.open_table(USAGE).map_err(ledger)?;
            let used = table.get((extension, day)).map_err(ledger)?.map(|v| v.value()).unwrap_or(0);
            if used.saturating_add(prompt) >= budget {
                return Ok(Reservation::Refused { used });
            }
            let answer = answer_max.min(budget - used - prompt);
            let tokens = prompt + answer;
            table.insert((extension, day), used + tokens).map_err(ledger)?;
            Reservation::Reserved { tokens, answer }
        };
        tx.commit().map_err(ledger)?;
        Ok(reservation)
    }

    /// Replaces a reservation of `reserved` tokens on `day` by the `actual` use: the
    /// unused part is released, use beyond it is charged. The new total.
    pub fn settle(&self, extension: &str, day: u64, reserved: u64, actual: u64) -> Result<u64, LedgerError> {
        let tx = self.db.begin_write().map_err(ledger)?;
        let total = {
            let mut table = tx.open_table(USAGE).map_err(ledger)?;
            let used = table.get((extension, day)).map_err(ledger)?.map(|v| v.value()).unwrap_or(0);
            let total = used.saturating_sub(reserved).saturating_add(actual);
            table.insert((extension, day), total).map_err(ledger)?;
            total
        };
        tx.commit().map_err(ledger)?;
        Ok(total)
    }

    /// Adds `tokens` to `extension`'s use on `day`; the new total.
    pub fn add(&self, extension: &str, day: u64, tokens: u64) -> Result<u64, LedgerError> {
        let tx = self.db.begin_write().map_err(ledger)?;
        let total = {
            let mut table = tx.open_table(USAGE).map_err(ledger)?;
            let used = table.get((extension, day)).map_err(ledger)?.map(|v| v.value()).unwrap_or(0);
            let total = used.saturating_add(tokens);
            table.insert((extension, day), total).map_err(ledger)?;
            total
        };
        tx.commit().map_err(ledger)?;
        Ok(total)
    }
}

/// The outcome of [`UsageLedger::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// `tokens` are held against the budget, `answer` of them for the answer.
    Reserved {
        /// Prompt estimate plus answer tokens.
        tokens: u64,
        /// The most tokens the answer may have.
        answer: u64,
    },
    /// The budget cannot take the prompt; `used` tokens were used already today.
    Refused {
        /// Tokens used today before this request.
        used: u64,
    },
}

/// Bytes counted as one prompt token before sending: the tokenizers of common models
/// average about four bytes a token on prose, so counting one per three over-estimates
/// ordinary text; the provider's own count replaces the estimate when the answer comes.
pub const PROMPT_BYTES_PER_TOKEN: usize = 3;
/// Tokens counted for each message's role and framing.
pub const TOKENS_PER_MESSAGE: u64 = 4;

/// The tokens a prompt is counted as before it is sent (see [`PROMPT_BYTES_PER_TOKEN`]).
pub fn estimate_prompt_tokens<'a>(messages: impl IntoIterator<Item = &'a str>) -> u64 {
    messages.into_iter().map(|m| m.len().div_ceil(PROMPT_BYTES_PER_TOKEN) as u64 + TOKENS_PER_MESSAGE).sum()
}

fn now_ms() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

fn to_cap_error(e: InferenceError) -> CapError {
    match e {
        InferenceError::NotConfigured => CapError::Unavailable(e.to_string()),
        InferenceError::Provider { status, .. } if status == 429 || status >= 500 => {
            CapError::Unavailable(e.to_string())
        }
        _ => CapError::Io(e.to_string()),
    }
}

fn role(r: wit::Role) -> ChatRole {
    match r {
        wit::Role::System => ChatRole::System,
        wit::Role::User => ChatRole::User,
        wit::Role::Assistant => ChatRole::Assistant,
    }
}

fn check_request(req: &wit::ChatRequest) -> Result<(), CapError> {
    if req.messages.is_empty() {
        return Err(CapError::InvalidInput("the request has no messages; send at least one".into()));
    }
    if req.messages.len() > MAX_MESSAGES {
        return Err(CapError::InvalidInput(format!(
            "the request has {} messages, more than the {MAX_MESSAGES} allowed; summarize older turns",
            req.messages.len()
        )));
    }
    if let Some(t) = req.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(CapError::InvalidInput(format!("temperature {t} is outside 0.0 to 2.0")));
        }
    }
    if req.stop.len() > MAX_STOP {
        return Err(CapError::InvalidInput(format!(
            "{} stop strings given; at most {MAX_STOP} are allowed",
            req.stop.len()
        )));
    }
    if req.max_tokens == Some(0) {
        return Err(CapError::InvalidInput("max-tokens is 0; ask for at least 1 token or leave it unset".into()));
    }
    if let Some(m) = &req.model {
        if m.is_empty() || m.len() > 256 || m.chars().any(char::is_control) {
            return Err(CapError::InvalidInput(
                "the model name is empty, longer than 256 bytes or has control characters".into(),
            ));
        }
    }
    Ok(())
}

impl CallState {
    /// Scans `text` with the Guardian at `point`; a malicious verdict is refused and
    /// audited (both as a Guardian verdict and as a deny decision), anything not clean is
    /// audited.
    async fn inference_screen(
        &mut self,
        text: &str,
        point: omni_guardian::ScanPoint,
        what: &str,
        target: &str,
    ) -> Result<(), CapError> {
        let verdict = self.host.guardian.scan(text, point);
        if verdict.kind == omni_guardian::VerdictKind::Clean {
            return Ok(());
        }
        let rules: Vec<String> = verdict.matches.iter().map(|m| m.id.to_string()).collect();
        let matched = if rules.is_empty() { String::new() } else { format!("; matched {}", rules.join(", ")) };
        let judgement = format!("the Guardian judged {what} {} (score {}/100{matched})", verdict.kind, verdict.score);
        let event = NewRecord {
            session: self.session.to_string(),
            capability: Some(CAPABILITY.into()),
            target: Some(what.to_string()),
            ..NewRecord::event(EventKind::GuardianVerdict, &self.ext.id, judgement.clone())
        };
        // The verdict stands even if the audit cannot record it; the refusal below is
        // recorded through the same log and reported in the call's denials.
        let _ = self.host.policy.audit().append_async(event).await;
        if verdict.is_blocked() {
            return Err(self
                .refuse(
                    CAPABILITY,
                    target,
                    format!(
                        "{judgement}; it was not {}",
                        if point == omni_guardian::ScanPoint::Prompt { "sent to the model" } else { "returned" }
                    ),
                )
                .await);
        }
        Ok(())
    }

    /// Refuses a request over the daily budget: audited as a deny, returned as
    /// `rate-limited` with the time until the budget refills (next UTC midnight).
    async fn inference_over_budget(&mut self, target: &str, reason: String, now: u64) -> CapError {
        let reason = match self.refuse(CAPABILITY, target, reason).await {
            CapError::OutOfScope(r) => r,
            other => return other,
        };
        CapError::RateLimited(RateLimitedInfo { retry_after_ms: MS_PER_DAY - now % MS_PER_DAY, reason })
    }

    fn ledger_blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&UsageLedger, &str) -> Result<T, LedgerError> + Send + 'static,
    ) -> impl Future<Output = Result<T, CapError>> + Send + 'static {
        let ledger = self.host.inference_usage.clone();
        let ext = self.ext.id.clone();
        async move {
            match tokio::task::spawn_blocking(move || op(&ledger, &ext)).await {
                Ok(r) => r.map_err(|e| CapError::Io(e.to_string())),
                Err(e) => Err(CapError::Io(format!("the usage ledger task failed: {e}"))),
            }
        }
    }
}

impl wit::Host for CallState {
    async fn chat(&mut self, req: wit::ChatRequest) -> wasmtime::Result<Result<wit::ChatResponse, CapError>> {
        let moved = req.messages.iter().map(|m| m.content.len() + 8).sum::<usize>()
            + req.model.as_ref().map_or(0, String::len)
            + req.stop.iter().map(String::len).sum::<usize>();
        try_budget!(self, moved);
        if let Err(e) = check_request(&req) {
            return Ok(Err(e));
        }
        let config = self.host.config.inference.clone();
        let Some(model) = req.model.clone().or_else(|| config.model.clone()) else {
            return Ok(Err(CapError::InvalidInput(
                "the request names no model and the host has no default; name a model, or set model in [inference] of omni.toml".into(),
            )));
        };
        if !config.allowed_models.is_empty() && !config.allowed_models.contains(&model) {
            let reason = format!(
                "model {model:?} is not allowed on this host; allowed_models in [inference] of omni.toml lists: {}",
                config.allowed_models.join(", ")
            );
            return Ok(Err(self.refuse(CAPABILITY, &format!("chat model={model}"), reason).await));
        }
        let requested = req.max_tokens;
        let wanted = requested.unwrap_or(config.max_tokens).max(1);
        let target = format!("chat model={model} max_tokens={wanted}");
        let scope_max: Arc<OnceLock<Option<u32>>> = Arc::new(OnceLock::new());
        let check = {
            let scope_max = scope_max.clone();
            move |scope: &Scope| {
                let limit = match scope {
                    Scope::Inference(s) => s.max_tokens,
                    _ => None,
                };
                let _ = scope_max.set(limit);
                match (scope, requested) {
                    // Only an explicit request is refused; the host's default is capped.
                    (Scope::Inference(s), Some(n)) => s.check_tokens(n),
                    _ => Ok(()),
                }
            }
        };
        if let Err(e) = self.authorize(CAPABILITY, &target, &check).await {
            return Ok(Err(e));
        }
        let mut max_tokens = match scope_max.get().copied().flatten() {
            Some(limit) => wanted.min(limit),
            None => wanted,
        };

        for (i, m) in req.messages.iter().enumerate() {
            let what = format!("message {} of the prompt", i + 1);
            if let Err(e) = self.inference_screen(&m.content, omni_guardian::ScanPoint::Prompt, &what, &target).await {
                return Ok(Err(e));
            }
        }
        if req.messages.len() > 1 {
            // An attack split across messages only shows in the assembled conversation.
            let whole = req.messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n");
            if let Err(e) =
                self.inference_screen(&whole, omni_guardian::ScanPoint::Prompt, "the assembled prompt", &target).await
            {
                return Ok(Err(e));
            }
        }

        // Checked and reserved in one step, after the Guardian and just before sending, so
        // that concurrent requests cannot each pass the same check and a prompt's own
        // tokens count against the budget before the provider sees it.
        let now = now_ms();
        let day = now / MS_PER_DAY;
        let mut reserved = None;
        if let Some((budget, setting)) = config.daily_budget() {
            let prompt = estimate_prompt_tokens(req.messages.iter().map(|m| m.content.as_str()));
            let answer_max = u64::from(max_tokens);
            match self.ledger_blocking(move |l, ext| l.reserve(ext, day, prompt, answer_max, budget)).await {
                Ok(Reservation::Reserved { tokens, answer }) => {
                    max_tokens = u32::try_from(answer).unwrap_or(max_tokens).min(max_tokens);
                    reserved = Some(tokens);
                }
                Ok(Reservation::Refused { used }) => {
                    let reason = if used >= budget {
                        format!(
                            "{} used {used} of its {budget} tokens for today ({setting} in [inference] of omni.toml); the budget refills at 00:00 UTC",
                            self.ext.id
                        )
                    } else {
                        format!(
                            "{} used {used} of its {budget} tokens for today ({setting} in [inference] of omni.toml) and the prompt counts as {prompt} more (one token per {PROMPT_BYTES_PER_TOKEN} bytes); send a shorter prompt or wait for the budget to refill at 00:00 UTC",
                            self.ext.id
                        )
                    };
                    return Ok(Err(self.inference_over_budget(&target, reason, now).await));
                }
                Err(e) => return Ok(Err(e)),
            }
        }

        let request = CompletionRequest {
            model,
            messages: req
                .messages
                .iter()
                .map(|m| ChatMessage { role: role(m.role), content: m.content.clone() })
                .collect(),
            max_tokens,
            temperature: req.temperature,
            stop: req.stop.clone(),
        };
        let prompt_chars: usize = request.messages.iter().map(|m| m.content.len()).sum();
        let backend = self.host.inference.clone();
        let answer = match backend.complete(request).await {
            Ok(a) => a,
            Err(e) => {
                if let Some(tokens) = reserved {
                    // Nothing was answered: the reservation goes back. A failure to
                    // release it leaves the budget lower, never higher.
                    let _ = self.ledger_blocking(move |l, ext| l.settle(ext, day, tokens, 0)).await;
                }
                return Ok(Err(to_cap_error(e)));
            }
        };
        // A provider that reports no usage is charged an estimate (about 4 bytes a token),
        // so a budget cannot be dodged by a silent provider.
        let spent = if answer.total_tokens > 0 {
            u64::from(answer.total_tokens)
        } else {
            ((prompt_chars + answer.content.len()) as u64).div_ceil(4).max(1)
        };
        let charged = match reserved {
            Some(tokens) => self.ledger_blocking(move |l, ext| l.settle(ext, day, tokens, spent)).await,
            None => self.ledger_blocking(move |l, ext| l.add(ext, day, spent)).await,
        };
        if let Err(e) = charged {
            return Ok(Err(e));
        }
        if let Err(e) = self
            .inference_screen(&answer.content, omni_guardian::ScanPoint::ModelOutput, "the model's answer", &target)
            .await
        {
            return Ok(Err(e));
        }
        Ok(Ok(wit::ChatResponse {
            content: answer.content,
            finish_reason: match answer.finish_reason {
                FinishReason::Stop => wit::FinishReason::Stop,
                FinishReason::Length => wit::FinishReason::Length,
                FinishReason::ContentFilter => wit::FinishReason::ContentFilter,
                FinishReason::Other => wit::FinishReason::Other,
            },
            usage: wit::Usage {
                prompt_tokens: answer.prompt_tokens,
                completion_tokens: answer.completion_tokens,
                total_tokens: answer.total_tokens,
            },
            model: answer.model,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openai_answers_and_errors() {
        let body = r#"{"model":"m-1","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        let r = parse_response(body, "asked").unwrap();
        assert_eq!(
            (r.content.as_str(), r.finish_reason, r.total_tokens, r.model.as_str()),
            ("hi", FinishReason::Length, 5, "m-1")
        );
        let r = parse_response(r#"{"choices":[{"message":{"content":null}}]}"#, "asked").unwrap();
        assert_eq!(
            (r.content.as_str(), r.finish_reason, r.total_tokens, r.model.as_str()),
            ("", FinishReason::Stop, 0, "asked")
        );
        assert!(matches!(parse_response(r#"{"choices":[]}"#, "m"), Err(InferenceError::BadResponse(_))));
        assert!(matches!(parse_response("<html>", "m"), Err(InferenceError::BadResponse(_))));
        assert_eq!(provider_message(r#"{"error":{"message":"bad key","type":"auth"}}"#), "bad key");
        assert_eq!(provider_message("plain"), "plain");
    }

    #[test]
    fn budget_is_the_tighter_of_tokens_and_cost() {
        let mut c = InferenceConfig::default();
        assert_eq!(c.daily_budget(), None);
        c.daily_token_budget = Some(10_000);
        assert_eq!(c.daily_budget(), Some((10_000, "daily_token_budget")));
        c.price_per_1k_tokens = Some(0.5);
        c.daily_cost_budget = Some(2.0);
        assert_eq!(c.daily_budget(), Some((4_000, "daily_cost_budget")));
        c.daily_cost_budget = Some(100.0);
        assert_eq!(c.daily_budget(), Some((10_000, "daily_token_budget")));
        c.price_per_1k_tokens = Some(0.0);
        assert_eq!(c.cost_budget_tokens(), None, "a zero price sets no cost budget");
    }

    #[test]
    fn ledger_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.redb");
        {
            let l = UsageLedger::new(Arc::new(Database::create(&path).unwrap())).unwrap();
            assert_eq!(l.add("a", 7, 10).unwrap(), 10);
            assert_eq!(l.add("a", 7, 5).unwrap(), 15);
            assert_eq!(l.add("b", 7, 1).unwrap(), 1);
        }
        let l = UsageLedger::new(Arc::new(Database::create(&path).unwrap())).unwrap();
        assert_eq!(l.used("a", 7).unwrap(), 15);
        assert_eq!(l.used("a", 8).unwrap(), 0, "a new day starts empty");
        assert_eq!(l.used("b", 7).unwrap(), 1);
    }

    #[test]
    fn requests_are_checked_before_anything_is_sent() {
        let ok = wit::ChatRequest {
            messages: vec![wit::Message { role: wit::Role::User, content: "hi".into() }],
            model: None,
            max_tokens: None,
            temperature: Some(0.2),
            stop: vec![],
        };
        assert!(check_request(&ok).is_ok());
        let empty = wit::ChatRequest { messages: vec![], ..ok.clone() };
        assert!(matches!(check_request(&empty), Err(CapError::InvalidInput(_))));
        let hot = wit::ChatRequest { temperature: Some(f32::NAN), ..ok.clone() };
        assert!(matches!(check_request(&hot), Err(CapError::InvalidInput(_))));
        let zero = wit::ChatRequest { max_tokens: Some(0), ..ok };
        assert!(matches!(check_request(&zero), Err(CapError::InvalidInput(_))));
    }

    #[test]
    fn reservations_hold_the_budget_and_settle_to_the_real_use() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("u.redb")).unwrap());
        let l = UsageLedger::new(db).unwrap();
        assert_eq!(l.reserve("e", 1, 100, 500, 1_000).unwrap(), Reservation::Reserved { tokens: 600, answer: 500 });
        // What is reserved is taken: the next request gets only the rest.
        assert_eq!(l.reserve("e", 1, 100, 500, 1_000).unwrap(), Reservation::Reserved { tokens: 400, answer: 300 });
        assert_eq!(l.reserve("e", 1, 1, 500, 1_000).unwrap(), Reservation::Refused { used: 1_000 });
        assert_eq!(l.settle("e", 1, 600, 150).unwrap(), 550);
        assert_eq!(l.reserve("e", 1, 500, 500, 1_000).unwrap(), Reservation::Refused { used: 550 });
        assert_eq!(estimate_prompt_tokens(["abcd", ""]), 2 + 4 + 4);
    }
}
