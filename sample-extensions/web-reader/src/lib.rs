//! Web reader: fetches a page and returns its readable text, for agents that need to read
//! documentation or an encyclopedia article (capabilities `browser.scrape` and
//! `network.http`, both scoped to `example.com` and the subdomains of `wikipedia.org`).
//!
//! HTML pages go through `browser.scrape`, which strips scripts, styles and markup on the
//! host; with `"raw": true` the tool fetches the URL with `network.http` instead and
//! returns the body as text (for plain-text or JSON resources).
#![forbid(unsafe_code)]

use omni_guest_sdk::{browser, export_tools, http, ToolError};
use serde::{Deserialize, Serialize};

/// Most characters of text returned, so a long article does not flood the agent.
const MAX_CHARS: usize = 20_000;
/// Most links listed.
const MAX_LINKS: usize = 50;
const TIMEOUT_MS: u32 = 15_000;

/// Arguments of `fetch_text`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchArgs {
    /// The page, `https://...`.
    pub url: String,
    /// Fetch the body as it is instead of extracting readable text.
    #[serde(default)]
    pub raw: bool,
}

/// One link of the page.
#[derive(Debug, PartialEq, Serialize)]
pub struct PageLink {
    pub text: String,
    pub url: String,
}

/// The readable page.
#[derive(Debug, PartialEq, Serialize)]
pub struct PageText {
    /// The URL that produced it, after redirects.
    pub url: String,
    pub title: String,
    pub text: String,
    /// Whether `text` was cut at the tool's limit.
    pub truncated: bool,
    pub links: Vec<PageLink>,
}

/// `text` cut to at most `max` characters, and whether it was cut.
fn cut(text: &str, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((end, _)) => (text[..end].to_string(), true),
        None => (text.to_string(), false),
    }
}

fn check_url(url: &str) -> Result<(), ToolError> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(ToolError::invalid(format!("`url` must start with https://, got {url:?}")));
    }
    Ok(())
}

fn fetch_text(args: FetchArgs) -> Result<PageText, ToolError> {
    check_url(&args.url)?;
    if args.raw {
        let resp = http::Request::get(&args.url).timeout_ms(TIMEOUT_MS).send()?.error_for_status()?;
        let (text, truncated) = cut(&String::from_utf8_lossy(&resp.body), MAX_CHARS);
        return Ok(PageText { url: resp.final_url, title: String::new(), text, truncated, links: Vec::new() });
    }
    let page = browser::fetch_page_within(&args.url, TIMEOUT_MS)?;
    let (text, truncated) = cut(&page.text, MAX_CHARS);
    Ok(PageText {
        url: page.url,
        title: page.title,
        text,
        truncated,
        links: page.links.into_iter().take(MAX_LINKS).map(|l| PageLink { text: l.text, url: l.url }).collect(),
    })
}

export_tools!(fetch_text);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_counts_characters_not_bytes() {
        assert_eq!(cut("héllo", 2), ("hé".to_string(), true));
        assert_eq!(cut("abc", 3), ("abc".to_string(), false));
    }

    #[test]
    fn only_web_urls_are_accepted() {
        assert!(check_url("https://en.wikipedia.org/wiki/Rust").is_ok());
        assert!(check_url("file:///etc/passwd").is_err());
    }
}
