//! Write Omni extensions in Rust.
//!
//! An Omni extension is a WebAssembly component that exports tools (functions taking and
//! returning JSON) and reaches the outside world only through *capabilities* that a person
//! granted: HTTP, files, a key-value store, and the rest. This crate gives you:
//!
//! - [`export_tools!`]: turn plain Rust functions with serde-typed arguments into the
//!   component's exported `tool` interface, in one line;
//! - one module per capability ([`http`], [`kv`], [`fs`], [`inference`], ...) with
//!   ergonomic wrappers that return [`Result<T, Error>`](Error);
//! - [`bindings`]: the raw bindings generated from the WIT in the repository's `wit/`
//!   directory, for anything the wrappers do not cover.
//!
//! A component imports only the capability functions its code actually calls, so using
//! this crate does not make an extension ask for capabilities it does not use. Every
//! capability it does call must be declared in its manifest, or installation is refused.
//!
//! # A complete extension
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "word-count"
//! version = "0.1.0"
//! edition = "2021"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! omni-guest-sdk = { path = "../omni/guest-sdk" }
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! `manifest.toml`, next to `Cargo.toml`:
//!
//! ```toml
//! [extension]
//! id = "dev.example.word-count"
//! name = "Word count"
//! version = "0.1.0"
//! author = "Example"
//! description = "Counts words, and remembers the largest count seen."
//! categories = ["text"]
//!
//! [runtime]
//! entrypoint = "word_count.wasm"
//!
//! [[permissions]]
//! capability = "storage.persistent"
//! reason = "Remember the largest count seen"
//! required = true
//! scope = { max_bytes = 4096 }
//!
//! [[tools]]
//! name = "count_words"
//! description = "Count the words of a text"
//! parameters = { type = "object", properties = { text = { type = "string" } }, required = ["text"] }
//!
//! [[tools]]
//! name = "record"
//! description = "The largest count seen so far"
//! parameters = { type = "object", properties = {} }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use omni_guest_sdk::{export_tools, kv, NoArgs, ToolError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct CountArgs {
//!     text: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Count {
//!     words: u64,
//!     record: u64,
//! }
//!
//! fn count_words(args: CountArgs) -> Result<Count, ToolError> {
//!     if args.text.len() > 1_000_000 {
//!         return Err(ToolError::invalid("`text` is longer than 1 MB; split it"));
//!     }
//!     let words = args.text.split_whitespace().count() as u64;
//!     // `?` turns a capability error (for example a revoked grant) into a failed call.
//!     let record = kv::get_json::<u64>("record")?.unwrap_or(0).max(words);
//!     kv::set_json("record", &record)?;
//!     Ok(Count { words, record })
//! }
//!
//! fn record(_: NoArgs) -> Result<u64, ToolError> {
//!     Ok(kv::get_json("record")?.unwrap_or(0))
//! }
//!
//! export_tools!(count_words, record);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the component is
//! `target/wasm32-wasip2/release/word_count.wasm`.
//!
//! # Errors
//!
//! Capability calls return [`Error`], which says why the host refused or failed the call
//! ([`Error::PermissionDenied`], [`Error::OutOfScope`], [`Error::RateLimited`], ...). Tools
//! return [`ToolError`]; `From<Error> for ToolError` lets `?` pass capability errors
//! through as failed calls whose message the calling agent can read.
#![deny(unsafe_code)]
#![warn(missing_docs)]

/// The raw bindings generated from the WIT (world `omni:extension/extension`).
///
/// `bindings::omni::caps::<interface>` holds each capability interface exactly as the host
/// implements it; `bindings::exports::omni::extension::tool` holds the exported `tool`
/// interface that [`export_tools!`] implements for you. Records and variants derive
/// `Clone`, `Debug`, `PartialEq` and serde's `Serialize` and `Deserialize`, so a tool can
/// return them as they are.
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "omni:extension/extension",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "__export_extension",
        default_bindings_module: "omni_guest_sdk::bindings",
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    });
}

mod tool;

pub mod agent;
pub mod automation;
pub mod browser;
pub mod camera;
pub mod channel;
pub mod chat;
pub mod clipboard;
pub mod code_intel;
pub mod debugger;
pub mod email;
pub mod flowchart;
pub mod fs;
pub mod http;
pub mod inference;
pub mod kv;
pub mod location;
pub mod mcp;
pub mod microphone;
pub mod notifications;
pub mod process;
pub mod scheduling;
pub mod search;
pub mod sms;
pub mod vcs;
pub mod websocket;

pub use tool::{invoke, NoArgs, ToolError};

#[doc(hidden)]
pub mod __private {
    //! Items the [`export_tools!`](crate::export_tools) expansion refers to; not API.
    pub use crate::bindings::exports::omni::extension::tool::{Guest, ToolError as WitToolError};
    pub use crate::tool::unknown_tool;
}

use bindings::omni::caps::types::Error as WitError;

