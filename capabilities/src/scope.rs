//! Scopes: what a granted capability may reach, parsed from a manifest's
//! `scope = { ... }` table, matched at call time, and compared on updates.
//!
//! There is one typed scope per family of capabilities ([`Scope`] lists them).
//! Parsing collects every problem with its field path. Serialization with serde
//! (used to store grants as JSON) is tagged by `type`; deserializing re-checks
//! every pattern, so a stored scope cannot smuggle in a pattern the manifest
//! parser would refuse.

use crate::catalog::CapabilityInfo;
use crate::error::{Problem, Problems};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

mod fs;
mod messaging;
mod network;
mod process;

pub use fs::{FsPath, FsRoots, FsScope};
pub use messaging::{MessagingKind, MessagingScope, RecipientPattern};
pub use network::{DomainPattern, NetworkKind, NetworkScope};
pub use process::{ArgPattern, ProcessScope};

/// Default `max_bytes` of `storage.persistent`: 10 MiB.
pub const DEFAULT_STORAGE_BYTES: u64 = 10 * 1024 * 1024;

/// Programs of one extension running at once when its `process.spawn` scope sets no
/// `max_concurrent`: the default of the host's `[process] max_concurrent`.
pub const DEFAULT_PROCESS_MAX_CONCURRENT: u32 = 4;

/// Sub-agents of one extension running at once when its `agent.spawn` scope sets no
/// `max_concurrent`.
pub const DEFAULT_AGENT_MAX_CONCURRENT: u32 = 1;

/// Pages one `browser.scrape` call may fetch when the scope sets no `max_pages`.
pub const DEFAULT_BROWSER_MAX_PAGES: u32 = 1_000;

// Limits whose unset value is no limit at all (an update that sets one only narrows):
// `app.automation` `max_concurrent` (no cap on actions at once), `inference.chat`
// `max_tokens` (a request may ask for any number) and `agent.spawn` `max_iterations`
// (a task may ask for any number; one asking for none gets the host's ten turns).

/// Longest string accepted in any scope entry; longer ones are refused, not truncated.
pub(crate) const MAX_ENTRY_LEN: usize = 1024;
/// Most entries accepted in one scope list.
pub(crate) const MAX_LIST_LEN: usize = 256;

/// The scope of one permission, typed by the capability's family.
///
/// Built by [`Scope::parse`] (the manifest parser calls it for every permission).
///
/// ```
/// use omni_capabilities::{lookup, Scope};
/// let cap = lookup("network.http").unwrap();
/// let table: toml::Value = toml::from_str("domains = ['api.open-meteo.com']\nmethods = ['GET']").unwrap();
/// let scope = Scope::parse(cap, Some(&table), "scope").unwrap();
/// assert_eq!(scope.to_string(), "domains: api.open-meteo.com; methods: GET; ports: 443");
/// let narrower: toml::Value = toml::from_str("domains = ['api.open-meteo.com']\nmethods = ['GET']\nports = [443]").unwrap();
/// assert!(Scope::parse(cap, Some(&narrower), "scope").unwrap().is_within(&scope));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Scope {
    /// The capability has no scope fields (clipboard, devices, notifications...).
    None,
    /// `network.http`, `network.websocket`, `browser.scrape`.
    Network(NetworkScope),
    /// `filesystem.read`, `filesystem.write`.
    Filesystem(FsScope),
    /// `messaging.sms`, `messaging.email`, `messaging.chat`.
    Messaging(MessagingScope),
    /// `search.web`.
    Search(SearchScope),
    /// `process.spawn`.
    Process(ProcessScope),
    /// `storage.persistent`.
    Storage(StorageScope),
    /// `ai.inference`.
    Inference(InferenceScope),
    /// `channel.send`.
    Channel(ChannelScope),
    /// `app.automation`.
    Automation(AutomationScope),
    /// `vcs.operations`.
    Vcs(VcsScope),
    /// `mcp.server`.
    Mcp(McpScope),
    /// `agent.spawn`.
    Agent(AgentScope),
    /// `flowchart.invoke`.
    Flowchart(FlowchartScope),
}

/// A rate limit such as `"10/minute"`: at most `count` calls in any window of length `per`.
///
/// Accepted forms: `N/second`, `N/minute`, `N/hour`, `N/day`, their plurals, and the
/// short units `s`/`sec`, `min`/`m`, `h`, `d`. `N` is 1 to 1,000,000.
///
/// ```
/// use omni_capabilities::RateLimit;
/// use std::time::Duration;
/// let r: RateLimit = "30/min".parse().unwrap();
/// assert_eq!((r.count, r.per), (30, Duration::from_secs(60)));
/// assert_eq!(r.to_string(), "30/minute");
/// assert!("0/minute".parse::<RateLimit>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RateLimit {
    /// How many calls the window allows (at least 1).
    pub count: u32,
    /// The window: one second, minute, hour or day.
    pub per: Duration,
}

/// Highest count accepted in a rate limit.
const MAX_RATE_COUNT: u32 = 1_000_000;

impl RateLimit {
    /// Whether every sequence of calls this limit allows is also allowed by `other`.
    ///
    /// Windows are sliding and half-open: `n` per `w` lets through up to
    /// `n * ceil(W / w)` calls in a longer window `W`, and all `n` calls inside
    /// any shorter one. So `1/second` is within `60/minute` (at most 60 calls in
    /// any minute), but `60/minute` is not within `1/second` (it allows a burst of
    /// 60 calls in one second).
    ///
    /// ```
    /// use omni_capabilities::RateLimit;
    /// let r = |s: &str| s.parse::<RateLimit>().unwrap();
    /// assert!(r("1/second").is_within(&r("60/minute")));
    /// assert!(!r("60/minute").is_within(&r("1/second")));
    /// assert!(!r("2/second").is_within(&r("60/minute")));
    /// ```
    pub fn is_within(&self, other: &RateLimit) -> bool {
        let (a, b) = (self.per.as_nanos(), other.per.as_nanos());
        if a == 0 || b == 0 {
            return false;
        }
        if b >= a {
            // Most calls self allows in one of other's windows.
            let windows = b.div_ceil(a);
            u128::from(self.count) * windows <= u128::from(other.count)
        } else {
            // Self can spend its whole count inside one of other's shorter windows.
            self.count <= other.count
        }
    }

    fn unit_name(&self) -> Option<&'static str> {
        match self.per.as_secs() {
            1 => Some("second"),
            60 => Some("minute"),
            3600 => Some("hour"),
            86400 => Some("day"),
            _ => None,
        }
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.unit_name() {
            Some(unit) if self.per.subsec_nanos() == 0 => write!(f, "{}/{unit}", self.count),
            _ => write!(f, "{}/{}s", self.count, self.per.as_secs_f64()),
        }
    }
}

