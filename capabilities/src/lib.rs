//! The capability catalog and the extension manifest of Omni.
//!
//! - [`catalog`], [`lookup`] and [`capability_for_import`] describe the 27
//!   capabilities an extension can ask for: key, [`Severity`], WIT interface and
//!   scope fields.
//! - [`Scope`] and its typed variants parse a permission's `scope` table, check
//!   concrete requests against it ([`NetworkScope::check`], [`FsScope::check_path`],
//!   [`MessagingScope::check_recipient`], [`ProcessScope::check_command`]) and decide
//!   whether an updated scope stays within a granted one ([`Scope::is_within`]).
//! - [`Manifest`] reads and validates `manifest.toml`, reporting every problem with
//!   the field it concerns ([`ManifestError`]).
//!
//! The manifest format and the exact matching rules are documented in
//! `docs/manifest.md`.
//!
//! ```
//! use omni_capabilities::{capability_for_import, Manifest};
//! let err = Manifest::from_toml_str(r#"
//!     [extension]
//!     id = "dev.omni.Weather"
//!     name = "Weather"
//!     version = "0.1"
//!     author = "Omni"
//!     description = "Forecasts"
//!     [[permissions]]
//!     capability = "network.http"
//!     reason = "Fetch the forecast"
//!     scope = { domains = ["*.com"] }
//! "#, "manifest.toml").unwrap_err();
//! let fields: Vec<_> = err.problems.iter().map(|p| p.field.as_str()).collect();
//! assert_eq!(fields, ["extension.id", "extension.version", "permissions[0].scope.domains[0]"]);
//! assert_eq!(capability_for_import("omni:caps/http@0.1.0").unwrap().key, "network.http");
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod catalog;
mod error;
mod manifest;
mod scope;
pub mod text;

pub use catalog::{capability_for_import, catalog, lookup, CapabilityInfo, Severity, UnknownSeverity};
pub use error::{ManifestError, Problem};
pub use manifest::{
    ArgumentValidator, ExtensionInfo, Manifest, Permission, RuntimeLimits, ToolSpec, DEFAULT_MAX_CONCURRENT_CALLS,
    DEFAULT_MAX_CPU_MS_PER_CALL, DEFAULT_MAX_MEMORY_MB, MAX_MANIFEST_BYTES,
};
pub use scope::{
    parse_size, AgentScope, ArgPattern, AutomationScope, ChannelScope, DomainPattern, FlowchartScope, FsPath, FsRoots,
    FsScope, InferenceScope, McpScope, MessagingKind, MessagingScope, NetworkKind, NetworkScope, ProcessScope,
    RateLimit, RateLimitError, RecipientPattern, Scope, SearchScope, StorageScope, VcsScope,
    DEFAULT_AGENT_MAX_CONCURRENT, DEFAULT_BROWSER_MAX_PAGES, DEFAULT_PROCESS_MAX_CONCURRENT, DEFAULT_STORAGE_BYTES,
};
