//! Capability backends and their linker wiring.
//!
//! One module per capability with a real backend on this host. Each module holds its
//! backend trait (what an embedder replaces), the default backend, the `Host` impl of its
//! WIT interface for [`CallState`], and its tests. A capability without a module here is
//! linked as an "unavailable" stub when granted (see `sandbox::build_linker`).
//!
//! Adding a capability: write its module, then add one line to [`link_backend`].

pub mod agent;
pub mod automation;
pub mod browser;
pub mod clipboard;
pub mod code_intel;
pub mod debugger;
pub mod device;
pub mod egress;
pub mod flowchart;
pub mod fs;
pub mod http;
pub mod inference;
pub mod integrations;
pub mod kv;
pub mod mcp;
pub mod messaging;
pub mod notifications;
pub mod process;
pub mod scheduling;
pub mod search;
pub mod vcs;
pub mod websocket;

pub use integrations::{BackendFuture, IntegrationError, Integrations, NotConfigured};

use std::time::Duration;

use omni_capabilities::Scope;
use wasmtime::component::{HasSelf, Linker};

use crate::audit::NewRecord;
use crate::bindings::{CapError, RateLimitedInfo};
use crate::policy::{AccessRequest, Decision, Denial};
use crate::sandbox::CallState;

/// Links the real backend of `capability`; `false` when this host has none.
pub(crate) fn link_backend(linker: &mut Linker<CallState>, capability: &str) -> wasmtime::Result<bool> {
    use crate::bindings::omni::caps;
    match capability {
        "network.http" => caps::http::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "browser.scrape" => caps::browser::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "network.websocket" => caps::websocket::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "search.web" => caps::web_search::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "storage.persistent" => caps::kv::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "filesystem.read" => caps::fs_read::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "filesystem.write" => caps::fs_write::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "process.spawn" => caps::process::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "ai.inference" => caps::inference::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "channel.send" => caps::channel::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "messaging.sms" => caps::sms::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "messaging.email" => caps::email::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "messaging.chat" => caps::chat::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "system.notifications" => caps::notifications::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "system.scheduling" => caps::scheduling::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "clipboard.read" => caps::clipboard_read::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "clipboard.write" => caps::clipboard_write::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "device.camera" => caps::camera::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "device.microphone" => caps::microphone::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "device.location" => caps::location::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "app.automation" => caps::automation::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "vcs.operations" => caps::vcs::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "mcp.server" => caps::mcp::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "code.intelligence" => caps::code_intel::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "debug.session" => caps::debugger::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "agent.spawn" => caps::agent::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        "flowchart.invoke" => caps::flowchart::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?,
        _ => return Ok(false),
    }
    Ok(true)
}

impl CallState {
    /// Asks the permission engine whether this call may use `capability` on `target`.
    ///
    /// Runs on every host call, so a revocation or the kill switch refuses a call that is
    /// already running at its next host call. `check` receives the granted scope.
    pub(crate) async fn authorize(
        &mut self,
        capability: &'static str,
        target: &str,
        check: &(dyn Fn(&Scope) -> Result<(), String> + Send + Sync),
    ) -> Result<(), CapError> {
        let request =
            AccessRequest { session: &self.session, extension: &self.ext.id, capability, target, check_scope: check };
        match self.host.policy.authorize_async(&request).await {
            Ok(_) => Ok(()),
            Err(denial) => {
                let error = denial_to_error(denial);
                if let CapError::PermissionDenied(m) | CapError::OutOfScope(m) = &error {
                    self.denials.push(format!("{capability} {target}: {m}"));
                }
                Err(error)
            }
        }
    }
}

impl CallState {
    /// Refuses an access the permission engine allowed but the backend's own policy does
    /// not (a name resolving to a private address, a symlink leaving the granted root...).
    ///
    /// The refusal is written to the audit log as a deny with `reason`, counted in the
    /// call's denials, and returned as `out-of-scope` for the guest. Use it for every
    /// refusal that is about *where* an extension tried to go, so the audit shows it.
    pub(crate) async fn refuse(&mut self, capability: &'static str, target: &str, reason: String) -> CapError {
        let record =
            NewRecord::decision(&self.session, &self.ext.id, capability, target, Decision::Deny, None, reason.clone());
        // The refusal stands even when the audit cannot record it; the caller still
        // sees it in the call's denials.
        let _ = self.host.policy.audit().append_async(record).await;
        self.denials.push(format!("{capability} {target}: {reason}"));
        CapError::OutOfScope(reason)
    }
}

/// `s` cut to at most `max` bytes on a character boundary: what a backend hands the
/// guest is bounded, and a cut inside a character would not be a `string`.
pub(crate) fn cap(mut s: String, max: usize) -> String {
    s.truncate(s.floor_char_boundary(max));
    s
}

/// Maps the permission engine's refusal to the WIT error the guest sees.
pub(crate) fn denial_to_error(denial: Denial) -> CapError {
    match denial {
        Denial::PermissionDenied(m) => CapError::PermissionDenied(m),
        Denial::OutOfScope(m) => CapError::OutOfScope(m),
        Denial::RateLimited { retry_after, reason } => {
            CapError::RateLimited(RateLimitedInfo { retry_after_ms: duration_ms(retry_after), reason })
        }
        Denial::Unavailable(m) => CapError::Unavailable(m),
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Turns a trap-or-error pair into the `Host` return shape: the outer error traps.
macro_rules! try_budget {
    ($state:expr, $len:expr) => {
        if let Err(e) = $state.budget.take_in($len)? {
            return Ok(Err(e));
        }
    };
}
pub(crate) use try_budget;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostLimits;
    use crate::engine::OmniEngine;

    #[test]
    fn cap_respects_char_boundaries() {
        assert_eq!(cap("héllo".to_string(), 2), "h");
        assert_eq!(cap("abc".to_string(), 10), "abc");
    }

    /// Every capability of the catalog reaches a backend when granted: none is left to the
    /// "unavailable" stub, and each links its whole interface without a name clash.
    #[test]
    fn every_catalog_capability_links_a_backend() {
        let engine = OmniEngine::new(&HostLimits::default()).expect("engine");
        let mut linker = Linker::<CallState>::new(engine.engine());
        let missing: Vec<&str> = omni_capabilities::catalog()
            .iter()
            .filter(|info| !link_backend(&mut linker, info.key).expect("links"))
            .map(|info| info.key)
            .collect();
        assert!(missing.is_empty(), "capabilities without a backend: {missing:?}");
        assert!(!link_backend(&mut linker, "no.such").expect("unknown key"), "an unknown key links nothing");
    }
}
