//! Load web pages and extract their readable text and links (capability `browser.scrape`).
//!
//! ```no_run
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let page = omni_guest_sdk::browser::fetch_page("https://example.com/")?;
//! println!("{}: {} links", page.title, page.links.len());
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::browser as wit;
use crate::Result;

pub use wit::{Link, Page};

/// Load `url` with the host's default timeout.
///
/// # Errors
///
/// The host's refusal (domain outside the grant, `max_pages` reached) or a load failure.
pub fn fetch_page(url: &str) -> Result<Page> {
    Ok(wit::fetch_page(url, None)?)
}

/// Load `url`, waiting at most `timeout_ms`.
///
/// # Errors
///
/// As [`fetch_page`].
pub fn fetch_page_within(url: &str, timeout_ms: u32) -> Result<Page> {
    Ok(wit::fetch_page(url, Some(timeout_ms))?)
}
