//! The network capabilities (`network.http`, `browser.scrape`, `network.websocket`,
//! `search.web`) end to end, and the hostile SSRF suite.
//!
//! Nothing here reaches the internet: `allowed.test` and `ws.allowed.test` are mapped by
//! `[network.resolve]` to loopback servers started by each test, `rebind.test` resolves
//! (through a test resolver) to 127.0.0.1, and every other name fails to resolve.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use omni_host::audit::{AuditFilter, AuditRecord};
use omni_host::caps::egress::StaticResolver;
use omni_host::caps::search::{ProviderConfig, ProviderKind};
use omni_host::policy::Decision;
use omni_host::{Omni, OmniConfig};
use omni_tests::{assert_reason, audit_records, engine, install_from, runtime, sample, sample_with_manifest};
use serde_json::{json, Value};

const PROBE: &str = "dev.omni.adversarial.ssrf";
const READER: &str = "dev.omni.web-reader";
const FAKE_KEY_ENV: &str = "OMNI_CAPS_NETWORK_TEST_FAKE_SEARCH_KEY";
const FAKE_KEY: &str = "fake-search-key-not-a-secret-7731";

const PAGE: &str = r#"<!doctype html><html><head><title>Stand-in page</title>
<style>body { color: red }</style><script>var leaked = "SCRIPT-CONTENT";</script></head>
<body><h1>Welcome</h1><p>This page is served from loopback.</p>
<a href="/hello">hello</a> <a href="https://allowed.test/other">other</a></body></html>"#;

/// A loopback HTTP server: `/hello`, `/page` (HTML), `/redirect?to=URL` (302),
/// `/search?q=` (SearXNG JSON), `/brave?q=` (Brave JSON, checks the key header).
/// It records every request line and the search key header it saw.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    keys: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let keys: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, k, st) = (seen.clone(), keys.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(stream) = stream {
                    let (s, k) = (s.clone(), k.clone());
                    std::thread::spawn(move || {
                        let _ = serve(stream, &s, &k);
                    });
                }
            }
        });
        Server { addr, seen, keys, stop }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<String>>, keys: &Mutex<Vec<String>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    if let Some(len) = headers.get("content-length").and_then(|l| l.parse::<usize>().ok()) {
        let mut body = vec![0; len.min(1 << 20)];
        reader.read_exact(&mut body)?;
    }
    seen.lock().expect("lock").push(line.trim().to_string());
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    let params: HashMap<String, String> =
        query.split('&').filter_map(|p| p.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect();
    let mut stream = stream;
    let q = params.get("q").cloned().unwrap_or_default();
    match path {
        "/hello" => respond(&mut stream, 200, &[("content-type", "text/plain")], "hello from the stand-in"),
        "/page" | "/other" => respond(&mut stream, 200, &[("content-type", "text/html; charset=utf-8")], PAGE),
        "/redirect" => {
            let to = params.get("to").cloned().unwrap_or_default();
            respond(&mut stream, 302, &[("location", to.as_str())], "")
        }
        "/echo-credentials" => {
            let shown = ["authorization", "cookie", "x-api-key", "x-trace"]
                .map(|h| format!("{h}={}", headers.get(h).map_or("-", String::as_str)))
                .join(" ");
            respond(&mut stream, 200, &[("content-type", "text/plain")], &shown)
        }
        "/search" => {
            let body = json!({ "results": [
                { "title": format!("First hit for {q}"), "url": "https://one.example/", "content": "one" },
                { "title": "Second hit", "url": "https://two.example/", "content": "two" },
            ]});
            respond(&mut stream, 200, &[("content-type", "application/json")], &body.to_string())
        }
        "/brave" => {
            keys.lock().expect("lock").push(headers.get("x-subscription-token").cloned().unwrap_or_default());
            let body = json!({ "web": { "results": [
                { "title": format!("Brave hit for {q}"), "url": "https://brave.example/", "description": "b" },
            ]}});
            respond(&mut stream, 200, &[("content-type", "application/json")], &body.to_string())
        }
        _ => respond(&mut stream, 404, &[("content-type", "text/plain")], "not found"),
    }
}

