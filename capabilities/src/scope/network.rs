//! Network scopes (`network.http`, `network.websocket`, `browser.scrape`):
//! domain patterns and URL matching.

use super::{join, opt_num, put_display, truncate, Fields};
use serde::{Deserialize, Serialize};
use std::fmt;
use url::{Host, Url};

/// Which network capability a [`NetworkScope`] belongs to; decides the URL schemes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkKind {
    /// `network.http`: `https`, and `http` for domains written `http://...`.
    Http,
    /// `network.websocket`: `wss`, and `ws` for domains written `ws://...`.
    WebSocket,
    /// `browser.scrape`: like `Http`.
    Browser,
}

impl NetworkKind {
    fn secure_scheme(self) -> &'static str {
        match self {
            NetworkKind::WebSocket => "wss",
            NetworkKind::Http | NetworkKind::Browser => "https",
        }
    }

    fn insecure_scheme(self) -> &'static str {
        match self {
            NetworkKind::WebSocket => "ws",
            NetworkKind::Http | NetworkKind::Browser => "http",
        }
    }
}

/// One allowed host: `api.example.com` (exactly that host) or `*.example.com`
/// (any subdomain, never `example.com` itself).
///
/// Parsing lowercases, converts internationalized names to their ASCII (punycode)
/// form, and removes one trailing dot. Refused: `*`, wildcards over a single
/// label (`*.com`), wildcards anywhere but the front, empty labels, user info
/// (`user@host`), ports, paths, queries, IPv6 literals, whitespace.
/// A prefix `http://` (or `ws://`) allows the unencrypted scheme for this entry;
/// `https://`/`wss://` or no prefix allow only the encrypted one.
///
/// ```
/// use omni_capabilities::DomainPattern;
/// let p = DomainPattern::parse("*.Example.COM.").unwrap();
/// assert_eq!(p.to_string(), "*.example.com");
/// assert!(p.matches_host("api.example.com"));
/// assert!(!p.matches_host("example.com"));
/// assert!(!p.matches_host("example.com.evil.com"));
/// assert!(DomainPattern::parse("*.com").is_err());
/// assert!(DomainPattern::parse("evil.com@example.com").is_err());
/// // A Cyrillic "а" gives a different (punycode) host, visible in the review.
/// assert!(DomainPattern::parse("аpi.example.com").unwrap().host().starts_with("xn--"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainPattern {
    host: String,
    wildcard: bool,
    insecure: bool,
}

/// Longest host name DNS allows.
const MAX_HOST_LEN: usize = 253;

