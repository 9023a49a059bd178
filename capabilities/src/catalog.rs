//! The fixed catalog of the 27 capabilities an extension can ask for.
//!
//! Every capability has a dotted key used in manifests and grants
//! (`network.http`), a [`Severity`] shown at install time, the WIT interface a
//! component imports to use it (`omni:caps/http`), and the names of the scope
//! fields a manifest may set for it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How much harm a capability can do if an extension misuses it.
///
/// Ordered from least to most dangerous, so `Severity::High > Severity::Medium`.
///
/// ```
/// use omni_capabilities::Severity;
/// assert!(Severity::Critical > Severity::Low);
/// assert_eq!(Severity::High.to_string(), "high");
/// assert_eq!("medium".parse::<Severity>().unwrap(), Severity::Medium);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Annoyance at worst (a notification, writing the clipboard).
    Low,
    /// Can leak or spend something limited (network within a scope, clipboard reads).
    Medium,
    /// Touches personal data, devices or other people (files, messages, camera).
    High,
    /// Can run arbitrary code outside the sandbox (process spawning).
    Critical,
}

impl Severity {
    /// The lowercase name used in manifests, JSON output and the review table.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when a string is not one of `low`, `medium`, `high`, `critical`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity {0:?}: expected one of low, medium, high, critical")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            other => Err(UnknownSeverity(other.to_owned())),
        }
    }
}

/// One entry of the capability catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct CapabilityInfo {
    /// The key used in manifests and grants, e.g. `"network.http"`.
    pub key: &'static str,
    /// How dangerous the capability is.
    pub severity: Severity,
    /// The WIT interface a component imports to use it, without version, e.g. `"omni:caps/http"`.
    pub interface: &'static str,
    /// The scope fields a manifest may set for this capability (empty: no scope).
    pub scope_fields: &'static [&'static str],
    /// One line a person reads at install time.
    pub summary: &'static str,
}

impl CapabilityInfo {
    /// Whether the manifest may (and for some fields must) give this capability a scope.
    pub fn has_scope(&self) -> bool {
        !self.scope_fields.is_empty()
    }
}

macro_rules! cap {
    ($key:literal, $sev:ident, $iface:literal, [$($field:literal),*], $summary:literal) => {
        CapabilityInfo {
            key: $key,
            severity: Severity::$sev,
            interface: $iface,
            scope_fields: &[$($field),*],
            summary: $summary,
        }
    };
}

// One row per capability, in the order of the design table.
#[rustfmt::skip]
static CATALOG: [CapabilityInfo; 27] = [
    cap!("network.http", Medium, "omni:caps/http", ["domains", "methods", "ports"],
        "Send HTTP requests to the listed domains"),
    cap!("network.websocket", Medium, "omni:caps/websocket", ["domains", "ports"],
        "Open WebSocket connections to the listed domains"),
    cap!("filesystem.read", High, "omni:caps/fs-read", ["paths", "extensions", "max_size"],
        "Read files and list folders under the listed paths"),
    cap!("filesystem.write", High, "omni:caps/fs-write", ["paths", "extensions", "max_size"],
        "Create, change and delete files under the listed paths"),
    cap!("clipboard.read", Medium, "omni:caps/clipboard-read", [],
        "Read whatever is on the clipboard"),
    cap!("clipboard.write", Low, "omni:caps/clipboard-write", [],
        "Replace the clipboard contents"),
    cap!("messaging.sms", High, "omni:caps/sms", ["recipients", "rate_limit"],
        "Send text messages in your name to the listed numbers"),
    cap!("messaging.email", High, "omni:caps/email", ["recipients", "rate_limit"],
        "Send email in your name to the listed addresses"),
    cap!("messaging.chat", High, "omni:caps/chat", ["recipients", "rate_limit"],
        "Post chat messages in your name to the listed recipients"),
    cap!("search.web", Medium, "omni:caps/web-search", ["providers", "rate_limit"],
        "Run web searches through the listed providers"),
    cap!("process.spawn", Critical, "omni:caps/process", ["executables", "allowed_args", "denied_args", "max_concurrent"],
        "Run the listed programs on this machine, outside the sandbox"),
    cap!("system.notifications", Low, "omni:caps/notifications", [],
        "Show desktop notifications"),
    cap!("system.scheduling", Low, "omni:caps/scheduling", [],
        "Schedule its own tools to run later or periodically"),
    cap!("device.camera", High, "omni:caps/camera", [],
        "Take pictures with the camera"),
    cap!("device.microphone", High, "omni:caps/microphone", [],
        "Record audio from the microphone"),
    cap!("device.location", High, "omni:caps/location", [],
        "Know where this device is"),
    cap!("storage.persistent", Low, "omni:caps/kv", ["max_bytes"],
        "Keep its own data between runs, up to a size limit"),
    cap!("browser.scrape", High, "omni:caps/browser", ["domains", "max_pages"],
        "Load and read web pages on the listed domains in a headless browser"),
    cap!("ai.inference", Medium, "omni:caps/inference", ["max_tokens", "rate_limit"],
        "Call the configured language model, which may cost money"),
    cap!("channel.send", High, "omni:caps/channel", ["channels", "rate_limit"],
        "Publish messages on the listed channels"),
    cap!("app.automation", High, "omni:caps/automation", ["allowed_apps", "allowed_actions", "rate_limit", "max_concurrent"],
        "Control the listed applications on this machine"),
    cap!("vcs.operations", High, "omni:caps/vcs", ["allowed_repos", "allowed_operations"],
        "Run version-control operations on the listed repositories"),
    cap!("mcp.server", High, "omni:caps/mcp", ["allowed_servers", "allowed_tools"],
        "Call tools of the listed MCP servers"),
    cap!("code.intelligence", Medium, "omni:caps/code-intel", [],
        "Query language servers about your code"),
    cap!("debug.session", High, "omni:caps/debugger", [],
        "Start and control debugging sessions"),
    cap!("agent.spawn", High, "omni:caps/agent", ["max_concurrent", "max_iterations"],
        "Start AI sub-agents that act on its behalf"),
    cap!("flowchart.invoke", Medium, "omni:caps/flowchart", ["allowed_flowcharts"],
        "Run the listed flowcharts"),
];

