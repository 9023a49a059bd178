//! A loopback stand-in for the Open-Meteo API, for the offline demo and the tests.
//!
//! It answers `GET /v1/forecast` in Open-Meteo's JSON shape with values derived from the
//! coordinates (so a test can tell which request it answered), and a few routes the
//! security suite needs: `/redirect?to=URL` (302), `/slow?ms=N` (waits, then answers) and
//! `/big?bytes=N` (a large body). `/` answers a small HTML article (with a script and a
//! style that a reader must drop), standing in for a web page in the demo. It listens on
//! 127.0.0.1 only and stops when dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A running stand-in server.
pub struct StandIn {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

/// Counters and the gate, shared with the connection threads.
#[derive(Default)]
struct Shared {
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// While set, forecast requests wait before answering.
    held: Mutex<bool>,
    released: Condvar,
}

impl StandIn {
    /// Starts the server on an ephemeral loopback port.
    pub fn start() -> std::io::Result<StandIn> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let (s, r) = (stop.clone(), shared.clone());
        std::thread::Builder::new().name("open-meteo-standin".into()).spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(stream) = stream {
                    let r = r.clone();
                    std::thread::spawn(move || {
                        let _ = serve(stream, &r);
                    });
                }
            }
        })?;
        Ok(StandIn { addr, stop, shared })
    }

    /// `http://127.0.0.1:PORT`, the value for `[network.resolve]`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests it has received.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Forecast requests being answered right now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// The most forecast requests ever answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Makes forecast requests wait until [`StandIn::release`].
    pub fn hold(&self) {
        *lock(&self.shared.held) = true;
    }

    /// Lets held requests answer.
    pub fn release(&self) {
        *lock(&self.shared.held) = false;
        self.shared.released.notify_all();
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.release();
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn lock(m: &Mutex<bool>) -> std::sync::MutexGuard<'_, bool> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: HashMap<String, String> =
        query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), percent_decode(v))).collect();
    let mut stream = stream;
    match path {
        "/v1/forecast" => {
            let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let mut held = lock(&shared.held);
            while *held {
                held = match shared.released.wait(held) {
                    Ok(g) => g,
                    Err(poisoned) => poisoned.into_inner(),
                };
            }
            drop(held);
            let result = respond(&mut stream, 200, &[], &forecast(&params));
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            result
        }
        "/redirect" => {
            let to = params.get("to").cloned().unwrap_or_else(|| "/".into());
            respond(&mut stream, 302, &[("Location", &to)], "")
        }
        "/slow" => {
            let ms = params.get("ms").and_then(|m| m.parse().ok()).unwrap_or(1000);
            std::thread::sleep(Duration::from_millis(ms));
            respond(&mut stream, 200, &[], "{\"slow\":true}")
        }
        "/big" => {
            let n: usize = params.get("bytes").and_then(|m| m.parse().ok()).unwrap_or(1 << 20);
            respond(&mut stream, 200, &[], &"x".repeat(n.min(256 << 20)))
        }
        "/" => respond(&mut stream, 200, &[("Content-Type", "text/html; charset=utf-8")], ARTICLE),
        _ => respond(&mut stream, 404, &[], "{\"error\":true,\"reason\":\"not found\"}"),
    }
}

fn respond(stream: &mut TcpStream, status: u16, headers: &[(&str, &str)], body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        302 => "Found",
        _ => "Not Found",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// The page `/` serves.
const ARTICLE: &str = "<!doctype html><html><head><title>Example Domain</title>\
<style>body { font-family: sans-serif }</style>\
<script>document.title = 'tracking ' + document.cookie;</script></head>\
<body><h1>Example Domain</h1><p>This domain is for use in illustrative examples in documents.</p>\
<p><a href=\"https://www.iana.org/domains/example\">More information...</a></p></body></html>";

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Open-Meteo-shaped data derived from the coordinates.
fn forecast(params: &HashMap<String, String>) -> String {
    let lat: f64 = params.get("latitude").and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let lon: f64 = params.get("longitude").and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let temp = ((25.0 - lat.abs() / 3.0) * 10.0).round() / 10.0;
    let wind = ((lon.abs() / 10.0 + 5.0) * 10.0).round() / 10.0;
    let mut body = serde_json::json!({
        "latitude": lat,
        "longitude": lon,
        "timezone": "GMT",
        "elevation": 38.0,
    });
    if params.contains_key("current") {
        body["current_units"] =
            serde_json::json!({ "temperature_2m": "°C", "wind_speed_10m": "km/h", "weather_code": "wmo code" });
        body["current"] = serde_json::json!({
            "time": "2026-11-21T12:00",
            "interval": 900,
            "temperature_2m": temp,
            "wind_speed_10m": wind,
            "weather_code": 3,
        });
    }
    if params.contains_key("daily") {
        let days: usize = params.get("forecast_days").and_then(|v| v.parse().ok()).unwrap_or(7).clamp(1, 16);
        let time: Vec<String> = (0..days).map(|d| format!("2026-11-{:02}", 21 + d % 9)).collect();
        let max: Vec<f64> = (0..days).map(|d| temp + 2.0 + d as f64 * 0.5).collect();
        let min: Vec<f64> = (0..days).map(|d| temp - 4.0 + d as f64 * 0.25).collect();
        let rain: Vec<f64> = (0..days).map(|d| (d % 3) as f64 * 1.5).collect();
        body["daily_units"] =
            serde_json::json!({ "temperature_2m_max": "°C", "temperature_2m_min": "°C", "precipitation_sum": "mm" });
        body["daily"] = serde_json::json!({
            "time": time, "temperature_2m_max": max, "temperature_2m_min": min, "precipitation_sum": rain,
        });
    }
    body.to_string()
}
