//! `vcs.operations`: Git operations on local repositories.
//!
//! Scope ([`VcsScope`]): `allowed_repos` is matched exactly against the `repo` argument
//! (the string as given: `/src/app/` and `/src/app/../app` are not `/src/app`), and
//! `allowed_operations` against the operation each function is (`status`, `log`, `diff`,
//! `add`, `commit`, `branches`, `checkout`; absent allows all). Paths given to `diff` and
//! `add` must be relative to the repository and stay inside it: an absolute path or one
//! with a `..` component is refused and audited before the backend sees it.
//!
//! The default backend answers `unavailable`; an embedder plugs a Git implementation in
//! with [`Integrations::with_vcs`](super::Integrations::with_vcs).

use std::path::{Component, Path};

use omni_capabilities::{Scope, VcsScope};

use super::integrations::{wrong_scope, BackendFuture, NotConfigured};
use super::try_budget;
use crate::bindings::omni::caps::vcs::Host;
use crate::bindings::CapError;
use crate::sandbox::CallState;

pub use crate::bindings::omni::caps::vcs::{Change, CommitInfo, FileStatus};

const CAPABILITY: &str = "vcs.operations";
/// Most commits one `log` call returns (larger requests are cut to it).
pub const MAX_LOG: u32 = 1000;
/// Most paths one `add` or `diff` call may name.
pub const MAX_PATHS: usize = 10_000;

/// Version control an embedder plugs in. Each method is one operation on the repository
/// whose working tree is `repo` (the string the grant matched, unchanged).
pub trait VcsBackend: Send + Sync {
    /// Changed and untracked paths (operation `status`).
    fn status(&self, repo: String) -> BackendFuture<'_, Vec<FileStatus>>;
    /// At most `max_count` commits from `HEAD`, newest first (operation `log`).
    fn log(&self, repo: String, max_count: u32) -> BackendFuture<'_, Vec<CommitInfo>>;
    /// A unified diff of the working tree, or of the index when `staged`, against `HEAD`,
    /// limited to `paths` (relative, inside the repository) when not empty (operation `diff`).
    fn diff(&self, repo: String, staged: bool, paths: Vec<String>) -> BackendFuture<'_, String>;
    /// Stages `paths` (relative, inside the repository) (operation `add`).
    fn add(&self, repo: String, paths: Vec<String>) -> BackendFuture<'_, ()>;
    /// Commits what is staged; returns the new commit's hash (operation `commit`).
    fn commit(&self, repo: String, message: String) -> BackendFuture<'_, String>;
    /// Local branch names and the checked-out one (operation `branches`).
    fn branches(&self, repo: String) -> BackendFuture<'_, (Vec<String>, Option<String>)>;
    /// Switches to `branch`, creating it from `HEAD` when `create` (operation `checkout`).
    fn checkout(&self, repo: String, branch: String, create: bool) -> BackendFuture<'_, ()>;
}

fn unavailable<'a, T: Send + 'a>() -> BackendFuture<'a, T> {
    NotConfigured::future(CAPABILITY, "version-control backend", "with_vcs")
}

impl VcsBackend for NotConfigured {
    fn status(&self, _: String) -> BackendFuture<'_, Vec<FileStatus>> {
        unavailable()
    }
    fn log(&self, _: String, _: u32) -> BackendFuture<'_, Vec<CommitInfo>> {
        unavailable()
    }
    fn diff(&self, _: String, _: bool, _: Vec<String>) -> BackendFuture<'_, String> {
        unavailable()
    }
    fn add(&self, _: String, _: Vec<String>) -> BackendFuture<'_, ()> {
        unavailable()
    }
    fn commit(&self, _: String, _: String) -> BackendFuture<'_, String> {
        unavailable()
    }
    fn branches(&self, _: String) -> BackendFuture<'_, (Vec<String>, Option<String>)> {
        unavailable()
    }
    fn checkout(&self, _: String, _: String, _: bool) -> BackendFuture<'_, ()> {
        unavailable()
    }
}

