//! The one egress policy every network capability goes through.
//!
//! `network.http`, `browser.scrape` and `network.websocket` all reach the outside world
//! through this module, so they share one set of guarantees:
//!
//! * **Scope first.** Every URL, and every redirect hop, is authorized against the
//!   granted scope ([`CallState::authorize`], which calls `NetworkScope::check`: scheme,
//!   host pattern, port, method, no user info) before anything is resolved or sent. URLs
//!   are parsed by the `url` crate (WHATWG rules), so `http://2130706433/`, `0177.0.0.1`,
//!   `0x7f.0.0.1` and `127.1` all become the host `127.0.0.1` before the scope sees them.
//! * **Public addresses only.** A literal IP, or every address a name resolves to, must
//!   be public ([`non_public_reason`]): loopback, private, link-local (where cloud
//!   metadata services such as 169.254.169.254 live), CGNAT, multicast, reserved and
//!   IPv6 forms embedding such an IPv4 address are refused, and the refusal is audited.
//!   A name with any non-public answer is refused as a whole, so a resolver mixing a
//!   public and a private answer cannot steer the connection. The one exception is a host
//!   the person mapped in `[network.resolve]` of `omni.toml` (tests and demos).
//! * **Connect to what was checked.** Names are resolved once, by the host's
//!   [`Resolver`] wrapped in a [`CheckedResolver`], at the moment the transport connects;
//!   the transport connects only to the addresses that passed, with no second lookup.
//! * **Redirects are the host's business.** Transports never follow redirects; the host
//!   follows at most `[network] max_redirects` hops, each one re-authorized and
//!   re-resolved as if the extension had asked for it.
//! * **Bounded.** Response bodies are capped by `[network] max_response_bytes`, each
//!   exchange by `[network] timeout_ms`.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use omni_capabilities::Scope;
use url::Url;

use crate::bindings::CapError;
use crate::config::NetworkConfig;
use crate::sandbox::CallState;

/// Future returned by [`Resolver::lookup`].
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Turns a host name into addresses. The egress policy checks every answer before any
/// connection is made, so a replacement only decides what a name means, never whether
/// it may be reached.
///
/// The default is [`SystemResolver`]; tests and embedders replace it with
/// `OmniBuilder::resolver` (for instance with a [`StaticResolver`] that makes
/// `rebind.test` resolve to 127.0.0.1, to check the policy refuses it).
pub trait Resolver: Send + Sync {
    /// The addresses of `host` (ASCII, lowercase, no trailing dot).
    fn lookup<'a>(&'a self, host: &'a str) -> ResolveFuture<'a>;
}

/// The operating system's resolver (`getaddrinfo` through tokio).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, 0)).await?.map(|a| a.ip()).collect()) })
    }
}

/// A fixed table of names; any other name fails to resolve.
#[derive(Debug, Default, Clone)]
pub struct StaticResolver {
    entries: std::collections::HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    /// An empty table.
    pub fn new() -> StaticResolver {
        StaticResolver::default()
    }

    /// Makes `host` resolve to `addrs` (the host is compared case-insensitively).
    pub fn with(mut self, host: &str, addrs: &[IpAddr]) -> StaticResolver {
        self.entries.insert(normalize_host(host), addrs.to_vec());
        self
    }
}

impl Resolver for StaticResolver {
    fn lookup<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        let found = self.entries.get(&normalize_host(host)).cloned();
        Box::pin(async move {
            found.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{host} is not in the resolver's table"))
            })
        })
    }
}

fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// Why the egress policy or a transport refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The destination is not one an extension may reach (a non-public address). The
    /// host audits it as a deny.
    #[error("{0}")]
    Refused(String),
    /// The response was larger than allowed.
    #[error("the response body exceeds {limit} bytes (host limit [network] max_response_bytes)")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The exchange took too long.
    #[error("the request timed out after {0:?}")]
    Timeout(Duration),
    /// The host's own configuration is unusable (a bad `[network.resolve]` entry).
    #[error("{0}")]
    Config(String),
    /// Resolving, connecting, sending or receiving failed.
    #[error("{0}")]
    Io(String),
}