/// Why a rate limit string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate limit {input:?}: {reason}; write it as N/second, N/minute, N/hour or N/day (e.g. \"10/minute\")")]
pub struct RateLimitError {
    /// The text that was refused.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl std::str::FromStr for RateLimit {
    type Err = RateLimitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| RateLimitError { input: truncate(s, 64), reason };
        let (count, unit) = s.split_once('/').ok_or_else(|| err("missing '/'"))?;
        let count = count.trim();
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("the count must be a whole number"));
        }
        let count: u32 = count.parse().map_err(|_| err("the count is too large"))?;
        if count == 0 {
            return Err(err("the count must be at least 1"));
        }
        if count > MAX_RATE_COUNT {
            return Err(err("the count must be at most 1000000"));
        }
        let secs = match unit.trim() {
            "s" | "sec" | "second" | "seconds" => 1,
            "m" | "min" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86400,
            _ => return Err(err("unknown unit")),
        };
        Ok(RateLimit { count, per: Duration::from_secs(secs) })
    }
}

impl TryFrom<String> for RateLimit {
    type Error = RateLimitError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<RateLimit> for String {
    fn from(r: RateLimit) -> String {
        r.to_string()
    }
}

/// Parses a byte size written as a whole number with an optional unit:
/// `"4096"`, `"10MB"`, `"512 KiB"`. Fractions (`"1.5GB"`) are refused.
///
/// Units (case-insensitive): `B`, `KB`/`MB`/`GB`/`TB` (powers of 1000) and
/// `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024). A space between number and unit is allowed.
///
/// ```
/// use omni_capabilities::parse_size;
/// assert_eq!(parse_size("10MB"), Ok(10_000_000));
/// assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
/// assert_eq!(parse_size("42"), Ok(42));
/// assert!(parse_size("10 parsecs").is_err());
/// ```
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("size {:?} does not start with a whole number", truncate(s, 64)));
    }
    let n: u64 = num.parse().map_err(|_| format!("size {:?} is too large", truncate(s, 64)))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "size {:?} has an unknown unit; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB",
                truncate(s, 64)
            ))
        }
    };
    n.checked_mul(mult).ok_or_else(|| format!("size {:?} is too large", truncate(s, 64)))
}

/// Renders a byte count the way a person reads it in the review table.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
    }
    format!("{bytes} bytes")
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// `search.web`: which providers, how often.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchScope {
    /// Provider names (exact, e.g. `"brave"`); `None` allows the host's configured providers.
    pub providers: Option<Vec<String>>,
    /// Searches allowed per window; `None` leaves it to the host's global limits.
    pub rate_limit: Option<RateLimit>,
}

/// `storage.persistent`: how much the extension may keep.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageScope {
    /// Total bytes of keys and values (default [`DEFAULT_STORAGE_BYTES`]).
    pub max_bytes: u64,
}

/// `ai.inference`: how much model use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferenceScope {
    /// Most tokens one request may ask for; `None`: the host's default.
    pub max_tokens: Option<u32>,
    /// Requests per window.
    pub rate_limit: Option<RateLimit>,
}

/// `channel.send`: which channels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelScope {
    /// Channel names, exact match (required, at least one).
    pub channels: Vec<String>,
    /// Messages per window.
    pub rate_limit: Option<RateLimit>,
}

/// `app.automation`: which applications and actions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutomationScope {
    /// Application identifiers, exact match (required, at least one).
    pub allowed_apps: Vec<String>,
    /// Action names, exact match; `None` allows every action on the allowed apps.
    pub allowed_actions: Option<Vec<String>>,
    /// Actions per window.
    pub rate_limit: Option<RateLimit>,
    /// Actions running at once.
    pub max_concurrent: Option<u32>,
}

/// `vcs.operations`: which repositories and operations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcsScope {
    /// Repositories (path or remote URL), exact match (required, at least one).
    pub allowed_repos: Vec<String>,
    /// Operation names (`status`, `diff`, `commit`...); `None` allows all.
    pub allowed_operations: Option<Vec<String>>,
}

/// `mcp.server`: which MCP servers and tools.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpScope {
    /// Server names as configured on the host, exact match (required, at least one).
    pub allowed_servers: Vec<String>,
    /// Tool names, exact match; `None` allows every tool of the allowed servers.
    pub allowed_tools: Option<Vec<String>>,
}

/// `agent.spawn`: how many sub-agents and for how long.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentScope {
    /// Sub-agents running at once; `None`: the host's default.
    pub max_concurrent: Option<u32>,
    /// Model turns per sub-agent; `None`: the host's default.
    pub max_iterations: Option<u32>,
}

/// `flowchart.invoke`: which flowcharts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowchartScope {
    /// Flowchart names, exact match (required, at least one).
    pub allowed_flowcharts: Vec<String>,
}

impl Scope {
    /// Parses the `scope` value of a permission for `capability`.
    ///
    /// `value` is `None` when the manifest has no `scope`; `field` is the path used
    /// in problems (the manifest passes `"permissions[N].scope"`). Every problem is
    /// returned, each naming its field, e.g. `permissions[0].scope.domains[2]`.
    pub fn parse(capability: &CapabilityInfo, value: Option<&toml::Value>, field: &str) -> Result<Scope, Vec<Problem>> {
        let mut problems = Problems::default();
        let empty = toml::Table::new();
        let table = match value {
            None => &empty,
            Some(toml::Value::Table(t)) => t,
            Some(other) => {
                problems.push(
                    field,
                    format!("scope must be a table, found {}", other.type_str()),
                    "write it as scope = { field = value, ... }",
                );
                return Err(problems.0);
            }
        };
        for key in table.keys() {
            if !capability.scope_fields.contains(&key.as_str()) {
                let fix = if capability.scope_fields.is_empty() {
                    format!("{} takes no scope; remove the scope", capability.key)
                } else {
                    format!("valid fields for {}: {}", capability.key, capability.scope_fields.join(", "))
                };
                problems.push(
                    format!("{field}.{}", display_key(key)),
                    format!("unknown scope field {:?} for {}", truncate(key, 64), capability.key),
                    fix,
                );
            }
        }
        let scope = {
            let mut f = Fields { table, base: field, problems: &mut problems };
            parse_family(capability, &mut f)
        };
        if problems.is_empty() {
            Ok(scope)
        } else {
            Err(problems.0)
        }
    }

