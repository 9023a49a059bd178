//! `network.http`: outbound HTTP through one egress policy.
//!
//! What the scope says is what the extension can reach:
//!
//! * every request, and every redirect hop, is checked against the granted scope
//!   (scheme, host pattern, port, method) before anything is sent; a redirect is never
//!   followed by the HTTP client itself;
//! * names are resolved by the host, and an answer that points at a loopback, private,
//!   link-local, CGNAT, multicast or unspecified address (or an IPv4-mapped form of one)
//!   is refused; the connection goes to the address that was checked, with no second
//!   lookup. The one exception is a host the person mapped in `[network.resolve]`;
//! * response bodies and request times are capped.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use omni_capabilities::Scope;
use url::Url;

use super::try_budget;
use crate::bindings::omni::caps::http::{Host, Method, Request, Response};
use crate::bindings::CapError;
use crate::config::NetworkConfig;
use crate::sandbox::CallState;

const CAPABILITY: &str = "network.http";
/// Most headers one request may carry.
const MAX_HEADERS: usize = 100;

/// One request exactly as it goes on the wire: redirects are the caller's business.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// Upper-case method name.
    pub method: &'static str,
    /// Where to connect (after any `[network.resolve]` mapping).
    pub url: Url,
    /// Header pairs.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Option<Vec<u8>>,
    /// Time allowed for the whole exchange.
    pub timeout: Duration,
    /// Largest body accepted.
    pub max_body: u64,
}

/// A response to one [`OutboundRequest`].
#[derive(Debug, Clone)]
pub struct InboundResponse {
    /// Status code.
    pub status: u16,
    /// Header pairs (values decoded lossily).
    pub headers: Vec<(String, String)>,
    /// The body, at most `max_body` bytes.
    pub body: Vec<u8>,
}

/// Why one exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The name resolved only to addresses the egress policy refuses.
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
    /// Connecting, sending or receiving failed.
    #[error("{0}")]
    Io(String),
}

/// Future returned by [`HttpBackend::send`].
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<InboundResponse, HttpError>> + Send + 'a>>;

/// The transport an embedder may replace (a proxy, a recording client in tests).
///
/// It sends exactly one request and must not follow redirects: the host checks each hop.
pub trait HttpBackend: Send + Sync {
    /// Sends one request.
    fn send(&self, request: OutboundRequest) -> SendFuture<'_>;
}

/// The default transport: reqwest over rustls, with the host's own resolver.
pub struct ReqwestBackend {
    client: reqwest::Client,
}

impl ReqwestBackend {
    /// Builds the client. Hosts named in `[network.resolve]` may resolve to any address;
    /// every other name must resolve to a public one.
    pub fn new(config: &NetworkConfig) -> Result<ReqwestBackend, HttpError> {
        let mapped: Vec<String> = config
            .resolve
            .values()
            .filter_map(|base| Url::parse(base).ok())
            .filter_map(|u| u.host_str().map(str::to_ascii_lowercase))
            .collect();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PublicOnlyResolver { mapped: Arc::new(mapped) }))
            .no_proxy()
            .build()
            .map_err(|e| HttpError::Io(e.to_string()))?;
        Ok(ReqwestBackend { client })
    }
}

impl HttpBackend for ReqwestBackend {
    fn send(&self, req: OutboundRequest) -> SendFuture<'_> {
        Box::pin(async move {
            let method = reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|e| HttpError::Io(e.to_string()))?;
            let mut builder = self.client.request(method, req.url.clone()).timeout(req.timeout);
            for (k, v) in &req.headers {
                builder = builder.header(k, v);
            }
            if let Some(body) = req.body {
                builder = builder.body(body);
            }
            let mut resp = builder.send().await.map_err(|e| map_reqwest(e, req.timeout))?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            if resp.content_length().is_some_and(|n| n > req.max_body) {
                return Err(HttpError::TooLarge { limit: req.max_body });
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| map_reqwest(e, req.timeout))? {
                if body.len() as u64 + chunk.len() as u64 > req.max_body {
                    return Err(HttpError::TooLarge { limit: req.max_body });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(InboundResponse { status, headers, body })
        })
    }
}