impl EgressError {
    /// The WIT error for a failure that is not a policy refusal.
    pub(crate) fn into_cap_error(self) -> CapError {
        match self {
            EgressError::Refused(m) => CapError::OutOfScope(m),
            EgressError::Config(m) => CapError::Unavailable(m),
            e @ (EgressError::TooLarge { .. } | EgressError::Timeout(_) | EgressError::Io(_)) => {
                CapError::Io(e.to_string())
            }
        }
    }
}

/// Where a checked URL connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The URL as the transport must use it: the original, or its `[network.resolve]`
    /// mapping (scheme, host and port of the mapped base URL, path and query of the
    /// original).
    pub url: Url,
    /// Whether the host was mapped by `[network.resolve]` (its address may be private).
    pub mapped: bool,
}

/// Why `ip` may not be reached, or `None` when it is a public address.
///
/// Refused: loopback, private (RFC 1918, unique local), link-local (which holds the
/// cloud metadata address 169.254.169.254), CGNAT 100.64/10, multicast, broadcast,
/// unspecified, 0/8, 240/4, documentation and benchmarking ranges, site-local, and IPv6
/// forms that embed an IPv4 address (mapped, compatible, NAT64) whose IPv4 address is
/// refused.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(v4: Ipv4Addr) -> Option<&'static str> {
    let o = v4.octets();
    if v4.is_loopback() {
        Some("a loopback address")
    } else if v4.is_private() {
        Some("a private (RFC 1918) address")
    } else if v4.is_link_local() {
        Some("a link-local address (where cloud metadata services live)")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("a carrier-grade NAT address")
    } else if v4.is_unspecified() || o[0] == 0 {
        Some("an unspecified (0.0.0.0/8) address")
    } else if v4.is_multicast() {
        Some("a multicast address")
    } else if v4.is_broadcast() || o[0] >= 240 {
        Some("a reserved or broadcast address")
    } else if v4.is_documentation() || (o[0] == 198 && (o[1] & 0xfe) == 18) || (o[0] == 192 && o[1] == 0 && o[2] == 0) {
        Some("a documentation, benchmarking or protocol-assignment address")
    } else {
        None
    }
}

fn v6_reason(v6: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    let s = v6.segments();
    if v6.is_loopback() {
        return Some("a loopback address");
    }
    if v6.is_unspecified() {
        return Some("an unspecified address");
    }
    // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::/96) embed an IPv4 address.
    if s[0..6] == [0, 0, 0, 0, 0, 0] || s[0..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return v4_reason(v4);
    }
    if v6.is_multicast() {
        Some("a multicast address")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("a unique local (private) address")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("a link-local address")
    } else if (s[0] & 0xffc0) == 0xfec0 {
        Some("a site-local address")
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        Some("a documentation address")
    } else {
        None
    }
}

/// Whether `ip` is a globally routable address an extension may reach
/// (see [`non_public_reason`]).
pub fn is_public(ip: IpAddr) -> bool {
    non_public_reason(ip).is_none()
}

/// The egress policy's host-wide part: the `[network]` configuration and the resolver.
pub struct Egress {
    config: NetworkConfig,
    resolver: Arc<dyn Resolver>,
}

impl Egress {
    /// A policy for `config`, resolving names with `resolver`.
    pub fn new(config: NetworkConfig, resolver: Arc<dyn Resolver>) -> Egress {
        Egress { config, resolver }
    }