    /// Whether this scope grants nothing beyond `other`.
    ///
    /// An update whose scope is within the granted one needs no new review;
    /// anything else (a new domain, a wider path, a higher limit, a different
    /// scope type) does. When in doubt (e.g. comparing two different regular
    /// expressions) the answer is `false`, which only costs a review.
    pub fn is_within(&self, other: &Scope) -> bool {
        match (self, other) {
            (Scope::None, Scope::None) => true,
            (Scope::Network(a), Scope::Network(b)) => a.is_within(b),
            (Scope::Filesystem(a), Scope::Filesystem(b)) => a.is_within(b),
            (Scope::Messaging(a), Scope::Messaging(b)) => a.is_within(b),
            (Scope::Process(a), Scope::Process(b)) => a.is_within(b),
            (Scope::Search(a), Scope::Search(b)) => {
                opt_list_within(&a.providers, &b.providers) && rate_within(a.rate_limit, b.rate_limit)
            }
            (Scope::Storage(a), Scope::Storage(b)) => a.max_bytes <= b.max_bytes,
            (Scope::Inference(a), Scope::Inference(b)) => {
                limit_within(a.max_tokens, b.max_tokens, None) && rate_within(a.rate_limit, b.rate_limit)
            }
            (Scope::Channel(a), Scope::Channel(b)) => {
                set_within(&a.channels, &b.channels) && rate_within(a.rate_limit, b.rate_limit)
            }
            (Scope::Automation(a), Scope::Automation(b)) => {
                set_within(&a.allowed_apps, &b.allowed_apps)
                    && opt_list_within(&a.allowed_actions, &b.allowed_actions)
                    && rate_within(a.rate_limit, b.rate_limit)
                    && limit_within(a.max_concurrent, b.max_concurrent, None)
            }
            (Scope::Vcs(a), Scope::Vcs(b)) => {
                set_within(&a.allowed_repos, &b.allowed_repos)
                    && opt_list_within(&a.allowed_operations, &b.allowed_operations)
            }
            (Scope::Mcp(a), Scope::Mcp(b)) => {
                set_within(&a.allowed_servers, &b.allowed_servers)
                    && opt_list_within(&a.allowed_tools, &b.allowed_tools)
            }
            (Scope::Agent(a), Scope::Agent(b)) => {
                limit_within(a.max_concurrent, b.max_concurrent, Some(DEFAULT_AGENT_MAX_CONCURRENT))
                    && limit_within(a.max_iterations, b.max_iterations, None)
            }
            (Scope::Flowchart(a), Scope::Flowchart(b)) => set_within(&a.allowed_flowcharts, &b.allowed_flowcharts),
            _ => false,
        }
    }

    /// Whether this scope has the type that `capability` uses (a stored grant for
    /// `filesystem.read` must hold a filesystem scope, a `network.websocket` grant a
    /// WebSocket network scope, and so on).
    pub fn fits(&self, capability: &CapabilityInfo) -> bool {
        match (capability.key, self) {
            ("network.http", Scope::Network(s)) => s.kind == NetworkKind::Http,
            ("network.websocket", Scope::Network(s)) => s.kind == NetworkKind::WebSocket,
            ("browser.scrape", Scope::Network(s)) => s.kind == NetworkKind::Browser,
            ("filesystem.read" | "filesystem.write", Scope::Filesystem(_)) => true,
            ("messaging.sms", Scope::Messaging(s)) => s.kind == MessagingKind::Sms,
            ("messaging.email", Scope::Messaging(s)) => s.kind == MessagingKind::Email,
            ("messaging.chat", Scope::Messaging(s)) => s.kind == MessagingKind::Chat,
            ("process.spawn", Scope::Process(_))
            | ("search.web", Scope::Search(_))
            | ("storage.persistent", Scope::Storage(_))
            | ("ai.inference", Scope::Inference(_))
            | ("channel.send", Scope::Channel(_))
            | ("app.automation", Scope::Automation(_))
            | ("vcs.operations", Scope::Vcs(_))
            | ("mcp.server", Scope::Mcp(_))
            | ("agent.spawn", Scope::Agent(_))
            | ("flowchart.invoke", Scope::Flowchart(_)) => true,
            (_, Scope::None) => !capability.has_scope(),
            _ => false,
        }
    }

    /// The scope as the TOML table a manifest would hold; `None` for [`Scope::None`].
    ///
    /// Parsing the result with [`Scope::parse`] gives back an equal scope.
    pub fn to_toml(&self) -> Option<toml::Table> {
        let mut t = toml::Table::new();
        match self {
            Scope::None => return None,
            Scope::Network(s) => s.write_toml(&mut t),
            Scope::Filesystem(s) => s.write_toml(&mut t),
            Scope::Messaging(s) => s.write_toml(&mut t),
            Scope::Process(s) => s.write_toml(&mut t),
            Scope::Search(s) => {
                put_opt_strings(&mut t, "providers", s.providers.as_deref());
                put_rate(&mut t, s.rate_limit);
            }
            Scope::Storage(s) => {
                put_u64(&mut t, "max_bytes", s.max_bytes);
            }
            Scope::Inference(s) => {
                put_opt_u32(&mut t, "max_tokens", s.max_tokens);
                put_rate(&mut t, s.rate_limit);
            }
            Scope::Channel(s) => {
                put_strings(&mut t, "channels", &s.channels);
                put_rate(&mut t, s.rate_limit);
            }
            Scope::Automation(s) => {
                put_strings(&mut t, "allowed_apps", &s.allowed_apps);
                put_opt_strings(&mut t, "allowed_actions", s.allowed_actions.as_deref());
                put_rate(&mut t, s.rate_limit);
                put_opt_u32(&mut t, "max_concurrent", s.max_concurrent);
            }
            Scope::Vcs(s) => {
                put_strings(&mut t, "allowed_repos", &s.allowed_repos);
                put_opt_strings(&mut t, "allowed_operations", s.allowed_operations.as_deref());
            }
            Scope::Mcp(s) => {
                put_strings(&mut t, "allowed_servers", &s.allowed_servers);
                put_opt_strings(&mut t, "allowed_tools", s.allowed_tools.as_deref());
            }
            Scope::Agent(s) => {
                put_opt_u32(&mut t, "max_concurrent", s.max_concurrent);
                put_opt_u32(&mut t, "max_iterations", s.max_iterations);
            }
            Scope::Flowchart(s) => put_strings(&mut t, "allowed_flowcharts", &s.allowed_flowcharts),
        }
        Some(t)
    }

    /// The network scope, if this is one.
    pub fn as_network(&self) -> Option<&NetworkScope> {
        match self {
            Scope::Network(s) => Some(s),
            _ => None,
        }
    }

    /// The filesystem scope, if this is one.
    pub fn as_fs(&self) -> Option<&FsScope> {
        match self {
            Scope::Filesystem(s) => Some(s),
            _ => None,
        }
    }

    /// The messaging scope, if this is one.
    pub fn as_messaging(&self) -> Option<&MessagingScope> {
        match self {
            Scope::Messaging(s) => Some(s),
            _ => None,
        }
    }

    /// The process scope, if this is one.
    pub fn as_process(&self) -> Option<&ProcessScope> {
        match self {
            Scope::Process(s) => Some(s),
            _ => None,
        }
    }

    /// The rate limit this scope sets, whatever its type.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        match self {
            Scope::Messaging(s) => s.rate_limit,
            Scope::Search(s) => s.rate_limit,
            Scope::Inference(s) => s.rate_limit,
            Scope::Channel(s) => s.rate_limit,
            Scope::Automation(s) => s.rate_limit,
            _ => None,
        }
    }

    /// The concurrency limit this scope sets, whatever its type.
    pub fn max_concurrent(&self) -> Option<u32> {
        match self {
            Scope::Process(s) => s.max_concurrent,
            Scope::Automation(s) => s.max_concurrent,
            Scope::Agent(s) => s.max_concurrent,
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::None => f.write_str("no scope"),
            Scope::Network(s) => s.fmt(f),
            Scope::Filesystem(s) => s.fmt(f),
            Scope::Messaging(s) => s.fmt(f),
            Scope::Process(s) => s.fmt(f),
            Scope::Search(s) => s.fmt(f),
            Scope::Storage(s) => s.fmt(f),
            Scope::Inference(s) => s.fmt(f),
            Scope::Channel(s) => s.fmt(f),
            Scope::Automation(s) => s.fmt(f),
            Scope::Vcs(s) => s.fmt(f),
            Scope::Mcp(s) => s.fmt(f),
            Scope::Agent(s) => s.fmt(f),
            Scope::Flowchart(s) => s.fmt(f),
        }
    }
}