/// Why a capability call failed.
///
/// The first six cases are the host's answer (the WIT `omni:caps/types.error`); each
/// message names what was refused and what would allow it. The last two are raised by this
/// crate when it cannot make sense of what came back.
///
/// ```
/// use omni_guest_sdk::Error;
///
/// let e = Error::PermissionDenied("network.http was not granted".into());
/// assert_eq!(e.to_string(), "permission denied: network.http was not granted");
/// assert!(e.is_permission_denied());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No grant covers this call (never granted, revoked, kill switch, or a denied prompt).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A grant exists but the target (host, path, recipient, ...) lies outside its scope.
    #[error("out of scope: {0}")]
    OutOfScope(String),
    /// A rate limit or budget refused the call for now.
    #[error("rate limited: {reason}; retry in {retry_after_ms} ms")]
    RateLimited {
        /// Milliseconds until a retry can succeed.
        retry_after_ms: u64,
        /// Which limit was hit.
        reason: String,
    },
    /// The host has no backend for the capability, or the backend is down.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The arguments were malformed or exceeded a host-side bound.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The operation was allowed but failed while running.
    #[error("i/o error: {0}")]
    Io(String),
    /// An HTTP response had an error status; see [`http::Response::error_for_status`].
    #[error("HTTP status {status} from {url}")]
    HttpStatus {
        /// The status code, 400 to 599.
        status: u16,
        /// The URL that answered.
        url: String,
    },
    /// Data that came back could not be decoded as expected (JSON, UTF-8).
    #[error("could not decode {what}: {message}")]
    Decode {
        /// What was being decoded, e.g. "the response body as JSON".
        what: &'static str,
        /// The decoder's message.
        message: String,
    },
}

impl Error {
    /// Whether the host refused the call for lack of a grant.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Error::PermissionDenied(_))
    }

    /// The name of the host's WIT error case this error carries (`permission-denied`,
    /// `out-of-scope`, `rate-limited`, `unavailable`, `invalid-input`, `io`), or `None`
    /// for an error raised in the guest ([`Error::HttpStatus`], [`Error::Decode`]).
    ///
    /// ```
    /// use omni_guest_sdk::Error;
    /// assert_eq!(Error::OutOfScope("no".into()).host_case(), Some("out-of-scope"));
    /// assert_eq!(Error::HttpStatus { status: 404, url: "https://x".into() }.host_case(), None);
    /// ```
    pub fn host_case(&self) -> Option<&'static str> {
        Some(match self {
            Error::PermissionDenied(_) => "permission-denied",
            Error::OutOfScope(_) => "out-of-scope",
            Error::RateLimited { .. } => "rate-limited",
            Error::Unavailable(_) => "unavailable",
            Error::InvalidInput(_) => "invalid-input",
            Error::Io(_) => "io",
            Error::HttpStatus { .. } | Error::Decode { .. } => return None,
        })
    }

    /// For [`Error::RateLimited`], how many milliseconds to wait before retrying.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Error::RateLimited { retry_after_ms, .. } => Some(*retry_after_ms),
            _ => None,
        }
    }

    pub(crate) fn decode(what: &'static str, err: impl std::fmt::Display) -> Self {
        Error::Decode { what, message: err.to_string() }
    }
}

impl From<WitError> for Error {
    fn from(err: WitError) -> Self {
        match err {
            WitError::PermissionDenied(m) => Error::PermissionDenied(m),
            WitError::OutOfScope(m) => Error::OutOfScope(m),
            WitError::RateLimited(info) => {
                Error::RateLimited { retry_after_ms: info.retry_after_ms, reason: info.reason }
            }
            WitError::Unavailable(m) => Error::Unavailable(m),
            WitError::InvalidInput(m) => Error::InvalidInput(m),
            WitError::Io(m) => Error::Io(m),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Serialize `value` as JSON text for a capability argument.
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::InvalidInput(format!("cannot encode the value as JSON: {e}")))
}

/// Parse JSON text that a capability returned.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| Error::decode(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindings::omni::caps::types::RateLimitedInfo;

    #[test]
    fn host_errors_convert_case_by_case() {
        let cases = [
            (WitError::PermissionDenied("a".into()), Error::PermissionDenied("a".into())),
            (WitError::OutOfScope("b".into()), Error::OutOfScope("b".into())),
            (WitError::Unavailable("c".into()), Error::Unavailable("c".into())),
            (WitError::InvalidInput("d".into()), Error::InvalidInput("d".into())),
            (WitError::Io("e".into()), Error::Io("e".into())),
        ];
        for (wit, want) in cases {
            assert_eq!(Error::from(wit), want);
        }
        let limited = Error::from(WitError::RateLimited(RateLimitedInfo {
            retry_after_ms: 1500,
            reason: "10 calls per minute".into(),
        }));
        assert_eq!(limited.retry_after_ms(), Some(1500));
        assert_eq!(limited.to_string(), "rate limited: 10 calls per minute; retry in 1500 ms");
        assert!(!limited.is_permission_denied());
    }

    #[test]
    fn json_helpers_report_what_failed() {
        let err = from_json::<u32>("the flowchart output", "not json").unwrap_err();
        assert!(matches!(err, Error::Decode { what: "the flowchart output", .. }), "{err}");
        assert_eq!(to_json(&[1, 2]).unwrap(), "[1,2]");
    }
}