fn respond(stream: &mut TcpStream, status: u16, headers: &[(&str, &str)], body: &str) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

/// A loopback WebSocket server answering each text message with `echo: <message>`.
/// A message `wait` is answered only after [`WsServer::release`].
struct WsServer {
    addr: SocketAddr,
    waiting: Arc<AtomicBool>,
    gate: Arc<tokio::sync::Semaphore>,
    _rt: tokio::runtime::Runtime,
}

impl WsServer {
    fn start() -> WsServer {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let waiting = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (w, g) = (waiting.clone(), gate.clone());
        rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (w, g) = (w.clone(), g.clone());
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                    while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_text() && msg.to_text().unwrap_or_default() == "wait" {
                            w.store(true, Ordering::SeqCst);
                            if let Ok(permit) = g.acquire().await {
                                permit.forget();
                            }
                        }
                        if msg.is_text() {
                            let reply = format!("echo: {}", msg.to_text().unwrap_or_default());
                            if ws.send(tokio_tungstenite::tungstenite::Message::text(reply)).await.is_err() {
                                break;
                            }
                        } else if msg.is_close() {
                            break;
                        }
                    }
                });
            }
        });
        WsServer { addr, waiting, gate, _rt: rt }
    }

    fn release(&self) {
        self.gate.add_permits(100);
    }
}