pub(crate) fn join<T: fmt::Display>(items: &[T]) -> String {
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

fn opt_names(items: Option<&[String]>) -> String {
    items.map_or_else(|| "any".to_owned(), join)
}

pub(crate) fn opt_num<T: fmt::Display>(n: Option<T>) -> String {
    n.map_or_else(|| "host default".to_owned(), |n| n.to_string())
}

pub(crate) fn opt_rate(r: Option<RateLimit>) -> String {
    r.map_or_else(|| "host default".to_owned(), |r| r.to_string())
}

/// Checks `name` against an optional exact-name allow-list (`None` allows any).
fn check_name(what: &str, field: &str, name: &str, allowed: Option<&[String]>) -> Result<(), String> {
    match allowed {
        Some(list) if !list.iter().any(|n| n == name) => {
            Err(format!("{what} {:?} is not in scope; {field}: {}", truncate(name, 80), join(list)))
        }
        _ => Ok(()),
    }
}

impl SearchScope {
    /// Checks the provider a search goes to.
    pub fn check_provider(&self, provider: &str) -> Result<(), String> {
        check_name("provider", "providers", provider, self.providers.as_deref())
    }
}

impl StorageScope {
    /// Checks the extension's total stored bytes after a write.
    pub fn check_total(&self, total_bytes: u64) -> Result<(), String> {
        if total_bytes > self.max_bytes {
            Err(format!(
                "storing {} would exceed the {} this scope allows",
                human_size(total_bytes),
                human_size(self.max_bytes)
            ))
        } else {
            Ok(())
        }
    }
}

impl InferenceScope {
    /// Checks the token budget one request asks for.
    pub fn check_tokens(&self, max_tokens: u32) -> Result<(), String> {
        match self.max_tokens {
            Some(limit) if max_tokens > limit => {
                Err(format!("a request for {max_tokens} tokens is not in scope; max_tokens: {limit}"))
            }
            _ => Ok(()),
        }
    }
}

impl ChannelScope {
    /// Checks the channel a message is published on.
    pub fn check_channel(&self, channel: &str) -> Result<(), String> {
        check_name("channel", "channels", channel, Some(&self.channels))
    }
}

impl AutomationScope {
    /// Checks the application and, when given, the action.
    pub fn check(&self, app: &str, action: Option<&str>) -> Result<(), String> {
        check_name("application", "allowed_apps", app, Some(&self.allowed_apps))?;
        match action {
            Some(action) => check_name("action", "allowed_actions", action, self.allowed_actions.as_deref()),
            None => Ok(()),
        }
    }
}

impl VcsScope {
    /// Checks the repository and the operation.
    pub fn check(&self, repo: &str, operation: &str) -> Result<(), String> {
        check_name("repository", "allowed_repos", repo, Some(&self.allowed_repos))?;
        check_name("operation", "allowed_operations", operation, self.allowed_operations.as_deref())
    }
}

impl McpScope {
    /// Checks the MCP server and the tool called on it.
    pub fn check(&self, server: &str, tool: &str) -> Result<(), String> {
        check_name("MCP server", "allowed_servers", server, Some(&self.allowed_servers))?;
        check_name("MCP tool", "allowed_tools", tool, self.allowed_tools.as_deref())
    }
}

impl AgentScope {
    /// Checks how many model turns a sub-agent asks for.
    pub fn check_iterations(&self, iterations: u32) -> Result<(), String> {
        match self.max_iterations {
            Some(limit) if iterations > limit => {
                Err(format!("{iterations} iterations are not in scope; max_iterations: {limit}"))
            }
            _ => Ok(()),
        }
    }
}

impl FlowchartScope {
    /// Checks the flowchart to run.
    pub fn check(&self, flowchart: &str) -> Result<(), String> {
        check_name("flowchart", "allowed_flowcharts", flowchart, Some(&self.allowed_flowcharts))
    }
}

impl fmt::Display for SearchScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "providers: {}; rate_limit: {}", opt_names(self.providers.as_deref()), opt_rate(self.rate_limit))
    }
}

impl fmt::Display for StorageScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "max_bytes: {}", human_size(self.max_bytes))
    }
}

impl fmt::Display for InferenceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "max_tokens: {}; rate_limit: {}", opt_num(self.max_tokens), opt_rate(self.rate_limit))
    }
}

impl fmt::Display for ChannelScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "channels: {}; rate_limit: {}", join(&self.channels), opt_rate(self.rate_limit))
    }
}

impl fmt::Display for AutomationScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "allowed_apps: {}; allowed_actions: {}; rate_limit: {}; max_concurrent: {}",
            join(&self.allowed_apps),
            opt_names(self.allowed_actions.as_deref()),
            opt_rate(self.rate_limit),
            opt_num(self.max_concurrent)
        )
    }
}

impl fmt::Display for VcsScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "allowed_repos: {}; allowed_operations: {}",
            join(&self.allowed_repos),
            opt_names(self.allowed_operations.as_deref())
        )
    }
}

impl fmt::Display for McpScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "allowed_servers: {}; allowed_tools: {}",
            join(&self.allowed_servers),
            opt_names(self.allowed_tools.as_deref())
        )
    }
}

impl fmt::Display for AgentScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "max_concurrent: {}; max_iterations: {}", opt_num(self.max_concurrent), opt_num(self.max_iterations))
    }
}

impl fmt::Display for FlowchartScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "allowed_flowcharts: {}", join(&self.allowed_flowcharts))
    }
}

/// Builds the typed scope of `capability` from the fields of its table.
fn parse_family(capability: &CapabilityInfo, f: &mut Fields<'_>) -> Scope {
    match capability.key {
        "network.http" => Scope::Network(NetworkScope::parse(NetworkKind::Http, f)),
        "network.websocket" => Scope::Network(NetworkScope::parse(NetworkKind::WebSocket, f)),
        "browser.scrape" => Scope::Network(NetworkScope::parse(NetworkKind::Browser, f)),
        "filesystem.read" | "filesystem.write" => Scope::Filesystem(FsScope::parse(f)),
        "messaging.sms" => Scope::Messaging(MessagingScope::parse(MessagingKind::Sms, f)),
        "messaging.email" => Scope::Messaging(MessagingScope::parse(MessagingKind::Email, f)),
        "messaging.chat" => Scope::Messaging(MessagingScope::parse(MessagingKind::Chat, f)),
        "process.spawn" => Scope::Process(ProcessScope::parse(f)),
        "search.web" => Scope::Search(SearchScope {
            providers: f.names("providers", false),
            rate_limit: f.rate_limit("rate_limit"),
        }),
        "storage.persistent" => {
            Scope::Storage(StorageScope { max_bytes: f.size("max_bytes").unwrap_or(DEFAULT_STORAGE_BYTES) })
        }
        "ai.inference" => Scope::Inference(InferenceScope {
            max_tokens: f.u32_in("max_tokens", 1, 10_000_000),
            rate_limit: f.rate_limit("rate_limit"),
        }),
        "channel.send" => Scope::Channel(ChannelScope {
            channels: f.names("channels", true).unwrap_or_default(),
            rate_limit: f.rate_limit("rate_limit"),
        }),
        "app.automation" => Scope::Automation(AutomationScope {
            allowed_apps: f.names("allowed_apps", true).unwrap_or_default(),
            allowed_actions: f.names("allowed_actions", false),
            rate_limit: f.rate_limit("rate_limit"),
            max_concurrent: f.u32_in("max_concurrent", 1, 1024),
        }),
        "vcs.operations" => Scope::Vcs(VcsScope {
            allowed_repos: f.names("allowed_repos", true).unwrap_or_default(),
            allowed_operations: f.names("allowed_operations", false),
        }),
        "mcp.server" => Scope::Mcp(McpScope {
            allowed_servers: f.names("allowed_servers", true).unwrap_or_default(),
            allowed_tools: f.names("allowed_tools", false),
        }),
        "agent.spawn" => Scope::Agent(AgentScope {
            max_concurrent: f.u32_in("max_concurrent", 1, 1024),
            max_iterations: f.u32_in("max_iterations", 1, 1_000_000),
        }),
        "flowchart.invoke" => Scope::Flowchart(FlowchartScope {
            allowed_flowcharts: f.names("allowed_flowcharts", true).unwrap_or_default(),
        }),
        _ => Scope::None,
    }
}

