//! `network.websocket`: WebSocket client connections through the egress policy.
//!
//! Opening a connection is checked like an HTTP request ([`super::egress`]): the URL's
//! scheme (`wss`, or `ws` for domains written `ws://...`), host and port against the
//! grant's scope, then the address: a literal IP must be public, a name is resolved by the
//! host's checked resolver and the TCP connection goes to an address that passed, with no
//! second lookup. Every later host call on the connection is authorized again, so a
//! revocation or the kill switch stops an open connection at its next send or receive.
//!
//! Messages are capped at [`MAX_MESSAGE_BYTES`] both ways. Each open connection is one
//! entry in the call's resource table, whose capacity (`[limits] max_resource_handles`)
//! bounds how many one call may hold.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame as WsCloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use url::Url;
use wasmtime::component::Resource;

use super::egress::{audit_target, parse_url, CheckedResolver, EgressError};
use super::try_budget;
use crate::bindings::omni::caps::websocket::{CloseFrame, Connection, Host, HostConnection, Message};
use crate::bindings::CapError;
use crate::sandbox::CallState;

const CAPABILITY: &str = "network.websocket";
/// Largest message accepted or sent, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Most extra handshake headers.
const MAX_HEADERS: usize = 50;
/// Headers the host sets itself for the handshake.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-accept",
    "content-length",
    "transfer-encoding",
];

/// One message on an open connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsFrame {
    /// A UTF-8 text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// The peer closed the connection with this code and reason.
    Closed(u16, String),
}

/// What [`WebSocketBackend::connect`] needs.
#[derive(Debug, Clone)]
pub struct WsConnectRequest {
    /// Where to connect: the checked URL, or its `[network.resolve]` mapping (an `http`
    /// base maps to `ws`, `https` to `wss`). A name in it must be resolved through the
    /// host's [`CheckedResolver`].
    pub url: Url,
    /// Extra handshake headers (none of the reserved ones).
    pub headers: Vec<(String, String)>,
    /// Time allowed for connecting and the handshake.
    pub timeout: Duration,
    /// Largest message accepted from the peer.
    pub max_message: usize,
}

/// Future of a WebSocket operation.
pub type WsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, EgressError>> + Send + 'a>>;

/// An open connection, as a backend provides it.
pub trait WsSocket: Send {
    /// Sends one message (`Closed` is never passed; see [`WsSocket::close`]).
    fn send(&mut self, frame: WsFrame) -> WsFuture<'_, ()>;
    /// The next data or close message; `None` when the connection ended without a close
    /// frame. Control frames (ping, pong) are handled by the backend.
    fn receive(&mut self) -> WsFuture<'_, Option<WsFrame>>;
    /// Sends a close frame with `code` and `reason`.
    fn close(&mut self, code: u16, reason: String) -> WsFuture<'_, ()>;
}

/// The WebSocket transport an embedder may replace with
/// `OmniBuilder::websocket_backend` (a proxy, a recording fake in tests).
///
/// The host has authorized the URL and checked any literal address before `connect`
/// runs; the backend must resolve names only through the [`CheckedResolver`] and report
/// its refusal as [`EgressError::Refused`] so the host audits it.
pub trait WebSocketBackend: Send + Sync {
    /// Opens a connection and finishes the handshake.
    fn connect(&self, request: WsConnectRequest) -> WsFuture<'_, Box<dyn WsSocket>>;
}

/// The default transport: tokio-tungstenite over a TCP connection to a checked address,
/// with rustls (webpki roots) for `wss`.
pub struct TungsteniteBackend {
    resolver: CheckedResolver,
}

impl TungsteniteBackend {
    /// A transport resolving through `resolver`.
    pub fn new(resolver: CheckedResolver) -> TungsteniteBackend {
        TungsteniteBackend { resolver }
    }
}

type Stream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct TungsteniteSocket {
    stream: Stream,
}

fn ws_io(e: tokio_tungstenite::tungstenite::Error) -> EgressError {
    EgressError::Io(format!("WebSocket error: {e}"))
}

