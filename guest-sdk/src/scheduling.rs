//! Schedule later calls of this extension's own tools (capability `system.scheduling`).
//!
//! A scheduled call runs with the grants the extension holds when it fires.
//!
//! ```no_run
//! use omni_guest_sdk::scheduling::{self, Trigger};
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! // Every weekday at 07:00 UTC.
//! let id = scheduling::schedule("get_forecast", &serde_json::json!({"latitude": 48.85, "longitude": 2.35}), Trigger::Cron("0 7 * * 1-5".into()))?;
//! // Every 15 minutes.
//! scheduling::schedule("sync", &omni_guest_sdk::NoArgs {}, Trigger::Every(15 * 60 * 1000))?;
//! for job in scheduling::jobs()? {
//!     println!("{} -> {} next at {:?}", job.id, job.tool, job.next_run_ms);
//! }
//! scheduling::cancel(&id)?;
//! # Ok(())
//! # }
//! ```

use serde::Serialize;

use crate::bindings::omni::caps::scheduling as wit;
use crate::Result;

pub use wit::{Job, Trigger};

/// Call this extension's tool `tool` with `arguments` (serialized as JSON) when `when`
/// fires; returns the job id.
///
/// # Errors
///
/// [`Error::InvalidInput`](crate::Error::InvalidInput) for arguments that cannot be
/// serialized, a bad cron expression or too short a period; otherwise the host's refusal.
pub fn schedule<T: Serialize + ?Sized>(tool: &str, arguments: &T, when: Trigger) -> Result<String> {
    let arguments = crate::to_json(arguments)?;
    Ok(wit::schedule(tool, &arguments, &when)?)
}

/// Cancel job `id`; returns whether it existed.
///
/// # Errors
///
/// The host's refusal.
pub fn cancel(id: &str) -> Result<bool> {
    Ok(wit::cancel(id)?)
}

/// This extension's jobs, soonest first.
///
/// # Errors
///
/// The host's refusal.
pub fn jobs() -> Result<Vec<Job>> {
    Ok(wit::list_jobs()?)
}
