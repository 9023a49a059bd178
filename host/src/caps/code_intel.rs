//! `code.intelligence`: language-server queries on source files.
//!
//! The capability has no scope fields, but every file goes through the same path rules
//! as `filesystem.read` in `[security]`: the path must be absolute (or start with `~/`),
//! it is normalized (`.` and `..` resolved) and, when it exists, resolved through
//! symlinks; it is refused (audited, `out-of-scope`) when either form lies under a
//! blocked path (the built-in list, `blocked_paths`, Omni's data dir) or outside
//! `allowed_paths` when that list is set. The backend receives the resolved path.
//! The default backend answers `unavailable`; an embedder plugs language servers in with
//! [`Integrations::with_code_intel`](super::Integrations::with_code_intel).

use std::path::{Component, Path, PathBuf};

use super::integrations::{BackendFuture, NotConfigured};
use super::try_budget;
use crate::bindings::omni::caps::code_intel::Host;
use crate::bindings::CapError;
use crate::policy::{SecurityConfig, DEFAULT_BLOCKED_PATHS};
use crate::sandbox::CallState;

pub use crate::bindings::omni::caps::code_intel::{Diagnostic, Position, Severity, Span, Symbol, SymbolKind};

const CAPABILITY: &str = "code.intelligence";

/// Language servers an embedder plugs in. `path` is absolute and has passed the host's
/// path rules.
pub trait CodeIntelBackend: Send + Sync {
    /// The declarations in the file, in source order.
    fn symbols(&self, path: String) -> BackendFuture<'_, Vec<Symbol>>;
    /// Where the symbol at `at` is defined.
    fn definition(&self, path: String, at: Position) -> BackendFuture<'_, Vec<Span>>;
    /// Every use of the symbol at `at`, with its declaration when `include_declaration`.
    fn references(&self, path: String, at: Position, include_declaration: bool) -> BackendFuture<'_, Vec<Span>>;
    /// The file's current diagnostics.
    fn diagnostics(&self, path: String) -> BackendFuture<'_, Vec<Diagnostic>>;
    /// Hover documentation (Markdown) for the symbol at `at`.
    fn hover(&self, path: String, at: Position) -> BackendFuture<'_, Option<String>>;
}

fn unavailable<'a, T: Send + 'a>() -> BackendFuture<'a, T> {
    NotConfigured::future(CAPABILITY, "language-server backend", "with_code_intel")
}

impl CodeIntelBackend for NotConfigured {
    fn symbols(&self, _: String) -> BackendFuture<'_, Vec<Symbol>> {
        unavailable()
    }
    fn definition(&self, _: String, _: Position) -> BackendFuture<'_, Vec<Span>> {
        unavailable()
    }
    fn references(&self, _: String, _: Position, _: bool) -> BackendFuture<'_, Vec<Span>> {
        unavailable()
    }
    fn diagnostics(&self, _: String) -> BackendFuture<'_, Vec<Diagnostic>> {
        unavailable()
    }
    fn hover(&self, _: String, _: Position) -> BackendFuture<'_, Option<String>> {
        unavailable()
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

fn expand(path: &str, home: Option<&Path>) -> Option<PathBuf> {
    match (path.strip_prefix('~'), home) {
        (Some(""), Some(h)) => Some(h.to_path_buf()),
        (Some(rest), Some(h)) if rest.starts_with('/') => Some(h.join(&rest[1..])),
        (Some(_), _) => None,
        (None, _) => Some(PathBuf::from(path)),
    }
}

/// Resolves `.` and `..` without touching the disk; `..` never climbs above the root.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Applies the `[security]` path rules to `path`; the path the backend may use, or why not.
///
/// `Err(Ok(reason))` is a refusal to audit, `Err(Err(error))` malformed input.
fn check_path(config: &SecurityConfig, path: &str) -> Result<PathBuf, Result<String, CapError>> {
    if path.is_empty() || path.contains('\0') {
        return Err(Err(CapError::InvalidInput("the path is empty or contains a NUL character; pass an absolute file path".into())));
    }
    let home = home();
    let Some(expanded) = expand(path, home.as_deref()).filter(|p| p.is_absolute()) else {
        return Err(Err(CapError::InvalidInput(format!("{path:?} is not an absolute path; pass the file's full path (or one starting with ~/)"))));
    };
    let lexical = normalize(&expanded);
    let resolved = std::fs::canonicalize(&lexical).ok();
    let blocked: Vec<PathBuf> = DEFAULT_BLOCKED_PATHS
        .iter()
        .copied()
        .chain(config.blocked_paths.iter().map(String::as_str))
        .filter_map(|p| expand(p, home.as_deref()))
        .map(|p| normalize(&p))
        .chain(config.data_dir.iter().map(|d| normalize(d)))
        .collect();
    let allowed: Vec<PathBuf> = config.allowed_paths.iter().filter_map(|p| expand(p, home.as_deref())).map(|p| normalize(&p)).collect();
    for p in std::iter::once(&lexical).chain(resolved.as_ref()) {
        if let Some(b) = blocked.iter().find(|b| p.starts_with(b)) {
            return Err(Ok(format!(
                "{} is under the blocked path {} ([security] blocked_paths and the built-in list); no grant can override this",
                p.display(),
                b.display()
            )));
        }
        if !allowed.is_empty() && !allowed.iter().any(|a| p.starts_with(a)) {
            return Err(Ok(format!(
                "{} is outside [security] allowed_paths; add a parent directory there to allow it",
                p.display()
            )));
        }
    }
    Ok(resolved.unwrap_or(lexical))
}