impl WebSocketBackend for TungsteniteBackend {
    fn connect(&self, request: WsConnectRequest) -> WsFuture<'_, Box<dyn WsSocket>> {
        Box::pin(async move {
            let WsConnectRequest { url, headers, timeout, max_message } = request;
            let work = async {
                let host = url.host_str().ok_or_else(|| EgressError::Refused(format!("{url} has no host")))?;
                let port =
                    url.port_or_known_default().ok_or_else(|| EgressError::Refused(format!("{url} has no port")))?;
                let addrs = self.resolver.resolve(host, port).await?;
                let tcp = tokio::net::TcpStream::connect(&addrs[..])
                    .await
                    .map_err(|e| EgressError::Io(format!("cannot connect to {host}:{port}: {e}")))?;
                let mut handshake = url.as_str().into_client_request().map_err(ws_io)?;
                for (k, v) in &headers {
                    let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|e| EgressError::Io(format!("bad header name {k:?}: {e}")))?;
                    let value = tokio_tungstenite::tungstenite::http::HeaderValue::from_str(v)
                        .map_err(|e| EgressError::Io(format!("bad value for header {k}: {e}")))?;
                    handshake.headers_mut().append(name, value);
                }
                let config =
                    WebSocketConfig::default().max_message_size(Some(max_message)).max_frame_size(Some(max_message));
                let (stream, _) = tokio_tungstenite::client_async_tls_with_config(handshake, tcp, Some(config), None)
                    .await
                    .map_err(ws_io)?;
                Ok::<_, EgressError>(stream)
            };
            let stream = tokio::time::timeout(timeout, work).await.map_err(|_| EgressError::Timeout(timeout))??;
            Ok(Box::new(TungsteniteSocket { stream }) as Box<dyn WsSocket>)
        })
    }
}

impl WsSocket for TungsteniteSocket {
    fn send(&mut self, frame: WsFrame) -> WsFuture<'_, ()> {
        Box::pin(async move {
            let msg = match frame {
                WsFrame::Text(t) => WsMessage::text(t),
                WsFrame::Binary(b) => WsMessage::binary(b),
                WsFrame::Closed(code, reason) => {
                    WsMessage::Close(Some(WsCloseFrame { code: CloseCode::from(code), reason: reason.into() }))
                }
            };
            self.stream.send(msg).await.map_err(ws_io)
        })
    }

    fn receive(&mut self) -> WsFuture<'_, Option<WsFrame>> {
        Box::pin(async move {
            loop {
                match self.stream.next().await {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(ws_io(e)),
                    Some(Ok(WsMessage::Text(t))) => return Ok(Some(WsFrame::Text(t.as_str().to_string()))),
                    Some(Ok(WsMessage::Binary(b))) => return Ok(Some(WsFrame::Binary(b.to_vec()))),
                    Some(Ok(WsMessage::Close(frame))) => {
                        let (code, reason) =
                            frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.as_str().to_string()));
                        return Ok(Some(WsFrame::Closed(code, reason)));
                    }
                    // Pings are answered by tungstenite while reading; pongs and raw
                    // frames carry nothing for the extension.
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => continue,
                }
            }
        })
    }

    fn close(&mut self, code: u16, reason: String) -> WsFuture<'_, ()> {
        Box::pin(async move {
            let frame = WsCloseFrame { code: CloseCode::from(code), reason: reason.into() };
            match self.stream.close(Some(frame)).await {
                Ok(()) | Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed) => Ok(()),
                Err(e) => Err(ws_io(e)),
            }
        })
    }
}

/// One open connection in the call's resource table.
pub(crate) struct WsHandle {
    socket: Box<dyn WsSocket>,
    /// The URL the extension asked for, re-authorized on every host call.
    url: Url,
    /// Set once either side sent a close frame.
    closed: bool,
}

/// The table entry behind a guest handle. The WIT resource type is opaque to the host,
/// so the handle's index is reused for the host's own entry type; the table checks the
/// type on every access.
fn entry(handle: &Resource<Connection>) -> Resource<WsHandle> {
    Resource::new_borrow(handle.rep())
}

