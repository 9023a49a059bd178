//! Sound recordings from a microphone (capability `device.microphone`).
//!
//! ```no_run
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let audio = omni_guest_sdk::microphone::record(3_000)?;
//! println!("{} ms of {} at {} Hz", audio.duration_ms, audio.mime, audio.sample_rate);
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::microphone as wit;
use crate::Result;

pub use wit::Audio;

/// Record `duration_ms` milliseconds (the host caps it) from the default microphone.
///
/// # Errors
///
/// The host's refusal, or [`Error::Unavailable`](crate::Error::Unavailable) when the host
/// has no microphone.
pub fn record(duration_ms: u32) -> Result<Audio> {
    Ok(wit::record_audio(duration_ms, None)?)
}

/// Record `duration_ms` milliseconds from `device` (a name from [`devices`]).
///
/// # Errors
///
/// As [`record`].
pub fn record_from(device: &str, duration_ms: u32) -> Result<Audio> {
    Ok(wit::record_audio(duration_ms, Some(device))?)
}

/// The names of the microphones the host can use.
///
/// # Errors
///
/// As [`record`].
pub fn devices() -> Result<Vec<String>> {
    Ok(wit::devices()?)
}