/// Everything one test needs: the servers, the host, a runtime.
struct Net {
    http: Server,
    ws: WsServer,
    omni: Omni,
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

fn config(http: &Server, ws: &WsServer, search_kind: ProviderKind) -> OmniConfig {
    let mut config = OmniConfig::default();
    config.network.resolve.insert("allowed.test".into(), http.base_url());
    config.network.resolve.insert("example.com".into(), http.base_url());
    // Another in-scope host on the same server, for redirects between hosts.
    config.network.resolve.insert("rebind.allowed.test".into(), http.base_url());
    config.network.resolve.insert("ws.allowed.test".into(), format!("http://{}", ws.addr));
    let (endpoint, key) = match search_kind {
        ProviderKind::Searxng => (format!("{}/search", http.base_url()), None),
        ProviderKind::Brave => (format!("{}/brave", http.base_url()), Some(FAKE_KEY_ENV.to_string())),
    };
    config.search.providers.push(ProviderConfig {
        name: "local".into(),
        kind: search_kind,
        endpoint,
        api_key_env: key,
    });
    config
}

/// A host with the probe installed; `denied` capabilities are refused at install.
fn net_with(denied: &[&str], search_kind: ProviderKind) -> Net {
    net_tweaked(denied, search_kind, |_| {})
}

/// [`net_with`] with a change to the host configuration.
fn net_tweaked(denied: &[&str], search_kind: ProviderKind, tweak: impl FnOnce(&mut OmniConfig)) -> Net {
    let http = Server::start();
    let ws = WsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let resolver = StaticResolver::new().with("rebind.test", &["127.0.0.1".parse::<IpAddr>().expect("ip")]);
    let mut config = config(&http, &ws, search_kind);
    tweak(&mut config);
    let omni = Omni::builder(dir.path())
        .engine(engine())
        .config(config)
        .resolver(Arc::new(resolver))
        .open()
        .expect("host opens");
    install(&omni, PROBE, denied);
    Net { http, ws, omni, _dir: dir, rt: runtime() }
}

fn net() -> Net {
    net_with(&[], ProviderKind::Searxng)
}

fn install(omni: &Omni, id: &str, denied: &[&str]) {
    install_from(omni, &sample(id), |cap| if denied.contains(&cap) { Decision::Deny } else { Decision::Allow });
}

impl Net {
    fn call(&self, tool: &str, args: Value) -> Value {
        let out = self
            .rt
            .block_on(self.omni.call(PROBE, tool, &args.to_string()))
            .unwrap_or_else(|e| panic!("{tool} {args} failed as a call: {e}"));
        serde_json::from_str(&out.output).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.output))
    }

    fn get(&self, url: &str) -> Value {
        self.call("get", json!({ "url": url }))
    }

    /// The probe's deny records of `capability` in the audit log.
    fn denials(&self, capability: &str) -> Vec<AuditRecord> {
        audit_records(&self.omni, PROBE, capability, Some(Decision::Deny), None)
    }

    /// Asserts the guest saw `kind` with a message containing `why`, and the audit holds
    /// a deny record of `capability` whose reason contains `why`.
    fn assert_refused(&self, out: &Value, capability: &str, kind: &str, why: &str) {
        assert_eq!(out["ok"], false, "must be refused: {out}");
        assert_eq!(out["error"], kind, "wrong error variant: {out}");
        let message = out["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "the guest's message should say {why:?}: {message}");
        assert_reason(&self.denials(capability), capability, &[why]);
    }

    /// Asserts the guest saw `permission-denied` naming the capability as not granted, and
    /// the audit holds the person's refusal of it.
    fn assert_ungranted(&self, out: &Value, capability: &str) {
        assert_eq!(out["ok"], false, "must be refused: {out}");
        assert_eq!(out["error"], "permission-denied", "wrong error variant: {out}");
        let message = out["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("{capability} was not granted")), "{message}");
        let denies = self.denials(capability);
        assert!(!denies.is_empty(), "the audit needs the refusal of {capability}");
    }

    /// A normal, in-scope request still works.
    fn assert_still_serves(&self) {
        let out = self.get("https://allowed.test/hello");
        assert_eq!(out["ok"], true, "a normal call must still work: {out}");
        assert_eq!(out["text"], "hello from the stand-in");
    }

    fn assert_nothing_reached(&self, path: &str) {
        assert!(
            !self.http.seen().iter().any(|l| l.contains(path)),
            "{path} must never be requested: {:?}",
            self.http.seen()
        );
    }
}

// ---- network.http ----

#[test]
fn http_allowed_fetches_through_the_mapping() {
    let net = net();
    let out = net.get("https://allowed.test/hello?token=secret-query");
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["status"], 200);
    assert_eq!(out["text"], "hello from the stand-in");
    assert_eq!(out["final_url"], "https://allowed.test/hello?token=secret-query");
    let records = audit_records(&net.omni, PROBE, "network.http", None, None);
    assert!(
        records.iter().all(|r| !r.target.as_deref().unwrap_or_default().contains("secret-query")),
        "query strings must not reach the audit"
    );
}

#[test]
fn http_out_of_scope_host_is_refused() {
    let net = net();
    let out = net.get("https://evil.test/");
    net.assert_refused(&out, "network.http", "out-of-scope", "host evil.test is not in scope");
    net.assert_still_serves();
}

#[test]
fn http_ungranted_is_permission_denied() {
    let net = net_with(&["network.http"], ProviderKind::Searxng);
    let out = net.get("https://allowed.test/hello");
    net.assert_ungranted(&out, "network.http");
    assert!(net.http.seen().is_empty(), "nothing may be sent: {:?}", net.http.seen());
    let page = net.call("scrape", json!({ "url": "https://allowed.test/page" }));
    assert_eq!(page["ok"], true, "other capabilities keep working: {page}");
}

// ---- browser.scrape ----

#[test]
fn scrape_allowed_returns_text_without_scripts() {
    let net = net();
    let out = net.call("scrape", json!({ "url": "https://allowed.test/page" }));
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["title"], "Stand-in page");
    let text = out["text"].as_str().unwrap_or_default();
    assert!(text.contains("Welcome") && text.contains("served from loopback"), "{text}");
    assert!(!text.contains("SCRIPT-CONTENT") && !text.contains("color: red"), "{text}");
    assert_eq!(out["links"], json!(["https://allowed.test/hello", "https://allowed.test/other"]));
}