    /// The `[network]` configuration in force.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Where `url` may connect, or why it may not. Call it only after the URL passed the
    /// scope check; it decides about addresses, not about scopes.
    ///
    /// A literal IP is checked here. A name is checked when the transport resolves it
    /// through [`CheckedResolver`], at the moment of connecting, so the address checked is
    /// the address used.
    pub fn destination(&self, url: &Url) -> Result<Destination, EgressError> {
        if url.host().is_none() {
            return Err(EgressError::Refused(format!("{} has no host", redact(url))));
        }
        if url.port_or_known_default().is_none() {
            return Err(EgressError::Refused(format!("{} has no port", redact(url))));
        }
        if let Some(mapped) = self.mapped_url(url)? {
            return Ok(Destination { url: mapped, mapped: true });
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(Destination { url: url.clone(), mapped: false }),
        };
        if let Some(why) = non_public_reason(ip) {
            return Err(EgressError::Refused(format!(
                "{ip} is {why}; Omni refuses non-public targets unless [network.resolve] in omni.toml maps the host"
            )));
        }
        Ok(Destination { url: url.clone(), mapped: false })
    }

    /// Resolves `host` and checks every answer: the addresses a transport may connect to.
    ///
    /// The target host of a `[network.resolve]` entry may resolve to anything (the person
    /// chose it); any other name with a non-public answer is refused as a whole.
    pub async fn resolve_checked(&self, host: &str) -> Result<Vec<IpAddr>, EgressError> {
        let name = normalize_host(host);
        if let Ok(ip) = name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return match non_public_reason(ip) {
                Some(why) if !self.is_mapped_target(&name) => Err(EgressError::Refused(format!(
                    "{ip} is {why}; Omni refuses non-public targets unless [network.resolve] in omni.toml maps the host"
                ))),
                _ => Ok(vec![ip]),
            };
        }
        let ips =
            self.resolver.lookup(&name).await.map_err(|e| EgressError::Io(format!("cannot resolve {name}: {e}")))?;
        if ips.is_empty() {
            return Err(EgressError::Io(format!("{name} resolves to no address")));
        }
        if !self.is_mapped_target(&name) {
            for ip in &ips {
                if let Some(why) = non_public_reason(*ip) {
                    return Err(EgressError::Refused(format!(
                        "{name} resolves to {ip}, {why}; Omni refuses non-public targets unless [network.resolve] in omni.toml maps the host"
                    )));
                }
            }
        }
        Ok(ips)
    }

    /// Whether `host` is the target of a `[network.resolve]` entry.
    fn is_mapped_target(&self, host: &str) -> bool {
        self.config.resolve.values().filter_map(|base| Url::parse(base).ok()).any(|u| {
            u.host_str().is_some_and(|h| normalize_host(h.trim_start_matches('[').trim_end_matches(']')) == host)
        })
    }

    /// The `[network.resolve]` mapping of `url`, when its host is mapped.
    fn mapped_url(&self, url: &Url) -> Result<Option<Url>, EgressError> {
        let Some(host) = url.host_str() else { return Ok(None) };
        let host = normalize_host(host);
        let Some(base) = self.config.resolve.get(&host) else { return Ok(None) };
        connect_url(base, &host, url).map(Some)
    }
}

/// The resolver a transport must use: resolves through the host's [`Resolver`] and
/// hands back only addresses the egress policy accepts, so the connection goes to the
/// address that was checked, with no second lookup in between.
#[derive(Clone)]
pub struct CheckedResolver {
    egress: Arc<Egress>,
}

impl CheckedResolver {
    /// A resolver bound to `egress`.
    pub fn new(egress: Arc<Egress>) -> CheckedResolver {
        CheckedResolver { egress }
    }

    /// The checked addresses of `host`, with `port`.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let ips = self.egress.resolve_checked(host).await?;
        Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }
}

