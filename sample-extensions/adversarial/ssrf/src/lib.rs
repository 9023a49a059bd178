//! Hostile sample: asks the network capabilities for whatever URL, provider or socket the
//! caller names, the way an extension trying server-side request forgery would. Each tool
//! reports exactly what the host answered (the error variant and its message), so the
//! security suite can check that every trick is refused the right way.
#![forbid(unsafe_code)]

use omni_guest_sdk::http::{Method, Request};
use omni_guest_sdk::search::Query;
use omni_guest_sdk::{browser, export_tools, search, websocket, Error, ToolError};
use serde::{Deserialize, Serialize};

/// Longest body or text echoed back.
const MAX_ECHO: usize = 4096;

/// What the host answered.
#[derive(Serialize, Default)]
struct Outcome {
    ok: bool,
    /// The error variant (`permission-denied`, `out-of-scope`, ...) when `ok` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    final_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<Vec<String>>,
}

fn refused(e: Error) -> Outcome {
    let kind = e.host_case().unwrap_or("other");
    Outcome { ok: false, error: Some(kind), message: Some(e.to_string()), ..Outcome::default() }
}

fn clip(s: &str) -> String {
    let mut end = s.len().min(MAX_ECHO);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetArgs {
    url: String,
    #[serde(default = "yes")]
    follow: bool,
    #[serde(default)]
    post: bool,
    /// Request headers, e.g. credentials meant for the first host only.
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

fn get(args: GetArgs) -> Result<Outcome, ToolError> {
    let method = if args.post { Method::Post } else { Method::Get };
    let mut request = Request::new(method, args.url).follow_redirects(args.follow).timeout_ms(10_000);
    for (name, value) in args.headers {
        request = request.header(name, value);
    }
    Ok(match request.send() {
        Ok(resp) => Outcome {
            ok: true,
            status: Some(resp.status),
            final_url: Some(resp.final_url.clone()),
            text: Some(clip(&String::from_utf8_lossy(&resp.body))),
            ..Outcome::default()
        },
        Err(e) => refused(e),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScrapeArgs {
    url: String,
    /// Load the page this many times within the one call (default 1).
    #[serde(default)]
    times: Option<u32>,
}

fn scrape(args: ScrapeArgs) -> Result<Outcome, ToolError> {
    let times = args.times.unwrap_or(1).max(1);
    let mut loaded = 0;
    loop {
        match browser::fetch_page_within(&args.url, 10_000) {
            Ok(page) => {
                loaded += 1;
                if loaded < times {
                    continue;
                }
                return Ok(Outcome {
                    ok: true,
                    final_url: Some(page.url),
                    title: Some(page.title),
                    text: Some(clip(&page.text)),
                    links: Some(page.links.into_iter().map(|l| l.url).collect()),
                    ..Outcome::default()
                });
            }
            Err(e) => return Ok(refused(e)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WsArgs {
    url: String,
    message: String,
    /// Send a message of this many bytes instead of `message`.
    #[serde(default)]
    size: Option<u32>,
}

fn ws(args: WsArgs) -> Result<Outcome, ToolError> {
    let conn = match websocket::connect_with(&args.url, &[], Some(10_000)) {
        Ok(c) => c,
        Err(e) => return Ok(refused(e)),
    };
    let message = match args.size {
        Some(n) => "x".repeat(n as usize),
        None => args.message,
    };
    if let Err(e) = conn.send_text(&message) {
        return Ok(refused(e));
    }
    let reply = match conn.receive(Some(10_000)) {
        Ok(Some(websocket::Message::Text(t))) => t,
        Ok(Some(websocket::Message::Binary(b))) => format!("{} bytes", b.len()),
        Ok(Some(websocket::Message::Closed(f))) => format!("closed {} {}", f.code, f.reason),
        Ok(None) => "nothing".to_string(),
        Err(e) => return Ok(refused(e)),
    };
    if let Err(e) = conn.close() {
        return Ok(refused(e));
    }
    Ok(Outcome { ok: true, text: Some(clip(&reply)), ..Outcome::default() })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManyArgs {
    url: String,
    count: u32,
}

/// Opens `count` connections and holds them all, to find the host's bound.
fn ws_many(args: ManyArgs) -> Result<Outcome, ToolError> {
    let mut held = Vec::new();
    for _ in 0..args.count.min(10_000) {
        match websocket::connect_with(&args.url, &[], Some(10_000)) {
            Ok(c) => held.push(c),
            Err(e) => {
                let mut out = refused(e);
                out.text = Some(format!("opened {}", held.len()));
                return Ok(out);
            }
        }
    }
    Ok(Outcome { ok: true, text: Some(format!("opened {}", held.len())), ..Outcome::default() })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    query: String,
    #[serde(default)]
    provider: Option<String>,
}

fn find(args: SearchArgs) -> Result<Outcome, ToolError> {
    let mut q = Query::new(args.query).max_results(5);
    if let Some(p) = args.provider {
        q = q.provider(p);
    }
    Ok(match search::query(&q) {
        Ok(hits) => Outcome {
            ok: true,
            results: Some(hits.into_iter().map(|h| format!("{} <{}>", h.title, h.url)).collect()),
            ..Outcome::default()
        },
        Err(e) => refused(e),
    })
}

export_tools!(get, scrape, ws, ws_many, find);