#[test]
fn scrape_out_of_scope_is_refused_and_so_is_a_redirect_out() {
    let net = net();
    let out = net.call("scrape", json!({ "url": "https://evil.test/page" }));
    net.assert_refused(&out, "browser.scrape", "out-of-scope", "host evil.test is not in scope");
    let out = net.call("scrape", json!({ "url": "https://allowed.test/redirect?to=https://evil.test/page" }));
    net.assert_refused(&out, "browser.scrape", "out-of-scope", "host evil.test is not in scope");
    net.assert_still_serves();
}

#[test]
fn scrape_ungranted_is_permission_denied() {
    let net = net_with(&["browser.scrape"], ProviderKind::Searxng);
    let out = net.call("scrape", json!({ "url": "https://allowed.test/page" }));
    net.assert_ungranted(&out, "browser.scrape");
    net.assert_nothing_reached("GET /page");
    net.assert_still_serves();
}

#[test]
fn scrape_max_pages_is_enforced() {
    let http = Server::start();
    let ws = WsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let omni = Omni::builder(dir.path())
        .engine(engine())
        .config(config(&http, &ws, ProviderKind::Searxng))
        .open()
        .expect("host");
    // The same probe, with a scope of two pages.
    let copy = sample_with_manifest(PROBE, |text| {
        assert!(text.contains("max_pages = 50"), "the probe's manifest changed; update this test");
        text.replace("max_pages = 50", "max_pages = 2")
    });
    install_from(&omni, copy.path(), |_| Decision::Allow);
    let net = Net { http, ws, omni, _dir: dir, rt: runtime() };
    // Two pages in one call are within the scope; a third in the same call is not.
    let out = net.call("scrape", json!({ "url": "https://allowed.test/page", "times": 2 }));
    assert_eq!(out["ok"], true, "{out}");
    let out = net.call("scrape", json!({ "url": "https://allowed.test/page", "times": 3 }));
    net.assert_refused(&out, "browser.scrape", "out-of-scope", "max_pages of 2");
    assert_eq!(net.http.seen().len(), 4, "the third page of a call must not be fetched: {:?}", net.http.seen());
    // The bound is per call: the next call starts again.
    let out = net.call("scrape", json!({ "url": "https://allowed.test/page", "times": 2 }));
    assert_eq!(out["ok"], true, "{out}");
    net.assert_still_serves();
}

// ---- network.websocket ----

#[test]
fn websocket_allowed_echoes() {
    let net = net();
    let out = net.call("ws", json!({ "url": "wss://ws.allowed.test/chat", "message": "ping" }));
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["text"], "echo: ping");
}

#[test]
fn websocket_out_of_scope_host_port_and_scheme_are_refused() {
    let net = net();
    let out = net.call("ws", json!({ "url": "wss://evil.test/chat", "message": "x" }));
    net.assert_refused(&out, "network.websocket", "out-of-scope", "host evil.test is not in scope");
    let out = net.call("ws", json!({ "url": "wss://ws.allowed.test:8443/chat", "message": "x" }));
    net.assert_refused(&out, "network.websocket", "out-of-scope", "port 8443");
    let out = net.call("ws", json!({ "url": "ws://ws.allowed.test/chat", "message": "x" }));
    net.assert_refused(&out, "network.websocket", "out-of-scope", "unencrypted");
    let out = net.call("ws", json!({ "url": "https://ws.allowed.test/chat", "message": "x" }));
    assert_eq!(out["error"], "invalid-input", "{out}");
    let ok = net.call("ws", json!({ "url": "wss://ws.allowed.test/chat", "message": "still" }));
    assert_eq!(ok["text"], "echo: still", "{ok}");
}

#[test]
fn websocket_messages_over_the_cap_are_refused() {
    let net = net();
    let out = net.call("ws", json!({ "url": "wss://ws.allowed.test/chat", "message": "", "size": 1024 * 1024 + 1 }));
    assert_eq!(out["ok"], false, "{out}");
    assert_eq!(out["error"], "invalid-input", "{out}");
    assert!(out["message"].as_str().unwrap_or_default().contains("larger than"), "{out}");
    let out = net.call("ws", json!({ "url": "wss://ws.allowed.test/chat", "message": "", "size": 1024 }));
    assert_eq!(out["text"], format!("echo: {}", "x".repeat(1024)), "a message within the cap passes");
}

