//! Still pictures from a camera (capability `device.camera`).
//!
//! ```no_run
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let image = omni_guest_sdk::camera::capture()?;
//! println!("{}x{} {} ({} bytes)", image.width, image.height, image.mime, image.data.len());
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::camera as wit;
use crate::Result;

pub use wit::Image;

/// Take a picture with the default camera, at its full size.
///
/// # Errors
///
/// The host's refusal, or [`Error::Unavailable`](crate::Error::Unavailable) when the host
/// has no camera.
pub fn capture() -> Result<Image> {
    capture_with(None, None, None)
}

/// Take a picture with `device` (a name from [`devices`], or the default), scaled down to
/// fit `max_width` by `max_height` when given.
///
/// # Errors
///
/// As [`capture`].
pub fn capture_with(device: Option<&str>, max_width: Option<u32>, max_height: Option<u32>) -> Result<Image> {
    Ok(wit::capture(device, max_width, max_height)?)
}

/// The names of the cameras the host can use.
///
/// # Errors
///
/// As [`capture`].
pub fn devices() -> Result<Vec<String>> {
    Ok(wit::devices()?)
}
