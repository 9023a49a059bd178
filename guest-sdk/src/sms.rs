//! Text messages to phone numbers (capability `messaging.sms`).
//!
//! ```no_run
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let id = omni_guest_sdk::sms::send(["+14155550123"], "The build is green.")?;
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::sms as wit;
use crate::Result;

/// Send `body` to every number in `recipients` (E.164, e.g. `+14155550123`); returns the
/// provider's message id.
///
/// # Errors
///
/// The host's refusal (a recipient outside the grant's `recipients`, the rate limit) or the
/// provider's failure.
pub fn send<I, S>(recipients: I, body: &str) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let recipients: Vec<String> = recipients.into_iter().map(Into::into).collect();
    Ok(wit::send(&recipients, body)?)
}
