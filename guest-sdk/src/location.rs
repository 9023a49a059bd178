//! The device's geographic position (capability `device.location`).
//!
//! ```no_run
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let here = omni_guest_sdk::location::current()?;
//! println!("{:.4}, {:.4} (±{} m)", here.latitude, here.longitude, here.accuracy_m);
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::location as wit;
use crate::Result;

pub use wit::Position;

/// The current position, waiting as long as the host allows for a fix.
///
/// # Errors
///
/// The host's refusal, or [`Error::Unavailable`](crate::Error::Unavailable) when it has no
/// location service.
pub fn current() -> Result<Position> {
    Ok(wit::current(None)?)
}

/// The current position, waiting at most `timeout_ms` for a fix.
///
/// # Errors
///
/// As [`current`], and [`Error::Io`](crate::Error::Io) when no fix came in time.
pub fn current_within(timeout_ms: u32) -> Result<Position> {
    Ok(wit::current(Some(timeout_ms))?)
}
