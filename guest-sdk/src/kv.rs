//! The extension's private persistent key-value store (capability `storage.persistent`).
//!
//! Keys and values together are bounded by the scope's `max_bytes`; a write past it fails
//! with [`Error::InvalidInput`] or
//! [`Error::OutOfScope`], as the host decides.
//!
//! ```no_run
//! use omni_guest_sdk::kv;
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! kv::set("greeting", "hello")?;
//! assert_eq!(kv::get_string("greeting")?.as_deref(), Some("hello"));
//! kv::set_json("counter", &41_u32)?;
//! let next = kv::get_json::<u32>("counter")?.unwrap_or(0) + 1;
//! kv::set_json("counter", &next)?;
//! for key in kv::list("", 100)? {
//!     println!("{key}");
//! }
//! # Ok(())
//! # }
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bindings::omni::caps::kv as wit;
use crate::{Error, Result};

/// The value under `key`, if any.
///
/// # Errors
///
/// The host's refusal or a storage failure.
pub fn get(key: &str) -> Result<Option<Vec<u8>>> {
    Ok(wit::get(key)?)
}

/// The value under `key` as UTF-8 text, if any.
///
/// # Errors
///
/// As [`get`], and [`Error::Decode`] when the value is not UTF-8.
pub fn get_string(key: &str) -> Result<Option<String>> {
    get(key)?.map(|bytes| String::from_utf8(bytes).map_err(|e| Error::decode("a stored value as UTF-8", e))).transpose()
}

/// The value under `key` parsed as JSON into `T`, if any.
///
/// # Errors
///
/// As [`get`], and [`Error::Decode`] when the value is not JSON of the shape of `T`.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>> {
    get(key)?
        .map(|bytes| serde_json::from_slice(&bytes).map_err(|e| Error::decode("a stored value as JSON", e)))
        .transpose()
}

/// Store `value` under `key`, replacing any previous value.
///
/// # Errors
///
/// The host's refusal, the quota, or a storage failure.
pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<()> {
    Ok(wit::set(key, value.as_ref())?)
}

/// Store `value` as JSON under `key`.
///
/// # Errors
///
/// As [`set`], and [`Error::InvalidInput`] when `value` cannot be serialized.
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<()> {
    set(key, crate::to_json(value)?)
}

/// Remove `key`; returns whether it existed.
///
/// # Errors
///
/// The host's refusal or a storage failure.
pub fn delete(key: &str) -> Result<bool> {
    Ok(wit::delete(key)?)
}

/// Keys that start with `prefix` (`""` for all), in order, at most `limit` of them.
///
/// # Errors
///
/// The host's refusal or a storage failure.
pub fn list(prefix: &str, limit: u32) -> Result<Vec<String>> {
    Ok(wit::list_keys(prefix, limit)?)
}

/// Whether `key` is present.
///
/// # Errors
///
/// The host's refusal or a storage failure.
pub fn exists(key: &str) -> Result<bool> {
    Ok(wit::exists(key)?)
}

/// How much of the store this extension uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of keys plus values stored.
    pub used: u64,
    /// The most it may store (the scope's `max_bytes`).
    pub quota: u64,
}

/// Bytes used by this extension's keys and values, and its quota.
///
/// # Errors
///
/// The host's refusal or a storage failure.
pub fn usage() -> Result<Usage> {
    let (used, quota) = wit::usage()?;
    Ok(Usage { used, quota })
}
