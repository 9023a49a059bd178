//! `network.http`: outbound HTTP, a thin adapter over the egress policy.
//!
//! Everything about *where* a request may go lives in [`super::egress`]: the scope check
//! of every request and redirect hop, the refusal of non-public addresses, the
//! `[network.resolve]` mapping, redirect handling and the caps. This module holds the
//! transport an embedder may replace ([`HttpBackend`]), its default ([`ReqwestBackend`])
//! and the WIT `Host` impl.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::egress::{CheckedResolver, FetchRequest};
use super::try_budget;
use crate::bindings::omni::caps::http::{Host, Method, Request, Response};
use crate::bindings::CapError;
use crate::sandbox::CallState;

pub use super::egress::{audit_target, is_public, EgressError as HttpError};

const CAPABILITY: &str = "network.http";
/// Most headers one request may carry.
const MAX_HEADERS: usize = 100;

/// One request exactly as it goes on the wire: redirects are the caller's business.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// Upper-case method name.
    pub method: &'static str,
    /// Where to connect (after any `[network.resolve]` mapping). Its host, when a name,
    /// must be resolved through the host's [`CheckedResolver`].
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

/// Future returned by [`HttpBackend::send`].
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<InboundResponse, HttpError>> + Send + 'a>>;

/// The transport an embedder may replace (a proxy, a recording client in tests), with
/// `OmniBuilder::http_backend`. `browser.scrape` loads pages through it too.
///
/// It sends exactly one request and must not follow redirects: the host checks each hop.
/// It must resolve names only through the [`CheckedResolver`] the host provides (or not
/// at all, when it forwards to a proxy that applies the same policy), and report that
/// resolver's refusal as [`HttpError::Refused`] so the host audits it.
pub trait HttpBackend: Send + Sync {
    /// Sends one request.
    fn send(&self, request: OutboundRequest) -> SendFuture<'_>;
}

/// The default transport: reqwest over rustls, resolving through the egress policy.
pub struct ReqwestBackend {
    client: reqwest::Client,
}

impl ReqwestBackend {
    /// Builds the client on the host's checked resolver: every name it connects to is
    /// resolved and checked by the egress policy at connection time, and the connection
    /// goes to the addresses that passed.
    pub fn new(resolver: CheckedResolver) -> Result<ReqwestBackend, HttpError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(ReqwestResolver(resolver)))
            .no_proxy()
            .build()
            .map_err(|e| HttpError::Io(e.to_string()))?;
        Ok(ReqwestBackend { client })
    }
}

impl HttpBackend for ReqwestBackend {
    fn send(&self, req: OutboundRequest) -> SendFuture<'_> {
        Box::pin(async move {
            let method =
                reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|e| HttpError::Io(e.to_string()))?;
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
        if let Some(HttpError::Refused(reason)) = s.downcast_ref::<HttpError>() {
            return HttpError::Refused(reason.clone());
        }
        source = s.source();
    }
    // reqwest's own message ("error sending request for url") hides the cause (a name
    // that does not resolve, a refused connection): say it.
    // The URL is left out: the extension knows what it asked for, and a query string
    // may carry a key that has no business in an error message.
    HttpError::Io(omni_capabilities::text::error_chain(&e.without_url()))
}

/// reqwest's view of the [`CheckedResolver`].
struct ReqwestResolver(CheckedResolver);

impl reqwest::dns::Resolve for ReqwestResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            // reqwest puts the URL's port on the addresses itself.
            let addrs = resolver
                .resolve(&host, 0)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
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
        let config = self.host.egress.config();
        if req.headers.len() > MAX_HEADERS {
            return Err(CapError::InvalidInput(format!(
                "{} headers, more than the {MAX_HEADERS} allowed",
                req.headers.len()
            )));
        }
        if let Some((name, _)) = req.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("host")) {
            return Err(CapError::InvalidInput(format!(
                "the `{name}` header is set by the host from the URL; remove it"
            )));
        }
        let url = super::egress::parse_url(&req.url, &["https", "http"])?;
        let timeout =
            Duration::from_millis(req.timeout_ms.map_or(config.timeout_ms, |t| u64::from(t).min(config.timeout_ms)));
        let fetch = FetchRequest {
            url,
            method: method_name(req.method),
            headers: req.headers,
            body: req.body,
            timeout,
            follow_redirects: req.follow_redirects,
            max_body: config.max_response_bytes,
        };
        let got = self.egress_fetch(CAPABILITY, fetch).await?;
        Ok(Response { status: got.status, headers: got.headers, body: got.body, final_url: got.final_url.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_are_upper_case() {
        assert_eq!(method_name(Method::Get), "GET");
        assert_eq!(method_name(Method::Options), "OPTIONS");
    }
}
