//! WebSocket client connections (capability `network.websocket`).
//!
//! ```no_run
//! use omni_guest_sdk::websocket::{self, Message};
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let ws = websocket::connect("wss://echo.example.com/socket")?;
//! ws.send_text("ping")?;
//! match ws.receive(Some(5_000))? {
//!     Some(Message::Text(reply)) => println!("got {reply}"),
//!     Some(Message::Closed(frame)) => println!("closed: {} {}", frame.code, frame.reason),
//!     Some(Message::Binary(bytes)) => println!("{} bytes", bytes.len()),
//!     None => println!("no answer within 5 s"),
//! }
//! ws.close()?;
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::websocket as wit;
use crate::Result;

pub use wit::{CloseFrame, Message};

/// The close code for a normal closure (RFC 6455, section 7.4.1).
pub const NORMAL_CLOSURE: u16 = 1000;

/// An open connection. Dropping it closes the connection without a close frame; prefer
/// [`Connection::close`].
#[derive(Debug)]
pub struct Connection {
    inner: wit::Connection,
}

/// Connect to `url` (`wss://host[:port]/path`) with the host's default timeout.
///
/// # Errors
///
/// The host's refusal (no grant, host or port outside the scope) or a failed handshake.
pub fn connect(url: &str) -> Result<Connection> {
    connect_with(url, &[], None)
}

/// Connect to `url`, sending `headers` with the handshake and waiting at most
/// `timeout_ms` for it.
///
/// # Errors
///
/// As [`connect`].
pub fn connect_with(url: &str, headers: &[(String, String)], timeout_ms: Option<u32>) -> Result<Connection> {
    Ok(Connection { inner: wit::Connection::open(url, headers, timeout_ms)? })
}

impl Connection {
    /// Send a text message.
    ///
    /// # Errors
    ///
    /// The host's refusal (e.g. a revoked grant) or a broken connection.
    pub fn send_text(&self, text: &str) -> Result<()> {
        Ok(self.inner.send_text(text)?)
    }

    /// Send a binary message.
    ///
    /// # Errors
    ///
    /// As [`Connection::send_text`].
    pub fn send_binary(&self, data: &[u8]) -> Result<()> {
        Ok(self.inner.send_binary(data)?)
    }

    /// Wait at most `timeout_ms` (the host's default when `None`) for the next message;
    /// `None` when nothing arrived in time.
    ///
    /// # Errors
    ///
    /// As [`Connection::send_text`].
    pub fn receive(&self, timeout_ms: Option<u32>) -> Result<Option<Message>> {
        Ok(self.inner.receive(timeout_ms)?)
    }

    /// Close normally (code 1000).
    ///
    /// # Errors
    ///
    /// As [`Connection::send_text`].
    pub fn close(self) -> Result<()> {
        self.close_with(NORMAL_CLOSURE, "")
    }

    /// Close with `code` and `reason`.
    ///
    /// # Errors
    ///
    /// As [`Connection::send_text`].
    pub fn close_with(self, code: u16, reason: &str) -> Result<()> {
        Ok(self.inner.close(code, reason)?)
    }
}