impl DomainPattern {
    /// Parses one `domains` entry; the error says what is wrong and how to write it.
    pub fn parse(input: &str) -> Result<DomainPattern, String> {
        let shown = truncate(input, 80);
        if input.is_empty() {
            return Err("empty domain; write a host name such as \"api.example.com\"".into());
        }
        if input.len() > 512 {
            return Err(format!("domain {shown:?} is too long"));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control() || super::is_invisible(c)) {
            return Err(format!(
                "domain {shown:?} contains spaces, control or invisible characters; write the bare host name"
            ));
        }
        let (insecure, rest) = match input.split_once("://") {
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "https" | "wss" => (false, rest),
                "http" | "ws" => (true, rest),
                _ => {
                    return Err(format!(
                    "domain {shown:?} has scheme {:?}; only http://, https://, ws:// and wss:// prefixes are allowed",
                    truncate(scheme, 16)
                ))
                }
            },
            None => (false, input),
        };
        if rest.contains('@') {
            return Err(format!("domain {shown:?} contains user info ('@'); write only the host name"));
        }
        if rest.contains(['/', '\\', '?', '#']) {
            return Err(format!("domain {shown:?} contains a path, query or fragment; write only the host name"));
        }
        if rest.contains('[') || rest.contains(']') {
            return Err(format!("domain {shown:?} is an IPv6 literal, which is not supported; use a host name"));
        }
        if rest.contains(':') {
            return Err(format!("domain {shown:?} contains a port; list ports in the separate `ports` field"));
        }
        if rest.contains('%') {
            return Err(format!("domain {shown:?} contains percent-escapes; write the host name itself"));
        }
        let rest = rest.strip_suffix('.').unwrap_or(rest);
        let (wildcard, base) = match rest.strip_prefix("*.") {
            Some(base) => (true, base),
            None => (false, rest),
        };
        if base.contains('*') || rest == "*" {
            return Err(format!(
                "domain {shown:?} has a wildcard that is not a leading \"*.\"; write \"*.example.com\" for the subdomains of example.com"
            ));
        }
        if base.is_empty() {
            return Err(format!("domain {shown:?} names no host; write e.g. \"api.example.com\""));
        }
        if base.split('.').any(str::is_empty) {
            return Err(format!("domain {shown:?} has an empty label (\"..\" or a leading dot)"));
        }
        let host = match Host::parse(base) {
            Ok(Host::Domain(d)) => d,
            Ok(Host::Ipv4(ip)) => {
                if wildcard {
                    return Err(format!("domain {shown:?} puts a wildcard in front of an IP address"));
                }
                ip.to_string()
            }
            Ok(Host::Ipv6(_)) => {
                return Err(format!("domain {shown:?} is an IPv6 address, which is not supported"));
            }
            Err(e) => return Err(format!("domain {shown:?} is not a valid host name ({e})")),
        };
        let host = host.strip_suffix('.').unwrap_or(&host).to_owned();
        if host.is_empty() || host.split('.').any(str::is_empty) {
            return Err(format!("domain {shown:?} has an empty label"));
        }
        if host.len() > MAX_HOST_LEN || host.split('.').any(|l| l.len() > 63) {
            return Err(format!("domain {shown:?} is longer than DNS allows"));
        }
        if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') {
            return Err(format!("domain {shown:?} contains characters not allowed in host names"));
        }
        if wildcard && !host.contains('.') {
            return Err(format!(
                "domain {shown:?} is a wildcard over a top-level domain; name the site, e.g. \"*.example.com\""
            ));
        }
        Ok(DomainPattern { host, wildcard, insecure })
    }

    /// The ASCII host (for a wildcard, the part after `*.`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether this entry covers subdomains (`*.example.com`) rather than one host.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// Whether the unencrypted scheme (`http`/`ws`) is allowed for this entry.
    pub fn allows_insecure(&self) -> bool {
        self.insecure
    }

    /// Whether `host` (ASCII, as `url::Url::host_str` gives it) matches this entry.
    ///
    /// Compared case-insensitively and ignoring one trailing dot.
    pub fn matches_host(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        if self.wildcard {
            // Byte-wise, so a non-ASCII host from a caller can never split a character.
            let (h, p) = (host.as_bytes(), self.host.as_bytes());
            h.len() > p.len() + 1 && h[h.len() - p.len() - 1] == b'.' && h[h.len() - p.len()..].eq_ignore_ascii_case(p)
        } else {
            host.eq_ignore_ascii_case(&self.host)
        }
    }

    /// Whether every host this entry matches is matched by `other`, with no more schemes.
    pub fn is_within(&self, other: &DomainPattern) -> bool {
        if self.insecure && !other.insecure {
            return false;
        }
        match (self.wildcard, other.wildcard) {
            (false, _) => other.matches_host(&self.host),
            // *.a.example.com is within *.example.com; *.example.com is within itself.
            (true, true) => self.host == other.host || other.matches_host(&self.host),
            (true, false) => false,
        }
    }

    fn fmt_with(&self, kind: NetworkKind, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.insecure {
            write!(f, "{}://", kind.insecure_scheme())?;
        }
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.host)
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_with(NetworkKind::Http, f)
    }
}

impl TryFrom<String> for DomainPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        DomainPattern::parse(&s)
    }
}

impl From<DomainPattern> for String {
    fn from(p: DomainPattern) -> String {
        p.to_string()
    }
}

/// HTTP methods `methods` may list.
const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];

/// What a network capability may reach.
///
/// Matching rules ([`NetworkScope::check`]): the URL must have no user info; its
/// scheme must be the encrypted one (`https`, or `wss` for WebSocket), or the
/// unencrypted one when the matching entry was written with `http://`/`ws://`;
/// its host must match an entry of `domains`; its effective port (explicit, or
/// the scheme's default) must be in `ports`, or when `ports` is not set, be the
/// standard port of the scheme used (443 encrypted, 80 unencrypted); for
/// `network.http` the method must be in `methods` (default `GET`, `HEAD`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkScope {
    /// The capability this scope is for.
    pub kind: NetworkKind,
    /// Allowed hosts (at least one).
    pub domains: Vec<DomainPattern>,
    /// Allowed methods, uppercase (`network.http` only; empty for the others).
    pub methods: Vec<String>,
    /// Allowed ports; `None`: 443, plus 80 for entries written with `http://`.
    pub ports: Option<Vec<u16>>,
    /// Most pages per call (`browser.scrape` only); `None`: the host's default.
    pub max_pages: Option<u32>,
}

