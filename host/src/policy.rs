//! The permission engine: who may use which capability, for how long, within which scope.
//!
//! A grant is a person's decision about one capability of one extension: **allow**,
//! **deny** or **prompt** (ask every time), lasting **once** (the next call only),
//! for the **session** (in memory until the host process ends) or **always** (stored in
//! redb). Grants are created only by [`PolicyEngine::record_decision`] (install or review) and
//! by a person answering a [`Prompter`]; nothing an extension or a model sends can create or
//! widen one.
//!
//! [`PolicyEngine::authorize`] runs on every host call. In order it applies:
//!
//! 1. `disabled_capabilities` from the `[security]` table;
//! 2. the kill switch and revocations (seen immediately: they live in memory, then on disk);
//! 3. `read_only` for capabilities that write;
//! 4. `blocked_paths` and `allowed_paths` for filesystem capabilities (blocked wins over any
//!    grant);
//! 5. the grant, or `default_policy` when there is none;
//! 6. the granted scope, checked by the capability's own scope type through the caller's
//!    callback;
//! 7. rate limits (the scope's `rate_limit` and `[security.rate_limits]`);
//! 8. a prompt, for prompt grants, `default_policy = "prompt"` and the `confirm` list;
//! 9. one-time grant consumption (exactly once, even under concurrent calls);
//! 10. a durable audit record, written **before** an allow is returned (unless
//!     `audit_enabled = false`, which only drops call-time decision records).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use omni_capabilities::{Manifest, Permission, RateLimit, Scope, Severity};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::{AuditError, AuditLog, EventKind, NewRecord};

const GRANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("policy_grants");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("policy_state");
const LOCKDOWN_KEY: &str = "lockdown";
/// Separates extension id and capability key in grant keys; neither may contain it.
const KEY_SEP: char = '\u{1f}';

/// Capabilities refused when `read_only = true`: the ones whose calls change state
/// outside the extension's own sandboxed storage. `process.spawn` is among them because a
/// program, once started, can write wherever the host's user can.
pub const WRITE_CAPABILITIES: &[&str] = &["filesystem.write", "clipboard.write", "process.spawn"];

/// Paths blocked whatever the configuration says (`~` is the user's home directory).
pub const DEFAULT_BLOCKED_PATHS: &[&str] = &["~/.ssh", "~/.aws", "~/.gnupg"];

// ---------------------------------------------------------------------------------------
// Decisions, durations, configuration
// ---------------------------------------------------------------------------------------

/// What a person decided about a capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The calls may run.
    Allow,
    /// The calls are refused; the guest gets `permission-denied`.
    Deny,
    /// Ask a person (through the [`Prompter`]) on every call.
    Prompt,
}

/// How long a decision lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantDuration {
    /// The next call only; used up by it (stored, so it survives until then).
    Once,
    /// Until the host process ends; never written to disk.
    Session,
    /// Until revoked; stored in the database.
    Always,
}

macro_rules! names {
    ($ty:ident, $what:literal, $($variant:ident = $name:literal),+) => {
        impl $ty {
            /// The lowercase name used in configuration, storage and on the command line.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $(if s.eq_ignore_ascii_case($name) { return Ok($ty::$variant); })+
                Err(format!(concat!("invalid ", $what, " {:?}; expected one of: {}"), s, [$($name),+].join(", ")))
            }
        }
    };
}
names!(Decision, "decision", Allow = "allow", Deny = "deny", Prompt = "prompt");
names!(GrantDuration, "duration", Once = "once", Session = "session", Always = "always");
names!(DefaultPolicy, "default policy", Deny = "deny", Prompt = "prompt");

/// What happens when a capability has no grant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultPolicy {
    /// Refuse (the default).
    #[default]
    Deny,
    /// Ask a person through the [`Prompter`].
    Prompt,
}

/// The `[security]` table of `omni.toml`.
///
/// ```
/// # use omni_host::policy::SecurityConfig;
/// let config: SecurityConfig = toml::from_str(r#"
///     default_policy = "prompt"
///     blocked_paths = ["~/Documents/taxes"]
///     read_only = true
///     disabled_capabilities = ["process.spawn"]
///     confirm = ["network.http"]
///     [rate_limits]
///     "search.web" = "30/minute"
/// "#).unwrap();
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// What to do when a capability has no grant: `"deny"` (default) or `"prompt"`.
    pub default_policy: DefaultPolicy,
    /// When not empty, filesystem capabilities may only reach paths under one of these
    /// (absolute, or starting with `~/`). Grants still apply inside them.
    pub allowed_paths: Vec<String>,
    /// Paths no extension may reach, whatever its grants. Added to the built-in list
    /// ([`DEFAULT_BLOCKED_PATHS`] and the host's data directory), which cannot be removed.
    pub blocked_paths: Vec<String>,
    /// When true, capabilities that write ([`WRITE_CAPABILITIES`]) are refused.
    pub read_only: bool,
    /// Capability keys refused to every extension, whatever their grants.
    pub disabled_capabilities: Vec<String>,
    /// Capability keys that ask a person on every call even when granted (a denial at the
    /// prompt refuses only that call).
    pub confirm: Vec<String>,
    /// Rate limits per capability key, for each extension separately: `"N/second"`,
    /// `"N/minute"`, `"N/hour"` or `"N/day"`. Applied on top of any `rate_limit` in a scope.
    pub rate_limits: BTreeMap<String, RateLimit>,
    /// Whether call-time decisions are written to the audit log (default true). Security
    /// events (grants, revocations, the kill switch...) are always written.
    pub audit_enabled: bool,
    /// The host's data directory (database, components). Always blocked. Set by the host,
    /// not read from the file.
    #[serde(skip)]
    pub data_dir: Option<PathBuf>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            default_policy: DefaultPolicy::Deny,
            allowed_paths: Vec::new(),
            blocked_paths: Vec::new(),
            read_only: false,
            disabled_capabilities: Vec::new(),
            confirm: Vec::new(),
            rate_limits: BTreeMap::new(),
            audit_enabled: true,
            data_dir: None,
        }
    }
}

impl SecurityConfig {
    /// Checks that every capability key is known and every path is absolute (or `~/...`);
    /// the error names the field and the fix.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let keys = self
            .disabled_capabilities
            .iter()
            .map(|k| ("disabled_capabilities", k))
            .chain(self.confirm.iter().map(|k| ("confirm", k)))
            .chain(self.rate_limits.keys().map(|k| ("rate_limits", k)));
        for (field, key) in keys {
            if omni_capabilities::lookup(key).is_none() {
                return Err(PolicyError::InvalidConfig {
                    field: format!("security.{field}"),
                    problem: format!("unknown capability {key:?}"),
                    fix: "use a capability key from the catalog, e.g. \"network.http\"".into(),
                });
            }
        }
        let paths = self
            .allowed_paths
            .iter()
            .map(|p| ("allowed_paths", p))
            .chain(self.blocked_paths.iter().map(|p| ("blocked_paths", p)));
        for (field, p) in paths {
            if !(Path::new(p).is_absolute() || p == "~" || p.starts_with("~/")) {
                return Err(PolicyError::InvalidConfig {
                    field: format!("security.{field}"),
                    problem: format!("path {p:?} is relative"),
                    fix: "write an absolute path or one starting with ~/".into(),
                });
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Errors and results
// ---------------------------------------------------------------------------------------

/// Errors from managing grants (not refusals of calls: those are [`Denial`]s).
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    /// The grant store failed.
    #[error("grant store failed: {0}")]
    Storage(String),
    /// The audit log could not record a security event, so the change was not made.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The capability key is not in the catalog.
    #[error("unknown capability {0:?}; use a key from the capability catalog, e.g. \"network.http\"")]
    UnknownCapability(String),
    /// The extension id cannot be used as a grant key.
    #[error("invalid extension id {0:?}: it must be non-empty and contain no control characters")]
    InvalidExtension(String),
    /// The `[security]` configuration is wrong.
    #[error("invalid omni.toml: {field}: {problem} (fix: {fix})")]
    InvalidConfig {
        /// The field, e.g. `security.blocked_paths`.
        field: String,
        /// What is wrong.
        problem: String,
        /// What to do about it.
        fix: String,
    },
}

/// Every stored grant key of `extension`: its keys share the `grant_key(extension, "")` prefix.
fn grant_keys_of(grants: &redb::Table<'_, &str, &[u8]>, extension: &str) -> Result<Vec<String>, PolicyError> {
    let prefix = grant_key(extension, "");
    let mut keys = Vec::new();
    for entry in grants.range(prefix.as_str()..).map_err(storage)? {
        let (k, _) = entry.map_err(storage)?;
        if !k.value().starts_with(&prefix) {
            break;
        }
        keys.push(k.value().to_owned());
    }
    Ok(keys)
}

/// The capability whose revocation also deletes the extension's scheduled jobs.
const SCHEDULING: &str = "system.scheduling";

fn storage(e: impl Into<redb::Error>) -> PolicyError {
    PolicyError::Storage(e.into().to_string())
}

/// Why a call was refused. The message says what was refused, why, and what would allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// No grant allows it (or a person, a rule or the kill switch refused it).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The grant exists but the target is outside its scope.
    #[error("out of scope: {0}")]
    OutOfScope(String),
    /// Too many calls; retry after the given time.
    #[error("rate limited: {reason}")]
    RateLimited {
        /// How long until a call may succeed.
        retry_after: Duration,
        /// What was limited and how.
        reason: String,
    },
    /// The decision could not be made safely (e.g. the audit log is unavailable).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// An allowed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorized {
    /// The duration of the grant that allowed it (`Once` for a one-off prompt answer).
    pub duration: GrantDuration,
    /// Sequence number of the durable audit record, `None` when decisions are not audited.
    pub audit_seq: Option<u64>,
}

/// One call to check. See [`PolicyEngine::authorize`].
pub struct AccessRequest<'a> {
    /// The host session making the call.
    pub session: &'a str,
    /// The calling extension's id.
    pub extension: &'a str,
    /// The capability key, e.g. `"network.http"`.
    pub capability: &'a str,
    /// What is being accessed, e.g. `"GET https://api.x.com/v1"`; redacted before audit.
    /// For `filesystem.*` it is the path, optionally after an operation word and a space
    /// (`"/home/u/a.txt"` or `"read /home/u/a.txt"`); backends should pass the resolved path.
    pub target: &'a str,
    /// Checks the target against the granted scope; `Err` explains what is outside it.
    pub check_scope: &'a (dyn Fn(&Scope) -> Result<(), String> + Send + Sync),
}

/// A grant as listed by [`PolicyEngine::grants`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantInfo {
    /// Extension id.
    pub extension: String,
    /// Capability key.
    pub capability: String,
    /// The decision.
    pub decision: Decision,
    /// How long it lasts.
    pub duration: GrantDuration,
    /// The granted scope.
    pub scope: Scope,
    /// The reason shown when it was granted.
    pub reason: String,
    /// When the person decided.
    #[serde(with = "time::serde::rfc3339")]
    pub granted_at: OffsetDateTime,
}

// ---------------------------------------------------------------------------------------
// Prompting
// ---------------------------------------------------------------------------------------

