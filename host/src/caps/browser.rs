//! `browser.scrape`: load a web page and hand back its readable text and links.
//!
//! The page is fetched by the host through the egress policy ([`super::egress`]): `GET`
//! only, every redirect hop checked against the grant's `domains` and ports, non-public
//! addresses refused, the body capped by `[network] max_response_bytes`. What turns the
//! fetched document into text is the replaceable part ([`ScrapeBackend`]); it receives
//! bytes that were already fetched and must not reach the network itself, so an embedder
//! plugging in a headless browser renders the document with the browser's own network
//! access disabled (or routed back through `network.http`).
//!
//! `max_pages` in the scope bounds the page loads one tool call asks for (every
//! `fetch-page` counts once, whatever its outcome; redirect hops of one load do not count
//! again).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ego_tree::iter::Edge;
use html5ever::tendril::TendrilSink;
use omni_capabilities::Scope;
use scraper::{Html, HtmlTreeSink, Node, Selector};
use url::Url;

use super::egress::{parse_url, FetchRequest};
use super::{cap, try_budget};
use crate::bindings::omni::caps::browser::{Host, Link, Page};
use crate::bindings::CapError;
use crate::sandbox::CallState;

const CAPABILITY: &str = "browser.scrape";
/// Pages one tool call may load when the scope names no `max_pages`.
pub const DEFAULT_MAX_PAGES: u32 = omni_capabilities::DEFAULT_BROWSER_MAX_PAGES;
/// Longest text returned for one page, in bytes.
pub const MAX_TEXT_BYTES: usize = 512 * 1024;
/// Most links returned for one page.
pub const MAX_LINKS: usize = 1_000;
/// Longest title or link text returned, in bytes.
const MAX_LABEL_BYTES: usize = 1_024;
/// Raw text gathered for one link before it is collapsed and capped.
const MAX_LINK_TEXT_BYTES: usize = 4 * MAX_LABEL_BYTES;
/// Nodes walked for one link's text. A link can contain the rest of the page (`<a>`
/// nested through table cells is kept open by the parser), so without this bound each of
/// a thousand links would walk the whole document again.
const MAX_LINK_NODES: usize = 512;
/// Bytes of HTML parsed between two looks at the deadline.
const PARSE_CHUNK_BYTES: usize = 64 * 1024;
/// Nodes walked between two looks at the deadline.
const NODES_PER_CHECK: usize = 4_096;

/// A document the host fetched, handed to a [`ScrapeBackend`].
#[derive(Debug, Clone)]
pub struct Document {
    /// The URL that produced it, after redirects (relative links resolve against it).
    pub url: Url,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body, at most `[network] max_response_bytes`.
    pub body: Vec<u8>,
}

/// What a [`ScrapeBackend`] extracted from a [`Document`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// The document title, empty when there is none.
    pub title: String,
    /// The readable text, without scripts, styles and markup.
    pub text: String,
    /// `(visible text, absolute URL)` of each link, in document order.
    pub links: Vec<(String, String)>,
}

/// Why a document could not be turned into text.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The document is not HTML or text.
    #[error("the page at {url} is {content_type}, not HTML or text; fetch it with network.http instead")]
    Unsupported {
        /// The page.
        url: String,
        /// Its content type.
        content_type: String,
    },
    /// The backend failed.
    #[error("extracting the page failed: {0}")]
    Failed(String),
    /// The call's time ran out while the page was being parsed or walked.
    #[error("extracting the page at {url} took longer than the call may run; fetch a smaller page")]
    OutOfTime {
        /// The page.
        url: String,
    },
}

/// Turns a fetched document into text and links; what an embedder replaces (a headless
/// browser that runs the page's scripts, a readability extractor) with
/// `OmniBuilder::scrape_backend`.
///
/// It runs on a blocking thread. It must not fetch anything: every byte of network
/// access goes through the host's egress policy. Its output is capped by the host
/// ([`MAX_TEXT_BYTES`], [`MAX_LINKS`]) whatever it returns.
pub trait ScrapeBackend: Send + Sync {
    /// Extracts the text and links of `document`.
    fn extract(&self, document: &Document) -> Result<Extracted, ScrapeError>;

    /// Extracts the text and links of `document`, giving up with
    /// [`ScrapeError::OutOfTime`] once `deadline` has passed: the host stops waiting at
    /// the deadline, and a backend that keeps working past it holds a blocking thread
    /// for nothing. The default ignores the deadline.
    fn extract_until(&self, document: &Document, deadline: Instant) -> Result<Extracted, ScrapeError> {
        let _ = deadline;
        self.extract(document)
    }
}