impl NetworkScope {
    pub(super) fn parse(kind: NetworkKind, f: &mut Fields<'_>) -> NetworkScope {
        let mut domains = Vec::new();
        if let Some(items) = f.strings("domains", true) {
            let mut parsed = Vec::with_capacity(items.len());
            for (path, s) in items {
                match DomainPattern::parse(&s) {
                    Ok(p) => {
                        let scheme_ok = match (kind, s.split_once("://")) {
                            (NetworkKind::WebSocket, Some((sch, _))) => {
                                matches!(sch.to_ascii_lowercase().as_str(), "ws" | "wss")
                            }
                            (_, Some((sch, _))) => {
                                matches!(sch.to_ascii_lowercase().as_str(), "http" | "https")
                            }
                            (_, None) => true,
                        };
                        if scheme_ok {
                            f.push_unique(&mut parsed, path, p);
                        } else {
                            f.problem(
                                path,
                                format!("scheme prefix of {:?} does not fit this capability", truncate(&s, 80)),
                                format!(
                                    "use {}:// (or no prefix) for encrypted only, {}:// to also allow unencrypted",
                                    kind.secure_scheme(),
                                    kind.insecure_scheme()
                                ),
                            );
                        }
                    }
                    Err(message) => {
                        f.problem(path, message, "write a host such as \"api.example.com\" or \"*.example.com\"")
                    }
                }
            }
            domains = parsed;
        }
        let mut methods = Vec::new();
        if kind == NetworkKind::Http {
            match f.strings("methods", false) {
                Some(items) => {
                    let mut good = Vec::new();
                    for (path, m) in items {
                        if METHODS.contains(&m.as_str()) {
                            f.push_unique(&mut good, path, m);
                        } else {
                            let fix = if METHODS.contains(&m.to_ascii_uppercase().as_str()) {
                                format!("write it in uppercase: {:?}", m.to_ascii_uppercase())
                            } else {
                                format!("use one of {}", METHODS.join(", "))
                            };
                            f.problem(path, format!("{:?} is not a standard HTTP method", truncate(&m, 32)), fix);
                        }
                    }
                    methods = good;
                }
                None => {
                    if !f.table.contains_key("methods") {
                        methods = vec!["GET".to_owned(), "HEAD".to_owned()];
                    }
                }
            }
        }
        let mut ports = None;
        if kind != NetworkKind::Browser && f.table.contains_key("ports") {
            let path = f.path("ports");
            match f.table.get("ports").and_then(|v| v.as_array()) {
                None => f.problem(path, "must be a list of port numbers", "write ports = [443]"),
                Some(items) if items.is_empty() => f.problem(
                    path,
                    "must not be empty",
                    "list at least one port, or remove ports for the standard ones",
                ),
                Some(items) if items.len() > super::MAX_LIST_LEN => f.problem(
                    path,
                    format!("has {} entries, more than the limit of {}", items.len(), super::MAX_LIST_LEN),
                    "list only the ports the extension uses",
                ),
                Some(items) => {
                    let mut good = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        match item.as_integer().and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0) {
                            Some(p) => f.push_unique(&mut good, format!("{path}[{i}]"), p),
                            None => f.problem(
                                format!("{path}[{i}]"),
                                format!("{item} is not a port number"),
                                "use a whole number from 1 to 65535",
                            ),
                        }
                    }
                    ports = Some(good);
                }
            }
        }
        let max_pages = if kind == NetworkKind::Browser { f.u32_in("max_pages", 1, 100_000) } else { None };
        NetworkScope { kind, domains, methods, ports, max_pages }
    }

    pub(super) fn write_toml(&self, t: &mut toml::Table) {
        let domains: Vec<String> = self.domains.iter().map(|d| DisplayIn(d, self.kind).to_string()).collect();
        put_display(t, "domains", &domains);
        if self.kind == NetworkKind::Http {
            put_display(t, "methods", &self.methods);
        }
        if let Some(ports) = &self.ports {
            t.insert(
                "ports".into(),
                toml::Value::Array(ports.iter().map(|p| toml::Value::Integer(i64::from(*p))).collect()),
            );
        }
        if let Some(n) = self.max_pages {
            t.insert("max_pages".into(), toml::Value::Integer(i64::from(n)));
        }
    }

    /// Checks one request against the scope.
    ///
    /// `method` is the HTTP method for `network.http` (`None` is treated as `GET`);
    /// it is ignored for WebSocket and browser scopes. The error says what is out
    /// of scope and what the scope allows.
    ///
    /// ```
    /// use omni_capabilities::{lookup, Scope};
    /// let cap = lookup("network.http").unwrap();
    /// let v: toml::Value = toml::from_str("domains = ['*.example.com', 'http://legacy.example.org']").unwrap();
    /// let scope = Scope::parse(cap, Some(&v), "scope").unwrap();
    /// let net = scope.as_network().unwrap();
    /// let ok = |u: &str, m| net.check(&url::Url::parse(u).unwrap(), m).is_ok();
    /// assert!(ok("https://api.example.com/v1", Some("GET")));
    /// assert!(!ok("https://example.com/", Some("GET")));          // apex not covered
    /// assert!(!ok("http://api.example.com/", Some("GET")));       // https only
    /// assert!(ok("http://legacy.example.org/", Some("HEAD")));
    /// assert!(!ok("https://api.example.com/", Some("POST")));     // default GET, HEAD
    /// assert!(!ok("https://api.example.com:8443/", Some("GET"))); // port
    /// assert!(!ok("https://u:p@api.example.com/", Some("GET")));  // user info
    /// ```
    pub fn check(&self, url: &Url, method: Option<&str>) -> Result<(), String> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err("URLs with user info (user:password@) are not allowed; send credentials in headers".into());
        }
        let scheme = url.scheme();
        let secure = scheme == self.kind.secure_scheme();
        if !secure && scheme != self.kind.insecure_scheme() {
            return Err(format!("scheme {scheme:?} is not allowed; this scope allows {}", self.allowed_schemes()));
        }
        let host = match url.host() {
            Some(Host::Domain(d)) => d.to_owned(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(_)) | None => {
                return Err(format!(
                    "{} has no host name in scope; allowed domains: {}",
                    redact(url),
                    self.domains_list()
                ));
            }
        };
        let matching: Vec<&DomainPattern> = self.domains.iter().filter(|d| d.matches_host(&host)).collect();
        if matching.is_empty() {
            return Err(format!("host {host} is not in scope; allowed domains: {}", self.domains_list()));
        }
        if !secure && !matching.iter().any(|d| d.insecure) {
            return Err(format!(
                "unencrypted {scheme}:// to {host} is not allowed; use {}:// or list the domain as \"{scheme}://{host}\"",
                self.kind.secure_scheme()
            ));
        }
        let Some(port) = url.port_or_known_default() else {
            return Err(format!("{} has no port", redact(url)));
        };
        match &self.ports {
            Some(ports) if !ports.contains(&port) => {
                return Err(format!("port {port} is not in scope; allowed ports: {}", join(ports)));
            }
            None => {
                let standard = if secure { 443 } else { 80 };
                if port != standard {
                    return Err(format!(
                        "port {port} is not in scope; {scheme}:// is allowed on port {standard} only (list other ports in `ports`)"
                    ));
                }
            }
            Some(_) => {}
        }
        if self.kind == NetworkKind::Http {
            let method = method.unwrap_or("GET");
            if !self.methods.iter().any(|m| m == method) {
                return Err(format!(
                    "method {:?} is not in scope; allowed methods: {}",
                    truncate(method, 16),
                    join(&self.methods)
                ));
            }
        }
        Ok(())
    }

    fn allowed_schemes(&self) -> String {
        if self.domains.iter().any(|d| d.insecure) {
            format!("{} (and {} for some domains)", self.kind.secure_scheme(), self.kind.insecure_scheme())
        } else {
            self.kind.secure_scheme().to_owned()
        }
    }

    fn domains_list(&self) -> String {
        self.domains.iter().map(|d| DisplayIn(d, self.kind).to_string()).collect::<Vec<_>>().join(", ")
    }

    /// The ports in effect: `ports`, or 443 (plus 80 when an entry allows unencrypted).
    pub fn effective_ports(&self) -> Vec<u16> {
        match &self.ports {
            Some(p) => p.clone(),
            None if self.domains.iter().any(|d| d.insecure) => vec![443, 80],
            None => vec![443],
        }
    }

    pub(super) fn is_within(&self, other: &NetworkScope) -> bool {
        if self.kind != other.kind {
            return false;
        }
        let domains = self.domains.iter().all(|d| other.domains.iter().any(|o| d.is_within(o)));
        let methods = super::set_within(&self.methods, &other.methods);
        let any_insecure = self.domains.iter().any(|d| d.insecure);
        let ports = match (&self.ports, &other.ports) {
            (Some(a), Some(b)) => super::set_within(a, b),
            // Standard ports: 443, and 80 for unencrypted entries.
            (None, Some(b)) => b.contains(&443) && (!any_insecure || b.contains(&80)),
            // Explicit ports allow any scheme on them; the standard-only rule does not.
            (Some(a), None) => !any_insecure && a.iter().all(|p| *p == 443),
            (None, None) => true,
        };
        domains
            && methods
            && ports
            && super::limit_within(self.max_pages, other.max_pages, Some(super::DEFAULT_BROWSER_MAX_PAGES))
    }
}

