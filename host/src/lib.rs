//! The Omni host: runs untrusted extension components with only the capabilities a
//! person approved.
//!
//! * [`OmniEngine`]: one shared Wasmtime engine (pooling allocator, epoch ticker) and the
//!   on-disk compile cache.
//! * [`sandbox`]: import checks against the manifest, link-time gating (a linker holds the
//!   WASI base set plus the declared capabilities, granted ones wired to their backend),
//!   and the per-call limits (memory, time, bytes moved into the host, handles, logs).
//! * [`policy`] and [`audit`]: who may do what, and the hash-chained record of it.
//! * [`caps`]: the capability backends, one module each.
//! * [`Omni`]: the host an embedder opens on a data dir: install, call, uninstall.
//!
//! ```no_run
//! # async fn run() -> Result<(), omni_host::OmniError> {
//! let omni = omni_host::Omni::builder("/var/lib/omni").open()?;
//! let plan = omni.prepare_install("target/omni-extensions/dev.omni.calculator".as_ref())?;
//! omni.install(&plan, &[])?;
//! let out = omni.call("dev.omni.calculator", "evaluate", r#"{"expression":"1+2"}"#).await?;
//! println!("{}", out.output);
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod bindings;
pub mod caps;
pub mod config;
pub mod engine;
pub mod policy;
pub mod registry;
pub mod runtime;
pub mod sandbox;

pub use config::OmniConfig;
pub use engine::OmniEngine;
pub use omni_guardian::{Verdict, VerdictKind};
pub use runtime::{ImportCheck, InstallPlan, Omni, OmniBuilder, OmniError, PermissionDecision, ReviewRow};
pub use sandbox::{CallError, CallOutput, LimitExceeded};

use std::sync::Arc;

/// Services every call of every extension shares.
pub(crate) struct HostShared {
    pub(crate) config: OmniConfig,
    pub(crate) policy: policy::PolicyEngine,
    pub(crate) kv: Arc<dyn caps::kv::KvBackend>,
    pub(crate) http: Arc<dyn caps::http::HttpBackend>,
    pub(crate) fs: Arc<dyn caps::fs::FsBackend>,
    pub(crate) process: Arc<dyn caps::process::ProcessBackend>,
    pub(crate) running: caps::process::Running,
    pub(crate) integrations: caps::Integrations,
    pub(crate) egress: Arc<caps::egress::Egress>,
    pub(crate) scrape: Arc<dyn caps::browser::ScrapeBackend>,
    pub(crate) websocket: Arc<dyn caps::websocket::WebSocketBackend>,
    pub(crate) search: Arc<caps::search::SearchProviders>,
    pub(crate) guardian: Arc<omni_guardian::Guardian>,
    pub(crate) inference: Arc<dyn caps::inference::InferenceBackend>,
    pub(crate) inference_usage: Arc<caps::inference::UsageLedger>,
    pub(crate) messaging: Arc<dyn caps::messaging::MessagingBackend>,
    pub(crate) channel_bus: caps::messaging::ChannelBus,
    pub(crate) notifications: Arc<dyn caps::notifications::NotificationBackend>,
    pub(crate) schedules: Arc<dyn caps::scheduling::ScheduleStore>,
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// The current UTC time as RFC 3339.
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