impl CallState {
    async fn ws_open(
        &mut self,
        url: &str,
        headers: Vec<(String, String)>,
        timeout_ms: Option<u32>,
    ) -> Result<Resource<Connection>, CapError> {
        let url = parse_url(url, &["wss", "ws"])?;
        if headers.len() > MAX_HEADERS {
            return Err(CapError::InvalidInput(format!(
                "{} headers, more than the {MAX_HEADERS} allowed",
                headers.len()
            )));
        }
        if let Some((name, _)) =
            headers.iter().find(|(k, _)| RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()))
        {
            return Err(CapError::InvalidInput(format!(
                "the `{name}` header is set by the host for the handshake; remove it"
            )));
        }
        let dest = self.egress_check(CAPABILITY, &url, None, &|_| Ok(())).await?;
        let mut connect_url = dest.url;
        if dest.mapped {
            // A `[network.resolve]` base is written as an HTTP URL; speak WebSocket to it.
            let scheme = if connect_url.scheme() == "https" { "wss" } else { "ws" };
            if connect_url.set_scheme(scheme).is_err() {
                return Err(CapError::Unavailable(format!(
                    "the [network.resolve] entry for {} cannot carry a WebSocket; write it as \"http://127.0.0.1:8080\"",
                    url.host_str().unwrap_or_default()
                )));
            }
        }
        let config = self.host.egress.config();
        let timeout =
            Duration::from_millis(timeout_ms.map_or(config.timeout_ms, |t| u64::from(t).min(config.timeout_ms)));
        let request = WsConnectRequest { url: connect_url, headers, timeout, max_message: MAX_MESSAGE_BYTES };
        let backend = self.host.websocket.clone();
        let socket = match backend.connect(request).await {
            Ok(s) => s,
            Err(EgressError::Refused(reason)) => {
                return Err(self.refuse(CAPABILITY, &audit_target("", &url), reason).await)
            }
            Err(e) => return Err(e.into_cap_error()),
        };
        use wasmtime_wasi::WasiView;
        let pushed = self.ctx().table.push(WsHandle { socket, url, closed: false }).map_err(|e| {
            CapError::InvalidInput(format!(
                "cannot hold another connection ({e}); close connections you no longer need (host limit [limits] max_resource_handles)"
            ))
        })?;
        Ok(Resource::new_own(pushed.rep()))
    }

    /// Re-authorizes the connection's URL, then runs `op` on its socket.
    async fn ws_with<T>(
        &mut self,
        handle: &Resource<Connection>,
        op: impl for<'a> FnOnce(&'a mut WsHandle) -> Pin<Box<dyn Future<Output = Result<T, CapError>> + Send + 'a>>,
    ) -> Result<T, CapError> {
        use wasmtime_wasi::WasiView;
        let url = {
            let h = self
                .ctx()
                .table
                .get(&entry(handle))
                .map_err(|e| CapError::InvalidInput(format!("not an open WebSocket connection ({e})")))?;
            h.url.clone()
        };
        let checked = url.clone();
        self.authorize(CAPABILITY, &audit_target("", &url), &move |scope| {
            super::egress::check_network_scope(CAPABILITY, scope, &checked, None)
        })
        .await?;
        let h = self
            .ctx()
            .table
            .get_mut(&entry(handle))
            .map_err(|e| CapError::InvalidInput(format!("not an open WebSocket connection ({e})")))?;
        op(h).await
    }
}

fn io(e: EgressError) -> CapError {
    e.into_cap_error()
}

fn receive_timeout(state: &CallState, timeout_ms: Option<u32>) -> Duration {
    let max = state.host.egress.config().timeout_ms;
    Duration::from_millis(timeout_ms.map_or(max, |t| u64::from(t).min(max)))
}

impl HostConnection for CallState {
    async fn open(
        &mut self,
        url: String,
        headers: Vec<(String, String)>,
        timeout_ms: Option<u32>,
    ) -> wasmtime::Result<Result<Resource<Connection>, CapError>> {
        try_budget!(self, url.len() + headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>());
        Ok(self.ws_open(&url, headers, timeout_ms).await)
    }