/// The default backend: parses HTML with `scraper` (html5ever), drops `script`, `style`,
/// `noscript`, `template`, `svg`, `iframe` and similar elements, keeps block structure as
/// line breaks and collapses whitespace. `text/plain` documents are returned as they are.
#[derive(Debug, Default, Clone, Copy)]
pub struct HtmlScraper;

/// Elements whose content is never readable text.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "math", "iframe", "object", "embed", "canvas", "head", "select",
    "button",
];

/// Elements that start a new line.
const BLOCKS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "dd",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "td",
    "th",
    "tr",
    "ul",
    "summary",
    "details",
];

impl ScrapeBackend for HtmlScraper {
    fn extract(&self, document: &Document) -> Result<Extracted, ScrapeError> {
        // Far enough away never to come: no deadline.
        self.extract_until(document, Instant::now() + Duration::from_secs(365 * 24 * 3600))
    }

    fn extract_until(&self, document: &Document, deadline: Instant) -> Result<Extracted, ScrapeError> {
        let clock = Clock { deadline, url: &document.url };
        let body = String::from_utf8_lossy(&document.body);
        let kind = document.content_type.as_deref().map(|c| c.to_ascii_lowercase()).unwrap_or_default();
        let looks_html = kind.contains("html") || (kind.is_empty() && body.trim_start().starts_with('<'));
        if !looks_html {
            if kind.is_empty() || kind.starts_with("text/") {
                return Ok(Extracted { title: String::new(), text: tidy(&body, true), links: Vec::new() });
            }
            return Err(ScrapeError::Unsupported { url: document.url.to_string(), content_type: kind });
        }
        let html = parse(&body, &clock)?;
        Ok(Extracted {
            title: title(&html),
            text: text_of(&html, &clock)?,
            links: links_of(&html, &document.url, &clock)?,
        })
    }
}

/// The deadline of one extraction.
struct Clock<'a> {
    deadline: Instant,
    url: &'a Url,
}

impl Clock<'_> {
    fn check(&self) -> Result<(), ScrapeError> {
        if Instant::now() >= self.deadline {
            return Err(ScrapeError::OutOfTime { url: self.url.to_string() });
        }
        Ok(())
    }
}