fn map_reqwest(e: reqwest::Error, timeout: Duration) -> HttpError {
    if e.is_timeout() {
        return HttpError::Timeout(timeout);
    }
    // The resolver's refusal travels as the error's source; surface its sentence.
    let mut source: Option<&dyn std::error::Error> = Some(&e);
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<RefusedAddress>() {
            return HttpError::Refused(refused.0.clone());
        }
        source = s.source();
    }
    HttpError::Io(format!("{e:#}"))
}

fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

#[derive(Debug)]
struct RefusedAddress(String);
impl std::fmt::Display for RefusedAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for RefusedAddress {}

/// Resolves names itself and hands the client only addresses it checked.
struct PublicOnlyResolver {
    mapped: Arc<Vec<String>>,
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let mapped = self.mapped.contains(&host);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?
                .collect();
            let allowed: Vec<SocketAddr> = addrs.iter().copied().filter(|a| mapped || is_public(a.ip())).collect();
            if allowed.is_empty() {
                let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                return Err(Box::new(RefusedAddress(format!(
                    "{host} resolves to {}, which is not a public address; Omni refuses loopback, private, link-local and similar targets unless [network.resolve] in omni.toml maps the host",
                    if list.is_empty() { "nothing".to_string() } else { list.join(", ") }
                ))) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `ip` is a globally routable address an extension may reach.
///
/// Refused: loopback, private (RFC 1918, unique local), link-local (which holds the
/// cloud metadata address 169.254.169.254), CGNAT 100.64/10, multicast, broadcast,
/// unspecified, 0/8, documentation and benchmarking ranges, and IPv6 forms that embed
/// an IPv4 address (mapped, compatible, NAT64) whose IPv4 address is refused.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::/96) embed an IPv4 address.
            if (s[0..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified())
                || s[0..6] == [0x64, 0xff9b, 0, 0, 0, 0]
            {
                let v4 = std::net::Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
                return is_public(IpAddr::V4(v4));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
    }
}

/// Checks one URL and method against a granted network scope.
fn check_scope(scope: &Scope, url: &Url, method: &str) -> Result<(), String> {
    match scope.as_network() {
        Some(network) => network.check(url, Some(method)),
        None => Err(format!("{CAPABILITY} was granted without a network scope")),
    }
}

/// The URL to connect to: the original one, or its `[network.resolve]` mapping.
fn connect_url(config: &NetworkConfig, url: &Url) -> Result<Url, String> {
    let Some(host) = url.host_str() else { return Ok(url.clone()) };
    let Some(base) = config.resolve.get(host) else { return Ok(url.clone()) };
    let base = Url::parse(base).map_err(|e| format!("[network.resolve] entry for {host} is not a URL ({e}); write it as \"http://127.0.0.1:8080\""))?;
    let mut mapped = base.clone();
    let prefix = base.path().trim_end_matches('/');
    mapped.set_path(&format!("{prefix}{}", url.path()));
    mapped.set_query(url.query());
    Ok(mapped)
}

/// The target recorded in the audit: no query string, no userinfo, no fragment.
fn audit_target(method: &str, url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    format!("{method} {shown}")
}

fn io_error(e: HttpError) -> CapError {
    match e {
        HttpError::Refused(m) => CapError::OutOfScope(m),
        HttpError::TooLarge { .. } => CapError::Io(e.to_string()),
        HttpError::Timeout(_) | HttpError::Io(_) => CapError::Io(e.to_string()),
    }
}

impl Host for CallState {
    async fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, CapError>> {
        let moved = req.url.len()
            + req.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + req.body.as_ref().map_or(0, Vec::len);
        try_budget!(self, moved);
        Ok(self.http_send(req).await)
    }
}

impl CallState {
    async fn http_send(&mut self, req: Request) -> Result<Response, CapError> {
        let host = self.host.clone();
        let config = &host.config.network;
        if req.headers.len() > MAX_HEADERS {
            return Err(CapError::InvalidInput(format!("{} headers, more than the {MAX_HEADERS} allowed", req.headers.len())));
        }
        if let Some((name, _)) = req.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("host")) {
            return Err(CapError::InvalidInput(format!(
                "the `{name}` header is set by the host from the URL; remove it"
            )));
        }
        let mut url = Url::parse(&req.url).map_err(|e| {
            CapError::InvalidInput(format!("`{}` is not an absolute URL ({e}); write it as https://host/path", req.url))
        })?;
        let mut method = method_name(req.method);
        let mut body = req.body;
        let timeout = Duration::from_millis(req.timeout_ms.map_or(config.timeout_ms, |t| u64::from(t).min(config.timeout_ms)));
        let mut hops = 0u8;
        loop {
            let checked = url.clone();
            let m = method;
            self.authorize(CAPABILITY, &audit_target(method, &url), &move |scope| check_scope(scope, &checked, m))
                .await?;
            let target = connect_url(config, &url).map_err(CapError::Unavailable)?;
            if !config.resolve.contains_key(url.host_str().unwrap_or("")) {
                if let Some(ip) = literal_ip(&target) {
                    if !is_public(ip) {
                        let reason = format!(
                            "{ip} is not a public address; Omni refuses loopback, private, link-local and similar targets unless [network.resolve] in omni.toml maps the host"
                        );
                        return Err(self.refuse(CAPABILITY, &audit_target(method, &url), reason).await);
                    }
                }
            }
            let out = OutboundRequest {
                method,
                url: target,
                headers: req.headers.clone(),
                body: body.clone(),
                timeout,
                max_body: config.max_response_bytes,
            };
            let resp = match host.http.send(out).await {
                Ok(resp) => resp,
                Err(HttpError::Refused(reason)) => {
                    return Err(self.refuse(CAPABILITY, &audit_target(method, &url), reason).await)
                }
                Err(e) => return Err(io_error(e)),
            };
            let location = resp
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.clone());
            let redirect = matches!(resp.status, 301 | 302 | 303 | 307 | 308);
            match location {
                Some(location) if redirect && req.follow_redirects => {
                    hops += 1;
                    if hops > config.max_redirects {
                        return Err(CapError::Io(format!(
                            "more than {} redirects; the last one pointed to {location}",
                            config.max_redirects
                        )));
                    }
                    url = url.join(&location).map_err(|e| {
                        CapError::Io(format!("the server redirected to `{location}`, which is not a valid URL ({e})"))
                    })?;
                    // Browsers turn a redirected POST into a GET for 301/302/303 and
                    // drop the body; 307/308 keep both.
                    if resp.status == 303 || (matches!(resp.status, 301 | 302) && method == "POST") {
                        method = "GET";
                        body = None;
                    }
                }
                _ => {
                    return Ok(Response {
                        status: resp.status,
                        headers: resp.headers,
                        body: resp.body,
                        final_url: url.to_string(),
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_public_addresses_in_every_form() {
        for ip in [
            "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
            "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fd00::1",
            "::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a00:1", "::127.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!is_public(ip), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(is_public(ip), "{ip} must be allowed");
        }
    }

    #[test]
    fn resolve_mapping_keeps_path_and_query() {
        let mut config = NetworkConfig::default();
        config.resolve.insert("api.open-meteo.com".into(), "http://127.0.0.1:8080".into());
        let url = Url::parse("https://api.open-meteo.com/v1/forecast?latitude=1").unwrap();
        assert_eq!(connect_url(&config, &url).unwrap().as_str(), "http://127.0.0.1:8080/v1/forecast?latitude=1");
        let other = Url::parse("https://example.com/a").unwrap();
        assert_eq!(connect_url(&config, &other).unwrap(), other);
    }

    #[test]
    fn audit_target_drops_query_and_userinfo() {
        let url = Url::parse("https://user:pw@example.com/p?api_key=secret#frag").unwrap();
        assert_eq!(audit_target("GET", &url), "GET https://example.com/p");
    }
}