    async fn send_text(&mut self, this: Resource<Connection>, text: String) -> wasmtime::Result<Result<(), CapError>> {
        try_budget!(self, text.len());
        if text.len() > MAX_MESSAGE_BYTES {
            return Ok(Err(too_big(text.len())));
        }
        let wait = receive_timeout(self, None);
        Ok(self.ws_with(&this, move |h| Box::pin(send(h, WsFrame::Text(text), wait))).await)
    }

    async fn send_binary(
        &mut self,
        this: Resource<Connection>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), CapError>> {
        try_budget!(self, data.len());
        if data.len() > MAX_MESSAGE_BYTES {
            return Ok(Err(too_big(data.len())));
        }
        let wait = receive_timeout(self, None);
        Ok(self.ws_with(&this, move |h| Box::pin(send(h, WsFrame::Binary(data), wait))).await)
    }

    async fn receive(
        &mut self,
        this: Resource<Connection>,
        timeout_ms: Option<u32>,
    ) -> wasmtime::Result<Result<Option<Message>, CapError>> {
        let wait = receive_timeout(self, timeout_ms);
        Ok(self
            .ws_with(&this, move |h| {
                Box::pin(async move {
                    if h.closed {
                        return Err(CapError::Io("the connection is closed".into()));
                    }
                    let frame = match tokio::time::timeout(wait, h.socket.receive()).await {
                        Err(_) => return Ok(None),
                        Ok(r) => r.map_err(io)?,
                    };
                    Ok(Some(match frame {
                        Some(WsFrame::Text(t)) => Message::Text(t),
                        Some(WsFrame::Binary(b)) => Message::Binary(b),
                        Some(WsFrame::Closed(code, reason)) => {
                            h.closed = true;
                            Message::Closed(CloseFrame { code, reason })
                        }
                        None => {
                            h.closed = true;
                            Message::Closed(CloseFrame {
                                code: 1006,
                                reason: "the connection ended without a close frame".into(),
                            })
                        }
                    }))
                })
            })
            .await)
    }

    async fn close(
        &mut self,
        this: Resource<Connection>,
        code: u16,
        reason: String,
    ) -> wasmtime::Result<Result<(), CapError>> {
        try_budget!(self, reason.len());
        if reason.len() > 123 {
            return Ok(Err(CapError::InvalidInput(format!(
                "a close reason is at most 123 bytes (RFC 6455), got {}; shorten it",
                reason.len()
            ))));
        }
        if !(code == 1000 || (3000..=4999).contains(&code)) {
            return Ok(Err(CapError::InvalidInput(format!(
                "close code {code} cannot be sent by a client; use 1000 or an application code from 3000 to 4999"
            ))));
        }
        let wait = receive_timeout(self, None);
        Ok(self
            .ws_with(&this, move |h| {
                Box::pin(async move {
                    if h.closed {
                        return Ok(());
                    }
                    h.closed = true;
                    match tokio::time::timeout(wait, h.socket.close(code, reason)).await {
                        Ok(r) => r.map_err(io),
                        Err(_) => Err(out_of_time("closing", wait)),
                    }
                })
            })
            .await)
    }

    async fn drop(&mut self, rep: Resource<Connection>) -> wasmtime::Result<()> {
        use wasmtime_wasi::WasiView;
        let owned: Resource<WsHandle> = Resource::new_own(rep.rep());
        // Dropping the socket closes the TCP connection without a close frame.
        let _ = self.ctx().table.delete(owned);
        Ok(())
    }
}

impl Host for CallState {}

/// Sends one message within `wait` (the `[network]` timeout): a peer that stops reading
/// fills the TCP window, and the send would otherwise wait forever. A send cut short
/// leaves the stream mid-message, so the connection is closed.
async fn send(h: &mut WsHandle, frame: WsFrame, wait: Duration) -> Result<(), CapError> {
    if h.closed {
        return Err(CapError::Io("the connection is closed".into()));
    }
    match tokio::time::timeout(wait, h.socket.send(frame)).await {
        Ok(sent) => sent.map_err(io),
        Err(_) => {
            h.closed = true;
            Err(out_of_time("sending", wait))
        }
    }
}