/// What a [`Prompter`] is asked.
#[derive(Debug, Clone, Copy)]
pub struct PromptRequest<'a> {
    /// Session making the call.
    pub session: &'a str,
    /// Extension id.
    pub extension: &'a str,
    /// Capability key.
    pub capability: &'a str,
    /// The capability's severity.
    pub severity: Option<Severity>,
    /// What is being accessed (not redacted: the person must see what they approve).
    pub target: &'a str,
    /// The scope declared for the capability, if known.
    pub scope: Option<&'a Scope>,
    /// Why the extension says it needs the capability, or why the prompt happens.
    pub reason: &'a str,
    /// Whether "this session" and "always" may be offered. False when the scope is unknown
    /// or the capability is on the `confirm` list; then those answers count as "once".
    pub durable_choices: bool,
}

/// A person's answer to a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptAnswer {
    /// Allow this call only.
    AllowOnce,
    /// Allow until the host process ends.
    AllowSession,
    /// Allow until revoked (stored).
    AllowAlways,
    /// Refuse this call.
    Deny,
}

/// Asks a person to decide. Implementations: [`TerminalPrompter`], [`DenyPrompter`], and
/// the MCP server's elicitation. `ask` may block; async callers run it on a blocking thread.
///
/// The request's extension id, target, scope and reason come from the extension and its
/// manifest. Targets never hold control or invisible characters (the host refuses such a
/// host call before asking), but reasons and scopes are manifest text: show every field
/// through [`omni_capabilities::text::escape`], as [`TerminalPrompter`] does.
pub trait Prompter: Send + Sync {
    /// Asks and returns the answer; anything but a clear yes must be [`PromptAnswer::Deny`].
    fn ask(&self, req: &PromptRequest<'_>) -> PromptAnswer;
}

/// Refuses everything: the prompter for non-interactive hosts.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyPrompter;

impl Prompter for DenyPrompter {
    fn ask(&self, _req: &PromptRequest<'_>) -> PromptAnswer {
        PromptAnswer::Deny
    }
}

/// Asks on the terminal: the question on stderr, the answer from stdin. Denies when stdin
/// is not a terminal. Prompts from concurrent calls are asked one at a time.
#[derive(Debug, Default)]
pub struct TerminalPrompter {
    lock: Mutex<()>,
}

impl TerminalPrompter {
    /// A prompter on this process's terminal.
    pub fn new() -> TerminalPrompter {
        TerminalPrompter::default()
    }

    /// Writes the question to `out` and reads one line from `input`. Exposed so other
    /// front ends (and tests) can reuse the wording.
    ///
    /// Every field an extension or its manifest chose (id, target, scope, reason) is
    /// printed through [`omni_capabilities::text::escape`]: one line each, with no
    /// control, bidi or invisible character that could redraw or disguise the question.
    pub fn ask_with(req: &PromptRequest<'_>, input: &mut dyn BufRead, out: &mut dyn Write) -> PromptAnswer {
        use omni_capabilities::text::escape;
        let severity = req.severity.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
        let scope = req.scope.map_or_else(|| "not declared".to_owned(), |s| s.to_string());
        let choices = if req.durable_choices { "[o]nce, this [s]ession, [a]lways, [d]eny" } else { "[o]nce, [d]eny" };
        let question = format!(
            "\nExtension {ext} asks to use {cap} (severity: {severity})\n  target: {target}\n  scope:  {scope}\n  reason: {reason}\nAllow? {choices} (default: deny): ",
            ext = escape(req.extension),
            cap = escape(req.capability),
            target = escape(req.target),
            scope = escape(&scope),
            reason = escape(req.reason),
        );
        if out.write_all(question.as_bytes()).and_then(|()| out.flush()).is_err() {
            return PromptAnswer::Deny;
        }
        let mut line = String::new();
        if input.read_line(&mut line).is_err() {
            return PromptAnswer::Deny;
        }
        match line.trim().to_ascii_lowercase().as_str() {
            "o" | "once" | "y" | "yes" => PromptAnswer::AllowOnce,
            "s" | "session" if req.durable_choices => PromptAnswer::AllowSession,
            "a" | "always" if req.durable_choices => PromptAnswer::AllowAlways,
            _ => PromptAnswer::Deny,
        }
    }
}

impl Prompter for TerminalPrompter {
    fn ask(&self, req: &PromptRequest<'_>) -> PromptAnswer {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return PromptAnswer::Deny;
        }
        // One question at a time: interleaved prompts would be unreadable and ambiguous.
        let _turn = self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        TerminalPrompter::ask_with(req, &mut stdin.lock(), &mut std::io::stderr().lock())
    }
}

// ---------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct StoredGrant {
    extension: String,
    capability: String,
    decision: Decision,
    duration: GrantDuration,
    scope: Scope,
    reason: String,
    #[serde(with = "time::serde::rfc3339")]
    granted_at: OffsetDateTime,
}

#[derive(Debug)]
struct Grant {
    decision: Decision,
    duration: GrantDuration,
    scope: Scope,
    reason: String,
    granted_at: OffsetDateTime,
    /// Set by the one call that uses a `Once` grant.
    consumed: AtomicBool,
}

impl Grant {
    fn info(&self, extension: &str, capability: &str) -> GrantInfo {
        GrantInfo {
            extension: extension.to_owned(),
            capability: capability.to_owned(),
            decision: self.decision,
            duration: self.duration,
            scope: self.scope.clone(),
            reason: self.reason.clone(),
            granted_at: self.granted_at,
        }
    }
}

/// Revocations that outlive the grants they removed, so a revoked extension is refused
/// outright (never prompted) until a person grants again.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Lockdown {
    /// The kill switch was pulled; only extensions in `regranted` may run.
    killed: bool,
    regranted: HashSet<String>,
    /// Extensions whose grants were all revoked.
    revoked: HashSet<String>,
    /// `extension KEY_SEP capability` pairs revoked one by one.
    revoked_caps: HashSet<String>,
}

#[derive(Default)]
struct State {
    grants: HashMap<String, HashMap<String, Arc<Grant>>>,
    lockdown: Lockdown,
}

/// `[security]` turned into lookups that are cheap on every call.
struct Compiled {
    disabled: HashSet<String>,
    confirm: HashSet<String>,
    rate_limits: HashMap<String, RateLimit>,
    blocked: Vec<PathBuf>,
    allowed: Vec<PathBuf>,
}

struct Bucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(limit: RateLimit, now: Instant) -> Bucket {
        Bucket { limit, tokens: f64::from(limit.count), last: now }
    }

    /// Refills, then returns how long until one token is available (zero if one is).
    fn wait(&mut self, now: Instant) -> Duration {
        let per = self.limit.per.as_secs_f64().max(1e-9);
        let rate = f64::from(self.limit.count) / per;
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(self.limit.count));
        self.last = now;
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / rate)
        }
    }
}

struct Inner {
    db: Arc<Database>,
    audit: AuditLog,
    config: SecurityConfig,
    compiled: Compiled,
    prompter: Arc<dyn Prompter>,
    state: RwLock<State>,
    /// Bumped by every revocation, so a decision that waited on a prompt notices one.
    epoch: AtomicU64,
    buckets: Mutex<HashMap<String, Vec<Bucket>>>,
    load_problems: Vec<String>,
}

/// The permission engine. Cheap to clone; share one per database.
///
/// ```
/// # use std::sync::Arc;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use omni_capabilities::{Permission, Scope};
/// use omni_host::{audit::AuditLog, policy::*};
/// # let dir = tempfile::tempdir()?;
/// let db = Arc::new(redb::Database::create(dir.path().join("omni.redb"))?);
/// let audit = AuditLog::open(Arc::clone(&db))?;
/// let engine = PolicyEngine::open(db, audit, SecurityConfig::default(), Arc::new(DenyPrompter))?;
/// let permission = Permission {
///     capability: "clipboard.write".into(), scope: Scope::None,
///     reason: "copy results".into(), required: true,
/// };
/// engine.record_decision("com.example.notes", &permission, Decision::Allow, GrantDuration::Always)?;
/// let in_scope = |_: &Scope| Ok(());
/// let request = AccessRequest {
///     session: "s1", extension: "com.example.notes", capability: "clipboard.write",
///     target: "12 bytes", check_scope: &in_scope,
/// };
/// assert!(engine.authorize(&request).is_ok());
/// engine.revoke("com.example.notes", None)?;
/// assert!(matches!(engine.authorize(&request), Err(Denial::PermissionDenied(_))));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<Inner>,
}

impl fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyEngine").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

/// The decision reached before any blocking work (prompt, consumption, audit).
struct Verdict {
    result: Result<Authorized, Denial>,
    /// A `Once` grant to use up if the call is allowed.
    once: Option<Arc<Grant>>,
    reason: String,
}

impl Verdict {
    fn deny(denial: Denial) -> Verdict {
        let reason = denial.to_string();
        Verdict { result: Err(denial), once: None, reason }
    }

    fn allow(duration: GrantDuration, once: Option<Arc<Grant>>, reason: String) -> Verdict {
        Verdict { result: Ok(Authorized { duration, audit_seq: None }), once, reason }
    }
}

/// Everything needed to ask and act on the answer, owned so it can move to another thread.
struct PromptPlan {
    session: String,
    extension: String,
    capability: String,
    target: String,
    severity: Option<Severity>,
    scope: Option<Scope>,
    reason: String,
    durable_choices: bool,
    /// Duration and grant that apply if the person allows (a `confirm` prompt keeps them).
    granted: Option<(GrantDuration, Option<Arc<Grant>>)>,
    /// The grant the question was planned from (`None`: no grant, `default_policy`).
    from: Option<Arc<Grant>>,
    epoch: u64,
}

enum Step {
    Done(Verdict),
    Ask(Box<PromptPlan>),
}

fn grant_key(extension: &str, capability: &str) -> String {
    format!("{extension}{KEY_SEP}{capability}")
}

fn valid_extension(extension: &str) -> Result<(), PolicyError> {
    if extension.is_empty() || extension.chars().any(char::is_control) {
        return Err(PolicyError::InvalidExtension(extension.to_owned()));
    }
    Ok(())
}

