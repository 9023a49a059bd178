//! `omni.toml`: the host configuration a person edits.
//!
//! Every table is optional; a missing file means all defaults. Unknown keys are refused
//! so that a typo (`[securty]`) never silently leaves a policy at its default.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::policy::SecurityConfig;

/// The whole `omni.toml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OmniConfig {
    /// `[security]`: default policy, blocked paths, rate limits, audit switch.
    pub security: SecurityConfig,
    /// `[network]`: egress settings shared by every network capability.
    pub network: NetworkConfig,
    /// `[limits]`: host-side bounds that apply to every extension.
    pub limits: HostLimits,
    /// `[guardian]`: the anti-injection pipeline that scans every tool result before it
    /// is handed back (sensitivity, overrides, signature file, ML layer).
    pub guardian: omni_guardian::GuardianConfig,
    /// `[filesystem]`: host bounds of `filesystem.read` and `filesystem.write`.
    pub filesystem: crate::caps::fs::FsConfig,
    /// `[process]`: host bounds of `process.spawn`.
    pub process: crate::caps::process::ProcessConfig,
    /// `[inference]`: the chat-completions provider behind `ai.inference`, and the
    /// per-extension daily budgets.
    pub inference: crate::caps::inference::InferenceConfig,
    /// `[messaging]`: where `channel.send` and `messaging.*` deliver (the channel bus, or a
    /// webhook).
    pub messaging: crate::caps::messaging::MessagingConfig,
    /// `[scheduling]`: bounds on `system.scheduling` jobs.
    pub scheduling: crate::caps::scheduling::SchedulingConfig,
    /// `[search]`: the web search providers `search.web` may use.
    pub search: crate::caps::search::SearchConfig,
}

/// `[network]` settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Host name -> base URL to connect to instead (e.g. `"api.open-meteo.com" =
    /// "http://127.0.0.1:8080"`). The scope check still runs on the original host; an
    /// address named here is allowed although it is private or loopback.
    pub resolve: BTreeMap<String, String>,
    /// Largest response body accepted, in bytes.
    pub max_response_bytes: u64,
    /// Longest a single request may take, in milliseconds (the call's own deadline also
    /// applies).
    pub timeout_ms: u64,
    /// Most redirects followed for one request, each hop re-checked against the scope.
    pub max_redirects: u8,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            resolve: BTreeMap::new(),
            max_response_bytes: 16 * 1024 * 1024,
            timeout_ms: 30_000,
            max_redirects: 5,
        }
    }
}

/// `[limits]`: host-side bounds per call, on top of each manifest's `[runtime]` limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostLimits {
    /// Bytes an extension may move into the host during one call (all host-call
    /// arguments added up). Past it the call ends with an error.
    pub max_bytes_into_host_per_call: u64,
    /// Largest single argument (string or byte list) accepted by a host call.
    pub max_host_arg_bytes: u64,
    /// Host resource handles (WASI streams and pollables, connections, sessions) one
    /// call may hold at once; past it, creating another fails inside the guest.
    pub max_resource_handles: u32,
    /// Bytes of stdout and of stderr captured per call; the rest is dropped.
    pub max_log_bytes: usize,
    /// Largest tool result accepted from an extension, in bytes.
    pub max_tool_output_bytes: usize,
    /// Ceiling on any manifest's `max_memory_mb`.
    pub max_memory_mb: u32,
    /// Milliseconds the engine waits between epoch ticks (the granularity of time limits).
    pub epoch_tick_ms: u64,
    /// Permission refusals one call may meet before it is stopped. A guest looping on a
    /// refused host call is either broken or probing; either way it stops here.
    pub max_refusals_per_call: u64,
}

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits {
            max_bytes_into_host_per_call: 32 * 1024 * 1024,
            max_host_arg_bytes: 8 * 1024 * 1024,
            max_resource_handles: 256,
            max_log_bytes: 64 * 1024,
            max_tool_output_bytes: 4 * 1024 * 1024,
            max_memory_mb: 1024,
            epoch_tick_ms: 2,
            max_refusals_per_call: 1000,
        }
    }
}

/// Why `omni.toml` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("{path} is not a valid Omni configuration: {message}\nfix the key named above (see docs/configuration.md for every key)")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said, with line and key.
        message: String,
    },
}

impl OmniConfig {
    /// Reads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<OmniConfig, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(OmniConfig::default()),
            Err(source) => Err(ConfigError::Read { path: path.display().to_string(), source }),
        }
    }

    /// Parses the text of an `omni.toml`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<OmniConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: origin.to_string(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in docs/configuration.md is a real configuration: every key it shows
    /// exists, so the page cannot drift from the code unnoticed.
    #[test]
    fn the_documented_configuration_parses() {
        let doc = include_str!("../../docs/configuration.md");
        let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("closed block");
        let config = OmniConfig::parse(&doc[start..end], "docs/configuration.md").expect("parses");
        assert_eq!(config.network.max_redirects, 5);
        assert_eq!(config.inference.api_key_env, "OMNI_INFERENCE_KEY");
        assert_eq!(config.process.max_concurrent, 4);
    }

    #[test]
    fn unknown_keys_are_refused_with_the_fix() {
        let err = OmniConfig::parse("[network]\nmax_redirect = 3\n", "omni.toml").expect_err("typo");
        let text = err.to_string();
        assert!(text.contains("max_redirect") && text.contains("docs/configuration.md"), "{text}");
    }
}