/// `url` rewritten onto the `[network.resolve]` base URL `base`: the base's scheme, host,
/// port and path prefix, then the original path and query.
pub fn connect_url(base: &str, host: &str, url: &Url) -> Result<Url, EgressError> {
    let base_url = Url::parse(base).map_err(|e| {
        EgressError::Config(format!(
            "[network.resolve] entry for {host} is not a URL ({e}); write it as \"http://127.0.0.1:8080\""
        ))
    })?;
    if base_url.host().is_none() {
        return Err(EgressError::Config(format!(
            "[network.resolve] entry for {host} names no host; write it as \"http://127.0.0.1:8080\""
        )));
    }
    let mut mapped = base_url.clone();
    let prefix = base_url.path().trim_end_matches('/');
    mapped.set_path(&format!("{prefix}{}", url.path()));
    mapped.set_query(url.query());
    mapped.set_fragment(None);
    Ok(mapped)
}

/// The target recorded in the audit: no query string, no user info, no fragment, so
/// tokens passed in URLs never reach the log.
pub fn audit_target(method: &str, url: &Url) -> String {
    let shown = redact(url);
    if method.is_empty() {
        shown
    } else {
        format!("{method} {shown}")
    }
}

fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    // Fails only for URLs that cannot carry user info, which then have none to hide.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// Parses a URL an extension sent: it must be absolute and use one of `schemes`.
pub fn parse_url(input: &str, schemes: &[&str]) -> Result<Url, CapError> {
    let url = Url::parse(input).map_err(|e| {
        CapError::InvalidInput(format!(
            "`{}` is not an absolute URL ({e}); write it as {}://host/path",
            shorten(input),
            schemes.first().copied().unwrap_or("https")
        ))
    })?;
    if !schemes.contains(&url.scheme()) {
        // Still a scope question (the scope says which schemes), but a scheme this
        // capability can never speak is plainly bad input.
        return Err(CapError::InvalidInput(format!(
            "`{}` uses the scheme {:?}; this capability accepts {}",
            shorten(input),
            url.scheme(),
            schemes.join(", ")
        )));
    }
    Ok(url)
}

fn shorten(s: &str) -> String {
    if s.len() <= 200 {
        return s.to_string();
    }
    format!("{}…", &s[..s.floor_char_boundary(200)])
}

/// Checks one URL (and method, for `network.http`) against a granted network scope.
pub(crate) fn check_network_scope(
    capability: &str,
    scope: &Scope,
    url: &Url,
    method: Option<&str>,
) -> Result<(), String> {
    match scope.as_network() {
        Some(network) => network.check(url, method),
        None => Err(format!("{capability} was granted without a network scope")),
    }
}

/// An extra check of a granted scope.
pub(crate) type ScopeHook = dyn Fn(&Scope) -> Result<(), String> + Send + Sync;

/// One exchange of an HTTP-speaking capability, before the egress policy ran.
#[derive(Debug, Clone)]
pub(crate) struct FetchRequest {
    pub(crate) url: Url,
    pub(crate) method: &'static str,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) timeout: Duration,
    pub(crate) follow_redirects: bool,
    pub(crate) max_body: u64,
}

/// What [`CallState::egress_fetch`] got back.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// The URL that produced this response, after redirects (never the mapped one).
    pub(crate) final_url: Url,
}

impl CallState {
    /// Authorizes `url` for `capability` and finds where it may connect; every refusal
    /// is audited (by the permission engine for scope and grant, by
    /// [`CallState::refuse`] for addresses).
    ///
    /// `extra` runs on the granted scope after the URL check (a capability's own scope
    /// fields, such as `max_pages`).
    pub(crate) async fn egress_check(
        &mut self,
        capability: &'static str,
        url: &Url,
        method: Option<&'static str>,
        extra: &ScopeHook,
    ) -> Result<Destination, CapError> {
        let target = audit_target(method.unwrap_or(""), url);
        let checked = url.clone();
        self.authorize(capability, &target, &move |scope| {
            check_network_scope(capability, scope, &checked, method)?;
            extra(scope)
        })
        .await?;
        match self.host.egress.destination(url) {
            Ok(d) => Ok(d),
            Err(EgressError::Refused(reason)) => Err(self.refuse(capability, &target, reason).await),
            Err(e) => Err(e.into_cap_error()),
        }
    }

