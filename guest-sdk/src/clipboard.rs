//! The system clipboard (capabilities `clipboard.read` and `clipboard.write`).
//!
//! ```no_run
//! use omni_guest_sdk::clipboard;
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! if let Some(text) = clipboard::read_text()? {
//!     clipboard::write_text(&text.to_uppercase())?;
//! }
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::{clipboard_read, clipboard_write};
use crate::Result;

/// The clipboard's text, or `None` when it holds no text (needs `clipboard.read`).
///
/// # Errors
///
/// The host's refusal, or [`Error::Unavailable`](crate::Error::Unavailable) on a host
/// without a clipboard.
pub fn read_text() -> Result<Option<String>> {
    Ok(clipboard_read::read_text()?)
}

/// Replace the clipboard's content with `text` (needs `clipboard.write`).
///
/// # Errors
///
/// As [`read_text`].
pub fn write_text(text: &str) -> Result<()> {
    Ok(clipboard_write::write_text(text)?)
}
