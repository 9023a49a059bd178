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
    ///
    /// A target holding a control or invisible character is refused before the engine
    /// sees it: targets are what a person reads in a permission prompt and in the audit
    /// log, and an escape sequence there could redraw the question being asked.
    pub(crate) async fn authorize(
        &mut self,
        capability: &'static str,
        target: &str,
        check: &(dyn Fn(&Scope) -> Result<(), String> + Send + Sync),
    ) -> Result<(), CapError> {
        if let Err(why) = omni_capabilities::text::refuse_unsafe_name("name", target) {
            let shown = omni_capabilities::text::escape(target).into_owned();
            self.refuse(capability, &shown, why.clone()).await;
            return Err(CapError::InvalidInput(why));
        }
        let request =
            AccessRequest { session: &self.session, extension: &self.ext.id, capability, target, check_scope: check };
        let (result, record) = self.host.policy.authorize_deferring_denial(&request).await;
        match result {
            Ok(_) => Ok(()),
            Err(denial) => {
                let error = denial_to_error(denial);
                let message = match &error {
                    CapError::PermissionDenied(m) | CapError::OutOfScope(m) => Some(m.as_str()),
                    _ => None,
                };
                let audit = self.denials.note(capability, target, message);
                if let (Some(record), true) = (record, audit) {
                    // The refusal stands even when the audit cannot record it.
                    let _ = self.host.policy.audit().append_async(record).await;
                }
                Err(error)
            }
        }
    }

    /// Refuses an access the permission engine allowed but the backend's own policy does
    /// not (a name resolving to a private address, a symlink leaving the granted root...).
    ///
    /// The refusal is written to the audit log as a deny with `reason`, counted in the
    /// call's denials, and returned as `out-of-scope` for the guest. Use it for every
    /// refusal that is about *where* an extension tried to go, so the audit shows it.
    pub(crate) async fn refuse(&mut self, capability: &'static str, target: &str, reason: String) -> CapError {
        if self.denials.note(capability, target, Some(&reason)) {
            let record = NewRecord::decision(
                &self.session,
                &self.ext.id,
                capability,
                target,
                Decision::Deny,
                None,
                reason.clone(),
            );
            // The refusal stands even when the audit cannot record it; the caller still
            // sees it in the call's denials.
            let _ = self.host.policy.audit().append_async(record).await;
        }
        CapError::OutOfScope(reason)
    }
}

/// The refusals one call met, kept within bounds.
///
/// A guest can loop on a refused host call as fast as the host answers it (tens of
/// thousands of times a second). Without bounds every refusal would be kept in memory
/// for the caller and written to the audit log in full. So:
///
/// - the caller gets at most [`Refusals::KEPT`] distinct messages of at most
///   [`Refusals::MESSAGE_BYTES`] each, identical ones counted, and a last line saying
///   how many more there were;
/// - the audit log gets the first [`Refusals::AUDITED_PER_CAPABILITY`] refusals of each
///   capability one by one, and then one record per capability, when the call ends,
///   saying how many more there were and the last target (the chain stays complete:
///   nothing is refused without a record saying so);
/// - past `max_refusals_per_call` refusals the call is stopped
///   ([`crate::LimitExceeded::Refusals`]).
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    kept: Vec<(String, u64)>,
    not_kept: u64,
    total: u64,
    audited: Vec<(&'static str, u32)>,
    coalesced: Vec<(&'static str, u64, String)>,
}

impl Refusals {
    /// Distinct messages kept for the caller.
    pub(crate) const KEPT: usize = 32;
    /// Longest message kept; a longer one is cut with `…`.
    pub(crate) const MESSAGE_BYTES: usize = 512;
    /// Refusals of one capability written to the audit log one by one in a call.
    pub(crate) const AUDITED_PER_CAPABILITY: u32 = 16;

    /// Counts a refusal of `capability` on `target`; `message`, when given, is kept for
    /// the caller. Returns whether this refusal should be written to the audit log now
    /// (the others are summed up by [`Refusals::coalesced_records`]).
    pub(crate) fn note(&mut self, capability: &'static str, target: &str, message: Option<&str>) -> bool {
        self.total = self.total.saturating_add(1);
        if let Some(message) = message {
            let message = format!("{capability} {}: {message}", omni_capabilities::text::truncate(target, 200));
            let message = omni_capabilities::text::truncate(&message, Self::MESSAGE_BYTES).into_owned();
            if let Some((_, count)) = self.kept.iter_mut().find(|(m, _)| *m == message) {
                *count += 1;
            } else if self.kept.len() < Self::KEPT {
                self.kept.push((message, 1));
            } else {
                self.not_kept += 1;
            }
        }
        let index = match self.audited.iter().position(|(c, _)| *c == capability) {
            Some(i) => i,
            None => {
                self.audited.push((capability, 0));
                self.audited.len() - 1
            }
        };
        if self.audited[index].1 < Self::AUDITED_PER_CAPABILITY {
            self.audited[index].1 += 1;
            return true;
        }
        let target = omni_capabilities::text::truncate(target, 200).into_owned();
        match self.coalesced.iter_mut().find(|(c, _, _)| *c == capability) {
            Some((_, n, last)) => {
                *n += 1;
                *last = target;
            }
            None => self.coalesced.push((capability, 1, target)),
        }
        false
    }

    /// How many refusals the call met so far.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// One audit record per capability whose refusals were not written one by one, saying
    /// how many there were; empties the count.
    pub(crate) fn coalesced_records(&mut self, session: &str, extension: &str) -> Vec<NewRecord> {
        std::mem::take(&mut self.coalesced)
            .into_iter()
            .map(|(capability, n, last)| {
                NewRecord::decision(
                    session,
                    extension,
                    capability,
                    &last,
                    Decision::Deny,
                    None,
                    format!(
                        "and {n} more refusals of {capability} in this call, like the {} recorded before it, not written one by one (the last target is shown)",
                        Self::AUDITED_PER_CAPABILITY
                    ),
                )
            })
            .collect()
    }

    /// The messages for the caller: each distinct one once (with its count when
    /// repeated), then how many were left out.
    pub(crate) fn take_messages(&mut self) -> Vec<String> {
        let mut out: Vec<String> = std::mem::take(&mut self.kept)
            .into_iter()
            .map(|(m, n)| if n > 1 { format!("{m} ({n} times)") } else { m })
            .collect();
        if self.not_kept > 0 {
            out.push(format!("and {} more refusals not listed", self.not_kept));
        }
        self.not_kept = 0;
        out
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