/// All 27 capabilities, in the order of the design table.
///
/// ```
/// let keys: Vec<_> = omni_capabilities::catalog().iter().map(|c| c.key).collect();
/// assert_eq!(keys.len(), 27);
/// assert_eq!(keys[0], "network.http");
/// ```
pub fn catalog() -> &'static [CapabilityInfo] {
    &CATALOG
}

/// The catalog entry for a capability key, or `None` when the key is unknown.
///
/// Keys are case-sensitive: `"Network.HTTP"` is not a capability.
///
/// ```
/// use omni_capabilities::{lookup, Severity};
/// assert_eq!(lookup("process.spawn").unwrap().severity, Severity::Critical);
/// assert!(lookup("network.ftp").is_none());
/// ```
pub fn lookup(key: &str) -> Option<&'static CapabilityInfo> {
    CATALOG.iter().find(|c| c.key == key)
}

/// The capability a component import belongs to.
///
/// Accepts the interface name with any version (`"omni:caps/http@0.1.0"`) or none
/// (`"omni:caps/http"`). Returns `None` for anything that is not a capability
/// interface, including the shared `omni:caps/types` and every `wasi:` import.
///
/// ```
/// use omni_capabilities::capability_for_import;
/// assert_eq!(capability_for_import("omni:caps/fs-read@0.1.0").unwrap().key, "filesystem.read");
/// assert!(capability_for_import("omni:caps/types@0.1.0").is_none());
/// assert!(capability_for_import("wasi:io/streams@0.2.6").is_none());
/// ```
pub fn capability_for_import(import: &str) -> Option<&'static CapabilityInfo> {
    let name = match import.split_once('@') {
        Some((name, _version)) => name,
        None => import,
    };
    CATALOG.iter().find(|c| c.interface == name)
}