#[test]
fn websocket_connections_are_bounded_by_the_handle_limit() {
    let net = net_tweaked(&[], ProviderKind::Searxng, |c| c.limits.max_resource_handles = 16);
    let out = net.call("ws_many", json!({ "url": "wss://ws.allowed.test/chat", "count": 100 }));
    assert_eq!(out["ok"], false, "100 connections must not fit in 16 handles: {out}");
    assert_eq!(out["error"], "invalid-input", "{out}");
    assert!(out["message"].as_str().unwrap_or_default().contains("max_resource_handles"), "{out}");
    let opened: usize = out["text"].as_str().unwrap_or_default().trim_start_matches("opened ").parse().expect("count");
    assert!((1..=16).contains(&opened), "some connections open, never more than the bound: {out}");
    // The handles died with the call: the next call opens connections again.
    let out = net.call("ws", json!({ "url": "wss://ws.allowed.test/chat", "message": "after" }));
    assert_eq!(out["text"], "echo: after", "{out}");
}

#[test]
fn websocket_revoked_while_open_is_refused_at_the_next_call() {
    let net = Arc::new(net());
    let call = net.rt.spawn({
        let net = net.clone();
        async move {
            net.omni
                .call(PROBE, "ws", &json!({ "url": "wss://ws.allowed.test/chat", "message": "wait" }).to_string())
                .await
        }
    });
    // The call now waits in `receive` on an open, authorized connection.
    while !net.ws.waiting.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    net.omni.policy().revoke(PROBE, Some("network.websocket")).expect("revoke");
    net.ws.release();
    let out = net.rt.block_on(call).expect("task").expect("the call itself completes");
    let out: Value = serde_json::from_str(&out.output).expect("json");
    // `receive` was already running; the `close` after it is refused.
    assert_eq!(out["ok"], false, "the connection must not outlive the grant: {out}");
    assert_eq!(out["error"], "permission-denied", "{out}");
    net.assert_still_serves();
}

#[test]
fn websocket_ungranted_is_permission_denied() {
    let net = net_with(&["network.websocket"], ProviderKind::Searxng);
    let out = net.call("ws", json!({ "url": "wss://ws.allowed.test/chat", "message": "x" }));
    net.assert_ungranted(&out, "network.websocket");
    net.assert_still_serves();
}

// ---- search.web ----

#[test]
fn search_allowed_uses_the_configured_provider() {
    let net = net();
    let out = net.call("find", json!({ "query": "wasm components", "provider": "local" }));
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["results"][0], "First hit for wasm components <https://one.example/>");
    assert_eq!(out["results"].as_array().map(Vec::len), Some(2));
    // Without a provider, the host's default (the only one) is used.
    let out = net.call("find", json!({ "query": "again" }));
    assert_eq!(out["ok"], true, "{out}");
}

#[test]
fn search_provider_out_of_scope_is_refused() {
    let net = net();
    let out = net.call("find", json!({ "query": "x", "provider": "brave" }));
    net.assert_refused(&out, "search.web", "out-of-scope", "search provider brave is not in scope");
    assert!(!net.http.seen().iter().any(|l| l.contains("/search")), "nothing may be searched");
    let ok = net.call("find", json!({ "query": "x", "provider": "local" }));
    assert_eq!(ok["ok"], true, "{ok}");
}

#[test]
fn search_ungranted_is_permission_denied() {
    let net = net_with(&["search.web"], ProviderKind::Searxng);
    let out = net.call("find", json!({ "query": "x", "provider": "local" }));
    net.assert_ungranted(&out, "search.web");
    net.assert_nothing_reached("GET /search");
    net.assert_still_serves();
}

