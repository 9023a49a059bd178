//! What an embedder plugs in for the capabilities that reach the desktop, devices,
//! developer tools and other agents: the clipboard, camera, microphone, location,
//! application automation, version control, MCP servers, code intelligence, debugging,
//! sub-agents and flowcharts.
//!
//! [`Integrations`] holds one backend per capability. Its [`Default`] is what a headless
//! host can honestly offer: an in-memory clipboard private to the host, an empty
//! flowchart registry, and for everything else a backend that answers `unavailable` with
//! a message naming the `Integrations::with_*` method that plugs a real one in. Hand the
//! result to [`OmniBuilder::integrations`](crate::OmniBuilder::integrations):
//!
//! ```no_run
//! use std::sync::Arc;
//! use omni_host::caps::Integrations;
//! use omni_host::caps::flowchart::FlowchartRegistry;
//!
//! let flows = FlowchartRegistry::new().register("echo", |input| Ok(input));
//! let omni = omni_host::Omni::builder("/var/lib/omni")
//!     .integrations(Integrations::default().with_flowchart(Arc::new(flows)))
//!     .open();
//! ```
//!
//! Whatever the backend, the host checks the grant, the kill switch, the scope, rate
//! limits and `max_concurrent` before a backend sees a call, and audits every refusal.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use omni_capabilities::Scope;

use super::agent::AgentBackend;
use super::automation::AutomationBackend;
use super::clipboard::{ClipboardBackend, MemoryClipboard};
use super::code_intel::CodeIntelBackend;
use super::debugger::DebugBackend;
use super::device::{CameraBackend, LocationBackend, MicrophoneBackend};
use super::flowchart::{FlowchartBackend, FlowchartRegistry};
use super::mcp::McpBackend;
use super::vcs::VcsBackend;
use crate::bindings::{CapError, RateLimitedInfo};
use crate::sandbox::CallState;

/// Why a backend did not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntegrationError {
    /// The backend cannot serve the call on this host (no device, no server configured,
    /// nothing plugged in). The guest sees `unavailable`.
    #[error("{0}")]
    Unavailable(String),
    /// The arguments make no sense to the backend (an unknown branch, a malformed JSON
    /// argument...). The guest sees `invalid-input`.
    #[error("{0}")]
    InvalidInput(String),
    /// The backend's own policy refuses the target (a path that leaves the repository, a
    /// server the embedder fenced off...). The host audits it as a deny and the guest
    /// sees `out-of-scope`.
    #[error("{0}")]
    Refused(String),
    /// The operation was allowed but failed while running. The guest sees `io`.
    #[error("{0}")]
    Io(String),
}

/// What every backend method returns: a boxed, sendable future.
///
/// Backends that block (a Git library, a device driver) should do their work on
/// `tokio::task::spawn_blocking` inside the future, so the host's executor keeps serving
/// other calls.
pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, IntegrationError>> + Send + 'a>>;

/// The backend of every capability that answers `unavailable` by default.
///
/// Its messages name the capability and the `Integrations::with_*` method that replaces
/// it, so a person reading a refused call knows what the embedder has to plug in.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotConfigured;

impl NotConfigured {
    /// The `unavailable` error for `capability`, naming `method`.
    pub(crate) fn error(capability: &str, what: &str, method: &str) -> IntegrationError {
        IntegrationError::Unavailable(format!(
            "{capability} is unavailable on this host: no {what} is plugged in; the application embedding Omni can provide one with `Integrations::{method}` passed to `OmniBuilder::integrations`"
        ))
    }

    /// A ready future of that error.
    pub(crate) fn future<'a, T: Send + 'a>(capability: &str, what: &str, method: &str) -> BackendFuture<'a, T> {
        let e = Self::error(capability, what, method);
        Box::pin(std::future::ready(Err(e)))
    }
}

/// The backends of the integration capabilities, one per capability.
///
/// Build it with [`Integrations::default`] and replace what the embedding application
/// provides with the `with_*` methods. Clones share their backends (including the
/// in-memory clipboard) and their `max_concurrent` counts, so give each host its own
/// `Integrations::default()` when hosts must not see each other's clipboard.
#[derive(Clone)]
pub struct Integrations {
    pub(crate) clipboard: Arc<dyn ClipboardBackend>,
    pub(crate) camera: Arc<dyn CameraBackend>,
    pub(crate) microphone: Arc<dyn MicrophoneBackend>,
    pub(crate) location: Arc<dyn LocationBackend>,
    pub(crate) automation: Arc<dyn AutomationBackend>,
    pub(crate) vcs: Arc<dyn VcsBackend>,
    pub(crate) mcp: Arc<dyn McpBackend>,
    pub(crate) code_intel: Arc<dyn CodeIntelBackend>,
    pub(crate) debugger: Arc<dyn DebugBackend>,
    pub(crate) agent: Arc<dyn AgentBackend>,
    pub(crate) flowchart: Arc<dyn FlowchartBackend>,
    /// Calls in progress per extension and capability, for `max_concurrent`.
    pub(crate) running: Arc<Running>,
}