fn out_of_time(what: &str, wait: Duration) -> CapError {
    CapError::Io(format!(
        "{what} took longer than {} ms (timeout_ms in [network] of omni.toml); the peer is not reading, and the connection is closed",
        wait.as_millis()
    ))
}

fn too_big(len: usize) -> CapError {
    CapError::InvalidInput(format!(
        "a {len}-byte message is larger than the {MAX_MESSAGE_BYTES} bytes a WebSocket message may carry"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use crate::caps::egress::{Egress, StaticResolver};
    use crate::config::NetworkConfig;

    /// A loopback server that echoes one text message, then closes with 4000 "bye".
    async fn echo_once() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            if let Some(Ok(msg)) = ws.next().await {
                ws.send(msg).await.unwrap();
            }
            let frame = WsCloseFrame { code: CloseCode::from(4000), reason: "bye".into() };
            let _ = ws.close(Some(frame)).await;
        });
        addr
    }

    fn backend(resolve: &[(&str, String)], resolver: StaticResolver) -> TungsteniteBackend {
        let mut config = NetworkConfig::default();
        for (host, base) in resolve {
            config.resolve.insert(host.to_string(), base.clone());
        }
        TungsteniteBackend::new(CheckedResolver::new(Arc::new(Egress::new(config, Arc::new(resolver)))))
    }

    fn request(url: &str) -> WsConnectRequest {
        WsConnectRequest {
            url: Url::parse(url).unwrap(),
            headers: vec![("x-probe".into(), "1".into())],
            timeout: Duration::from_secs(10),
            max_message: MAX_MESSAGE_BYTES,
        }
    }

    #[tokio::test]
    async fn echoes_and_reports_the_peer_close_frame() {
        let addr = echo_once().await;
        let ws = backend(&[("echo.test", format!("http://{addr}"))], StaticResolver::new());
        let mut socket = ws.connect(request(&format!("ws://{addr}/chat"))).await.unwrap();
        socket.send(WsFrame::Text("hi".into())).await.unwrap();
        assert_eq!(socket.receive().await.unwrap(), Some(WsFrame::Text("hi".into())));
        assert_eq!(socket.receive().await.unwrap(), Some(WsFrame::Closed(4000, "bye".into())));
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_before_connecting() {
        let addr = echo_once().await;
        let resolver = StaticResolver::new().with("rebind.test", &[addr.ip()]);
        let ws = backend(&[], resolver);
        let err = ws.connect(request(&format!("ws://rebind.test:{}/", addr.port()))).await.err().unwrap();
        assert!(matches!(err, EgressError::Refused(ref m) if m.contains("rebind.test resolves to 127.0.0.1")), "{err}");
    }

    #[test]
    fn handle_indexes_carry_over_to_the_host_entry() {
        let guest: Resource<Connection> = Resource::new_own(7);
        assert_eq!(entry(&guest).rep(), 7);
        assert!(!entry(&guest).owned());
    }

    /// A peer that never takes another byte.
    struct Stalled;

    impl WsSocket for Stalled {
        fn send(&mut self, _: WsFrame) -> WsFuture<'_, ()> {
            Box::pin(std::future::pending())
        }
        fn receive(&mut self) -> WsFuture<'_, Option<WsFrame>> {
            Box::pin(std::future::pending())
        }
        fn close(&mut self, _: u16, _: String) -> WsFuture<'_, ()> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn hostile_peer_that_stops_reading_cannot_hold_a_send() {
        let mut h = WsHandle { socket: Box::new(Stalled), url: Url::parse("wss://slow.test/").unwrap(), closed: false };
        // Generous bound: this detects a hang, it does not measure time.
        let sent = tokio::time::timeout(
            Duration::from_secs(30),
            send(&mut h, WsFrame::Text("x".into()), Duration::from_millis(50)),
        )
        .await
        .expect("the send gave up at its own timeout");
        assert!(matches!(&sent, Err(CapError::Io(m)) if m.contains("timeout_ms")), "{sent:?}");
        assert!(h.closed, "a send cut short closes the connection");
    }
}
