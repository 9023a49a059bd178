//! Outbound HTTP (capability `network.http`).
//!
//! The host checks every request (and every redirect hop) against the grant's domains,
//! methods and ports before it connects; a URL outside them fails with
//! [`Error::OutOfScope`].
//!
//! ```no_run
//! use omni_guest_sdk::http;
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Ip {
//!     origin: String,
//! }
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let ip: Ip = http::get("https://httpbin.org/ip")?.error_for_status()?.json()?;
//! let reply = http::Request::post("https://httpbin.org/post")
//!     .header("x-trace", "1")
//!     .json(&serde_json::json!({ "origin": ip.origin }))?
//!     .timeout_ms(5_000)
//!     .send()?;
//! println!("{}", reply.text()?);
//! # Ok(())
//! # }
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bindings::omni::caps::http as wit;
use crate::{Error, Result};

pub use wit::Method;

/// A request being built; send it with [`Request::send`] or [`send`].
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout_ms: Option<u32>,
    follow_redirects: bool,
}

impl Request {
    /// A request with `method` to `url` (absolute, `https://host[:port]/path?query`), no
    /// headers, no body, the host's default timeout, and redirects followed.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request { method, url: url.into(), headers: Vec::new(), body: None, timeout_ms: None, follow_redirects: true }
    }

    /// A `GET` request to `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A `POST` request to `url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// A `PUT` request to `url`.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }

    /// A `DELETE` request to `url`.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::Delete, url)
    }

    /// Add a header (headers with the same name are all sent).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Set the body to `value` as JSON, and `content-type: application/json`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when `value` cannot be serialized (e.g. a map with
    /// non-string keys).
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self> {
        let body = crate::to_json(value)?;
        Ok(self.header("content-type", "application/json").body(body.into_bytes()))
    }

    /// Give up after `ms` milliseconds (the host caps it by its own limit).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Whether to follow redirects (default yes; each hop is checked against the scope).
    pub fn follow_redirects(mut self, follow: bool) -> Self {
        self.follow_redirects = follow;
        self
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The headers added so far, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body, if one was set.
    pub fn body_bytes(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }

    /// Send the request and wait for the whole response.
    ///
    /// # Errors
    ///
    /// The host's refusal or failure; an HTTP error status is *not* an error here (see
    /// [`Response::error_for_status`]).
    pub fn send(self) -> Result<Response> {
        send(self)
    }

    fn into_wit(self) -> wit::Request {
        wit::Request {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
            timeout_ms: self.timeout_ms,
            follow_redirects: self.follow_redirects,
        }
    }
}

/// A response received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, in the order received.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
    /// The URL that produced this response, after any redirects.
    pub final_url: String,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header named `name` (compared without case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] when the body is not valid UTF-8.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body).map_err(|e| Error::decode("the response body as UTF-8", e))
    }

    /// The body parsed as JSON into `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] when the body is not JSON of the shape of `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| Error::decode("the response body as JSON", e))
    }

    /// The response itself when its status is below 400, else [`Error::HttpStatus`].
    pub fn error_for_status(self) -> Result<Self> {
        if self.status >= 400 {
            Err(Error::HttpStatus { status: self.status, url: self.final_url })
        } else {
            Ok(self)
        }
    }
}

impl From<wit::Response> for Response {
    fn from(r: wit::Response) -> Self {
        Response { status: r.status, headers: r.headers, body: r.body, final_url: r.final_url }
    }
}

/// Send `request` and wait for the whole response.
///
/// # Errors
///
/// The host's refusal ([`Error::PermissionDenied`], [`Error::OutOfScope`], ...) or a
/// transport failure ([`Error::Io`]).
pub fn send(request: Request) -> Result<Response> {
    Ok(wit::send(&request.into_wit())?.into())
}

/// `GET url`.
///
/// # Errors
///
/// As [`send`].
pub fn get(url: &str) -> Result<Response> {
    send(Request::get(url))
}

/// `POST url` with `body` as JSON.
///
/// # Errors
///
/// As [`send`], and [`Error::InvalidInput`] when `body` cannot be serialized.
pub fn post_json<T: Serialize + ?Sized>(url: &str, body: &T) -> Result<Response> {
    send(Request::post(url).json(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
            final_url: "https://api.example.com/x".into(),
        }
    }

    #[test]
    fn builder_sets_every_field() {
        let req = Request::post("https://api.example.com/items")
            .header("x-a", "1")
            .json(&serde_json::json!({"k": [1, 2]}))
            .unwrap()
            .timeout_ms(250)
            .follow_redirects(false);
        assert_eq!(req.method(), Method::Post);
        assert_eq!(req.url(), "https://api.example.com/items");
        assert_eq!(req.headers()[1], ("content-type".into(), "application/json".into()));
        assert_eq!(req.body_bytes(), Some(&br#"{"k":[1,2]}"#[..]));
        let wit = req.into_wit();
        assert_eq!(wit.timeout_ms, Some(250));
        assert!(!wit.follow_redirects);
    }

    #[test]
    fn defaults_follow_redirects_without_timeout() {
        let wit = Request::get("https://a.example").into_wit();
        assert_eq!((wit.method, wit.timeout_ms, wit.follow_redirects, wit.body), (Method::Get, None, true, None));
    }

    #[test]
    fn response_helpers() {
        let r = response(200, r#"{"n": 3}"#);
        assert!(r.is_success());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("missing"), None);
        assert_eq!(r.json::<serde_json::Value>().unwrap()["n"], 3);
        assert_eq!(r.text().unwrap(), r#"{"n": 3}"#);
        assert!(matches!(r.json::<Vec<u8>>(), Err(Error::Decode { .. })));
    }

    #[test]
    fn error_status_becomes_an_error() {
        assert!(response(302, "").error_for_status().is_ok());
        match response(404, "nope").error_for_status() {
            Err(Error::HttpStatus { status: 404, url }) => {
                assert_eq!(url, "https://api.example.com/x")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_utf8_is_a_decode_error() {
        let mut r = response(200, "");
        r.body = vec![0xff, 0xfe];
        assert!(matches!(r.text(), Err(Error::Decode { .. })));
    }
}