/// Shows a domain with the scheme prefix of its capability (`ws://` for WebSocket).
struct DisplayIn<'a>(&'a DomainPattern, NetworkKind);

impl fmt::Display for DisplayIn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_with(self.1, f)
    }
}

/// A URL for messages, without user info, query or fragment (they may hold secrets).
fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

impl fmt::Display for NetworkScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "domains: {}", self.domains_list())?;
        if self.kind == NetworkKind::Http {
            write!(f, "; methods: {}", join(&self.methods))?;
        }
        if self.kind != NetworkKind::Browser || self.ports.is_some() {
            write!(f, "; ports: {}", join(&self.effective_ports()))?;
        }
        if self.kind == NetworkKind::Browser {
            write!(f, "; max_pages: {}", opt_num(self.max_pages))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::lookup;
    use crate::scope::Scope;

    fn scope(cap: &str, text: &str) -> NetworkScope {
        let value: toml::Value = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        let info = lookup(cap).unwrap_or_else(|| panic!("{cap}"));
        match Scope::parse(info, Some(&value), "scope") {
            Ok(Scope::Network(n)) => n,
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    fn errors(cap: &str, text: &str) -> Vec<String> {
        let value: toml::Value = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        let info = lookup(cap).unwrap_or_else(|| panic!("{cap}"));
        match Scope::parse(info, Some(&value), "scope") {
            Ok(s) => panic!("{text:?} accepted as {s:?}"),
            Err(p) => p.into_iter().map(|p| p.field).collect(),
        }
    }

    fn url(u: &str) -> Url {
        Url::parse(u).unwrap_or_else(|e| panic!("{u}: {e}"))
    }

    fn pat(s: &str) -> DomainPattern {
        DomainPattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn patterns_normalize() {
        assert_eq!(pat("API.Example.COM").to_string(), "api.example.com");
        assert_eq!(pat("api.example.com.").to_string(), "api.example.com");
        assert_eq!(pat("*.example.com").to_string(), "*.example.com");
        assert_eq!(pat("https://api.example.com").to_string(), "api.example.com");
        assert_eq!(pat("HTTP://api.example.com").to_string(), "http://api.example.com");
        assert!(pat("http://api.example.com").allows_insecure());
        assert!(pat("ws://api.example.com").allows_insecure());
        assert_eq!(pat("bücher.de").host(), "xn--bcher-kva.de");
        assert_eq!(pat("127.0.0.1").host(), "127.0.0.1");
        // The ideographic full stop is a dot after IDNA mapping.
        assert_eq!(pat("example\u{3002}com").host(), "example.com");
    }

    #[test]
    fn patterns_refused() {
        let long_label = format!("{}.com", "a".repeat(64));
        let long_host = format!("{}com", "abcdefghi.".repeat(30));
        let huge = "a".repeat(100_000);
        for bad in [
            "",
            "*",
            "*.",
            "*.com",
            "*.*.example.com",
            "a.*.example.com",
            "*example.com",
            "**.example.com",
            "example.*",
            "evil.com@example.com",
            "user:pass@example.com",
            "example.com/path",
            "example.com?q=1",
            "example.com#x",
            "example.com:8080",
            "http://example.com:80",
            "ftp://example.com",
            "file:///etc/passwd",
            "..",
            ".example.com",
            "example..com",
            "exa mple.com",
            " example.com",
            "example.com\n",
            "exa\u{200B}mple.com",
            "%65xample.com",
            "[::1]",
            "*.127.0.0.1",
            "example.com\\evil",
            "*.co",
            long_label.as_str(),
            long_host.as_str(),
            huge.as_str(),
            "exa<mple.com",
            "a\u{0}b.com",
        ] {
            assert!(DomainPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn confusables_do_not_match_the_real_host() {
        // Cyrillic "а" (U+0430) in place of Latin "a".
        let fake = pat("\u{0430}pi.example.com");
        assert!(fake.host().starts_with("xn--"));
        assert!(!fake.matches_host("api.example.com"));
        let real = pat("api.example.com");
        let u = url("https://\u{0430}pi.example.com/");
        assert!(!real.matches_host(u.host_str().unwrap_or_default()));
        let s = scope("network.http", "domains = ['api.example.com']");
        assert!(s.check(&u, Some("GET")).is_err());
    }

    #[test]
    fn wildcard_matching() {
        let w = pat("*.example.com");
        assert!(w.matches_host("a.example.com"));
        assert!(w.matches_host("a.b.example.com"));
        assert!(w.matches_host("A.EXAMPLE.COM"));
        assert!(w.matches_host("a.example.com."));
        assert!(!w.matches_host("example.com"));
        assert!(!w.matches_host("badexample.com"));
        assert!(!w.matches_host("example.com.evil.com"));
        assert!(!w.matches_host(".example.com"));
        let e = pat("example.com.evil.com");
        assert!(!e.matches_host("example.com"));
        assert!(!pat("example.com").matches_host("example.com.evil.com"));
        assert!(!pat("example.com").matches_host("sub.example.com"));
        // Non-ASCII input never panics and never matches the ASCII pattern.
        for host in ["ä.example.com", "éé.example.com", "x\u{e9}example.com", "€", "ä"] {
            assert!(!pat("*.example.com").matches_host(host) || host.ends_with(".example.com"));
            assert!(!pat("example.com").matches_host(host));
        }
    }

    #[test]
    fn check_urls() {
        let s = scope("network.http", "domains = ['api.example.com', '*.cdn.example.net', 'http://legacy.example.org']\nmethods = ['GET', 'POST']");
        let ok = |u: &str, m: &str| s.check(&url(u), Some(m));
        assert!(ok("https://api.example.com/v1?x=1", "GET").is_ok());
        assert!(ok("https://API.EXAMPLE.COM/", "POST").is_ok());
        assert!(ok("https://api.example.com./", "GET").is_ok());
        assert!(ok("https://api.example.com:443/", "GET").is_ok());
        assert!(ok("https://img.cdn.example.net/a.png", "GET").is_ok());
        assert!(ok("http://legacy.example.org/", "GET").is_ok());
        assert!(ok("https://legacy.example.org/", "GET").is_ok());
        assert!(s.check(&url("https://api.example.com/"), None).is_ok());

        let e = ok("https://cdn.example.net/", "GET").unwrap_err();
        assert!(e.contains("cdn.example.net") && e.contains("*.cdn.example.net"), "{e}");
        let e = ok("http://api.example.com/", "GET").unwrap_err();
        assert!(e.contains("unencrypted"), "{e}");
        let e = ok("https://api.example.com:8443/", "GET").unwrap_err();
        assert!(e.contains("8443"), "{e}");
        assert!(ok("http://legacy.example.org:443/", "GET").is_err());
        assert!(ok("https://legacy.example.org:80/", "GET").is_err());
        let e = ok("https://api.example.com/", "DELETE").unwrap_err();
        assert!(e.contains("DELETE") && e.contains("GET, POST"), "{e}");
        assert!(ok("https://api.example.com/", "get").is_err());
        let e = ok("https://user:pw@api.example.com/", "GET").unwrap_err();
        assert!(e.contains("user info"), "{e}");
        assert!(!e.contains("pw"));
        assert!(ok("https://evil.com@api.example.com/", "GET").is_err());
        assert!(ok("https://api.example.com.evil.com/", "GET").is_err());
        assert!(ok("ftp://api.example.com/", "GET").is_err());
        assert!(ok("wss://api.example.com/", "GET").is_err());
        assert!(ok("https://[::1]/", "GET").is_err());
        assert!(ok("https://127.0.0.1/", "GET").is_err());
        assert!(ok("file:///etc/passwd", "GET").is_err());
    }

    #[test]
    fn explicit_ports() {
        let s = scope("network.http", "domains = ['api.example.com', 'http://h.example.com']\nports = [8443, 8080]");
        assert!(s.check(&url("https://api.example.com:8443/"), None).is_ok());
        assert!(s.check(&url("http://h.example.com:8080/"), None).is_ok());
        let e = s.check(&url("https://api.example.com/"), None).unwrap_err();
        assert!(e.contains("443") && e.contains("8443, 8080"), "{e}");
        assert_eq!(s.effective_ports(), [8443, 8080]);
        assert_eq!(scope("network.http", "domains = ['a.example.com']").effective_ports(), [443]);
        assert_eq!(scope("network.http", "domains = ['http://a.example.com']").effective_ports(), [443, 80]);
    }

    #[test]
    fn websocket_and_browser() {
        let ws = scope("network.websocket", "domains = ['stream.example.com', 'ws://local.example.com']");
        assert!(ws.check(&url("wss://stream.example.com/feed"), None).is_ok());
        assert!(ws.check(&url("wss://stream.example.com/feed"), Some("POST")).is_ok(), "methods do not apply");
        assert!(ws.check(&url("ws://stream.example.com/"), None).is_err());
        assert!(ws.check(&url("ws://local.example.com/"), None).is_ok());
        assert!(ws.check(&url("https://stream.example.com/"), None).is_err());
        assert_eq!(ws.to_string(), "domains: stream.example.com, ws://local.example.com; ports: 443, 80");
        assert_eq!(errors("network.websocket", "domains = ['http://a.example.com']"), ["scope.domains[0]"]);
        assert_eq!(errors("network.http", "domains = ['wss://a.example.com']"), ["scope.domains[0]"]);
        assert_eq!(errors("network.websocket", "domains = ['a.example.com']\nmethods = ['GET']"), ["scope.methods"]);

        let b = scope("browser.scrape", "domains = ['*.wikipedia.org']\nmax_pages = 20");
        assert!(b.check(&url("https://en.wikipedia.org/wiki/Rust"), None).is_ok());
        assert!(b.check(&url("https://wikipedia.org/"), None).is_err());
        assert_eq!(b.to_string(), "domains: *.wikipedia.org; max_pages: 20");
        assert_eq!(errors("browser.scrape", "domains = ['a.example.com']\nmax_pages = 0"), ["scope.max_pages"]);
    }

    #[test]
    fn defaults_and_display() {
        let s = scope("network.http", "domains = ['api.open-meteo.com']");
        assert_eq!(s.methods, ["GET", "HEAD"]);
        assert_eq!(s.ports, None);
        assert_eq!(s.to_string(), "domains: api.open-meteo.com; methods: GET, HEAD; ports: 443");
        let s = scope("network.http", "domains = ['api.open-meteo.com']\nmethods = ['GET']");
        assert_eq!(s.to_string(), "domains: api.open-meteo.com; methods: GET; ports: 443");
    }

    #[test]
    fn parse_errors_name_fields() {
        assert_eq!(errors("network.http", ""), ["scope.domains"]);
        assert_eq!(errors("network.http", "domains = []"), ["scope.domains"]);
        assert_eq!(
            errors(
                "network.http",
                "domains = ['ok.example.com', '*.com', 'evil.com@example.com', '*.', 'ok.example.com']"
            ),
            ["scope.domains[1]", "scope.domains[2]", "scope.domains[3]", "scope.domains[4]"]
        );
        // Duplicates after normalization are reported too.
        assert_eq!(errors("network.http", "domains = ['A.example.com', 'a.example.com.']"), ["scope.domains[1]"]);
        let v: toml::Value = toml::from_str("domains = ['a.example.com']\nmethods = ['get', 'FETCH', 'GET', 'GET']")
            .unwrap_or_else(|e| panic!("{e}"));
        let info = lookup("network.http").unwrap_or_else(|| panic!());
        let p = Scope::parse(info, Some(&v), "scope").unwrap_err();
        let f: Vec<_> = p.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(f, ["scope.methods[0]", "scope.methods[1]", "scope.methods[3]"]);
        assert!(p[0].fix.contains("\"GET\""), "{}", p[0].fix);
        assert_eq!(errors("network.http", "domains = ['a.example.com']\nmethods = []"), ["scope.methods"]);
        assert_eq!(
            errors("network.http", "domains = ['a.example.com']\nports = [0, 65536, '443', 443, 443]"),
            ["scope.ports[0]", "scope.ports[1]", "scope.ports[2]", "scope.ports[4]"]
        );
        let many_ports = format!(
            "domains = ['a.example.com']\nports = [{}]",
            (1..=60_000).map(|p| p.to_string()).collect::<Vec<_>>().join(",")
        );
        assert_eq!(errors("network.http", &many_ports), ["scope.ports"]);
        assert_eq!(errors("network.http", "domains = ['a.example.com']\nports = []"), ["scope.ports"]);
        assert_eq!(errors("network.http", "domains = ['a.example.com']\nports = 443"), ["scope.ports"]);
    }

    #[test]
    fn domain_within() {
        assert!(pat("a.example.com").is_within(&pat("*.example.com")));
        assert!(pat("a.b.example.com").is_within(&pat("*.example.com")));
        assert!(pat("*.b.example.com").is_within(&pat("*.example.com")));
        assert!(pat("*.example.com").is_within(&pat("*.example.com")));
        assert!(!pat("example.com").is_within(&pat("*.example.com")));
        assert!(!pat("*.example.com").is_within(&pat("a.example.com")));
        assert!(!pat("*.example.com").is_within(&pat("*.b.example.com")));
        assert!(!pat("*.notexample.com").is_within(&pat("*.example.com")));
        assert!(pat("a.example.com").is_within(&pat("http://a.example.com")));
        assert!(!pat("http://a.example.com").is_within(&pat("a.example.com")));
    }

    #[test]
    fn scope_within() {
        let wide = Scope::Network(scope(
            "network.http",
            "domains = ['*.example.com', 'other.org']\nmethods = ['GET', 'POST']",
        ));
        let narrow = Scope::Network(scope("network.http", "domains = ['api.example.com']\nmethods = ['GET']"));
        assert!(narrow.is_within(&wide));
        assert!(!wide.is_within(&narrow));
        let more_methods =
            Scope::Network(scope("network.http", "domains = ['api.example.com']\nmethods = ['GET', 'DELETE']"));
        assert!(!more_methods.is_within(&wide));
        let new_domain =
            Scope::Network(scope("network.http", "domains = ['api.example.com', 'evil.com']\nmethods = ['GET']"));
        assert!(!new_domain.is_within(&wide));
        let insecure = Scope::Network(scope("network.http", "domains = ['http://api.example.com']\nmethods = ['GET']"));
        assert!(!insecure.is_within(&wide));

        // Ports: standard within explicit lists that contain them, and back.
        let std = scope("network.http", "domains = ['a.example.com']");
        let p443 = scope("network.http", "domains = ['a.example.com']\nports = [443]");
        let p8443 = scope("network.http", "domains = ['a.example.com']\nports = [443, 8443]");
        assert!(std.is_within(&p443) && p443.is_within(&std));
        assert!(std.is_within(&p8443) && !p8443.is_within(&std));
        let http_std = scope("network.http", "domains = ['http://a.example.com']");
        let http_443 = scope("network.http", "domains = ['http://a.example.com']\nports = [443]");
        assert!(!http_std.is_within(&http_443));
        assert!(!http_443.is_within(&http_std));

        let ws = Scope::Network(scope("network.websocket", "domains = ['api.example.com']"));
        let http = Scope::Network(scope("network.http", "domains = ['api.example.com']"));
        assert!(!ws.is_within(&http) && !http.is_within(&ws));

        let b10 = scope("browser.scrape", "domains = ['a.example.com']\nmax_pages = 10");
        let b20 = scope("browser.scrape", "domains = ['a.example.com']\nmax_pages = 20");
        let bdef = scope("browser.scrape", "domains = ['a.example.com']");
        assert!(b10.is_within(&b20) && !b20.is_within(&b10));
        assert!(b20.is_within(&bdef) && !bdef.is_within(&b20));
    }

    #[test]
    fn serde_revalidates_patterns() {
        let s = scope("network.http", "domains = ['api.example.com']");
        let mut json = serde_json::to_value(&s).unwrap_or_default();
        json["domains"] = serde_json::json!(["*.com"]);
        assert!(serde_json::from_value::<NetworkScope>(json).is_err());
        assert!(serde_json::from_str::<DomainPattern>("\"http://a.example.com\"").is_ok_and(|p| p.allows_insecure()));
    }
}