/// Quotes a TOML key for a field path when it is not a bare key.
pub(crate) fn display_key(key: &str) -> String {
    if !key.is_empty() && key.len() <= 64 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        key.to_owned()
    } else {
        format!("{:?}", truncate(key, 64))
    }
}

/// Reads typed fields out of one scope table, recording every problem with its path.
pub(crate) struct Fields<'a> {
    pub(crate) table: &'a toml::Table,
    pub(crate) base: &'a str,
    pub(crate) problems: &'a mut Problems,
}

impl Fields<'_> {
    pub(crate) fn path(&self, name: &str) -> String {
        if self.base.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.base)
        }
    }

    pub(crate) fn problem(&mut self, field: String, message: impl Into<String>, fix: impl Into<String>) {
        self.problems.push(field, message, fix);
    }

    /// A list of strings; `None` when absent (or broken, with a problem recorded).
    /// Each item comes with its field path. Empty lists and duplicates are refused.
    pub(crate) fn strings(&mut self, name: &str, required: bool) -> Option<Vec<(String, String)>> {
        let path = self.path(name);
        let value = match self.table.get(name) {
            Some(v) => v,
            None => {
                if required {
                    self.problem(
                        path,
                        format!("missing required scope field {name:?}"),
                        format!("add {name} = [\"...\"] listing what the extension needs"),
                    );
                }
                return None;
            }
        };
        let Some(items) = value.as_array() else {
            self.problem(
                path,
                format!("must be a list of strings, found {}", value.type_str()),
                format!("write {name} = [\"...\"]"),
            );
            return None;
        };
        if items.is_empty() {
            let fix = if required {
                "list at least one entry".to_owned()
            } else {
                format!("list at least one entry, or remove {name} to allow any")
            };
            self.problem(path, "must not be empty", fix);
            return None;
        }
        if items.len() > MAX_LIST_LEN {
            self.problem(
                path,
                format!("has {} entries, more than the limit of {MAX_LIST_LEN}", items.len()),
                "list fewer, broader entries",
            );
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            match item.as_str() {
                Some(s) if s.len() > MAX_ENTRY_LEN => {
                    self.problem(
                        ipath,
                        format!("entry is {} bytes long, more than the limit of {MAX_ENTRY_LEN}", s.len()),
                        "shorten it",
                    );
                    ok = false;
                }
                Some(s) => out.push((ipath, s.to_owned())),
                None => {
                    self.problem(ipath, format!("must be a string, found {}", item.type_str()), "quote the entry");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// Appends `item` unless an equal entry (after normalization) is already
    /// there, in which case the repetition is reported at `path`.
    pub(crate) fn push_unique<T: PartialEq + fmt::Display>(&mut self, out: &mut Vec<T>, path: String, item: T) {
        if out.contains(&item) {
            self.problem(path, format!("duplicate entry {item}"), "remove the repeated entry");
        } else {
            out.push(item);
        }
    }

    /// A list of plain names matched exactly (channels, apps, repositories...).
    pub(crate) fn names(&mut self, name: &str, required: bool) -> Option<Vec<String>> {
        let items = self.strings(name, required)?;
        let mut good = Vec::with_capacity(items.len());
        let before = self.problems.len();
        for (path, s) in items {
            if s.is_empty() || s.trim() != s {
                self.problem(
                    path,
                    format!("{:?} is empty or has spaces around it", truncate(&s, 64)),
                    "remove the surrounding spaces",
                );
            } else if s.chars().any(|c| c.is_control() || is_invisible(c)) {
                self.problem(
                    path,
                    format!("{:?} contains control or invisible characters", truncate(&s, 64)),
                    "write the name with visible characters only",
                );
            } else {
                self.push_unique(&mut good, path, s);
            }
        }
        (self.problems.len() == before).then_some(good)
    }

    pub(crate) fn u32_in(&mut self, name: &str, min: u32, max: u32) -> Option<u32> {
        let path = self.path(name);
        let value = self.table.get(name)?;
        match value.as_integer() {
            Some(n) if n >= i64::from(min) && n <= i64::from(max) => u32::try_from(n).ok(),
            Some(n) => {
                self.problem(path, format!("{n} is out of range"), format!("use a whole number from {min} to {max}"));
                None
            }
            None => {
                self.problem(
                    path,
                    format!("must be a whole number, found {}", value.type_str()),
                    format!("use a whole number from {min} to {max}"),
                );
                None
            }
        }
    }

    /// A byte size: integer or a string with a unit ("10MB", "512KiB"); must be > 0.
    pub(crate) fn size(&mut self, name: &str) -> Option<u64> {
        let path = self.path(name);
        let value = self.table.get(name)?;
        let fix = "use a whole number of bytes or a string such as \"10MB\" or \"512KiB\"";
        let parsed = match value {
            toml::Value::Integer(n) => u64::try_from(*n).map_err(|_| format!("{n} is negative")),
            toml::Value::String(s) => parse_size(s),
            other => Err(format!("must be a size, found {}", other.type_str())),
        };
        match parsed {
            Ok(0) => {
                self.problem(path, "must be greater than zero", fix);
                None
            }
            Ok(n) => Some(n),
            Err(message) => {
                self.problem(path, message, fix);
                None
            }
        }
    }

    pub(crate) fn rate_limit(&mut self, name: &str) -> Option<RateLimit> {
        let path = self.path(name);
        let value = self.table.get(name)?;
        let fix = "write it as \"N/second\", \"N/minute\", \"N/hour\" or \"N/day\", e.g. \"10/minute\"";
        match value.as_str() {
            Some(s) => match s.parse::<RateLimit>() {
                Ok(r) => Some(r),
                Err(e) => {
                    self.problem(path, format!("{:?}: {}", e.input, e.reason), fix);
                    None
                }
            },
            None => {
                self.problem(path, format!("must be a string, found {}", value.type_str()), fix);
                None
            }
        }
    }
}

pub(crate) use crate::text::is_invisible;

/// `a` allows nothing beyond `b`, where `None` means "any".
pub(crate) fn opt_list_within(a: &Option<Vec<String>>, b: &Option<Vec<String>>) -> bool {
    match (a, b) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => set_within(a, b),
    }
}

pub(crate) fn set_within<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    a.iter().all(|x| b.contains(x))
}

/// `a` is at most `b`, where `None` stands for `default`, the value the host applies
/// when the scope sets none (`None` there: no limit at all). Comparing the effective
/// values matters both ways: `max_concurrent = 1024` replacing an unset limit whose
/// host default is 4 widens the scope, and an unset limit replacing `max_pages = 2000`
/// (default 1,000) narrows it.
pub(crate) fn limit_within<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>, default: Option<T>) -> bool {
    match (a.or(default), b.or(default)) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => a <= b,
    }
}

