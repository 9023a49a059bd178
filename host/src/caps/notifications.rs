//! `system.notifications`: notifications for the person at the machine.
//!
//! A headless host has no desktop to show them on, so the default backend,
//! [`NotificationLog`], keeps the most recent ones in memory for the embedder (or the
//! CLI) to show: `Omni::notifications()` returns them, oldest first. Each notification is
//! also authorized, so the audit log holds one allow record per notification (target
//! `notify <title>`). A desktop embedder replaces the backend with one that shows them.

use std::collections::VecDeque;
use std::sync::Mutex;

use omni_capabilities::Scope;
use serde::{Deserialize, Serialize};

use super::try_budget;
use crate::bindings::omni::caps::notifications::{Host, Urgency};
use crate::bindings::CapError;
use crate::sandbox::CallState;

const CAPABILITY: &str = "system.notifications";

/// Longest title accepted, in bytes.
pub const MAX_TITLE_BYTES: usize = 256;
/// Longest body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 4096;
/// Notifications [`NotificationLog::default`] keeps.
pub const DEFAULT_LOG_CAPACITY: usize = 256;

/// How insistently to show a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Informational.
    Low,
    /// The default.
    Normal,
    /// Needs attention.
    Critical,
}

/// One notification an extension asked to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The extension that sent it.
    pub extension: String,
    /// Its title (one line).
    pub title: String,
    /// Its text.
    pub body: String,
    /// How insistently to show it.
    pub level: Level,
    /// When it was sent, RFC 3339 UTC.
    pub sent_at: String,
}

/// Why a notification could not be shown.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotificationError(pub String);

/// Shows notifications; an embedder replaces it with its desktop's notifier.
///
/// The host has already checked the grant and the text when it calls `notify`.
pub trait NotificationBackend: Send + Sync {
    /// Shows one notification.
    fn notify(&self, notification: Notification) -> Result<(), NotificationError>;
    /// The notifications this backend keeps for the embedder, oldest first (none by
    /// default: a backend that shows them need not keep them).
    fn recent(&self) -> Vec<Notification> {
        Vec::new()
    }
}

/// The default backend: the most recent notifications, in memory.
pub struct NotificationLog {
    entries: Mutex<VecDeque<Notification>>,
    capacity: usize,
}

impl NotificationLog {
    /// A log keeping the last `capacity` notifications (at least 1).
    pub fn new(capacity: usize) -> NotificationLog {
        NotificationLog { entries: Mutex::new(VecDeque::new()), capacity: capacity.max(1) }
    }
}

impl Default for NotificationLog {
    fn default() -> Self {
        NotificationLog::new(DEFAULT_LOG_CAPACITY)
    }
}

impl NotificationBackend for NotificationLog {
    fn notify(&self, notification: Notification) -> Result<(), NotificationError> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            entries.pop_front();
        }
        entries.push_back(notification);
        Ok(())
    }

    fn recent(&self) -> Vec<Notification> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }
}

fn check_text(title: &str, body: &str) -> Result<(), CapError> {
    if title.trim().is_empty() {
        return Err(CapError::InvalidInput("the notification title is empty; give it a title".into()));
    }
    if title.len() > MAX_TITLE_BYTES || body.len() > MAX_BODY_BYTES {
        return Err(CapError::InvalidInput(format!(
            "the title may have {MAX_TITLE_BYTES} bytes and the body {MAX_BODY_BYTES}; shorten them"
        )));
    }
    if title.chars().any(char::is_control) || body.chars().any(|c| c.is_control() && c != '\n') {
        return Err(CapError::InvalidInput(
            "the notification has control characters (only line breaks in the body are allowed)".into(),
        ));
    }
    Ok(())
}

fn no_scope(_: &Scope) -> Result<(), String> {
    Ok(())
}

impl Host for CallState {
    async fn notify(&mut self, title: String, body: String, level: Urgency) -> wasmtime::Result<Result<(), CapError>> {
        try_budget!(self, title.len() + body.len());
        if let Err(e) = check_text(&title, &body) {
            return Ok(Err(e));
        }
        let shown: String = title.chars().take(80).collect();
        if let Err(e) = self.authorize(CAPABILITY, &format!("notify {shown}"), &no_scope).await {
            return Ok(Err(e));
        }
        let notification = Notification {
            extension: self.ext.id.clone(),
            title,
            body,
            level: match level {
                Urgency::Low => Level::Low,
                Urgency::Normal => Level::Normal,
                Urgency::Critical => Level::Critical,
            },
            sent_at: crate::now_rfc3339(),
        };
        Ok(self.host.notifications.notify(notification).map_err(|e| CapError::Unavailable(e.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(title: &str) -> Notification {
        Notification {
            extension: "e".into(),
            title: title.into(),
            body: String::new(),
            level: Level::Normal,
            sent_at: String::new(),
        }
    }

    #[test]
    fn log_keeps_the_most_recent() {
        let log = NotificationLog::new(2);
        for t in ["a", "b", "c"] {
            log.notify(n(t)).unwrap();
        }
        let titles: Vec<String> = log.recent().into_iter().map(|n| n.title).collect();
        assert_eq!(titles, ["b", "c"]);
    }

    #[test]
    fn text_is_checked() {
        assert!(check_text("Backup", "done\nall good").is_ok());
        assert!(check_text(" ", "").is_err());
        assert!(check_text("a\u{1b}[2J", "").is_err());
        assert!(check_text("ok", &"x".repeat(MAX_BODY_BYTES + 1)).is_err());
    }
}