/// No scope fields: a grant covers every file the path rules allow.
fn any_file(_: &omni_capabilities::Scope) -> Result<(), String> {
    Ok(())
}

impl CallState {
    /// Budget, path rules and authorization shared by every query; the path to use.
    async fn code_intel_allow(&mut self, operation: &str, path: &str) -> Result<(String, String), CapError> {
        let target = format!("{operation} {path}");
        let checked = match check_path(self.host.policy.config(), path) {
            Ok(p) => p,
            Err(Err(e)) => return Err(e),
            Err(Ok(reason)) => return Err(self.refuse(CAPABILITY, &target, reason).await),
        };
        let checked = checked.to_string_lossy().into_owned();
        let target = format!("{operation} {checked}");
        self.authorize(CAPABILITY, &target, &any_file).await?;
        Ok((checked, target))
    }
}

impl Host for CallState {
    async fn symbols(&mut self, path: String) -> wasmtime::Result<Result<Vec<Symbol>, CapError>> {
        try_budget!(self, path.len());
        let (path, target) = match self.code_intel_allow("symbols", &path).await {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let backend = self.host.integrations.code_intel.clone();
        let result = backend.symbols(path).await;
        Ok(self.backend_result(CAPABILITY, &target, result).await)
    }

    async fn definition(&mut self, path: String, at: Position) -> wasmtime::Result<Result<Vec<Span>, CapError>> {
        try_budget!(self, path.len());
        let (path, target) = match self.code_intel_allow("definition", &path).await {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let backend = self.host.integrations.code_intel.clone();
        let result = backend.definition(path, at).await;
        Ok(self.backend_result(CAPABILITY, &target, result).await)
    }

    async fn references(&mut self, path: String, at: Position, include_declaration: bool) -> wasmtime::Result<Result<Vec<Span>, CapError>> {
        try_budget!(self, path.len());
        let (path, target) = match self.code_intel_allow("references", &path).await {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let backend = self.host.integrations.code_intel.clone();
        let result = backend.references(path, at, include_declaration).await;
        Ok(self.backend_result(CAPABILITY, &target, result).await)
    }

    async fn diagnostics(&mut self, path: String) -> wasmtime::Result<Result<Vec<Diagnostic>, CapError>> {
        try_budget!(self, path.len());
        let (path, target) = match self.code_intel_allow("diagnostics", &path).await {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let backend = self.host.integrations.code_intel.clone();
        let result = backend.diagnostics(path).await;
        Ok(self.backend_result(CAPABILITY, &target, result).await)
    }

    async fn hover(&mut self, path: String, at: Position) -> wasmtime::Result<Result<Option<String>, CapError>> {
        try_budget!(self, path.len());
        let (path, target) = match self.code_intel_allow("hover", &path).await {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let backend = self.host.integrations.code_intel.clone();
        let result = backend.hover(path, at).await;
        Ok(self.backend_result(CAPABILITY, &target, result).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_filesystem_rules() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let secret = root.join("secret");
        std::fs::create_dir_all(&secret).expect("mkdir");
        std::fs::write(secret.join("key.rs"), "fn main() {}").expect("write");
        std::fs::write(root.join("ok.rs"), "fn main() {}").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink(secret.join("key.rs"), root.join("link.rs")).expect("symlink");
        let config = SecurityConfig {
            blocked_paths: vec![secret.display().to_string()],
            allowed_paths: vec![root.display().to_string()],
            ..SecurityConfig::default()
        };
        let ok = root.join("ok.rs");
        assert_eq!(check_path(&config, &ok.display().to_string()).ok(), Some(ok));
        let sneaky = format!("{}/other/../secret/key.rs", root.display());
        assert!(matches!(check_path(&config, &sneaky), Err(Ok(_))), "`..` into a blocked dir");
        #[cfg(unix)]
        assert!(matches!(check_path(&config, &root.join("link.rs").display().to_string()), Err(Ok(_))), "a symlink into a blocked dir");
        assert!(matches!(check_path(&config, "/etc/hostname"), Err(Ok(_))), "outside allowed_paths");
        assert!(matches!(check_path(&config, "relative.rs"), Err(Err(CapError::InvalidInput(_)))));
        assert!(matches!(check_path(&config, ""), Err(Err(CapError::InvalidInput(_)))));
    }
}
