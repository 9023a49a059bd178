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

use std::path::{Path, PathBuf};

use super::integrations::{BackendFuture, NotConfigured};
use super::try_budget;
use crate::bindings::omni::caps::code_intel::Host;
use crate::bindings::CapError;
use crate::policy::{resolve_path, PolicyEngine};
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

/// The path a query may use: absolute, `~` expanded, `.` and `..` resolved, symlinks
/// followed when the file exists; then the `[security]` path rules of the permission
/// engine. `Err(Ok(reason))` is a refusal to audit, `Err(Err(error))` malformed input.
fn check_path(policy: &PolicyEngine, ext: &str, path: &str) -> Result<PathBuf, Result<String, CapError>> {
    if path.is_empty() || path.contains('\0') {
        return Err(Err(CapError::InvalidInput(
            "the path is empty or contains a NUL character; pass an absolute file path".into(),
        )));
    }
    if !(path.starts_with('/') || path.starts_with("~/") || Path::new(path).is_absolute()) {
        return Err(Err(CapError::InvalidInput(format!(
            "{path:?} is not an absolute path; pass the file's full path (or one starting with ~/)"
        ))));
    }
    let lexical = resolve_path(path);
    match policy.check_path(ext, CAPABILITY, &lexical) {
        Ok(()) => Ok(std::fs::canonicalize(&lexical).unwrap_or(lexical)),
        Err(denial) => Err(Ok(denial.to_string())),
    }
}

/// No scope fields: a grant covers every file the path rules allow.
fn any_file(_: &omni_capabilities::Scope) -> Result<(), String> {
    Ok(())
}

impl CallState {
    /// Budget, path rules and authorization shared by every query; the path to use.
    async fn code_intel_allow(&mut self, operation: &str, path: &str) -> Result<(String, String), CapError> {
        let target = format!("{operation} {path}");
        let host = self.host.clone();
        let checked = match check_path(&host.policy, &self.ext.id, path) {
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

    async fn references(
        &mut self,
        path: String,
        at: Position,
        include_declaration: bool,
    ) -> wasmtime::Result<Result<Vec<Span>, CapError>> {
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
        use crate::audit::AuditLog;
        use crate::policy::{DenyPrompter, SecurityConfig};
        use std::sync::Arc;
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
        let db = Arc::new(redb::Database::create(dir.path().join("omni.redb")).expect("db"));
        let audit = AuditLog::open(Arc::clone(&db)).expect("audit");
        let config = PolicyEngine::open(db, audit, config, Arc::new(DenyPrompter)).expect("engine");
        let ok = root.join("ok.rs");
        assert_eq!(check_path(&config, "ext", &ok.display().to_string()).ok(), Some(ok));
        let sneaky = format!("{}/other/../secret/key.rs", root.display());
        assert!(matches!(check_path(&config, "ext", &sneaky), Err(Ok(_))), "`..` into a blocked dir");
        #[cfg(unix)]
        assert!(
            matches!(check_path(&config, "ext", &root.join("link.rs").display().to_string()), Err(Ok(_))),
            "a symlink into a blocked dir"
        );
        assert!(matches!(check_path(&config, "ext", "/etc/hostname"), Err(Ok(_))), "outside allowed_paths");
        assert!(matches!(check_path(&config, "ext", "relative.rs"), Err(Err(CapError::InvalidInput(_)))));
        assert!(matches!(check_path(&config, "ext", ""), Err(Err(CapError::InvalidInput(_)))));
    }
}