impl PolicyEngine {
    /// Opens the engine on `db` (creating its tables), loading stored grants and
    /// revocations. `config` is validated first.
    pub fn open(
        db: Arc<Database>,
        audit: AuditLog,
        config: SecurityConfig,
        prompter: Arc<dyn Prompter>,
    ) -> Result<Self, PolicyError> {
        config.validate()?;
        let home = home_dir();
        let expand = |p: &str| normalize(&expand_home(p, home.as_deref()));
        let mut blocked: Vec<PathBuf> = DEFAULT_BLOCKED_PATHS
            .iter()
            .copied()
            .filter(|p| home.is_some() || !p.starts_with('~'))
            .chain(config.blocked_paths.iter().map(String::as_str))
            .map(expand)
            .collect();
        if let Some(dir) = &config.data_dir {
            blocked.push(normalize(dir));
        }
        // A blocked folder reached through a symlink is still blocked: keep its real
        // location too.
        let real: Vec<PathBuf> =
            blocked.iter().filter_map(|p| std::fs::canonicalize(p).ok()).filter(|r| !blocked.contains(r)).collect();
        blocked.extend(real);
        let compiled = Compiled {
            disabled: config.disabled_capabilities.iter().cloned().collect(),
            confirm: config.confirm.iter().cloned().collect(),
            rate_limits: config.rate_limits.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            blocked,
            allowed: config.allowed_paths.iter().map(|p| expand(p)).collect(),
        };

        let txn = db.begin_write().map_err(storage)?;
        {
            txn.open_table(GRANTS).map_err(storage)?;
            txn.open_table(STATE).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;

        let mut state = State::default();
        let mut load_problems = Vec::new();
        {
            let txn = db.begin_read().map_err(storage)?;
            let grants = txn.open_table(GRANTS).map_err(storage)?;
            for entry in grants.iter().map_err(storage)? {
                let (k, v) = entry.map_err(storage)?;
                match serde_json::from_slice::<StoredGrant>(v.value()) {
                    Ok(g) => {
                        let grant = Grant {
                            decision: g.decision,
                            duration: g.duration,
                            scope: g.scope,
                            reason: g.reason,
                            granted_at: g.granted_at,
                            consumed: AtomicBool::new(false),
                        };
                        state.grants.entry(g.extension).or_default().insert(g.capability, Arc::new(grant));
                    }
                    // An unreadable grant is ignored, which denies it: failing closed.
                    Err(e) => load_problems.push(format!(
                        "stored grant {:?} is unreadable and was ignored: {e}",
                        k.value().replace(KEY_SEP, " ")
                    )),
                }
            }
            let st = txn.open_table(STATE).map_err(storage)?;
            if let Some(v) = st.get(LOCKDOWN_KEY).map_err(storage)? {
                match serde_json::from_slice(v.value()) {
                    Ok(l) => state.lockdown = l,
                    Err(e) => {
                        // Fail closed: an unreadable revocation list is treated as a kill switch.
                        load_problems
                            .push(format!("stored revocations are unreadable ({e}); treating it as a kill switch"));
                        state.lockdown.killed = true;
                    }
                }
            }
        }
        Ok(PolicyEngine {
            inner: Arc::new(Inner {
                db,
                audit,
                config,
                compiled,
                prompter,
                state: RwLock::new(state),
                epoch: AtomicU64::new(0),
                buckets: Mutex::new(HashMap::new()),
                load_problems,
            }),
        })
    }

    /// Stored grants or revocations that could not be read when the engine opened (they are
    /// treated as refusals).
    pub fn load_problems(&self) -> &[String] {
        &self.inner.load_problems
    }

    /// The audit log the engine writes to.
    pub fn audit(&self) -> &AuditLog {
        &self.inner.audit
    }

    /// Every blocked path (the built-in list, `[security] blocked_paths` and Omni's data
    /// dir), expanded and normalized, plus the real location of each that is a symlink.
    pub fn blocked_paths(&self) -> &[PathBuf] {
        &self.inner.compiled.blocked
    }

    /// The `[security]` configuration in force.
    pub fn config(&self) -> &SecurityConfig {
        &self.inner.config
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // The state is only mutated by whole-value inserts and removals, so it stays
        // consistent even if a thread panicked while holding the lock.
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(
        &self,
        f: impl FnOnce(&mut redb::Table<&str, &[u8]>, &mut redb::Table<&str, &[u8]>) -> Result<(), PolicyError>,
    ) -> Result<(), PolicyError> {
        let mut txn = self.inner.db.begin_write().map_err(storage)?;
        txn.set_durability(Durability::Immediate).map_err(|e| PolicyError::Storage(e.to_string()))?;
        {
            let mut grants = txn.open_table(GRANTS).map_err(storage)?;
            let mut state = txn.open_table(STATE).map_err(storage)?;
            f(&mut grants, &mut state)?;
        }
        txn.commit().map_err(storage)
    }

    fn lockdown_bytes(lockdown: &Lockdown) -> Result<Vec<u8>, PolicyError> {
        serde_json::to_vec(lockdown).map_err(|e| PolicyError::Storage(e.to_string()))
    }

    /// Records a person's decision at install or review time: the only way, besides a
    /// person's answer to a prompt, to create a grant. Replaces any earlier decision for the
    /// same capability, clears revocations of the extension, and is audited (durably, before
    /// it takes effect). `Session` decisions stay in memory; `Once` and `Always` are stored.
    /// `Once` applies to allow decisions; a deny or prompt decision "once" lasts the session.
    pub fn record_decision(
        &self,
        extension: &str,
        permission: &Permission,
        decision: Decision,
        duration: GrantDuration,
    ) -> Result<(), PolicyError> {
        valid_extension(extension)?;
        let capability = permission.capability.as_str();
        if omni_capabilities::lookup(capability).is_none() {
            return Err(PolicyError::UnknownCapability(capability.to_owned()));
        }
        // "Once" means one allowed call; a refusal or a question has no call to use it up,
        // so it lasts for the session instead of lingering on disk.
        let duration = match (decision, duration) {
            (Decision::Deny | Decision::Prompt, GrantDuration::Once) => GrantDuration::Session,
            _ => duration,
        };
        self.inner.audit.append(NewRecord {
            capability: Some(capability.to_owned()),
            target: Some(permission.scope.to_string()),
            decision: Some(decision),
            duration: Some(duration),
            ..NewRecord::event(EventKind::Grant, extension, permission.reason.clone())
        })?;
        self.install_grant(
            extension,
            capability,
            decision,
            duration,
            permission.scope.clone(),
            permission.reason.clone(),
        )
    }

    fn install_grant(
        &self,
        extension: &str,
        capability: &str,
        decision: Decision,
        duration: GrantDuration,
        scope: Scope,
        reason: String,
    ) -> Result<(), PolicyError> {
        let grant = Grant {
            decision,
            duration,
            scope,
            reason,
            granted_at: OffsetDateTime::now_utc(),
            consumed: AtomicBool::new(false),
        };
        let key = grant_key(extension, capability);
        let stored = match duration {
            GrantDuration::Session => None,
            GrantDuration::Once | GrantDuration::Always => Some(
                serde_json::to_vec(&StoredGrant {
                    extension: extension.to_owned(),
                    capability: capability.to_owned(),
                    decision,
                    duration,
                    scope: grant.scope.clone(),
                    reason: grant.reason.clone(),
                    granted_at: grant.granted_at,
                })
                .map_err(|e| PolicyError::Storage(e.to_string()))?,
            ),
        };
        // Hold the state lock across the write so memory and disk change together.
        let mut state = self.write_state();
        let mut lockdown = state.lockdown.clone();
        lockdown.revoked.remove(extension);
        lockdown.revoked_caps.remove(&key);
        if lockdown.killed {
            lockdown.regranted.insert(extension.to_owned());
        }
        let lockdown_bytes = Self::lockdown_bytes(&lockdown)?;
        self.persist(|grants, st| {
            match &stored {
                Some(bytes) => grants.insert(key.as_str(), bytes.as_slice()).map_err(storage)?,
                // A newer session decision replaces a stored one.
                None => grants.remove(key.as_str()).map_err(storage)?,
            };
            st.insert(LOCKDOWN_KEY, lockdown_bytes.as_slice()).map_err(storage)?;
            Ok(())
        })?;
        state.lockdown = lockdown;
        state.grants.entry(extension.to_owned()).or_default().insert(capability.to_owned(), Arc::new(grant));
        Ok(())
    }

    /// Revokes the grants of `extension` (all, or one capability). Takes effect at once,
    /// in memory first, then on disk: the next host call of that extension is refused, and
    /// it stays refused (never prompted) until a person grants again. Revoking
    /// `system.scheduling` (or everything) also deletes the extension's scheduled jobs.
    /// Returns the number of grants removed.
    pub fn revoke(&self, extension: &str, capability: Option<&str>) -> Result<usize, PolicyError> {
        valid_extension(extension)?;
        let (removed, lockdown) = {
            let mut state = self.write_state();
            let removed: Vec<String> = match (capability, state.grants.get_mut(extension)) {
                (Some(cap), Some(caps)) => caps.remove(cap).map(|_| vec![cap.to_owned()]).unwrap_or_default(),
                (None, Some(_)) => {
                    state.grants.remove(extension).map(|caps| caps.into_keys().collect()).unwrap_or_default()
                }
                (_, None) => Vec::new(),
            };
            match capability {
                Some(cap) => drop(state.lockdown.revoked_caps.insert(grant_key(extension, cap))),
                None => drop(state.lockdown.revoked.insert(extension.to_owned())),
            }
            state.lockdown.regranted.remove(extension);
            self.inner.epoch.fetch_add(1, Ordering::SeqCst);
            (removed, state.lockdown.clone())
        };
        let lockdown_bytes = Self::lockdown_bytes(&lockdown)?;
        self.persist(|grants, st| {
            let doomed: Vec<String> = match capability {
                Some(cap) => vec![grant_key(extension, cap)],
                None => grant_keys_of(grants, extension)?,
            };
            for k in doomed {
                grants.remove(k.as_str()).map_err(storage)?;
            }
            st.insert(LOCKDOWN_KEY, lockdown_bytes.as_slice()).map_err(storage)?;
            Ok(())
        })?;
        if capability.is_none_or(|c| c == SCHEDULING) {
            crate::caps::scheduling::drop_stored_jobs(&self.inner.db, Some(extension))
                .map_err(|e| PolicyError::Storage(e.to_string()))?;
        }
        let what = capability.map_or_else(|| "all capabilities".to_owned(), |c| c.to_owned());
        self.inner.audit.append(NewRecord {
            capability: capability.map(str::to_owned),
            ..NewRecord::event(
                EventKind::Revoke,
                extension,
                format!("revoked {what}: {} grant(s) removed", removed.len()),
            )
        })?;
        Ok(removed.len())
    }

    /// Removes everything the engine knows about `extension` (grants, revocations, rate
    /// limit state); called on uninstall.
    pub fn forget_extension(&self, extension: &str) -> Result<(), PolicyError> {
        valid_extension(extension)?;
        let (removed, lockdown) = {
            let mut state = self.write_state();
            let removed = state.grants.remove(extension).map_or(0, |caps| caps.len());
            let prefix = grant_key(extension, "");
            state.lockdown.revoked.remove(extension);
            state.lockdown.regranted.remove(extension);
            state.lockdown.revoked_caps.retain(|k| !k.starts_with(&prefix));
            self.inner.epoch.fetch_add(1, Ordering::SeqCst);
            (removed, state.lockdown.clone())
        };
        self.inner
            .buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| !k.starts_with(&grant_key(extension, "")));
        let lockdown_bytes = Self::lockdown_bytes(&lockdown)?;
        self.persist(|grants, st| {
            for k in grant_keys_of(grants, extension)? {
                grants.remove(k.as_str()).map_err(storage)?;
            }
            st.insert(LOCKDOWN_KEY, lockdown_bytes.as_slice()).map_err(storage)?;
            Ok(())
        })?;
        if removed > 0 {
            self.inner.audit.append(NewRecord::event(
                EventKind::Revoke,
                extension,
                format!("extension forgotten (uninstalled): {removed} grant(s) removed"),
            ))?;
        }
        Ok(())
    }

    /// Revokes every grant of every extension at once and persists it, and deletes every
    /// scheduled job. Calls in flight are refused at their next host call, and every
    /// extension must be granted again before it can run. Returns the number of grants removed.
    pub fn kill_switch(&self) -> Result<usize, PolicyError> {
        let (removed, lockdown) = {
            let mut state = self.write_state();
            let removed = state.grants.values().map(HashMap::len).sum::<usize>();
            state.grants.clear();
            state.lockdown.killed = true;
            state.lockdown.regranted.clear();
            self.inner.epoch.fetch_add(1, Ordering::SeqCst);
            (removed, state.lockdown.clone())
        };
        let lockdown_bytes = Self::lockdown_bytes(&lockdown)?;
        self.persist(|grants, st| {
            grants.retain(|_, _| false).map_err(storage)?;
            st.insert(LOCKDOWN_KEY, lockdown_bytes.as_slice()).map_err(storage)?;
            Ok(())
        })?;
        crate::caps::scheduling::drop_stored_jobs(&self.inner.db, None)
            .map_err(|e| PolicyError::Storage(e.to_string()))?;
        self.inner.audit.append(NewRecord::event(
            EventKind::KillSwitch,
            "",
            format!("kill switch: {removed} grant(s) revoked; every extension must be granted again"),
        ))?;
        Ok(removed)
    }

    /// Whether the kill switch is in force (until every extension is granted again, new
    /// ones included, it refuses extensions nobody re-granted).
    pub fn kill_switch_engaged(&self) -> bool {
        self.read_state().lockdown.killed
    }

    /// The current grants (all extensions, or one), sorted by extension and capability.
    /// Used-up one-time grants are left out.
    pub fn grants(&self, extension: Option<&str>) -> Result<Vec<GrantInfo>, PolicyError> {
        let state = self.read_state();
        let mut out: Vec<GrantInfo> = state
            .grants
            .iter()
            .filter(|(ext, _)| extension.is_none_or(|e| e == ext.as_str()))
            .flat_map(|(ext, caps)| {
                caps.iter().filter(|(_, g)| !g.consumed.load(Ordering::SeqCst)).map(move |(cap, g)| g.info(ext, cap))
            })
            .collect();
        out.sort_by(|a, b| (&a.extension, &a.capability).cmp(&(&b.extension, &b.capability)));
        Ok(out)
    }

    /// Whether the capability may be linked for this extension now: it is not disabled or
    /// revoked, and an unused allow or prompt grant exists, or `default_policy = "prompt"`.
    pub fn linkable(&self, extension: &str, capability: &str) -> bool {
        if self.inner.compiled.disabled.contains(capability) {
            return false;
        }
        let state = self.read_state();
        if Self::locked_out(&state.lockdown, extension, capability).is_some() {
            return false;
        }
        match state.grants.get(extension).and_then(|caps| caps.get(capability)) {
            Some(g) => match g.decision {
                Decision::Allow | Decision::Prompt => !g.consumed.load(Ordering::SeqCst),
                Decision::Deny => false,
            },
            None => self.inner.config.default_policy == DefaultPolicy::Prompt,
        }
    }

    /// Whether updating from `old` to `new` needs a new review: true when `new` adds a
    /// capability, widens a scope (a limit counts at its effective value, the host's
    /// default when unset) or raises a `[runtime]` limit (memory, CPU time per call,
    /// calls at once); narrowing or removing does not.
    pub fn needs_review(old: &Manifest, new: &Manifest) -> bool {
        let wider_scope = new
            .permissions
            .iter()
            .any(|n| !old.permissions.iter().any(|o| o.capability == n.capability && n.scope.is_within(&o.scope)));
        wider_scope || !new.runtime.is_within(&old.runtime)
    }

    fn locked_out(lockdown: &Lockdown, extension: &str, capability: &str) -> Option<String> {
        if lockdown.killed && !lockdown.regranted.contains(extension) {
            return Some(format!(
                "{extension} may not use {capability}: the kill switch revoked every grant; review and grant it again with `omni install <dir>`"
            ));
        }
        if lockdown.revoked.contains(extension) {
            return Some(format!("{extension} may not use {capability}: its grants were revoked; grant them again with `omni install <dir>`"));
        }
        if !lockdown.revoked_caps.is_empty() && lockdown.revoked_caps.contains(&grant_key(extension, capability)) {
            return Some(format!(
                "{extension} may not use {capability}: that grant was revoked; grant it again with `omni install <dir>`"
            ));
        }
        None
    }

    /// The check run on every host call. See the module documentation for the order of
    /// the rules. Returns only after the decision is durable in the audit log (when
    /// `audit_enabled`); an allow that cannot be recorded becomes [`Denial::Unavailable`].
    ///
    /// Blocks while prompting and committing; from async code use
    /// [`PolicyEngine::authorize_async`].
    pub fn authorize(&self, req: &AccessRequest<'_>) -> Result<Authorized, Denial> {
        let verdict = match self.evaluate(req) {
            Step::Done(v) => v,
            Step::Ask(plan) => {
                let answer = self.inner.prompter.ask(&prompt_request(&plan));
                self.after_prompt(*plan, answer)
            }
        };
        let verdict = self.consume_once(verdict, req.extension, req.capability);
        self.record(req, verdict)
    }

    /// [`PolicyEngine::authorize`] for async hosts: never blocks the runtime (the prompter and
    /// disk writes run on Tokio's blocking pool; the audit wait is async). Needs a Tokio
    /// runtime.
    pub async fn authorize_async(&self, req: &AccessRequest<'_>) -> Result<Authorized, Denial> {
        let (result, denial_record) = self.authorize_deferring_denial(req).await;
        if let Some(record) = denial_record {
            // A refusal stands whether or not it could be recorded.
            let _ = self.inner.audit.append_async(record).await;
        }
        result
    }

    /// [`PolicyEngine::authorize_async`], except that the audit record of a refusal is
    /// handed back instead of written, for callers that bound how many refusals of one
    /// call reach the log (see `caps::Refusals`). An allow is recorded before this
    /// returns, as always.
    pub(crate) async fn authorize_deferring_denial(
        &self,
        req: &AccessRequest<'_>,
    ) -> (Result<Authorized, Denial>, Option<NewRecord>) {
        let verdict = match self.evaluate(req) {
            Step::Done(v) => v,
            Step::Ask(plan) => {
                let engine = self.clone();
                let joined = tokio::task::spawn_blocking(move || {
                    let answer = engine.inner.prompter.ask(&prompt_request(&plan));
                    engine.after_prompt(*plan, answer)
                })
                .await;
                joined.unwrap_or_else(|e| {
                    Verdict::deny(Denial::Unavailable(format!(
                        "the prompt for {} failed ({e}); nothing was allowed",
                        req.capability
                    )))
                })
            }
        };
        let verdict = if verdict.once.is_some() && verdict.result.is_ok() {
            let engine = self.clone();
            let (extension, capability) = (req.extension.to_owned(), req.capability.to_owned());
            let joined =
                tokio::task::spawn_blocking(move || engine.consume_once(verdict, &extension, &capability)).await;
            joined.unwrap_or_else(|e| {
                Verdict::deny(Denial::Unavailable(format!(
                    "using the one-time grant of {} failed ({e})",
                    req.capability
                )))
            })
        } else {
            verdict
        };
        let record = self.audit_record(req, &verdict);
        if verdict.result.is_err() {
            return (verdict.result, record);
        }
        match record {
            Some(rec) => {
                let outcome = self.inner.audit.append_async(rec).await;
                (Self::finish(req, verdict, outcome), None)
            }
            None => (verdict.result, None),
        }
    }

    /// All the rules that need no waiting.
    fn evaluate(&self, req: &AccessRequest<'_>) -> Step {
        let (ext, cap) = (req.extension, req.capability);
        let compiled = &self.inner.compiled;
        let Some(info) = omni_capabilities::lookup(cap) else {
            return Step::Done(Verdict::deny(Denial::PermissionDenied(format!(
                "{ext} asked for unknown capability {cap:?}; only catalog capabilities can be granted"
            ))));
        };
        if compiled.disabled.contains(cap) {
            return Step::Done(Verdict::deny(Denial::PermissionDenied(format!(
                "{ext} may not use {cap}: it is disabled by disabled_capabilities in the [security] section of omni.toml; remove it there to allow it"
            ))));
        }
        let epoch = self.inner.epoch.load(Ordering::SeqCst);
        let grant = {
            let state = self.read_state();
            if let Some(why) = Self::locked_out(&state.lockdown, ext, cap) {
                return Step::Done(Verdict::deny(Denial::PermissionDenied(why)));
            }
            state.grants.get(ext).and_then(|caps| caps.get(cap)).cloned()
        };
        if self.inner.config.read_only && WRITE_CAPABILITIES.contains(&cap) {
            return Step::Done(Verdict::deny(Denial::PermissionDenied(format!(
                "{ext} may not use {cap}: omni.toml sets read_only = true in [security]; set it to false to allow writes"
            ))));
        }
        if cap.starts_with("filesystem.") {
            if let Err(denial) = self.check_paths(ext, cap, req.target) {
                return Step::Done(Verdict::deny(denial));
            }
        }
        let grant = grant.filter(|g| !(g.duration == GrantDuration::Once && g.consumed.load(Ordering::SeqCst)));
        let confirm = compiled.confirm.contains(cap);
        let plan = |scope: Option<Scope>, reason: String, durable: bool, granted, from| {
            Step::Ask(Box::new(PromptPlan {
                session: req.session.to_owned(),
                extension: ext.to_owned(),
                capability: cap.to_owned(),
                target: req.target.to_owned(),
                severity: Some(info.severity),
                scope,
                reason,
                durable_choices: durable,
                granted,
                from,
                epoch,
            }))
        };
        let Some(grant) = grant else {
            return match self.inner.config.default_policy {
                DefaultPolicy::Deny => Step::Done(Verdict::deny(Denial::PermissionDenied(format!(
                    "{ext} has no grant for {cap} and default_policy is \"deny\"; grant it with `omni install <dir>`, or set default_policy = \"prompt\" in [security]"
                )))),
                DefaultPolicy::Prompt => {
                    // The declared scope is unknown here; remembering the answer would grant
                    // an unbounded scope, so only scope-less capabilities get durable choices.
                    let scope = Scope::parse(info, None, "scope").ok();
                    let durable = scope.is_some() && !confirm;
                    if let Some(s) = &scope {
                        if let Err(why) = (req.check_scope)(s) {
                            return Step::Done(Verdict::deny(out_of_scope(ext, cap, req.target, &why)));
                        }
                    }
                    if let Err(d) = self.take_rate(ext, cap, None) {
                        return Step::Done(Verdict::deny(d));
                    }
                    plan(scope, "no grant exists and default_policy is \"prompt\"".into(), durable, None, None)
                }
            };
        };
        if grant.decision == Decision::Deny {
            return Step::Done(Verdict::deny(Denial::PermissionDenied(format!(
                "a person denied {cap} to {ext} ({}); to change it, run `omni grants revoke {ext} {cap}` and grant it with `omni install <dir>`",
                grant.duration
            ))));
        }
        if let Err(why) = (req.check_scope)(&grant.scope) {
            return Step::Done(Verdict::deny(out_of_scope(ext, cap, req.target, &why)));
        }
        if let Err(d) = self.take_rate(ext, cap, grant.scope.rate_limit()) {
            return Step::Done(Verdict::deny(d));
        }
        let once = (grant.duration == GrantDuration::Once).then(|| Arc::clone(&grant));
        match grant.decision {
            Decision::Prompt => {
                plan(Some(grant.scope.clone()), grant.reason.clone(), !confirm, None, Some(Arc::clone(&grant)))
            }
            _ if confirm => plan(
                Some(grant.scope.clone()),
                format!("{cap} is on the confirm list in [security]; {}", grant.reason),
                false,
                Some((grant.duration, once)),
                Some(Arc::clone(&grant)),
            ),
            _ => Step::Done(Verdict::allow(grant.duration, once, format!("allowed by the {} grant", grant.duration))),
        }
    }

    fn check_paths(&self, ext: &str, cap: &str, target: &str) -> Result<(), Denial> {
        self.check_path(ext, cap, &resolve_path(fs_target_path(target)))
    }

    /// Applies the `[security]` path rules (blocked paths, which always win, then
    /// `allowed_paths` when set) to `path`, as the engine does for every filesystem
    /// target. Backends whose targets hold paths in another form (`code.intelligence`)
    /// call it directly. `path` should be absolute and free of `.` and `..`
    /// ([`resolve_path`]); its real location (symlinks followed) is checked too.
    pub fn check_path(&self, ext: &str, cap: &str, lexical: &Path) -> Result<(), Denial> {
        let compiled = &self.inner.compiled;
        let lexical = lexical.to_path_buf();
        // Following symlinks catches a link that points into a blocked directory.
        let resolved = std::fs::canonicalize(&lexical).ok();
        let candidates = std::iter::once(&lexical).chain(resolved.as_ref());
        for p in candidates.clone() {
            if let Some(b) = compiled.blocked.iter().find(|b| p.starts_with(b)) {
                return Err(Denial::PermissionDenied(format!(
                    "{ext} may not use {cap} on {}: it is under the blocked path {} ([security] blocked_paths and the built-in list); no grant can override this",
                    lexical.display(),
                    b.display()
                )));
            }
        }
        if !compiled.allowed.is_empty() {
            for p in candidates {
                if !compiled.allowed.iter().any(|a| p.starts_with(a)) {
                    let list: Vec<String> = compiled.allowed.iter().map(|a| a.display().to_string()).collect();
                    return Err(Denial::PermissionDenied(format!(
                        "{ext} may not use {cap} on {}: it is outside [security] allowed_paths ({}); add a parent directory there to allow it",
                        p.display(),
                        list.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    /// Takes one token from every limit that applies, or none if any is empty.
    fn take_rate(&self, ext: &str, cap: &str, scope_limit: Option<RateLimit>) -> Result<(), Denial> {
        let global = self.inner.compiled.rate_limits.get(cap).copied();
        if scope_limit.is_none() && global.is_none() {
            return Ok(());
        }
        let limits: Vec<RateLimit> = scope_limit.into_iter().chain(global).collect();
        let now = Instant::now();
        let mut buckets = self.inner.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let entry = buckets.entry(grant_key(ext, cap)).or_default();
        // A changed limit (new grant or config) starts a fresh bucket.
        if entry.len() != limits.len() || entry.iter().zip(&limits).any(|(b, l)| b.limit != *l) {
            *entry = limits.iter().map(|l| Bucket::new(*l, now)).collect();
        }
        let mut worst: Option<(Duration, RateLimit)> = None;
        for b in entry.iter_mut() {
            let wait = b.wait(now);
            if wait > Duration::ZERO && worst.is_none_or(|(w, _)| wait > w) {
                worst = Some((wait, b.limit));
            }
        }
        if let Some((retry_after, limit)) = worst {
            return Err(Denial::RateLimited {
                retry_after,
                reason: format!(
                    "{ext} reached the limit of {limit} calls to {cap}; retry in {:.1}s (limits come from the grant's scope and [security.rate_limits])",
                    retry_after.as_secs_f64()
                ),
            });
        }
        for b in entry.iter_mut() {
            b.tokens -= 1.0;
        }
        Ok(())
    }

    fn after_prompt(&self, plan: PromptPlan, answer: PromptAnswer) -> Verdict {
        let PromptPlan { extension: ext, capability: cap, target, .. } = &plan;
        if self.inner.epoch.load(Ordering::SeqCst) != plan.epoch
            && Self::locked_out(&self.read_state().lockdown, ext, cap).is_some()
        {
            return Verdict::deny(Denial::PermissionDenied(format!(
                "{ext} may not use {cap}: its grants were revoked while the prompt was open"
            )));
        }
        // A prompt can stay open for minutes; the answer applies to the grant as it is now.
        let current = self.read_state().grants.get(ext).and_then(|caps| caps.get(cap)).cloned();
        let changed = match (&plan.from, &current) {
            (_, Some(now)) if now.decision == Decision::Deny => Some("a person denied it"),
            (Some(_), None) => Some("its grant was revoked"),
            (Some(then), Some(now)) if !Arc::ptr_eq(then, now) && then.scope != now.scope => {
                Some("its grant was replaced with another scope")
            }
            _ => None,
        };
        if let Some(what) = changed {
            return Verdict::deny(Denial::PermissionDenied(format!(
                "{ext} may not use {cap} on {target}: {what} while the prompt was open, so the answer no longer applies"
            )));
        }
        // "Session" and "always" are honoured only where they were offered (a known scope,
        // not a confirm prompt); elsewhere they mean "once".
        let durable_scope = match answer {
            PromptAnswer::AllowSession | PromptAnswer::AllowAlways if plan.durable_choices => plan.scope.clone(),
            _ => None,
        };
        let answer = match (answer, &durable_scope) {
            (PromptAnswer::Deny, _) => PromptAnswer::Deny,
            (_, None) => PromptAnswer::AllowOnce,
            (a, Some(_)) => a,
        };
        match (answer, plan.granted.clone(), durable_scope) {
            (PromptAnswer::Deny, ..) => Verdict::deny(Denial::PermissionDenied(format!(
                "{cap} for {ext} on {target} needs a person's approval and it was not given (refused at the prompt, or no interactive prompter); grant it ahead of time with `omni install <dir>`"
            ))),
            (PromptAnswer::AllowOnce, Some((duration, once)), _) => Verdict::allow(duration, once, "confirmed by a person at the prompt".into()),
            (PromptAnswer::AllowOnce, None, _) | (_, _, None) => Verdict::allow(GrantDuration::Once, None, "allowed once by a person at the prompt".into()),
            (PromptAnswer::AllowSession | PromptAnswer::AllowAlways, _, Some(scope)) => {
                let duration = if answer == PromptAnswer::AllowAlways { GrantDuration::Always } else { GrantDuration::Session };
                let reason = format!("allowed for {duration} by a person at the prompt");
                let recorded = self
                    .inner
                    .audit
                    .append(NewRecord {
                        session: plan.session.clone(),
                        capability: Some(cap.clone()),
                        target: Some(scope.to_string()),
                        decision: Some(Decision::Allow),
                        duration: Some(duration),
                        ..NewRecord::event(EventKind::Grant, ext, reason.clone())
                    })
                    .map_err(PolicyError::from)
                    .and_then(|_| self.install_grant(ext, cap, Decision::Allow, duration, scope, reason.clone()));
                match recorded {
                    Ok(()) => Verdict::allow(duration, None, reason),
                    Err(e) => Verdict::deny(Denial::Unavailable(format!("the grant of {cap} to {ext} could not be saved ({e}); nothing was allowed"))),
                }
            }
        }
    }

    /// Uses up a one-time grant: exactly one concurrent caller wins, and the removal is on
    /// disk before the call runs, so a crash cannot hand it out twice.
    fn consume_once(&self, verdict: Verdict, ext: &str, cap: &str) -> Verdict {
        let Some(grant) = &verdict.once else { return verdict };
        if verdict.result.is_err() {
            return verdict;
        }
        if grant.consumed.swap(true, Ordering::SeqCst) {
            return Verdict::deny(Denial::PermissionDenied(format!(
                "the one-time grant of {cap} to {ext} was already used; grant it again with `omni install <dir>`"
            )));
        }
        let key = grant_key(ext, cap);
        let removed = self.persist(|grants, _| {
            // Only remove the stored grant if it is still this one-time grant; a newer
            // decision may have replaced it meanwhile.
            let still_once = match grants.get(key.as_str()).map_err(storage)? {
                Some(v) => serde_json::from_slice::<StoredGrant>(v.value())
                    .is_ok_and(|g| g.duration == GrantDuration::Once && g.granted_at == grant.granted_at),
                None => false,
            };
            if still_once {
                grants.remove(key.as_str()).map_err(storage)?;
            }
            Ok(())
        });
        if let Err(e) = removed {
            return Verdict::deny(Denial::Unavailable(format!("the one-time grant of {cap} to {ext} could not be marked used ({e}); refusing so it cannot be used twice")));
        }
        let mut state = self.write_state();
        if let Some(caps) = state.grants.get_mut(ext) {
            if caps.get(cap).is_some_and(|g| Arc::ptr_eq(g, grant)) {
                caps.remove(cap);
            }
        }
        verdict
    }

    fn audit_record(&self, req: &AccessRequest<'_>, verdict: &Verdict) -> Option<NewRecord> {
        if !self.inner.config.audit_enabled {
            return None;
        }
        let (decision, duration) = match &verdict.result {
            Ok(a) => (Decision::Allow, Some(a.duration)),
            Err(_) => (Decision::Deny, None),
        };
        Some(NewRecord::decision(
            req.session,
            req.extension,
            req.capability,
            req.target,
            decision,
            duration,
            verdict.reason.clone(),
        ))
    }

    fn record(&self, req: &AccessRequest<'_>, verdict: Verdict) -> Result<Authorized, Denial> {
        match self.audit_record(req, &verdict) {
            Some(rec) => {
                let outcome = self.inner.audit.append(rec);
                Self::finish(req, verdict, outcome)
            }
            None => verdict.result,
        }
    }

    fn finish(
        req: &AccessRequest<'_>,
        verdict: Verdict,
        outcome: Result<u64, AuditError>,
    ) -> Result<Authorized, Denial> {
        match (verdict.result, outcome) {
            (Ok(a), Ok(seq)) => Ok(Authorized { audit_seq: Some(seq), ..a }),
            (Ok(_), Err(e)) => Err(Denial::Unavailable(format!(
                "{} for {} was allowed but the audit log could not record it ({e}); refusing, since every allowed action is recorded before it runs",
                req.capability, req.extension
            ))),
            (Err(d), _) => Err(d),
        }
    }
}

fn prompt_request(plan: &PromptPlan) -> PromptRequest<'_> {
    PromptRequest {
        session: &plan.session,
        extension: &plan.extension,
        capability: &plan.capability,
        severity: plan.severity,
        target: &plan.target,
        scope: plan.scope.as_ref(),
        reason: &plan.reason,
        durable_choices: plan.durable_choices,
    }
}

/// An out-of-scope refusal names the rule that failed, not the whole granted scope: a
/// scope can be tens of kilobytes (hundreds of domains), and this message is repeated
/// for every refused call, to the guest, the caller and the audit log. `omni grants
/// list` shows the scope in full.
fn out_of_scope(ext: &str, cap: &str, target: &str, why: &str) -> Denial {
    use omni_capabilities::text::truncate;
    Denial::OutOfScope(format!(
        "{ext} may not use {cap} on {}: {}; `omni grants list {ext}` shows the granted scope; to allow it, widen the scope in the manifest and review the update with `omni install <dir>`",
        truncate(target, 200),
        truncate(why, 300)
    ))
}

// ---------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------

/// The user's home directory, which `~` in paths stands for.
pub(crate) fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE")).filter(|h| !h.is_empty()).map(PathBuf::from)
}

/// `~` and `~/x` expanded against `home`; anything else unchanged.
pub(crate) fn expand_home(path: &str, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix('~'), home) {
        (Some(""), Some(h)) => h.to_path_buf(),
        (Some(rest), Some(h)) if rest.starts_with('/') || rest.starts_with('\\') => h.join(&rest[1..]),
        _ => PathBuf::from(path),
    }
}

/// The path in a filesystem target: the whole target, or what follows an operation word.
fn fs_target_path(target: &str) -> &str {
    let t = target.trim();
    if t.starts_with(['/', '~', '.']) || Path::new(t).is_absolute() {
        return t;
    }
    match t.split_once(' ') {
        Some((_op, rest)) => rest.trim_start(),
        None => t,
    }
}

/// A path as the permission engine compares it: `~` expanded, made absolute, `.` and
/// `..` resolved without touching the disk.
pub fn resolve_path(path: &str) -> PathBuf {
    normalize(&expand_home(path, home_dir().as_deref()))
}

/// Resolves `.` and `..` without touching the disk; relative paths are taken from the
/// current directory. `..` never climbs above the root.
fn normalize(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| Path::new("/").join(path))
    };
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditFilter;
    use std::sync::atomic::AtomicUsize;

    struct Fixture {
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("omni.redb");
            Fixture { _dir: dir, path }
        }

        fn engine(&self, config: SecurityConfig, prompter: Arc<dyn Prompter>) -> PolicyEngine {
            let db = Arc::new(Database::create(&self.path).expect("db"));
            let audit = AuditLog::open(Arc::clone(&db)).expect("audit");
            PolicyEngine::open(db, audit, config, prompter).expect("engine")
        }
    }

    fn scope(cap: &str, toml_src: &str) -> Scope {
        let info = omni_capabilities::lookup(cap).expect("known capability");
        let value: toml::Value = toml::from_str(toml_src).expect("toml");
        Scope::parse(info, Some(&value), "scope").expect("valid scope")
    }

    fn perm(cap: &str, scope: Scope) -> Permission {
        Permission { capability: cap.into(), scope, reason: "test".into(), required: true }
    }

    fn http() -> Permission {
        perm("network.http", scope("network.http", "domains = ['api.example.com']"))
    }

    fn ok_scope(_: &Scope) -> Result<(), String> {
        Ok(())
    }

    fn req<'a>(ext: &'a str, cap: &'a str, target: &'a str) -> AccessRequest<'a> {
        AccessRequest { session: "s1", extension: ext, capability: cap, target, check_scope: &ok_scope }
    }