/// The scope check: exact repository and operation.
fn check(scope: &Scope, repo: &str, operation: &str) -> Result<(), String> {
    match scope {
        Scope::Vcs(s) => VcsScope::check(s, repo, operation),
        other => Err(wrong_scope(CAPABILITY, other)),
    }
}

fn check_repo(repo: &str) -> Result<(), CapError> {
    if repo.is_empty() || repo.contains('\0') {
        return Err(CapError::InvalidInput(
            "the repository is empty or contains a NUL character; pass one of the grant's allowed_repos exactly".into(),
        ));
    }
    Ok(())
}

/// Why a path given to `add` or `diff` may not be used: it must name something inside
/// the repository.
fn path_problem(path: &str) -> Option<String> {
    if path.is_empty() {
        return Some("an empty path".into());
    }
    if path.contains('\0') {
        return Some(format!("the path {path:?} contains a NUL character"));
    }
    let p = Path::new(path);
    // `C:foo` or `\\server` are not absolute on Unix but are elsewhere; a backing
    // library may read them either way, so refuse any prefix or root.
    if p.is_absolute() || path.starts_with(['/', '\\']) || path.contains(':') {
        return Some(format!("the path {path:?} is absolute; paths are relative to the repository root"));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir | Component::RootDir | Component::Prefix(_)))
        || path.split(['/', '\\']).any(|seg| seg == "..")
    {
        return Some(format!("the path {path:?} climbs out with `..`; paths must stay inside the repository"));
    }
    None
}

impl CallState {
    /// Budget, argument checks and authorization shared by every operation.
    async fn vcs_allow(&mut self, repo: &str, operation: &'static str, extra: &str) -> Result<String, CapError> {
        check_repo(repo)?;
        let target =
            if extra.is_empty() { format!("{operation} {repo}") } else { format!("{operation} {repo} {extra}") };
        self.authorize(CAPABILITY, &target, &|s: &Scope| check(s, repo, operation)).await?;
        Ok(target)
    }

    /// Refuses (audited) paths that leave the repository.
    async fn vcs_paths(&mut self, target: &str, paths: &[String]) -> Result<(), CapError> {
        if paths.len() > MAX_PATHS {
            return Err(CapError::InvalidInput(format!(
                "{} paths in one call, more than {MAX_PATHS}; split the call",
                paths.len()
            )));
        }
        for p in paths {
            if let Some(why) = path_problem(p) {
                return Err(self.refuse(CAPABILITY, target, why).await);
            }
        }
        Ok(())
    }
}

fn paths_len(paths: &[String]) -> usize {
    paths.iter().map(String::len).sum()
}

