//! Desktop notifications (capability `system.notifications`).
//!
//! ```no_run
//! use omni_guest_sdk::notifications::{self, Urgency};
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! notifications::notify("Backup", "Finished without errors")?;
//! notifications::notify_with("Disk", "Less than 1 GB left", Urgency::Critical)?;
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::notifications as wit;
use crate::Result;

pub use wit::Urgency;

/// Show a notification of normal urgency.
///
/// # Errors
///
/// The host's refusal, or [`Error::Unavailable`](crate::Error::Unavailable) on a host
/// without a desktop.
pub fn notify(title: &str, body: &str) -> Result<()> {
    notify_with(title, body, Urgency::Normal)
}

/// Show a notification with `urgency`.
///
/// # Errors
///
/// As [`notify`].
pub fn notify_with(title: &str, body: &str, urgency: Urgency) -> Result<()> {
    Ok(wit::notify(title, body, urgency)?)
}