impl Default for Integrations {
    /// An in-memory clipboard private to this host, an empty flowchart registry, and
    /// `unavailable` ([`NotConfigured`]) for everything else.
    fn default() -> Self {
        Integrations {
            clipboard: Arc::new(MemoryClipboard::default()),
            camera: Arc::new(NotConfigured),
            microphone: Arc::new(NotConfigured),
            location: Arc::new(NotConfigured),
            automation: Arc::new(NotConfigured),
            vcs: Arc::new(NotConfigured),
            mcp: Arc::new(NotConfigured),
            code_intel: Arc::new(NotConfigured),
            debugger: Arc::new(NotConfigured),
            agent: Arc::new(NotConfigured),
            flowchart: Arc::new(FlowchartRegistry::new()),
            running: Arc::new(Running::default()),
        }
    }
}

impl std::fmt::Debug for Integrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Integrations").finish_non_exhaustive()
    }
}

impl Integrations {
    /// Replaces the clipboard (`clipboard.read`, `clipboard.write`), e.g. with the
    /// desktop's own.
    pub fn with_clipboard(mut self, backend: Arc<dyn ClipboardBackend>) -> Self {
        self.clipboard = backend;
        self
    }
    /// Plugs in a camera (`device.camera`).
    pub fn with_camera(mut self, backend: Arc<dyn CameraBackend>) -> Self {
        self.camera = backend;
        self
    }
    /// Plugs in a microphone (`device.microphone`).
    pub fn with_microphone(mut self, backend: Arc<dyn MicrophoneBackend>) -> Self {
        self.microphone = backend;
        self
    }
    /// Plugs in a position source (`device.location`).
    pub fn with_location(mut self, backend: Arc<dyn LocationBackend>) -> Self {
        self.location = backend;
        self
    }
    /// Plugs in application automation (`app.automation`).
    pub fn with_automation(mut self, backend: Arc<dyn AutomationBackend>) -> Self {
        self.automation = backend;
        self
    }
    /// Plugs in version control (`vcs.operations`), e.g. a Git library.
    pub fn with_vcs(mut self, backend: Arc<dyn VcsBackend>) -> Self {
        self.vcs = backend;
        self
    }
    /// Plugs in the MCP client that reaches the host's configured servers (`mcp.server`).
    pub fn with_mcp(mut self, backend: Arc<dyn McpBackend>) -> Self {
        self.mcp = backend;
        self
    }
    /// Plugs in language servers (`code.intelligence`).
    pub fn with_code_intel(mut self, backend: Arc<dyn CodeIntelBackend>) -> Self {
        self.code_intel = backend;
        self
    }
    /// Plugs in a Debug Adapter Protocol client (`debug.session`).
    pub fn with_debugger(mut self, backend: Arc<dyn DebugBackend>) -> Self {
        self.debugger = backend;
        self
    }
    /// Plugs in the sub-agent runner (`agent.spawn`).
    pub fn with_agent(mut self, backend: Arc<dyn AgentBackend>) -> Self {
        self.agent = backend;
        self
    }
    /// Replaces the flowchart runner (`flowchart.invoke`), e.g. with a filled
    /// [`FlowchartRegistry`] or the embedding application's workflow engine.
    pub fn with_flowchart(mut self, backend: Arc<dyn FlowchartBackend>) -> Self {
        self.flowchart = backend;
        self
    }
}

/// Counts calls in progress per (extension, capability) to enforce `max_concurrent`.
#[derive(Debug, Default)]
pub(crate) struct Running {
    counts: Mutex<HashMap<(String, &'static str), u32>>,
}

impl Running {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, &'static str), u32>> {
        // A poisoned count is still a count: a panic elsewhere must not open the gate.
        match self.counts.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Takes a slot if fewer than `max` are taken; the slot frees itself when dropped.
    fn try_take(self: &Arc<Self>, extension: &str, capability: &'static str, max: u32) -> Option<Slot> {
        let mut counts = self.lock();
        let count = counts.entry((extension.to_owned(), capability)).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot { running: self.clone(), key: (extension.to_owned(), capability) })
    }
}

