//! `clipboard.read` and `clipboard.write`: the clipboard's text.
//!
//! Neither capability has scope fields: a grant covers the whole clipboard. Writing is
//! refused when `[security] read_only` is set (the permission engine's write list).
//! The default backend is an in-memory clipboard private to the host, so extensions can
//! hand text to each other and to the embedding application without touching the
//! desktop; an embedder replaces it with the real one through
//! [`Integrations::with_clipboard`](super::Integrations::with_clipboard).

use std::sync::Mutex;

use super::integrations::{BackendFuture, IntegrationError};
use super::try_budget;
use crate::bindings::omni::caps::{clipboard_read, clipboard_write};
use crate::bindings::CapError;
use crate::sandbox::CallState;

const READ: &str = "clipboard.read";
const WRITE: &str = "clipboard.write";

/// Largest text the default clipboard holds.
pub const MAX_CLIPBOARD_BYTES: usize = 1024 * 1024;

/// A clipboard an embedder may replace (the desktop's, a remote session's...).
pub trait ClipboardBackend: Send + Sync {
    /// The clipboard's text; `None` when it holds no text.
    fn read_text(&self) -> BackendFuture<'_, Option<String>>;
    /// Replaces the clipboard's content with `text`.
    fn write_text(&self, text: String) -> BackendFuture<'_, ()>;
}

/// The default clipboard: one text in memory, shared by every extension of one host and
/// gone when the host ends.
#[derive(Debug, Default)]
pub struct MemoryClipboard {
    text: Mutex<Option<String>>,
}

impl MemoryClipboard {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        match self.text.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl ClipboardBackend for MemoryClipboard {
    fn read_text(&self) -> BackendFuture<'_, Option<String>> {
        let text = self.slot().clone();
        Box::pin(std::future::ready(Ok(text)))
    }

    fn write_text(&self, text: String) -> BackendFuture<'_, ()> {
        let result = if text.len() > MAX_CLIPBOARD_BYTES {
            Err(IntegrationError::InvalidInput(format!(
                "the text is {} bytes, more than the clipboard holds ({MAX_CLIPBOARD_BYTES} bytes); write a shorter text",
                text.len()
            )))
        } else {
            *self.slot() = Some(text);
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }
}

/// Both clipboard capabilities have no scope: a grant covers the clipboard.
fn whole_clipboard(_: &omni_capabilities::Scope) -> Result<(), String> {
    Ok(())
}

impl clipboard_read::Host for CallState {
    async fn read_text(&mut self) -> wasmtime::Result<Result<Option<String>, CapError>> {
        if let Err(e) = self.authorize(READ, "read clipboard", &whole_clipboard).await {
            return Ok(Err(e));
        }
        let backend = self.host.integrations.clipboard.clone();
        let result = backend.read_text().await;
        Ok(self.backend_result(READ, "read clipboard", result).await)
    }
}

impl clipboard_write::Host for CallState {
    async fn write_text(&mut self, text: String) -> wasmtime::Result<Result<(), CapError>> {
        try_budget!(self, text.len());
        let target = format!("write clipboard ({} bytes)", text.len());
        if let Err(e) = self.authorize(WRITE, &target, &whole_clipboard).await {
            return Ok(Err(e));
        }
        let backend = self.host.integrations.clipboard.clone();
        let result = backend.write_text(text).await;
        Ok(self.backend_result(WRITE, &target, result).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_clipboard_keeps_the_last_text_and_refuses_oversized_text() {
        let c = MemoryClipboard::default();
        assert_eq!(c.read_text().await, Ok(None));
        c.write_text("one".into()).await.expect("write");
        c.write_text("two".into()).await.expect("write");
        assert_eq!(c.read_text().await, Ok(Some("two".into())));
        let err = c.write_text("x".repeat(MAX_CLIPBOARD_BYTES + 1)).await.unwrap_err();
        assert!(matches!(err, IntegrationError::InvalidInput(_)), "{err}");
        assert_eq!(c.read_text().await, Ok(Some("two".into())), "a refused write leaves the text alone");
    }
}
