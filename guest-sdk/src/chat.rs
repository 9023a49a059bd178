//! Chat services such as Slack, Discord or Matrix (capability `messaging.chat`).
//!
//! ```no_run
//! use omni_guest_sdk::chat;
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let id = chat::send("slack:#ops", "Deploy finished.")?;
//! chat::reply("slack:#ops", &id, "No errors so far.")?;
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::chat as wit;
use crate::Result;

pub use wit::Message;

/// Post `text` to `recipient` (`service:target`, e.g. `slack:#ops`); returns the new
/// message's id.
///
/// # Errors
///
/// The host's refusal (recipient outside the grant, rate limit) or the service's failure.
pub fn send(recipient: &str, text: &str) -> Result<String> {
    send_message(&Message { recipient: recipient.to_string(), text: text.to_string(), thread_id: None })
}

/// Post `text` in the thread `thread_id` of `recipient`.
///
/// # Errors
///
/// As [`send`].
pub fn reply(recipient: &str, thread_id: &str, text: &str) -> Result<String> {
    send_message(&Message {
        recipient: recipient.to_string(),
        text: text.to_string(),
        thread_id: Some(thread_id.to_string()),
    })
}

/// Post `message`.
///
/// # Errors
///
/// As [`send`].
pub fn send_message(message: &Message) -> Result<String> {
    Ok(wit::send(message)?)
}