/// Parses `body` as an HTML document in chunks, looking at the deadline between them, so
/// a large page stops parsing when the call's time is up.
fn parse(body: &str, clock: &Clock) -> Result<Html, ScrapeError> {
    let mut parser = html5ever::parse_document(HtmlTreeSink::new(Html::new_document()), Default::default());
    let mut rest = body;
    while !rest.is_empty() {
        clock.check()?;
        let mut end = rest.len().min(PARSE_CHUNK_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (chunk, tail) = rest.split_at(end);
        parser.process(chunk.into());
        rest = tail;
    }
    clock.check()?;
    Ok(parser.finish())
}

fn selector(s: &str) -> Result<Selector, ScrapeError> {
    Selector::parse(s).map_err(|e| ScrapeError::Failed(format!("bad selector {s}: {e}")))
}

fn title(html: &Html) -> String {
    let Ok(sel) = selector("title") else { return String::new() };
    html.select(&sel).next().map(|t| collapse(&t.text().collect::<String>())).unwrap_or_default()
}

/// The readable text; walks the tree without recursion, so deep nesting cannot
/// exhaust the stack.
fn text_of(html: &Html, clock: &Clock) -> Result<String, ScrapeError> {
    let mut out = String::new();
    let mut skip = 0usize;
    for (i, edge) in html.tree.root().traverse().enumerate() {
        if i % NODES_PER_CHECK == 0 {
            clock.check()?;
        }
        match edge {
            Edge::Open(node) => match node.value() {
                Node::Element(el) => {
                    let name = el.name();
                    if skip > 0 || SKIPPED.contains(&name) {
                        skip += 1;
                    } else if BLOCKS.contains(&name) {
                        out.push('\n');
                    }
                }
                Node::Text(t) if skip == 0 => {
                    // Twice the cap, since tidying shrinks it; a longer node is cut.
                    out.push_str(prefix(t, (MAX_TEXT_BYTES * 2 + 1).saturating_sub(out.len())));
                    if out.len() > MAX_TEXT_BYTES * 2 {
                        break;
                    }
                }
                _ => {}
            },
            Edge::Close(node) => {
                if let Node::Element(el) = node.value() {
                    if skip > 0 {
                        skip -= 1;
                    } else if BLOCKS.contains(&el.name()) {
                        out.push('\n');
                    }
                }
            }
        }
    }
    Ok(tidy(&out, false))
}

/// The text of a link, from at most [`MAX_LINK_NODES`] nodes and [`MAX_LINK_TEXT_BYTES`]
/// bytes of it.
fn link_text(a: scraper::ElementRef) -> String {
    let mut text = String::new();
    for node in a.descendants().take(MAX_LINK_NODES) {
        if let Node::Text(t) = node.value() {
            // One text node can be megabytes long: copy only what still fits.
            text.push_str(prefix(t, MAX_LINK_TEXT_BYTES - text.len()));
            if text.len() >= MAX_LINK_TEXT_BYTES {
                break;
            }
        }
    }
    collapse(&text)
}

fn links_of(html: &Html, page: &Url, clock: &Clock) -> Result<Vec<(String, String)>, ScrapeError> {
    let Ok(sel) = selector("a[href]") else { return Ok(Vec::new()) };
    // A <base href> changes what relative links mean, but only to another web URL.
    let base = selector("base[href]")
        .ok()
        .and_then(|b| html.select(&b).next().and_then(|e| e.value().attr("href")).and_then(|h| page.join(h).ok()))
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .unwrap_or_else(|| page.clone());
    let mut links = Vec::new();
    for a in html.select(&sel) {
        clock.check()?;
        let Some(href) = a.value().attr("href") else { continue };
        let Ok(mut url) = base.join(href.trim()) else { continue };
        if !matches!(url.scheme(), "http" | "https") {
            continue;
        }
        url.set_fragment(None);
        links.push((cap(link_text(a), MAX_LABEL_BYTES), url.to_string()));
        if links.len() == MAX_LINKS {
            break;
        }
    }
    Ok(links)
}

/// The longest start of `s` of at most `max` bytes that ends on a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Collapses runs of whitespace into one space.
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Collapses spaces within lines; keeps at most one blank line between paragraphs when
/// `keep_blank`, none otherwise (HTML block boundaries already give one line each).
fn tidy(s: &str, keep_blank: bool) -> String {
    let mut out = String::new();
    let mut blank = true;
    for line in s.lines() {
        let line = collapse(line);
        if line.is_empty() {
            if keep_blank && !blank {
                out.push('\n');
                blank = true;
            }
            continue;
        }
        out.push_str(&line);
        out.push('\n');
        blank = false;
    }
    out.trim_end().to_string()
}

impl Host for CallState {
    async fn fetch_page(&mut self, url: String, timeout_ms: Option<u32>) -> wasmtime::Result<Result<Page, CapError>> {
        try_budget!(self, url.len());
        Ok(self.scrape(&url, timeout_ms).await)
    }
}

impl CallState {
    async fn scrape(&mut self, url: &str, timeout_ms: Option<u32>) -> Result<Page, CapError> {
        let url = parse_url(url, &["https", "http"])?;
        let host = self.host.clone();
        let config = host.egress.config();
        // Counted before the fetch, whatever its outcome, so a failing page cannot be
        // retried without bound.
        let used = self.pages_loaded;
        self.pages_loaded = self.pages_loaded.saturating_add(1);
        let pages_check = move |scope: &Scope| {
            let max = scope.as_network().and_then(|n| n.max_pages).unwrap_or(DEFAULT_MAX_PAGES);
            if used >= max {
                return Err(format!(
                    "this call already asked for {used} pages, its max_pages of {max}; a person can raise max_pages in the browser.scrape scope"
                ));
            }
            Ok(())
        };
        let fetch = FetchRequest {
            url,
            method: "GET",
            headers: vec![("accept".into(), "text/html,application/xhtml+xml,text/plain;q=0.9".into())],
            body: None,
            timeout: Duration::from_millis(
                timeout_ms.map_or(config.timeout_ms, |t| u64::from(t).min(config.timeout_ms)),
            ),
            follow_redirects: true,
            max_body: config.max_response_bytes,
        };
        let got = self.egress_fetch_with(CAPABILITY, fetch, &pages_check).await?;
        if !(200..300).contains(&got.status) {
            return Err(CapError::Io(format!("HTTP status {} from {}", got.status, got.final_url)));
        }
        let document = Document {
            content_type: got
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.clone()),
            url: got.final_url,
            body: got.body,
        };
        let backend: Arc<dyn ScrapeBackend> = host.scrape.clone();
        let page_url = document.url.to_string();
        // The call cannot outlive its CPU limit counted from now, so neither may the
        // extraction: past that the guest is stopped and the work would be for nothing.
        let allowed = Duration::from_millis(self.ext.manifest.runtime.max_cpu_ms_per_call.max(1));
        let deadline = Instant::now() + allowed;
        let work = tokio::task::spawn_blocking(move || backend.extract_until(&document, deadline));
        let extracted = match tokio::time::timeout(allowed, work).await {
            Ok(joined) => joined.map_err(|e| CapError::Io(format!("extracting the page failed: {e}")))?,
            // A backend that ignores the deadline is left to finish on its own.
            Err(_) => Err(ScrapeError::OutOfTime { url: page_url.clone() }),
        }
        .map_err(|e| match e {
            ScrapeError::Unsupported { .. } => CapError::InvalidInput(e.to_string()),
            ScrapeError::Failed(_) | ScrapeError::OutOfTime { .. } => CapError::Io(e.to_string()),
        })?;
        Ok(Page {
            url: page_url,
            title: cap(extracted.title, MAX_LABEL_BYTES),
            text: cap(extracted.text, MAX_TEXT_BYTES),
            links: extracted
                .links
                .into_iter()
                .take(MAX_LINKS)
                .map(|(text, url)| Link { text: cap(text, MAX_LABEL_BYTES), url })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(content_type: Option<&str>, body: &str) -> Document {
        Document {
            url: Url::parse("https://example.com/dir/page.html").unwrap(),
            content_type: content_type.map(str::to_string),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn html_becomes_text_without_scripts_and_styles() {
        let page = r#"<!doctype html><html><head><title> The  Title </title><style>p{color:red}</style>
            <script>var secret = "SCRIPT";</script></head>
            <body><h1>Heading</h1><p>First   paragraph <b>bold</b>.</p><script>alert("NOPE")</script>
            <noscript>NOSCRIPT</noscript><ul><li>one</li><li>two</li></ul>
            <a href="/other#frag">Other page</a> <a href="javascript:alert(1)">js</a>
            <a href="https://elsewhere.example/x">  Far   away </a></body></html>"#;
        let out = HtmlScraper.extract(&doc(Some("text/html; charset=utf-8"), page)).unwrap();
        assert_eq!(out.title, "The Title");
        assert!(out.text.starts_with("Heading\nFirst paragraph bold."), "{}", out.text);
        assert!(out.text.contains("one\ntwo"), "{}", out.text);
        for hidden in ["SCRIPT", "NOPE", "NOSCRIPT", "color:red"] {
            assert!(!out.text.contains(hidden), "{hidden} leaked into {}", out.text);
        }
        assert_eq!(
            out.links,
            vec![
                ("Other page".to_string(), "https://example.com/other".to_string()),
                ("Far away".to_string(), "https://elsewhere.example/x".to_string()),
            ]
        );
    }

    #[test]
    fn plain_text_passes_and_binary_is_refused() {
        let out = HtmlScraper.extract(&doc(Some("text/plain"), "line  one\n\n\n\nline two")).unwrap();
        assert_eq!(out.text, "line one\n\nline two");
        let err = HtmlScraper.extract(&doc(Some("application/pdf"), "%PDF")).unwrap_err();
        assert!(matches!(err, ScrapeError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let page = format!("{}deep{}", "<div>".repeat(50_000), "</div>".repeat(50_000));
        let out = HtmlScraper.extract(&doc(Some("text/html"), &page)).unwrap();
        assert_eq!(out.text, "deep");
    }

    /// A page of `links` links, each nested in a table cell inside the previous one, with
    /// `filler` bytes of text after the last: the parser keeps every `<a>` open, so each
    /// link's text is the rest of the document.
    fn nested_links(links: usize, filler: usize) -> String {
        let mut page = String::from("<html><body>");
        for i in 0..links {
            page.push_str(&format!("<table><tr><td><a href=\"/l{i}\">link {i} "));
        }
        page.push_str(&"word ".repeat(filler / 5));
        page.push_str("</body></html>");
        page
    }

    #[test]
    fn hostile_nested_links_gather_bounded_text() {
        let out = HtmlScraper.extract(&doc(Some("text/html"), &nested_links(1_000, 200_000))).unwrap();
        assert_eq!(out.links.len(), 1_000);
        assert!(out.links[0].0.starts_with("link 0 link 1"), "{}", out.links[0].0);
        let total: usize = out.links.iter().map(|(t, _)| t.len()).sum();
        assert!(total <= 1_000 * MAX_LABEL_BYTES, "{total} bytes of link text");
    }

    #[test]
    fn extraction_stops_at_the_deadline() {
        let page = nested_links(100, 1_000_000);
        let err = HtmlScraper.extract_until(&doc(Some("text/html"), &page), Instant::now()).unwrap_err();
        assert!(matches!(err, ScrapeError::OutOfTime { .. }), "{err}");
        assert!(err.to_string().contains("https://example.com/dir/page.html"), "{err}");
    }
}
