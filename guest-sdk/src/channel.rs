//! Publish on the host's channel bus (capability `channel.send`), where the embedding
//! application, other extensions or agents listen.
//!
//! ```no_run
//! use omni_guest_sdk::channel;
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let delivered = channel::send("alerts", "disk almost full")?;
//! channel::send_json("metrics", &serde_json::json!({"cpu": 0.93}))?;
//! # Ok(())
//! # }
//! ```

use serde::Serialize;

use crate::bindings::omni::caps::channel as wit;
use crate::Result;

/// Publish `message` on `channel`; returns how many subscribers received it.
///
/// # Errors
///
/// The host's refusal (channel outside the grant, rate limit).
pub fn send(channel: &str, message: &str) -> Result<u32> {
    Ok(wit::send(channel, message)?)
}

/// Publish `value` as JSON on `channel`.
///
/// # Errors
///
/// As [`send`], and [`Error::InvalidInput`](crate::Error::InvalidInput) when `value`
/// cannot be serialized.
pub fn send_json<T: Serialize + ?Sized>(channel: &str, value: &T) -> Result<u32> {
    send(channel, &crate::to_json(value)?)
}