#[test]
fn search_key_comes_from_the_environment_and_is_never_audited() {
    std::env::set_var(FAKE_KEY_ENV, FAKE_KEY);
    let net = net_with(&[], ProviderKind::Brave);
    let out = net.call("find", json!({ "query": "rust", "provider": "local" }));
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["results"][0], "Brave hit for rust <https://brave.example/>");
    assert_eq!(net.http.keys.lock().expect("lock").clone(), vec![FAKE_KEY.to_string()]);
    let all = net.omni.audit().query(&AuditFilter::default()).expect("audit");
    for r in &all {
        let text = format!("{r:?}");
        assert!(!text.contains(FAKE_KEY), "the key leaked into the audit: {text}");
    }
}

// ---- web-reader sample ----

#[test]
fn web_reader_fetches_readable_text_from_its_domains_only() {
    let http = Server::start();
    let ws = WsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let omni = Omni::builder(dir.path())
        .engine(engine())
        .config(config(&http, &ws, ProviderKind::Searxng))
        .open()
        .expect("host");
    install(&omni, READER, &[]);
    let rt = runtime();
    let out =
        rt.block_on(omni.call(READER, "fetch_text", r#"{"url": "https://example.com/page"}"#)).expect("fetch_text");
    let page: Value = serde_json::from_str(&out.output).expect("json");
    assert_eq!(page["title"], "Stand-in page");
    assert!(page["text"].as_str().unwrap_or_default().contains("Welcome"), "{page}");
    assert_eq!(page["truncated"], false);
    let raw = rt
        .block_on(omni.call(READER, "fetch_text", r#"{"url": "https://example.com/hello", "raw": true}"#))
        .expect("raw");
    let raw: Value = serde_json::from_str(&raw.output).expect("json");
    assert_eq!(raw["text"], "hello from the stand-in");
    let err = rt.block_on(omni.call(READER, "fetch_text", r#"{"url": "https://allowed.test/page"}"#)).unwrap_err();
    assert!(err.to_string().contains("not in scope"), "{err}");
}

// ---- the hostile SSRF suite ----

/// Credentials the extension set for one host are not sent on to another host a redirect
/// names, even when that host is in scope too (as browsers and curl do); a redirect within
/// the same origin keeps them, and headers that are not credentials are kept.
#[test]
fn credentials_are_dropped_on_a_redirect_to_another_host() {
    let net = net();
    let headers = json!({ "Authorization": "Bearer token-for-allowed-test", "Cookie": "sid=1",
                          "X-Api-Key": "k-1", "X-Trace": "t-1" });
    let same =
        net.call("get", json!({ "url": "https://allowed.test/redirect?to=/echo-credentials", "headers": headers }));
    assert_eq!(
        same["text"], "authorization=Bearer token-for-allowed-test cookie=sid=1 x-api-key=k-1 x-trace=t-1",
        "{same}"
    );
    let other = net.call(
        "get",
        json!({ "url": "https://allowed.test/redirect?to=https://rebind.allowed.test/echo-credentials", "headers": headers }),
    );
    assert_eq!(other["ok"], true, "{other}");
    assert_eq!(other["text"], "authorization=- cookie=- x-api-key=- x-trace=t-1", "{other}");
}

#[test]
fn hostile_ssrf_redirect_to_disallowed_host() {
    let net = net();
    let out = net.get("https://allowed.test/redirect?to=https://evil.test/steal");
    net.assert_refused(&out, "network.http", "out-of-scope", "host evil.test is not in scope");
    assert_eq!(net.http.seen().len(), 1, "only the first hop may be sent: {:?}", net.http.seen());
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_name_resolving_to_loopback() {
    let net = net();
    let out = net.get("https://rebind.test/hello");
    net.assert_refused(&out, "network.http", "out-of-scope", "rebind.test resolves to 127.0.0.1");
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_name_resolving_to_loopback_scrape() {
    let net = net();
    let out = net.call("scrape", json!({ "url": "https://rebind.test/page" }));
    net.assert_refused(&out, "browser.scrape", "out-of-scope", "rebind.test resolves to 127.0.0.1");
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_name_resolving_to_loopback_websocket() {
    let net = net();
    let out = net.call("ws", json!({ "url": "wss://rebind.test/chat", "message": "x" }));
    net.assert_refused(&out, "network.websocket", "out-of-scope", "rebind.test resolves to 127.0.0.1");
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_decimal_ip() {
    let net = net();
    let out = net.get("http://2130706433/");
    net.assert_refused(&out, "network.http", "out-of-scope", "host 127.0.0.1 is not in scope");
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_octal_ip() {
    let net = net();
    let out = net.get("http://0177.0.0.1/");
    net.assert_refused(&out, "network.http", "out-of-scope", "host 127.0.0.1 is not in scope");
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_hex_ip() {
    let net = net();
    let out = net.get("http://0x7f.0.0.1/");
    net.assert_refused(&out, "network.http", "out-of-scope", "host 127.0.0.1 is not in scope");
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_short_ip() {
    let net = net();
    let out = net.get("http://127.1/");
    net.assert_refused(&out, "network.http", "out-of-scope", "host 127.0.0.1 is not in scope");
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_ipv6_loopback() {
    let net = net();
    let out = net.get("http://[::1]/");
    net.assert_refused(&out, "network.http", "out-of-scope", "has no host name in scope");
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_ipv4_mapped_ipv6_dotted() {
    let net = net();
    let out = net.get("http://[::ffff:127.0.0.1]/");
    net.assert_refused(&out, "network.http", "out-of-scope", "has no host name in scope");
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_ipv4_mapped_ipv6_hex() {
    let net = net();
    let out = net.get("http://[::ffff:7f00:1]/");
    net.assert_refused(&out, "network.http", "out-of-scope", "has no host name in scope");
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_userinfo_confusion() {
    let net = net();
    let out = net.get("https://allowed.test@evil.test/");
    net.assert_refused(&out, "network.http", "out-of-scope", "user info");
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_suffix_confusion() {
    let net = net();
    let out = net.get("https://allowed.test.evil.test/");
    net.assert_refused(&out, "network.http", "out-of-scope", "host allowed.test.evil.test is not in scope");
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_fragment_confusion() {
    let net = net();
    let out = net.get("https://evil.test#@allowed.test/");
    net.assert_refused(&out, "network.http", "out-of-scope", "host evil.test is not in scope");
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_port_change() {
    let net = net();
    let out = net.get("https://allowed.test:8443/hello");
    net.assert_refused(&out, "network.http", "out-of-scope", "port 8443 is not in scope");
    assert!(net.http.seen().is_empty(), "nothing may be sent: {:?}", net.http.seen());
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_scheme_downgrade() {
    let net = net();
    let out = net.get("http://allowed.test/hello");
    net.assert_refused(&out, "network.http", "out-of-scope", "unencrypted http:// to allowed.test is not allowed");
    let out = net.get("https://allowed.test/redirect?to=http://allowed.test/hello");
    net.assert_refused(&out, "network.http", "out-of-scope", "unencrypted http:// to allowed.test is not allowed");
    net.assert_nothing_reached("GET /hello");
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_cloud_metadata() {
    let net = net();
    // The probe's scope names the metadata address; the egress policy refuses it anyway.
    let out = net.get("http://169.254.169.254/latest/meta-data/");
    net.assert_refused(&out, "network.http", "out-of-scope", "169.254.169.254 is a link-local address");
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_redirect_to_loopback() {
    let net = net();
    let secret = format!("http://{}/secret", net.http.addr);
    let out = net.get(&format!("https://allowed.test/redirect?to={secret}"));
    net.assert_refused(&out, "network.http", "out-of-scope", "host 127.0.0.1 is not in scope");
    net.assert_nothing_reached("GET /secret");
    net.assert_still_serves();
}

#[test]
fn hostile_ssrf_redirect_to_metadata() {
    let net = net();
    let out = net.get("https://allowed.test/redirect?to=http://169.254.169.254/latest/meta-data/");
    net.assert_refused(&out, "network.http", "out-of-scope", "169.254.169.254 is a link-local address");
    net.assert_still_serves();
}

// ---- browser.scrape: a page built to make extraction expensive ----

/// A page of 1,000 links, each nested in a table cell inside the previous one, followed
/// by `filler` bytes of words: the parser keeps every `<a>` open, so each link's text
/// runs to the end of the document.
fn nested_anchor_page(filler: usize) -> String {
    let mut page = String::from("<!doctype html><html><head><title>nested</title></head><body>");
    for i in 0..1_000 {
        page.push_str(&format!("<table><tr><td><a href=\"/l{i}\">link {i} "));
    }
    page.push_str(&"word ".repeat(filler / 5));
    page.push_str("</body></html>");
    page
}

/// A loopback server answering every request with `body` as HTML.
fn serve_page(body: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = Arc::new(body);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(match stream.try_clone() {
                    Ok(s) => s,
                    Err(_) => return,
                });
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut stream = stream;
                let _ = respond(&mut stream, 200, &[("content-type", "text/html")], &body);
            });
        }
    });
    addr
}

/// CPU time (clock ticks) used so far by this process's live threads named `name`.
fn cpu_ticks_of_threads_named(name: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .flatten()
        .filter_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            if comm.trim() != name {
                return None;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // After the name in parentheses: state, then ... utime (12th) and stime (13th).
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

#[test]
fn hostile_scrape_of_nested_anchors_stops_with_the_call() {
    let addr = serve_page(nested_anchor_page(6 << 20));
    let mut config = OmniConfig::default();
    config.network.resolve.insert("allowed.test".into(), format!("http://{addr}"));
    let dir = tempfile::tempdir().expect("temp dir");
    let omni = Arc::new(Omni::builder(dir.path()).engine(engine()).config(config).open().expect("host opens"));
    // The probe with a 3 s call limit: the extraction must end with the call.
    let copy = sample_with_manifest(PROBE, |text| {
        let tightened = text.replace("max_cpu_ms_per_call = 30000", "max_cpu_ms_per_call = 3000");
        assert_ne!(text, tightened, "the manifest has the expected limit");
        tightened
    });
    install_from(&omni, copy.path(), |_| Decision::Allow);
    // Its own thread name, so the CPU its threads (blocking ones included) use after the
    // call can be told apart from other tests'.
    const THREADS: &str = "omni-scrape-rt";
    let (tx, rx) = std::sync::mpsc::channel();
    let host = omni.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(THREADS)
            .enable_all()
            .build()
            .expect("runtime");
        let args = json!({ "url": "https://allowed.test/page" }).to_string();
        let _ = tx.send(rt.block_on(host.call(PROBE, "scrape", &args)).map(|o| o.output));
        // Dropping a runtime waits for its blocking work; the test does not wait here.
        rt.shutdown_background();
    });
    // Generous bound: this detects a host stalled long past the call's 3 s limit.
    let out = rx.recv_timeout(Duration::from_secs(60)).expect("the call returned");
    if let Ok(output) = &out {
        let report: Value = serde_json::from_str(output).expect("JSON");
        if report["ok"] == true {
            assert!(report["links"].as_array().is_some_and(|l| l.len() <= 1_000), "{report}");
        } else {
            assert!(report["message"].as_str().is_some_and(|m| m.contains("took longer")), "{report}");
        }
        assert!(output.len() < 2 << 20, "{} bytes of output", output.len());
    }
    // Once the call has returned, nothing may keep working on the page. Generous bound:
    // a thread still extracting uses most of the 5 s; an idle host uses next to nothing.
    let before = cpu_ticks_of_threads_named(THREADS);
    std::thread::sleep(Duration::from_secs(5));
    let spent = cpu_ticks_of_threads_named(THREADS).saturating_sub(before);
    assert!(spent < 100, "the host kept working on the page for {spent} ticks after the call returned: {out:?}");
}