impl Host for CallState {
    async fn status(&mut self, repo: String) -> wasmtime::Result<Result<Vec<FileStatus>, CapError>> {
        try_budget!(self, repo.len());
        let target = match self.vcs_allow(&repo, "status", "").await {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let backend = self.host.integrations.vcs.clone();
        let result = backend.status(repo).await;
        Ok(self.backend_result(CAPABILITY, &target, result).await)
    }

    async fn log(&mut self, repo: String, max_count: u32) -> wasmtime::Result<Result<Vec<CommitInfo>, CapError>> {
        try_budget!(self, repo.len());
        let target = match self.vcs_allow(&repo, "log", "").await {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let backend = self.host.integrations.vcs.clone();
        let result = backend.log(repo, max_count.min(MAX_LOG)).await;
        Ok(self.backend_result(CAPABILITY, &target, result).await)
    }

    async fn diff(
        &mut self,
        repo: String,
        staged: bool,
        paths: Vec<String>,
    ) -> wasmtime::Result<Result<String, CapError>> {
        try_budget!(self, repo.len() + paths_len(&paths));
        let target = match self.vcs_allow(&repo, "diff", if staged { "(staged)" } else { "" }).await {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = self.vcs_paths(&target, &paths).await {
            return Ok(Err(e));
        }
        let backend = self.host.integrations.vcs.clone();
        let result = backend.diff(repo, staged, paths).await;
        Ok(self.backend_result(CAPABILITY, &target, result).await)
    }

    async fn add(&mut self, repo: String, paths: Vec<String>) -> wasmtime::Result<Result<(), CapError>> {
        try_budget!(self, repo.len() + paths_len(&paths));
        let target = match self.vcs_allow(&repo, "add", &format!("({} paths)", paths.len())).await {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        if paths.is_empty() {
            return Ok(Err(CapError::InvalidInput(
                "no paths to add; name at least one path relative to the repository".into(),
            )));
        }
        if let Err(e) = self.vcs_paths(&target, &paths).await {
            return Ok(Err(e));
        }
        let backend = self.host.integrations.vcs.clone();
        let result = backend.add(repo, paths).await;
        Ok(self.backend_result(CAPABILITY, &target, result).await)
    }

    async fn commit(&mut self, repo: String, message: String) -> wasmtime::Result<Result<String, CapError>> {
        try_budget!(self, repo.len() + message.len());
        if message.trim().is_empty() {
            return Ok(Err(CapError::InvalidInput("the commit message is empty; describe the change".into())));
        }
        let target = match self.vcs_allow(&repo, "commit", "").await {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let backend = self.host.integrations.vcs.clone();
        let result = backend.commit(repo, message).await;
        Ok(self.backend_result(CAPABILITY, &target, result).await)
    }

    async fn branches(&mut self, repo: String) -> wasmtime::Result<Result<(Vec<String>, Option<String>), CapError>> {
        try_budget!(self, repo.len());
        let target = match self.vcs_allow(&repo, "branches", "").await {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let backend = self.host.integrations.vcs.clone();
        let result = backend.branches(repo).await;
        Ok(self.backend_result(CAPABILITY, &target, result).await)
    }

    async fn checkout(&mut self, repo: String, branch: String, create: bool) -> wasmtime::Result<Result<(), CapError>> {
        try_budget!(self, repo.len() + branch.len());
        // A name starting with `-` would read as an option to a command-line backend.
        if branch.is_empty() || branch.starts_with('-') || branch.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Ok(Err(CapError::InvalidInput(format!(
                "{branch:?} is not a branch name; use a name without spaces or control characters that does not start with `-`"
            ))));
        }
        let target = match self.vcs_allow(&repo, "checkout", &branch).await {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let backend = self.host.integrations.vcs.clone();
        let result = backend.checkout(repo, branch, create).await;
        Ok(self.backend_result(CAPABILITY, &target, result).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_and_operations_match_exactly() {
        let s = Scope::Vcs(VcsScope {
            allowed_repos: vec!["/src/app".into()],
            allowed_operations: Some(vec!["status".into(), "diff".into()]),
        });
        assert!(check(&s, "/src/app", "status").is_ok());
        for repo in ["/src/app/", "/src/app/../app", "/src/app/.", "/src/ap", "/src/app2", "/SRC/app", "/src/app/sub"] {
            assert!(check(&s, repo, "status").is_err(), "{repo}");
        }
        assert!(check(&s, "/src/app", "commit").is_err());
        assert!(check(&s, "/src/app", "Status").is_err());
        let any_op = Scope::Vcs(VcsScope { allowed_repos: vec!["/src/app".into()], allowed_operations: None });
        assert!(check(&any_op, "/src/app", "checkout").is_ok());
    }

    #[test]
    fn paths_must_stay_inside_the_repository() {
        for ok in ["src/main.rs", "README.md", "a/b/c", "dir/", "weird..name", ".hidden"] {
            assert_eq!(path_problem(ok), None, "{ok}");
        }
        for bad in ["", "/etc/passwd", "../outside", "a/../../b", "a/..", "\\\\server\\share", "C:\\x", "a\0b", "..\\x"]
        {
            assert!(path_problem(bad).is_some(), "{bad:?}");
        }
    }
}