    /// One HTTP exchange under the egress policy, following redirects itself (each hop
    /// re-authorized and re-resolved). Used by `network.http` and `browser.scrape`.
    pub(crate) async fn egress_fetch(
        &mut self,
        capability: &'static str,
        req: FetchRequest,
    ) -> Result<Fetched, CapError> {
        self.egress_fetch_with(capability, req, &|_| Ok(())).await
    }

    /// [`CallState::egress_fetch`] with an extra scope check run at every hop.
    pub(crate) async fn egress_fetch_with(
        &mut self,
        capability: &'static str,
        req: FetchRequest,
        extra: &ScopeHook,
    ) -> Result<Fetched, CapError> {
        let max_redirects = self.host.egress.config().max_redirects;
        let transport = self.host.http.clone();
        let FetchRequest { mut url, mut method, mut headers, mut body, timeout, follow_redirects, max_body } = req;
        let mut hops = 0u8;
        loop {
            let dest = self.egress_check(capability, &url, Some(method), extra).await?;
            let out = super::http::OutboundRequest {
                method,
                url: dest.url,
                headers: headers.clone(),
                body: body.clone(),
                timeout,
                max_body,
            };
            let resp = match transport.send(out).await {
                Ok(resp) => resp,
                Err(EgressError::Refused(reason)) => {
                    return Err(self.refuse(capability, &audit_target(method, &url), reason).await)
                }
                Err(e) => return Err(e.into_cap_error()),
            };
            let location =
                resp.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("location")).map(|(_, v)| v.clone());
            let redirect = matches!(resp.status, 301 | 302 | 303 | 307 | 308);
            match location {
                Some(location) if redirect && follow_redirects => {
                    hops = hops.saturating_add(1);
                    if hops > max_redirects {
                        return Err(CapError::Io(format!(
                            "more than {max_redirects} redirects; the last one pointed to {}",
                            shorten(&location)
                        )));
                    }
                    let next = url.join(&location).map_err(|e| {
                        CapError::Io(format!(
                            "the server redirected to `{}`, which is not a valid URL ({e})",
                            shorten(&location)
                        ))
                    })?;
                    // Credentials were meant for the origin the extension named; like
                    // browsers and curl, never hand them to another one, in scope or not.
                    if next.origin() != url.origin() {
                        headers.retain(|(name, _)| !is_credential_header(name));
                    }
                    url = next;
                    // Browsers turn a redirected POST into a GET for 301/302/303 and
                    // drop the body; 307/308 keep both.
                    if resp.status == 303 || (matches!(resp.status, 301 | 302) && method == "POST") {
                        method = "GET";
                        body = None;
                    }
                }
                _ => {
                    return Ok(Fetched { status: resp.status, headers: resp.headers, body: resp.body, final_url: url })
                }
            }
        }
    }
}