/// The catalog key closest to `key` by edit distance, used to suggest a fix for typos.
pub(crate) fn closest_key(key: &str) -> Option<&'static str> {
    CATALOG
        .iter()
        .map(|c| (edit_distance(key, c.key), c.key))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over chars; inputs here are short (capped by the caller's limits).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const EXPECTED_INTERFACES: [(&str, &str); 27] = [
        ("network.http", "omni:caps/http"),
        ("network.websocket", "omni:caps/websocket"),
        ("filesystem.read", "omni:caps/fs-read"),
        ("filesystem.write", "omni:caps/fs-write"),
        ("clipboard.read", "omni:caps/clipboard-read"),
        ("clipboard.write", "omni:caps/clipboard-write"),
        ("messaging.sms", "omni:caps/sms"),
        ("messaging.email", "omni:caps/email"),
        ("messaging.chat", "omni:caps/chat"),
        ("search.web", "omni:caps/web-search"),
        ("process.spawn", "omni:caps/process"),
        ("system.notifications", "omni:caps/notifications"),
        ("system.scheduling", "omni:caps/scheduling"),
        ("device.camera", "omni:caps/camera"),
        ("device.microphone", "omni:caps/microphone"),
        ("device.location", "omni:caps/location"),
        ("storage.persistent", "omni:caps/kv"),
        ("browser.scrape", "omni:caps/browser"),
        ("ai.inference", "omni:caps/inference"),
        ("channel.send", "omni:caps/channel"),
        ("app.automation", "omni:caps/automation"),
        ("vcs.operations", "omni:caps/vcs"),
        ("mcp.server", "omni:caps/mcp"),
        ("code.intelligence", "omni:caps/code-intel"),
        ("debug.session", "omni:caps/debugger"),
        ("agent.spawn", "omni:caps/agent"),
        ("flowchart.invoke", "omni:caps/flowchart"),
    ];

    #[test]
    fn catalog_matches_design_order_and_interfaces() {
        let got: Vec<_> = catalog().iter().map(|c| (c.key, c.interface)).collect();
        assert_eq!(got, EXPECTED_INTERFACES.to_vec());
    }

    #[test]
    fn keys_and_interfaces_are_unique() {
        let keys: HashSet<_> = catalog().iter().map(|c| c.key).collect();
        let ifaces: HashSet<_> = catalog().iter().map(|c| c.interface).collect();
        assert_eq!(keys.len(), 27);
        assert_eq!(ifaces.len(), 27);
    }

    #[test]
    fn severities_follow_design() {
        let sev = |k| lookup(k).map(|c| c.severity);
        assert_eq!(sev("network.http"), Some(Severity::Medium));
        assert_eq!(sev("filesystem.write"), Some(Severity::High));
        assert_eq!(sev("clipboard.write"), Some(Severity::Low));
        assert_eq!(sev("process.spawn"), Some(Severity::Critical));
        assert_eq!(sev("storage.persistent"), Some(Severity::Low));
        assert_eq!(sev("code.intelligence"), Some(Severity::Medium));
        assert_eq!(sev("flowchart.invoke"), Some(Severity::Medium));
        let critical: Vec<_> = catalog().iter().filter(|c| c.severity == Severity::Critical).map(|c| c.key).collect();
        assert_eq!(critical, ["process.spawn"]);
    }

    #[test]
    fn scope_fields_follow_design() {
        let fields = |k| lookup(k).map(|c| c.scope_fields.to_vec()).unwrap_or_default();
        assert_eq!(fields("network.http"), ["domains", "methods", "ports"]);
        assert_eq!(fields("browser.scrape"), ["domains", "max_pages"]);
        assert!(fields("clipboard.read").is_empty());
        assert!(!lookup("device.camera").is_some_and(|c| c.has_scope()));
        assert_eq!(fields("agent.spawn"), ["max_concurrent", "max_iterations"]);
    }

    #[test]
    fn summaries_are_single_short_lines() {
        for c in catalog() {
            assert!(!c.summary.is_empty() && c.summary.len() < 80, "{}", c.key);
            assert!(!c.summary.contains('\n'), "{}", c.key);
        }
    }

    #[test]
    fn import_mapping_handles_versions() {
        for (key, iface) in EXPECTED_INTERFACES {
            assert_eq!(capability_for_import(iface).map(|c| c.key), Some(key));
            let versioned = format!("{iface}@0.1.0");
            assert_eq!(capability_for_import(&versioned).map(|c| c.key), Some(key));
            let other = format!("{iface}@2.3.4-rc.1");
            assert_eq!(capability_for_import(&other).map(|c| c.key), Some(key));
        }
        assert!(capability_for_import("omni:caps/types").is_none());
        assert!(capability_for_import("omni:caps/types@0.1.0").is_none());
        assert!(capability_for_import("wasi:filesystem/types@0.2.6").is_none());
        assert!(capability_for_import("omni:caps/HTTP@0.1.0").is_none());
        assert!(capability_for_import("omni:caps/http-extra").is_none());
        assert!(capability_for_import("").is_none());
    }

    #[test]
    fn lookup_is_exact() {
        assert!(lookup("network.http").is_some());
        assert!(lookup("Network.Http").is_none());
        assert!(lookup(" network.http").is_none());
        assert!(lookup("").is_none());
    }

    #[test]
    fn severity_round_trips() {
        for s in [Severity::Low, Severity::Medium, Severity::High, Severity::Critical] {
            assert_eq!(s.to_string().parse::<Severity>(), Ok(s));
            let json = serde_json::to_string(&s).unwrap_or_default();
            assert_eq!(json, format!("\"{s}\""));
        }
        assert!("HIGH".parse::<Severity>().is_err());
    }

    #[test]
    fn closest_key_suggests_typos() {
        assert_eq!(closest_key("network.htp"), Some("network.http"));
        assert_eq!(closest_key("filesystem.reed"), Some("filesystem.read"));
        assert_eq!(closest_key("completely.unrelated.thing"), None);
    }
}