/// One call in progress; dropping it frees the slot.
pub(crate) struct Slot {
    running: Arc<Running>,
    key: (String, &'static str),
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.running.lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

impl CallState {
    /// [`CallState::authorize`], also returning the scope the check was run against (the
    /// grant's), so a host function can apply the parts of it that are not a yes/no on the
    /// target (a quota, a concurrency bound, a list filter).
    ///
    /// `None` when the engine allowed without a scope to check (a prompt with no grant for
    /// a capability whose scope has required fields).
    pub(crate) async fn authorize_scoped(
        &mut self,
        capability: &'static str,
        target: &str,
        check: impl Fn(&Scope) -> Result<(), String> + Send + Sync,
    ) -> Result<Option<Scope>, CapError> {
        let seen: Mutex<Option<Scope>> = Mutex::new(None);
        let recording = |scope: &Scope| {
            let verdict = check(scope);
            if let Ok(mut s) = seen.lock() {
                *s = Some(scope.clone());
            }
            verdict
        };
        self.authorize(capability, target, &recording).await?;
        Ok(seen.into_inner().ok().flatten())
    }

    /// Takes one of `max` concurrent slots of `capability` for this extension, or refuses
    /// (audited) with `rate-limited` when they are all taken. `source` names where the
    /// bound comes from, for the person reading the refusal.
    pub(crate) async fn take_slot(
        &mut self,
        capability: &'static str,
        target: &str,
        max: Option<u32>,
        source: &str,
    ) -> Result<Option<Slot>, CapError> {
        let Some(max) = max else { return Ok(None) };
        match self.host.integrations.running.try_take(&self.ext.id, capability, max) {
            Some(slot) => Ok(Some(slot)),
            None => {
                let reason = format!(
                    "{} already has {max} {capability} call(s) running, the most allowed at once ({source}); wait for one to finish",
                    self.ext.id
                );
                // Audited like any refusal; the guest sees rate-limited because waiting helps.
                let _ = self.refuse(capability, target, reason.clone()).await;
                Err(CapError::RateLimited(RateLimitedInfo { retry_after_ms: 1000, reason }))
            }
        }
    }

    /// Maps a backend's answer onto the guest's error, auditing a backend refusal.
    pub(crate) async fn backend_result<T>(
        &mut self,
        capability: &'static str,
        target: &str,
        result: Result<T, IntegrationError>,
    ) -> Result<T, CapError> {
        match result {
            Ok(v) => Ok(v),
            Err(IntegrationError::Unavailable(m)) => Err(CapError::Unavailable(m)),
            Err(IntegrationError::InvalidInput(m)) => Err(CapError::InvalidInput(m)),
            Err(IntegrationError::Io(m)) => Err(CapError::Io(m)),
            Err(IntegrationError::Refused(m)) => Err(self.refuse(capability, target, m).await),
        }
    }
}

/// The message for a granted scope of the wrong shape (a corrupted or foreign grant):
/// refused rather than guessed at.
pub(crate) fn wrong_scope(capability: &str, scope: &Scope) -> String {
    format!("the grant for {capability} holds a scope of another capability ({scope:?}); revoke it and grant {capability} again")
}

/// Checks that `text` is a JSON object, naming `what` in the error.
pub(crate) fn json_object(what: &str, text: &str) -> Result<serde_json::Map<String, serde_json::Value>, CapError> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => Err(CapError::InvalidInput(format!(
            "{what} must be a JSON object such as {{\"key\": \"value\"}}, not {}",
            json_kind(&other)
        ))),
        Err(e) => Err(CapError::InvalidInput(format!("{what} is not valid JSON ({e}); pass a JSON object"))),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Checks a name argument (application, server, flowchart...): not empty, no control
/// characters, at most 256 bytes.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), CapError> {
    if name.is_empty() {
        return Err(CapError::InvalidInput(format!("the {what} is empty; pass one of the names in the grant's scope")));
    }
    if name.len() > 256 {
        return Err(CapError::InvalidInput(format!(
            "the {what} is {} bytes long, more than 256; pass a name from the grant's scope",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(CapError::InvalidInput(format!(
            "the {what} {name:?} contains control characters; pass a name from the grant's scope"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_bound_concurrency_and_free_on_drop() {
        let running = Arc::new(Running::default());
        let a = running.try_take("e", "agent.spawn", 2).expect("first");
        let b = running.try_take("e", "agent.spawn", 2).expect("second");
        assert!(running.try_take("e", "agent.spawn", 2).is_none());
        // Another extension, or another capability, has its own count.
        assert!(running.try_take("f", "agent.spawn", 2).is_some());
        assert!(running.try_take("e", "app.automation", 2).is_some());
        drop(a);
        let c = running.try_take("e", "agent.spawn", 2).expect("a slot was freed");
        drop((b, c));
        assert!(running.lock().is_empty(), "freed slots leave no entry behind");
    }

    #[test]
    fn json_objects_and_names_are_checked() {
        assert!(json_object("arguments", r#"{"a":1}"#).is_ok());
        for bad in ["[1]", "1", "nope", "null"] {
            assert!(matches!(json_object("arguments", bad), Err(CapError::InvalidInput(_))), "{bad}");
        }
        assert!(check_name("server", "files").is_ok());
        assert!(check_name("server", "").is_err());
        assert!(check_name("server", "a\nb").is_err());
        assert!(check_name("server", &"x".repeat(300)).is_err());
    }
}