/// Whether a request header carries credentials: the well-known ones, and any whose
/// name says it holds a key, a token, a secret, a session or authentication.
pub(crate) fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "authorization" | "proxy-authorization" | "cookie")
        || ["auth", "token", "secret", "key", "session", "cookie", "password", "credential"]
            .iter()
            .any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_headers_are_recognised() {
        for name in
            ["Authorization", "Proxy-Authorization", "Cookie", "X-Api-Key", "X-Auth-Token", "Api-Key", "X-Session-Id"]
        {
            assert!(is_credential_header(name), "{name}");
        }
        for name in ["Accept", "Content-Type", "User-Agent", "X-Trace", "If-None-Match"] {
            assert!(!is_credential_header(name), "{name}");
        }
    }

    fn egress(resolver: StaticResolver) -> Egress {
        let mut config = NetworkConfig::default();
        config.resolve.insert("mapped.test".into(), "http://127.0.0.1:8080/base/".into());
        Egress::new(config, Arc::new(resolver))
    }

    fn block<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn refuses_non_public_addresses_in_every_form() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "::127.0.0.1",
            "::ffff:10.0.0.1",
            "ff02::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!is_public(ip), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(is_public(ip), "{ip} must be allowed");
        }
    }

    #[test]
    fn url_parsing_normalizes_every_ipv4_spelling_to_the_same_host() {
        for input in
            ["http://2130706433/", "http://0177.0.0.1/", "http://0x7f.0.0.1/", "http://127.1/", "http://0x7f000001/"]
        {
            let url = parse_url(input, &["http", "https"]).unwrap();
            assert_eq!(url.host(), Some(url::Host::Ipv4(Ipv4Addr::LOCALHOST)), "{input}");
            let err = egress(StaticResolver::new()).destination(&url).unwrap_err();
            assert!(matches!(err, EgressError::Refused(ref m) if m.contains("loopback")), "{input}: {err}");
        }
        for input in
            ["http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "http://169.254.169.254/"]
        {
            let url = parse_url(input, &["http"]).unwrap();
            let err = egress(StaticResolver::new()).destination(&url).unwrap_err();
            assert!(matches!(err, EgressError::Refused(_)), "{input}: {err}");
        }
        let public = Url::parse("https://93.184.216.34/").unwrap();
        assert_eq!(egress(StaticResolver::new()).destination(&public).unwrap().url, public);
    }

    #[test]
    fn names_are_checked_on_every_answer() {
        let resolver = StaticResolver::new()
            .with("rebind.test", &["127.0.0.1".parse().unwrap()])
            .with("mixed.test", &["93.184.216.34".parse().unwrap(), "10.0.0.1".parse().unwrap()])
            .with("good.test", &["93.184.216.34".parse().unwrap()]);
        let checked = CheckedResolver::new(Arc::new(egress(resolver)));
        let err = block(checked.resolve("rebind.test", 443)).unwrap_err();
        assert!(matches!(err, EgressError::Refused(ref m) if m.contains("rebind.test resolves to 127.0.0.1")), "{err}");
        let err = block(checked.resolve("Mixed.Test.", 443)).unwrap_err();
        assert!(matches!(err, EgressError::Refused(_)), "{err}");
        let ok = block(checked.resolve("good.test", 443)).unwrap();
        assert_eq!(ok, vec!["93.184.216.34:443".parse::<SocketAddr>().unwrap()]);
        let err = block(checked.resolve("unknown.test", 443)).unwrap_err();
        assert!(matches!(err, EgressError::Io(_)), "{err}");
        let err = block(checked.resolve("10.0.0.1", 80)).unwrap_err();
        assert!(matches!(err, EgressError::Refused(_)), "{err}");
        // The person's own mapping target may be private.
        assert!(block(checked.resolve("127.0.0.1", 8080)).is_ok());
    }

    #[test]
    fn resolve_mapping_keeps_path_and_query_and_allows_loopback() {
        let e = egress(StaticResolver::new());
        let d = e.destination(&Url::parse("https://mapped.test/v1/x?a=1#f").unwrap()).unwrap();
        assert_eq!(d.url.as_str(), "http://127.0.0.1:8080/base/v1/x?a=1");
        assert!(d.mapped);
        let other = Url::parse("https://example.com/a").unwrap();
        assert_eq!(e.destination(&other).unwrap().url, other);
    }

    #[test]
    fn audit_target_drops_query_and_userinfo() {
        let url = Url::parse("https://user:pw@example.com/p?api_key=secret#frag").unwrap();
        assert_eq!(audit_target("GET", &url), "GET https://example.com/p");
        assert_eq!(audit_target("", &url), "https://example.com/p");
    }

    #[test]
    fn parse_url_names_the_problem() {
        assert!(
            matches!(parse_url("example.com/x", &["https"]), Err(CapError::InvalidInput(m)) if m.contains("absolute"))
        );
        assert!(
            matches!(parse_url("ftp://example.com/", &["https", "http"]), Err(CapError::InvalidInput(m)) if m.contains("ftp"))
        );
    }
}