    /// Counts prompts and answers with a fixed answer.
    struct Scripted {
        answer: PromptAnswer,
        asked: AtomicUsize,
    }

    impl Scripted {
        fn new(answer: PromptAnswer) -> Arc<Scripted> {
            Arc::new(Scripted { answer, asked: AtomicUsize::new(0) })
        }
    }

    impl Prompter for Scripted {
        fn ask(&self, _req: &PromptRequest<'_>) -> PromptAnswer {
            self.asked.fetch_add(1, Ordering::SeqCst);
            self.answer
        }
    }

    fn deny_prompter() -> Arc<dyn Prompter> {
        Arc::new(DenyPrompter)
    }

    #[test]
    fn always_survives_restart_and_session_does_not() {
        let fx = Fixture::new();
        {
            let engine = fx.engine(SecurityConfig::default(), deny_prompter());
            engine.record_decision("ext.always", &http(), Decision::Allow, GrantDuration::Always).expect("grant");
            engine.record_decision("ext.session", &http(), Decision::Allow, GrantDuration::Session).expect("grant");
            assert!(engine.authorize(&req("ext.always", "network.http", "GET https://api.example.com/")).is_ok());
            assert!(engine.authorize(&req("ext.session", "network.http", "GET https://api.example.com/")).is_ok());
        }
        let engine = fx.engine(SecurityConfig::default(), deny_prompter());
        let allowed = engine
            .authorize(&req("ext.always", "network.http", "GET https://api.example.com/"))
            .expect("always survives");
        assert_eq!(allowed.duration, GrantDuration::Always);
        assert!(matches!(
            engine.authorize(&req("ext.session", "network.http", "GET https://api.example.com/")),
            Err(Denial::PermissionDenied(_))
        ));
        let listed: Vec<_> = engine.grants(None).expect("grants").into_iter().map(|g| g.extension).collect();
        assert_eq!(listed, vec!["ext.always".to_string()]);
    }