pub(crate) fn rate_within(a: Option<RateLimit>, b: Option<RateLimit>) -> bool {
    match (a, b) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => a.is_within(&b),
    }
}

pub(crate) fn put_strings(t: &mut toml::Table, name: &str, items: &[String]) {
    t.insert(name.to_owned(), toml::Value::Array(items.iter().map(|s| toml::Value::String(s.clone())).collect()));
}

pub(crate) fn put_display<T: fmt::Display>(t: &mut toml::Table, name: &str, items: &[T]) {
    t.insert(name.to_owned(), toml::Value::Array(items.iter().map(|s| toml::Value::String(s.to_string())).collect()));
}

pub(crate) fn put_opt_strings(t: &mut toml::Table, name: &str, items: Option<&[String]>) {
    if let Some(items) = items {
        put_strings(t, name, items);
    }
}

pub(crate) fn put_opt_u32(t: &mut toml::Table, name: &str, n: Option<u32>) {
    if let Some(n) = n {
        t.insert(name.to_owned(), toml::Value::Integer(i64::from(n)));
    }
}

pub(crate) fn put_u64(t: &mut toml::Table, name: &str, n: u64) {
    // Sizes beyond i64 cannot be TOML integers; the size string form holds any u64.
    let value = i64::try_from(n).map_or_else(|_| toml::Value::String(n.to_string()), toml::Value::Integer);
    t.insert(name.to_owned(), value);
}

