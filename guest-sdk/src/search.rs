//! Web search (capability `search.web`).
//!
//! ```no_run
//! use omni_guest_sdk::search::{self, Query};
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! for hit in search::web("wasmtime component model")? {
//!     println!("{} <{}>", hit.title, hit.url);
//! }
//! let hits = search::query(&Query::new("rust serde").max_results(3).language("en"))?;
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::web_search as wit;
use crate::Result;

pub use wit::{Query, SearchResult};

impl Query {
    /// A query for `text` with the host's default provider and result count.
    pub fn new(text: impl Into<String>) -> Self {
        Query { text: text.into(), provider: None, max_results: None, language: None }
    }

    /// Use `provider` (one of the grant's `providers`).
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Return at most `n` results.
    pub fn max_results(mut self, n: u32) -> Self {
        self.max_results = Some(n);
        self
    }

    /// Prefer results in `language` (a BCP 47 tag such as `en`).
    pub fn language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }
}

/// Search the web for `text` with the defaults; best hits first.
///
/// # Errors
///
/// The host's refusal (provider outside the grant, rate limit) or the provider's failure.
pub fn web(text: &str) -> Result<Vec<SearchResult>> {
    query(&Query::new(text))
}

/// Run `q`; best hits first.
///
/// # Errors
///
/// As [`web`].
pub fn query(q: &Query) -> Result<Vec<SearchResult>> {
    Ok(wit::search(q)?)
}