    #[test]
    fn once_is_consumed_exactly_once_under_32_concurrent_checks() {
        let fx = Fixture::new();
        let engine = fx.engine(SecurityConfig::default(), deny_prompter());
        engine.record_decision("ext.once", &http(), Decision::Allow, GrantDuration::Once).expect("grant");
        let barrier = std::sync::Barrier::new(32);
        let wins = std::thread::scope(|s| {
            let handles: Vec<_> = (0..32)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        engine.authorize(&req("ext.once", "network.http", "GET https://api.example.com/")).is_ok()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("join")).filter(|ok| *ok).count()
        });
        assert_eq!(wins, 1);
        assert!(engine.grants(Some("ext.once")).expect("grants").is_empty());
        // Used up on disk too: a restart does not bring it back.
        drop(engine);
        let engine = fx.engine(SecurityConfig::default(), deny_prompter());
        assert!(engine.authorize(&req("ext.once", "network.http", "GET https://api.example.com/")).is_err());
    }

    #[test]
    fn default_prompt_reaches_the_prompter_and_default_deny_never_does() {
        let fx = Fixture::new();
        let prompter = Scripted::new(PromptAnswer::AllowOnce);
        let config = SecurityConfig { default_policy: DefaultPolicy::Prompt, ..SecurityConfig::default() };
        let engine = fx.engine(config, prompter.clone());
        let ok = engine.authorize(&req("ext.p", "clipboard.write", "text")).expect("allowed at prompt");
        assert_eq!(ok.duration, GrantDuration::Once);
        assert_eq!(prompter.asked.load(Ordering::SeqCst), 1);
        assert!(engine.linkable("ext.p", "clipboard.write"));
        drop(engine);

        let fx = Fixture::new();
        let prompter = Scripted::new(PromptAnswer::AllowAlways);
        let engine = fx.engine(SecurityConfig::default(), prompter.clone());
        let denied = engine.authorize(&req("ext.p", "clipboard.write", "text")).expect_err("denied");
        assert!(denied.to_string().contains("omni install"), "{denied}");
        assert_eq!(prompter.asked.load(Ordering::SeqCst), 0);
        assert!(!engine.linkable("ext.p", "clipboard.write"));
    }

    #[test]
    fn prompt_answers_for_session_and_always_become_grants() {
        let fx = Fixture::new();
        let prompter = Scripted::new(PromptAnswer::AllowAlways);
        let engine = fx.engine(SecurityConfig::default(), prompter.clone());
        engine.record_decision("ext.p", &http(), Decision::Prompt, GrantDuration::Always).expect("grant");
        let ok = engine.authorize(&req("ext.p", "network.http", "GET https://api.example.com/")).expect("allowed");
        assert_eq!(ok.duration, GrantDuration::Always);
        // Now an allow grant: no more prompts.
        engine.authorize(&req("ext.p", "network.http", "GET https://api.example.com/")).expect("allowed");
        assert_eq!(prompter.asked.load(Ordering::SeqCst), 1);
        let g = engine.grants(Some("ext.p")).expect("grants");
        assert_eq!((g[0].decision, g[0].duration), (Decision::Allow, GrantDuration::Always));
        assert_eq!(g[0].scope, http().scope);
        // A scoped capability without a known scope never gets a remembered answer.
        let fx = Fixture::new();
        let config = SecurityConfig { default_policy: DefaultPolicy::Prompt, ..SecurityConfig::default() };
        let engine = fx.engine(config, prompter.clone());
        let ok = engine.authorize(&req("ext.q", "network.http", "GET https://x.test/")).expect("allowed once");
        assert_eq!(ok.duration, GrantDuration::Once);
        assert!(engine.grants(Some("ext.q")).expect("grants").is_empty());
    }

    #[test]
    fn deny_prompter_and_confirm_list() {
        let fx = Fixture::new();
        let config = SecurityConfig { confirm: vec!["network.http".into()], ..SecurityConfig::default() };
        let engine = fx.engine(config, deny_prompter());
        engine.record_decision("ext.c", &http(), Decision::Allow, GrantDuration::Always).expect("grant");
        let d = engine
            .authorize(&req("ext.c", "network.http", "GET https://api.example.com/"))
            .expect_err("needs confirmation");
        assert!(matches!(d, Denial::PermissionDenied(_)), "{d}");
        // A refusal at a confirm prompt does not remove the grant.
        assert_eq!(engine.grants(Some("ext.c")).expect("grants").len(), 1);
    }

    #[test]
    fn blocked_paths_win_over_a_broader_grant() {
        let fx = Fixture::new();
        let home = fx.path.parent().expect("dir").join("home");
        let secret = home.join("secrets");
        std::fs::create_dir_all(&secret).expect("mkdir");
        let config = SecurityConfig { blocked_paths: vec![secret.display().to_string()], ..SecurityConfig::default() };
        let engine = fx.engine(config, deny_prompter());
        let granted = scope("filesystem.read", &format!("paths = ['{}']", home.display()));
        engine
            .record_decision("ext.fs", &perm("filesystem.read", granted), Decision::Allow, GrantDuration::Always)
            .expect("grant");
        // The check a filesystem backend runs: the granted scope's own path matching.
        let fs_check = |target: &str| {
            let path = PathBuf::from(fs_target_path(target));
            move |s: &Scope| s.as_fs().ok_or_else(|| "not a filesystem scope".to_owned())?.check_path(&path, None)
        };
        let notes = home.join("notes.txt").display().to_string();
        let c1 = fs_check(&notes);
        assert!(engine
            .authorize(&AccessRequest { check_scope: &c1, ..req("ext.fs", "filesystem.read", &notes) })
            .is_ok());
        let key = secret.join("key.pem").display().to_string();
        let c2 = fs_check(&key);
        assert!(c2(&engine.grants(Some("ext.fs")).expect("grants")[0].scope).is_ok(), "the grant alone would allow it");
        let d = engine
            .authorize(&AccessRequest { check_scope: &c2, ..req("ext.fs", "filesystem.read", &key) })
            .expect_err("blocked");
        assert!(d.to_string().contains("blocked path"), "{d}");
        // `..` tricks and operation prefixes do not get around it.
        let sneaky = format!("read {}/../secrets/key.pem", home.join("sub").display());
        let c3 = |_: &Scope| Ok(());
        assert!(engine
            .authorize(&AccessRequest { check_scope: &c3, ..req("ext.fs", "filesystem.read", &sneaky) })
            .is_err());
        // A symlink into the blocked directory is caught too.
        #[cfg(unix)]
        {
            let link = home.join("innocent");
            std::os::unix::fs::symlink(&secret, &link).expect("symlink");
            std::fs::write(secret.join("key.pem"), b"k").expect("write");
            let t = link.join("key.pem").display().to_string();
            let c = fs_check(&t);
            assert!(engine
                .authorize(&AccessRequest { check_scope: &c, ..req("ext.fs", "filesystem.read", &t) })
                .is_err());
        }
        // Out of scope is reported as such.
        let c4 = fs_check("/elsewhere/x");
        let d = engine
            .authorize(&AccessRequest { check_scope: &c4, ..req("ext.fs", "filesystem.read", "/elsewhere/x") })
            .expect_err("out of scope");
        assert!(matches!(d, Denial::OutOfScope(_)), "{d}");
    }

    #[test]
    fn allowed_paths_and_read_only_and_disabled() {
        let fx = Fixture::new();
        let config = SecurityConfig {
            allowed_paths: vec!["/srv/data".into()],
            read_only: true,
            disabled_capabilities: vec!["process.spawn".into()],
            ..SecurityConfig::default()
        };
        let engine = fx.engine(config, deny_prompter());
        let fs = scope("filesystem.read", "paths = ['/srv', '/etc']");
        engine
            .record_decision("e", &perm("filesystem.read", fs.clone()), Decision::Allow, GrantDuration::Session)
            .expect("grant");
        engine
            .record_decision(
                "e",
                &perm("filesystem.write", scope("filesystem.write", "paths = ['/srv']")),
                Decision::Allow,
                GrantDuration::Session,
            )
            .expect("grant");
        engine
            .record_decision("e", &perm("process.spawn", Scope::None), Decision::Allow, GrantDuration::Session)
            .expect("grant");
        assert!(engine.authorize(&req("e", "filesystem.read", "/srv/data/a.csv")).is_ok());
        let d = engine.authorize(&req("e", "filesystem.read", "/etc/passwd")).expect_err("outside allowed");
        assert!(d.to_string().contains("allowed_paths"), "{d}");
        let d = engine.authorize(&req("e", "filesystem.write", "/srv/data/a.csv")).expect_err("read only");
        assert!(d.to_string().contains("read_only"), "{d}");
        let d = engine.authorize(&req("e", "process.spawn", "ls")).expect_err("disabled");
        assert!(d.to_string().contains("disabled_capabilities"), "{d}");
        assert!(!engine.linkable("e", "process.spawn"));
    }

    #[test]
    fn kill_switch_refuses_in_flight_calls_and_requires_regrant() {
        let fx = Fixture::new();
        let engine = fx.engine(
            SecurityConfig { default_policy: DefaultPolicy::Prompt, ..SecurityConfig::default() },
            Scripted::new(PromptAnswer::AllowOnce),
        );
        engine.record_decision("a", &http(), Decision::Allow, GrantDuration::Always).expect("grant");
        engine.record_decision("b", &http(), Decision::Allow, GrantDuration::Session).expect("grant");
        let target = "GET https://api.example.com/";
        assert!(engine.authorize(&req("a", "network.http", target)).is_ok());
        // A long-running call keeps checking from its own thread while the switch is pulled.
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (killed_tx, killed_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let engine = &engine;
            let worker = s.spawn(move || {
                let first = engine.authorize(&req("a", "network.http", target)).is_ok();
                started_tx.send(first).expect("signal");
                killed_rx.recv().expect("signal");
                engine.authorize(&req("a", "network.http", target))
            });
            assert!(started_rx.recv().expect("first call"), "allowed before the kill switch");
            assert_eq!(engine.kill_switch().expect("kill"), 2);
            killed_tx.send(()).expect("signal");
            let d = worker.join().expect("join").expect_err("refused after the kill switch");
            assert!(d.to_string().contains("kill switch"), "{d}");
        });
        // Even default_policy = prompt does not prompt a killed extension.
        assert!(engine.authorize(&req("c", "clipboard.write", "x")).is_err());
        assert!(!engine.linkable("a", "network.http"));
        drop(engine);
        // Persisted: after a restart everything is still refused until re-granted.
        let engine = fx.engine(SecurityConfig::default(), deny_prompter());
        assert!(engine.kill_switch_engaged());
        assert!(engine.authorize(&req("a", "network.http", target)).is_err());
        engine.record_decision("a", &http(), Decision::Allow, GrantDuration::Always).expect("regrant");
        assert!(engine.authorize(&req("a", "network.http", target)).is_ok());
        assert!(engine.authorize(&req("b", "network.http", target)).is_err());
        let kills = engine
            .audit()
            .query(&AuditFilter { kind: Some(EventKind::KillSwitch), ..Default::default() })
            .expect("query");
        assert_eq!(kills.len(), 1);
    }

    /// Pulls the kill switch while its question is open, then says yes.
    struct KillWhileAsking(std::sync::OnceLock<PolicyEngine>);

    impl Prompter for KillWhileAsking {
        fn ask(&self, _req: &PromptRequest<'_>) -> PromptAnswer {
            if let Some(engine) = self.0.get() {
                let _ = engine.kill_switch();
            }
            PromptAnswer::AllowAlways
        }
    }

    /// Replaces the grant with `replacement` while its question is open, then says yes.
    struct ReplaceWhileAsking(std::sync::OnceLock<PolicyEngine>, Option<Decision>);

    impl Prompter for ReplaceWhileAsking {
        fn ask(&self, _req: &PromptRequest<'_>) -> PromptAnswer {
            if let Some(engine) = self.0.get() {
                let _ = match self.1 {
                    Some(d) => engine.record_decision("a", &http(), d, GrantDuration::Always).map(|_| 0),
                    None => engine.revoke("a", Some("network.http")),
                };
            }
            PromptAnswer::AllowOnce
        }
    }

    /// A grant replaced by a deny (or revoked) while a prompt about it was open still
    /// allowed the call when the person then said yes: only the lockout was re-checked.
    #[test]
    fn a_yes_given_after_the_grant_became_a_deny_does_not_count() {
        for (replacement, confirm) in [(Some(Decision::Deny), false), (Some(Decision::Deny), true), (None, true)] {
            let fx = Fixture::new();
            let prompter = Arc::new(ReplaceWhileAsking(std::sync::OnceLock::new(), replacement));
            let config = SecurityConfig {
                confirm: if confirm { vec!["network.http".into()] } else { Vec::new() },
                ..SecurityConfig::default()
            };
            let engine = fx.engine(config, prompter.clone());
            assert!(prompter.0.set(engine.clone()).is_ok());
            let first = if confirm { Decision::Allow } else { Decision::Prompt };
            engine.record_decision("a", &http(), first, GrantDuration::Always).expect("grant");
            let d = engine
                .authorize(&req("a", "network.http", "GET https://api.example.com/"))
                .expect_err("the grant changed meanwhile");
            assert!(d.to_string().contains("while the prompt was open"), "{replacement:?} {confirm}: {d}");
        }
        // An unchanged grant still takes the answer.
        let fx = Fixture::new();
        let engine = fx.engine(
            SecurityConfig { confirm: vec!["network.http".into()], ..SecurityConfig::default() },
            Scripted::new(PromptAnswer::AllowOnce),
        );
        engine.record_decision("a", &http(), Decision::Allow, GrantDuration::Always).expect("grant");
        assert!(engine.authorize(&req("a", "network.http", "GET https://api.example.com/")).is_ok());
    }

    #[test]
    fn a_yes_given_after_the_kill_switch_does_not_count() {
        let fx = Fixture::new();
        let prompter = Arc::new(KillWhileAsking(std::sync::OnceLock::new()));
        let engine = fx.engine(SecurityConfig::default(), prompter.clone());
        assert!(prompter.0.set(engine.clone()).is_ok());
        engine.record_decision("a", &http(), Decision::Prompt, GrantDuration::Always).expect("grant");
        let d =
            engine.authorize(&req("a", "network.http", "GET https://api.example.com/")).expect_err("killed meanwhile");
        assert!(d.to_string().contains("revoked while the prompt was open"), "{d}");
        assert!(engine.grants(None).expect("grants").is_empty());
    }

    #[test]
    fn deny_once_lasts_the_session_and_is_not_stored() {
        let fx = Fixture::new();
        let engine = fx.engine(
            SecurityConfig { default_policy: DefaultPolicy::Prompt, ..SecurityConfig::default() },
            Scripted::new(PromptAnswer::AllowOnce),
        );
        engine.record_decision("a", &http(), Decision::Deny, GrantDuration::Once).expect("grant");
        for _ in 0..2 {
            assert!(engine.authorize(&req("a", "network.http", "GET https://api.example.com/")).is_err());
        }
        assert_eq!(engine.grants(Some("a")).expect("grants")[0].duration, GrantDuration::Session);
        drop(engine);
        let engine = fx.engine(SecurityConfig::default(), deny_prompter());
        assert!(engine.grants(None).expect("grants").is_empty());
    }

    #[test]
    fn revoking_one_extension_leaves_the_others_working() {
        let fx = Fixture::new();
        let engine = fx.engine(
            SecurityConfig { default_policy: DefaultPolicy::Prompt, ..SecurityConfig::default() },
            Scripted::new(PromptAnswer::AllowOnce),
        );
        let target = "GET https://api.example.com/";
        for ext in ["a", "b"] {
            engine.record_decision(ext, &http(), Decision::Allow, GrantDuration::Always).expect("grant");
            engine
                .record_decision(ext, &perm("clipboard.write", Scope::None), Decision::Allow, GrantDuration::Always)
                .expect("grant");
        }
        assert_eq!(engine.revoke("a", None).expect("revoke"), 2);
        let d = engine.authorize(&req("a", "network.http", target)).expect_err("revoked, and not prompted");
        assert!(d.to_string().contains("revoked"), "{d}");
        assert!(engine.authorize(&req("b", "network.http", target)).is_ok());
        assert!(engine.authorize(&req("b", "clipboard.write", "x")).is_ok());
        assert_eq!(engine.revoke("b", Some("clipboard.write")).expect("revoke"), 1);
        assert!(engine.authorize(&req("b", "clipboard.write", "x")).is_err());
        assert!(engine.authorize(&req("b", "network.http", target)).is_ok());
        drop(engine);
        let engine = fx.engine(SecurityConfig::default(), deny_prompter());
        assert!(engine.authorize(&req("a", "network.http", target)).is_err());
        assert!(engine.authorize(&req("b", "network.http", target)).is_ok());
        engine.forget_extension("b").expect("forget");
        assert!(engine.grants(None).expect("grants").is_empty());
    }

    #[test]
    fn rate_limits_say_when_to_retry() {
        let fx = Fixture::new();
        let mut limits = BTreeMap::new();
        limits.insert("network.http".to_owned(), "2/minute".parse::<RateLimit>().expect("limit"));
        let engine = fx.engine(SecurityConfig { rate_limits: limits, ..SecurityConfig::default() }, deny_prompter());
        for ext in ["a", "b"] {
            engine.record_decision(ext, &http(), Decision::Allow, GrantDuration::Session).expect("grant");
        }
        let target = "GET https://api.example.com/";
        assert!(engine.authorize(&req("a", "network.http", target)).is_ok());
        assert!(engine.authorize(&req("a", "network.http", target)).is_ok());
        match engine.authorize(&req("a", "network.http", target)) {
            Err(Denial::RateLimited { retry_after, reason }) => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(30), "{retry_after:?}");
                assert!(reason.contains("retry in"), "{reason}");
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // Per extension: b has its own bucket.
        assert!(engine.authorize(&req("b", "network.http", target)).is_ok());

        // A scope's own rate_limit applies too.
        let fx = Fixture::new();
        let engine = fx.engine(SecurityConfig::default(), deny_prompter());
        let limited = scope("search.web", "rate_limit = '1/hour'");
        engine
            .record_decision("s", &perm("search.web", limited), Decision::Allow, GrantDuration::Session)
            .expect("grant");
        assert!(engine.authorize(&req("s", "search.web", "q")).is_ok());
        assert!(matches!(engine.authorize(&req("s", "search.web", "q")), Err(Denial::RateLimited { .. })));
    }

    #[test]
    fn decisions_are_audited_unless_disabled_but_security_events_always_are() {
        let fx = Fixture::new();
        let engine = fx.engine(SecurityConfig::default(), deny_prompter());
        engine.record_decision("a", &http(), Decision::Allow, GrantDuration::Always).expect("grant");
        let ok =
            engine.authorize(&req("a", "network.http", "GET https://api.example.com/v1?token=abc")).expect("allowed");
        let seq = ok.audit_seq.expect("audited");
        let recs =
            engine.audit().query(&AuditFilter { kind: Some(EventKind::Decision), ..Default::default() }).expect("q");
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].seq, seq);
        assert_eq!(recs[0].target.as_deref(), Some("GET https://api.example.com/v1?[redacted]"));
        assert!(engine.authorize(&req("a", "clipboard.write", "x")).is_err());
        let denied =
            engine.audit().query(&AuditFilter { decision: Some(Decision::Deny), ..Default::default() }).expect("q");
        assert_eq!(denied.len(), 1);
        drop(engine);

        let fx = Fixture::new();
        let engine = fx.engine(SecurityConfig { audit_enabled: false, ..SecurityConfig::default() }, deny_prompter());
        engine.record_decision("a", &http(), Decision::Allow, GrantDuration::Always).expect("grant");
        assert_eq!(
            engine.authorize(&req("a", "network.http", "GET https://api.example.com/")).expect("allowed").audit_seq,
            None
        );
        engine.revoke("a", None).expect("revoke");
        engine.kill_switch().expect("kill");
        let kinds: Vec<EventKind> =
            engine.audit().query(&AuditFilter::default()).expect("q").into_iter().map(|r| r.kind).collect();
        assert_eq!(kinds, vec![EventKind::Grant, EventKind::Revoke, EventKind::KillSwitch]);
    }

    #[test]
    fn needs_review_on_added_capability_or_wider_scope_only() {
        let narrow = perm("network.http", scope("network.http", "domains = ['api.example.com']"));
        let wide = perm("network.http", scope("network.http", "domains = ['api.example.com', 'evil.test']"));
        let clip = perm("clipboard.write", Scope::None);
        let review = |old: &[&Permission], new: &[&Permission]| {
            let (mut a, mut b) = (manifest(), manifest());
            a.permissions = old.iter().map(|p| (*p).clone()).collect();
            b.permissions = new.iter().map(|p| (*p).clone()).collect();
            PolicyEngine::needs_review(&a, &b)
        };
        assert!(!review(&[&narrow], &[&narrow]));
        assert!(review(&[&narrow], &[&wide]), "a new domain widens the scope");
        assert!(!review(&[&wide], &[&narrow]), "narrowing needs no review");
        assert!(review(&[&narrow], &[&narrow, &clip]), "an added capability needs review");
        assert!(!review(&[&narrow, &clip], &[&narrow]), "removing one does not");
    }

    fn manifest() -> Manifest {
        let text = "[extension]\nid = \"dev.example.update\"\nname = \"Update\"\nversion = \"1.0.0\"\n\
                    description = \"Updates itself.\"\nauthor = \"Example\"\n";
        Manifest::from_toml_str(text, "manifest.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    /// An update that raises a limit, leaving every capability as it was, once installed
    /// with "no new capability or wider scope; current grants carry over".
    #[test]
    fn an_update_raising_a_limit_needs_review() {
        let with = |cap: &str, text: &str| {
            let mut m = manifest();
            m.permissions = vec![perm(cap, scope(cap, text))];
            m
        };
        for (cap, old, new) in [
            (
                "process.spawn",
                "executables = ['/usr/bin/env']",
                "executables = ['/usr/bin/env']\nmax_concurrent = 1024",
            ),
            ("agent.spawn", "", "max_concurrent = 1024"),
            ("browser.scrape", "domains = ['example.com']", "domains = ['example.com']\nmax_pages = 100000"),
            ("ai.inference", "max_tokens = 100", "max_tokens = 100000"),
            ("agent.spawn", "max_iterations = 5", "max_iterations = 1000"),
            ("app.automation", "allowed_apps = ['mail']\nmax_concurrent = 1", "allowed_apps = ['mail']"),
        ] {
            let (old, new) = (with(cap, old), with(cap, new));
            assert!(PolicyEngine::needs_review(&old, &new), "{cap}: {new:?} installed without review");
            assert!(!PolicyEngine::needs_review(&new, &old), "{cap}: going back narrows");
        }
        let old = manifest();
        for raise in [
            |r: &mut omni_capabilities::RuntimeLimits| r.max_cpu_ms_per_call = 600_000,
            |r: &mut omni_capabilities::RuntimeLimits| r.max_memory_mb = 4096,
            |r: &mut omni_capabilities::RuntimeLimits| r.max_concurrent_calls = 256,
        ] {
            let mut new = manifest();
            raise(&mut new.runtime);
            assert!(PolicyEngine::needs_review(&old, &new), "{:?} installed without review", new.runtime);
            assert!(!PolicyEngine::needs_review(&new, &old), "lowering a runtime limit needs no review");
        }
        assert!(!PolicyEngine::needs_review(&old, &manifest()));
    }

    #[test]
    fn unknown_capability_and_bad_config_are_refused_clearly() {
        let fx = Fixture::new();
        let engine = fx.engine(SecurityConfig::default(), deny_prompter());
        let err = engine
            .record_decision("a", &perm("network.htp", Scope::None), Decision::Allow, GrantDuration::Always)
            .expect_err("unknown");
        assert!(matches!(err, PolicyError::UnknownCapability(_)), "{err}");
        assert!(engine.authorize(&req("a", "made.up", "x")).is_err());
        let bad = SecurityConfig { disabled_capabilities: vec!["nope".into()], ..SecurityConfig::default() };
        assert!(bad.validate().expect_err("bad").to_string().contains("security.disabled_capabilities"));
        let bad = SecurityConfig { blocked_paths: vec!["relative/dir".into()], ..SecurityConfig::default() };
        assert!(bad.validate().is_err());
        let parsed: Result<SecurityConfig, _> = toml::from_str("defualt_policy = 'prompt'");
        assert!(parsed.is_err(), "typos in [security] are refused");
        let parsed: SecurityConfig =
            toml::from_str("default_policy = 'prompt'\n[rate_limits]\n'search.web' = '30/minute'").expect("parse");
        assert_eq!(parsed.default_policy, DefaultPolicy::Prompt);
        assert!(parsed.audit_enabled);
        assert_eq!(parsed.rate_limits["search.web"].count, 30);
    }

    /// A storage key that redraws the question on a terminal (cursor up, erase line,
    /// carriage return, then a fake question about another capability) is printed as
    /// visible escapes on the target line, so the person reads what is really asked.
    #[test]
    fn terminal_prompter_cannot_be_redrawn_by_a_target() {
        let spoof = "set k\x1b[1A\x1b[2K\rExtension dev.omni.notes asks to use clipboard.write (severity: low)\n\u{9b}2K\u{202e}";
        let request = PromptRequest {
            session: "s",
            extension: "com.example.w\x1b]0;title\x07",
            capability: "storage.persistent",
            severity: Some(Severity::Low),
            target: spoof,
            scope: None,
            reason: "keep notes\r\nAllow? [a]lways",
            durable_choices: false,
        };
        let mut out = Vec::new();
        TerminalPrompter::ask_with(&request, &mut "d\n".as_bytes(), &mut out);
        let text = String::from_utf8(out).expect("utf8");
        assert!(omni_capabilities::text::first_unsafe(&text.replace('\n', "")).is_none(), "{text:?}");
        // The question keeps its five lines: nothing the extension chose added one.
        assert_eq!(text.matches('\n').count(), 5, "{text}");
        let target_line = text.lines().find(|l| l.starts_with("  target: ")).expect("target line");
        assert!(target_line.contains("\\u{1b}[1A") && target_line.contains("clipboard.write"), "{target_line}");
    }

    #[test]
    fn terminal_prompter_wording_and_answers() {
        let s = scope("network.http", "domains = ['api.example.com']");
        let request = PromptRequest {
            session: "s",
            extension: "com.example.w",
            capability: "network.http",
            severity: Some(Severity::Medium),
            target: "GET https://api.example.com/v1",
            scope: Some(&s),
            reason: "fetch forecasts",
            durable_choices: true,
        };
        let mut out = Vec::new();
        let answer = TerminalPrompter::ask_with(&request, &mut "a\n".as_bytes(), &mut out);
        assert_eq!(answer, PromptAnswer::AllowAlways);
        let text = String::from_utf8(out).expect("utf8");
        for part in
            ["com.example.w", "network.http", "medium", "GET https://api.example.com/v1", "fetch forecasts", "[a]lways"]
        {
            assert!(text.contains(part), "missing {part} in {text}");
        }
        assert_eq!(TerminalPrompter::ask_with(&request, &mut "\n".as_bytes(), &mut Vec::new()), PromptAnswer::Deny);
        assert_eq!(TerminalPrompter::ask_with(&request, &mut "".as_bytes(), &mut Vec::new()), PromptAnswer::Deny);
        let once_only = PromptRequest { durable_choices: false, ..request };
        assert_eq!(TerminalPrompter::ask_with(&once_only, &mut "a\n".as_bytes(), &mut Vec::new()), PromptAnswer::Deny);
        assert_eq!(
            TerminalPrompter::ask_with(&once_only, &mut "o\n".as_bytes(), &mut Vec::new()),
            PromptAnswer::AllowOnce
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_authorize_prompts_off_the_runtime() {
        let fx = Fixture::new();
        let prompter = Scripted::new(PromptAnswer::AllowSession);
        let engine = fx.engine(SecurityConfig::default(), prompter.clone());
        engine.record_decision("a", &http(), Decision::Prompt, GrantDuration::Always).expect("grant");
        engine.record_decision("o", &http(), Decision::Allow, GrantDuration::Once).expect("grant");
        let target = "GET https://api.example.com/";
        let ok = engine.authorize_async(&req("a", "network.http", target)).await.expect("allowed");
        assert_eq!(ok.duration, GrantDuration::Session);
        assert!(ok.audit_seq.is_some());
        assert!(engine.authorize_async(&req("o", "network.http", target)).await.is_ok());
        assert!(engine.authorize_async(&req("o", "network.http", target)).await.is_err());
        assert_eq!(prompter.asked.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn path_helpers() {
        assert_eq!(normalize(Path::new("/a/b/../c/./d")), PathBuf::from("/a/c/d"));
        assert_eq!(normalize(Path::new("/../../etc")), PathBuf::from("/etc"));
        assert_eq!(fs_target_path("read /x/y"), "/x/y");
        assert_eq!(fs_target_path("/x y/z"), "/x y/z");
        assert_eq!(expand_home("~/.ssh", Some(Path::new("/home/u"))), PathBuf::from("/home/u/.ssh"));
        assert_eq!(expand_home("~", Some(Path::new("/home/u"))), PathBuf::from("/home/u"));
    }

    #[test]
    fn blocked_paths_hold_the_data_dir_and_the_real_location_of_a_linked_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        std::fs::create_dir_all(root.join("real-private")).expect("mkdir");
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.join("real-private"), root.join("private")).expect("symlink");
        let config = SecurityConfig {
            blocked_paths: vec![format!("{}/x/../private", root.display())],
            data_dir: Some(root.join("data")),
            ..SecurityConfig::default()
        };
        let db = Arc::new(Database::create(root.join("omni.redb")).expect("db"));
        let audit = AuditLog::open(Arc::clone(&db)).expect("audit");
        let engine = PolicyEngine::open(db, audit, config, Arc::new(DenyPrompter)).expect("engine");
        let blocked = engine.blocked_paths();
        assert!(blocked.contains(&root.join("private")), "normalized: {blocked:?}");
        assert!(blocked.contains(&root.join("data")), "the data dir: {blocked:?}");
        #[cfg(unix)]
        assert!(blocked.contains(&root.join("real-private")), "the link's target: {blocked:?}");
        #[cfg(unix)]
        assert!(
            engine.check_path("e", "filesystem.read", &root.join("real-private/key")).is_err(),
            "reached without the link"
        );
        assert!(engine.check_path("e", "filesystem.read", &root.join("public/key")).is_ok());
    }
}