pub(crate) fn put_rate(t: &mut toml::Table, r: Option<RateLimit>) {
    if let Some(r) = r {
        t.insert("rate_limit".to_owned(), toml::Value::String(r.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{catalog, lookup};

    fn parse(cap: &str, text: &str) -> Result<Scope, Vec<Problem>> {
        let info = lookup(cap).ok_or_else(|| vec![Problem::new("", format!("no capability {cap}"), "")])?;
        let value: toml::Value = toml::from_str(text).map_err(|e| vec![Problem::new("", e.to_string(), "")])?;
        Scope::parse(info, Some(&value), "scope")
    }

    fn ok(cap: &str, text: &str) -> Scope {
        match parse(cap, text) {
            Ok(s) => s,
            Err(p) => panic!("{cap} {text:?} refused: {p:?}"),
        }
    }

    fn fields(cap: &str, text: &str) -> Vec<String> {
        match parse(cap, text) {
            Ok(s) => panic!("{cap} {text:?} accepted as {s:?}"),
            Err(p) => p.into_iter().map(|p| p.field).collect(),
        }
    }

    #[test]
    fn rate_limit_forms() {
        let cases = [
            ("10/second", 10, 1),
            ("10/s", 10, 1),
            ("10/sec", 10, 1),
            ("5/minute", 5, 60),
            ("5/min", 5, 60),
            ("5/minutes", 5, 60),
            ("7/hour", 7, 3600),
            ("7/h", 7, 3600),
            ("1/day", 1, 86400),
            ("1/d", 1, 86400),
            (" 3 / hour ", 3, 3600),
        ];
        for (text, count, secs) in cases {
            let r: RateLimit = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((r.count, r.per), (count, Duration::from_secs(secs)), "{text}");
            // Display is canonical and parses back.
            assert_eq!(r.to_string().parse::<RateLimit>(), Ok(r));
        }
        for bad in [
            "",
            "10",
            "/minute",
            "0/minute",
            "-1/minute",
            "1.5/minute",
            "10/fortnight",
            "10/",
            "99999999999/s",
            "1000001/s",
            "ten/minute",
            "10/Minute",
        ] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn rate_limit_within() {
        let r = |s: &str| s.parse::<RateLimit>().unwrap_or_else(|e| panic!("{e}"));
        assert!(r("10/minute").is_within(&r("10/minute")));
        assert!(r("5/minute").is_within(&r("10/minute")));
        assert!(!r("11/minute").is_within(&r("10/minute")));
        assert!(r("1/minute").is_within(&r("60/hour")));
        assert!(!r("2/minute").is_within(&r("60/hour")));
        assert!(!r("24/day").is_within(&r("1/hour")));
        assert!(r("1/hour").is_within(&r("24/day")));
        assert!(r("10/hour").is_within(&r("10/minute")));
        assert!(!r("11/hour").is_within(&r("10/minute")));
    }

    #[test]
    fn rate_limit_serde_is_validated() {
        let json = serde_json::to_string(&r#"5/minute"#.parse::<RateLimit>().ok()).unwrap_or_default();
        assert_eq!(json, "\"5/minute\"");
        assert!(serde_json::from_str::<RateLimit>("\"0/minute\"").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("10KB"), Ok(10_000));
        assert_eq!(parse_size("10kb"), Ok(10_000));
        assert_eq!(parse_size("10 MiB"), Ok(10 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1TB"), Ok(1_000_000_000_000));
        for bad in ["", "MB", "1.5MB", "-1", "10 XB", "99999999999999999999", "18446744073709551615TiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(human_size(10 << 20), "10 MiB");
        assert_eq!(human_size(1000), "1000 bytes");
    }

    #[test]
    fn capabilities_without_scope_accept_nothing() {
        for cap in catalog().iter().filter(|c| !c.has_scope()) {
            assert_eq!(Scope::parse(cap, None, "scope"), Ok(Scope::None), "{}", cap.key);
            let empty = toml::Value::Table(toml::Table::new());
            assert_eq!(Scope::parse(cap, Some(&empty), "scope"), Ok(Scope::None), "{}", cap.key);
            assert_eq!(fields(cap.key, "domains = ['a.example.com']"), ["scope.domains"], "{}", cap.key);
            assert!(Scope::None.fits(cap));
        }
    }

    #[test]
    fn every_capability_parses_some_scope_that_fits_it() {
        for cap in catalog() {
            let text = match cap.key {
                "network.http" | "network.websocket" | "browser.scrape" => "domains = ['api.example.com']",
                "filesystem.read" | "filesystem.write" => "paths = ['/srv/data']",
                "messaging.sms" => "recipients = ['+15551234567']",
                "messaging.email" => "recipients = ['a@example.com']",
                "messaging.chat" => "recipients = ['#general']",
                "process.spawn" => "executables = ['/usr/bin/git']",
                "channel.send" => "channels = ['alerts']",
                "app.automation" => "allowed_apps = ['org.mozilla.firefox']",
                "vcs.operations" => "allowed_repos = ['~/src/omni']",
                "mcp.server" => "allowed_servers = ['github']",
                "flowchart.invoke" => "allowed_flowcharts = ['triage']",
                _ => "",
            };
            let scope = ok(cap.key, text);
            assert!(scope.fits(cap), "{}", cap.key);
            assert!(scope.is_within(&scope), "{}", cap.key);
            // Other capabilities' scopes do not fit.
            let others = catalog().iter().filter(|o| o.key != cap.key && !scope.fits(o)).count();
            let same_family = catalog().iter().filter(|o| o.key != cap.key && scope.fits(o)).count();
            assert_eq!(others + same_family, 26);
            if cap.has_scope() {
                // Only filesystem.read/write share a scope type.
                assert!(same_family <= 1, "{} fits {same_family} others", cap.key);
            }
            // The TOML form parses back to the same scope.
            if let Some(t) = scope.to_toml() {
                let back = Scope::parse(cap, Some(&toml::Value::Table(t)), "scope");
                assert_eq!(back.as_ref(), Ok(&scope), "{}", cap.key);
            }
            // The JSON form too.
            let json = serde_json::to_string(&scope).unwrap_or_default();
            let back: Scope = serde_json::from_str(&json).unwrap_or(Scope::None);
            assert_eq!(back, scope, "{} via {json}", cap.key);
            assert!(!scope.to_string().is_empty());
            assert!(!scope.to_string().contains('\n'));
        }
    }

    #[test]
    fn unknown_fields_name_the_valid_ones() {
        let err = parse("network.http", "domains = ['a.example.com']\nmethod = ['GET']\n'weird key' = 1").unwrap_err();
        let fields: Vec<_> = err.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["scope.method", "scope.\"weird key\""]);
        assert!(err[0].fix.contains("domains, methods, ports"));
        assert!(err[0].message.contains("method"));
        // `ports` is not a browser.scrape field.
        assert_eq!(fields_of("browser.scrape", "domains = ['a.example.com']\nports = [443]"), ["scope.ports"]);
    }

    fn fields_of(cap: &str, text: &str) -> Vec<String> {
        fields(cap, text)
    }

    #[test]
    fn scope_must_be_a_table() {
        let info = lookup("network.http").expect("catalog");
        let err = Scope::parse(info, Some(&toml::Value::String("x".into())), "permissions[3].scope").unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].field, "permissions[3].scope");
    }

    #[test]
    fn list_field_errors() {
        assert_eq!(fields("channel.send", ""), ["scope.channels"]);
        assert_eq!(fields("channel.send", "channels = []"), ["scope.channels"]);
        assert_eq!(fields("channel.send", "channels = 'alerts'"), ["scope.channels"]);
        assert_eq!(fields("channel.send", "channels = ['a', 3, 'b']"), ["scope.channels[1]"]);
        assert_eq!(fields("channel.send", "channels = ['a', 'a']"), ["scope.channels[1]"]);
        assert_eq!(fields("channel.send", "channels = [' a']"), ["scope.channels[0]"]);
        assert_eq!(fields("channel.send", "channels = ['a\u{202E}b']"), ["scope.channels[0]"]);
        let long = format!("channels = ['{}']", "x".repeat(MAX_ENTRY_LEN + 1));
        assert_eq!(fields("channel.send", &long), ["scope.channels[0]"]);
        let many =
            format!("channels = [{}]", (0..=MAX_LIST_LEN).map(|i| format!("'c{i}'")).collect::<Vec<_>>().join(","));
        assert_eq!(fields("channel.send", &many), ["scope.channels"]);
        assert_eq!(fields("mcp.server", "allowed_servers = ['gh']\nallowed_tools = []"), ["scope.allowed_tools"]);
    }

    #[test]
    fn number_and_rate_errors() {
        assert_eq!(fields("agent.spawn", "max_concurrent = 0"), ["scope.max_concurrent"]);
        assert_eq!(fields("agent.spawn", "max_concurrent = 5000"), ["scope.max_concurrent"]);
        assert_eq!(fields("agent.spawn", "max_iterations = '10'"), ["scope.max_iterations"]);
        assert_eq!(
            fields("agent.spawn", "max_iterations = 1.5\nmax_concurrent = -1"),
            ["scope.max_concurrent", "scope.max_iterations"]
        );
        assert_eq!(fields("ai.inference", "rate_limit = 10"), ["scope.rate_limit"]);
        assert_eq!(fields("ai.inference", "rate_limit = '10/fortnight'"), ["scope.rate_limit"]);
        assert_eq!(fields("ai.inference", "max_tokens = 0"), ["scope.max_tokens"]);
        assert_eq!(fields("storage.persistent", "max_bytes = 0"), ["scope.max_bytes"]);
        assert_eq!(fields("storage.persistent", "max_bytes = -5"), ["scope.max_bytes"]);
        assert_eq!(fields("storage.persistent", "max_bytes = '10 parsecs'"), ["scope.max_bytes"]);
        assert_eq!(fields("storage.persistent", "max_bytes = true"), ["scope.max_bytes"]);
    }

    #[test]
    fn storage_defaults_and_sizes() {
        assert_eq!(ok("storage.persistent", ""), Scope::Storage(StorageScope { max_bytes: DEFAULT_STORAGE_BYTES }));
        assert_eq!(
            ok("storage.persistent", "max_bytes = '1MB'"),
            Scope::Storage(StorageScope { max_bytes: 1_000_000 })
        );
        assert_eq!(ok("storage.persistent", "max_bytes = 4096"), Scope::Storage(StorageScope { max_bytes: 4096 }));
        let small = ok("storage.persistent", "max_bytes = '1MiB'");
        let default = ok("storage.persistent", "");
        assert!(small.is_within(&default));
        assert!(!default.is_within(&small));
        assert_eq!(default.to_string(), "max_bytes: 10 MiB");
    }

    #[test]
    fn simple_scopes_within() {
        let a = ok("search.web", "providers = ['brave']\nrate_limit = '10/minute'");
        let b = ok("search.web", "providers = ['brave', 'kagi']\nrate_limit = '20/minute'");
        let any = ok("search.web", "");
        assert!(a.is_within(&b));
        assert!(!b.is_within(&a));
        assert!(a.is_within(&any));
        assert!(b.is_within(&any));
        assert!(!any.is_within(&a));

        let a = ok("app.automation", "allowed_apps = ['mail']\nallowed_actions = ['read']\nmax_concurrent = 1");
        let b = ok("app.automation", "allowed_apps = ['mail', 'calendar']\nmax_concurrent = 2");
        assert!(a.is_within(&b));
        assert!(!b.is_within(&a));
        let c = ok("app.automation", "allowed_apps = ['mail']\nallowed_actions = ['read']\nmax_concurrent = 3");
        assert!(!c.is_within(&b));

        let a = ok("vcs.operations", "allowed_repos = ['r1']\nallowed_operations = ['status']");
        let b = ok("vcs.operations", "allowed_repos = ['r1', 'r2']\nallowed_operations = ['status', 'diff']");
        assert!(a.is_within(&b) && !b.is_within(&a));

        let a = ok("mcp.server", "allowed_servers = ['gh']\nallowed_tools = ['search']");
        let b = ok("mcp.server", "allowed_servers = ['gh']");
        assert!(a.is_within(&b) && !b.is_within(&a));

        let a = ok("agent.spawn", "max_concurrent = 1\nmax_iterations = 5");
        let b = ok("agent.spawn", "max_concurrent = 2");
        assert!(a.is_within(&b) && !b.is_within(&a));

        let a = ok("flowchart.invoke", "allowed_flowcharts = ['x']");
        let b = ok("flowchart.invoke", "allowed_flowcharts = ['x', 'y']");
        assert!(a.is_within(&b) && !b.is_within(&a));

        let a = ok("channel.send", "channels = ['x']\nrate_limit = '1/minute'");
        let b = ok("channel.send", "channels = ['x']");
        assert!(a.is_within(&b) && !b.is_within(&a));

        let a = ok("ai.inference", "max_tokens = 100");
        let b = ok("ai.inference", "max_tokens = 1000\nrate_limit = '10/minute'");
        assert!(!a.is_within(&b), "no rate limit is not within a rate limit");
        assert!(!b.is_within(&a), "more tokens");

        // Different scope types are never within each other.
        assert!(!Scope::None.is_within(&b));
        assert!(!b.is_within(&Scope::None));
    }

    #[test]
    fn name_checks() {
        let Scope::Search(search) = ok("search.web", "providers = ['brave']") else { panic!() };
        assert!(search.check_provider("brave").is_ok());
        let e = search.check_provider("evil").unwrap_err();
        assert!(e.contains("\"evil\"") && e.contains("providers: brave"), "{e}");
        let Scope::Search(any) = ok("search.web", "") else { panic!() };
        assert!(any.check_provider("whatever").is_ok());

        let Scope::Storage(storage) = ok("storage.persistent", "max_bytes = 100") else { panic!() };
        assert!(storage.check_total(100).is_ok() && storage.check_total(101).is_err());

        let Scope::Inference(inf) = ok("ai.inference", "max_tokens = 10") else { panic!() };
        assert!(inf.check_tokens(10).is_ok() && inf.check_tokens(11).is_err());

        let Scope::Channel(ch) = ok("channel.send", "channels = ['alerts']") else { panic!() };
        assert!(ch.check_channel("alerts").is_ok());
        assert!(ch.check_channel("Alerts").is_err());
        assert!(ch.check_channel("alerts ").is_err());

        let Scope::Automation(auto) = ok("app.automation", "allowed_apps = ['mail']\nallowed_actions = ['read']")
        else {
            panic!()
        };
        assert!(auto.check("mail", Some("read")).is_ok());
        assert!(auto.check("mail", None).is_ok());
        assert!(auto.check("mail", Some("send")).is_err());
        assert!(auto.check("shell", Some("read")).is_err());

        let Scope::Vcs(vcs) = ok("vcs.operations", "allowed_repos = ['~/src/omni']") else { panic!() };
        assert!(vcs.check("~/src/omni", "push").is_ok());
        assert!(vcs.check("~/src/other", "status").is_err());

        let Scope::Mcp(mcp) = ok("mcp.server", "allowed_servers = ['github']\nallowed_tools = ['create_issue']") else {
            panic!()
        };
        assert!(mcp.check("github", "create_issue").is_ok());
        let e = mcp.check("github", "delete_repo").unwrap_err();
        assert!(e.contains("delete_repo") && e.contains("create_issue"), "{e}");

        let Scope::Agent(agent) = ok("agent.spawn", "max_iterations = 5") else { panic!() };
        assert!(agent.check_iterations(5).is_ok() && agent.check_iterations(6).is_err());
        let Scope::Agent(agent) = ok("agent.spawn", "") else { panic!() };
        assert!(agent.check_iterations(u32::MAX).is_ok());

        let Scope::Flowchart(fc) = ok("flowchart.invoke", "allowed_flowcharts = ['triage']") else { panic!() };
        assert!(fc.check("triage").is_ok() && fc.check("deploy").is_err());
    }

    #[test]
    fn display_lines() {
        assert_eq!(ok("search.web", "").to_string(), "providers: any; rate_limit: host default");
        assert_eq!(
            ok("channel.send", "channels = ['a', 'b']\nrate_limit = '5/min'").to_string(),
            "channels: a, b; rate_limit: 5/minute"
        );
        assert_eq!(
            ok("agent.spawn", "max_iterations = 3").to_string(),
            "max_concurrent: host default; max_iterations: 3"
        );
        assert_eq!(Scope::None.to_string(), "no scope");
    }

    #[test]
    fn accessors() {
        assert!(Scope::None.as_network().is_none());
        let s = ok("app.automation", "allowed_apps = ['a']\nrate_limit = '1/s'\nmax_concurrent = 2");
        assert_eq!(s.rate_limit().map(|r| r.count), Some(1));
        assert_eq!(s.max_concurrent(), Some(2));
        assert_eq!(display_key("ok_key-1"), "ok_key-1");
        assert_eq!(display_key("a b"), "\"a b\"");
        assert_eq!(truncate("abcdef", 3), "abc…");
    }

    /// An update that sets a limit the installed manifest left unset replaces the host's
    /// default with its own number: above the default it widens the scope and needs a
    /// review; at or below it, it narrows.
    #[test]
    fn setting_an_unset_limit_is_compared_with_the_host_default() {
        let process = "executables = ['/usr/bin/env']";
        let agent = "";
        let browser = "domains = ['example.com']";
        for (cap, base, field, default) in [
            ("process.spawn", process, "max_concurrent", DEFAULT_PROCESS_MAX_CONCURRENT),
            ("agent.spawn", agent, "max_concurrent", DEFAULT_AGENT_MAX_CONCURRENT),
            ("browser.scrape", browser, "max_pages", DEFAULT_BROWSER_MAX_PAGES),
        ] {
            let unset = ok(cap, base);
            let with = |n: u32| ok(cap, &format!("{base}\n{field} = {n}"));
            let raised = with(if field == "max_pages" { 100_000 } else { 1024 });
            assert!(!raised.is_within(&unset), "{cap}: unset -> {field} = high installed without review");
            assert!(!with(default + 1).is_within(&unset), "{cap}: {field} = default + 1");
            assert!(with(default).is_within(&unset), "{cap}: {field} = the default itself");
            assert!(unset.is_within(&with(default)), "{cap}: unset is the default");
            assert!(!unset.is_within(&with(default.saturating_sub(1).max(1))) || default == 1, "{cap}");
            assert!(unset.is_within(&with(default + 1)), "{cap}: dropping a raised limit narrows");
        }
        // Where unset means no limit, any number narrows and unsetting widens.
        for (cap, base, field) in [
            ("app.automation", "allowed_apps = ['mail']", "max_concurrent"),
            ("ai.inference", "", "max_tokens"),
            ("agent.spawn", "", "max_iterations"),
        ] {
            let unset = ok(cap, base);
            let set = ok(cap, &format!("{base}\n{field} = 1000"));
            assert!(set.is_within(&unset) && !unset.is_within(&set), "{cap} {field}");
        }
    }
}
