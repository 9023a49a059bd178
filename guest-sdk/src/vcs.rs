//! Git operations on local repositories (capability `vcs.operations`).
//!
//! `repo` is the working-tree path; it must be in the grant's `allowed_repos`, and each
//! function's operation in `allowed_operations`.
//!
//! ```no_run
//! use omni_guest_sdk::vcs;
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let repo = "~/src/project";
//! let changed: Vec<String> = vcs::status(repo)?.into_iter().map(|f| f.path).collect();
//! if !changed.is_empty() {
//!     println!("{}", vcs::diff(repo)?);
//!     vcs::add(repo, &changed)?;
//!     let id = vcs::commit(repo, "Update generated files")?;
//! }
//! for c in vcs::log(repo, 5)? {
//!     println!("{} {}", &c.id[..7], c.summary);
//! }
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::vcs as wit;
use crate::Result;

pub use wit::{Change, CommitInfo, FileStatus};

/// Local branches and the one checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branches {
    /// Every local branch name.
    pub names: Vec<String>,
    /// The checked-out branch; `None` when `HEAD` is detached.
    pub current: Option<String>,
}

/// Changed and untracked paths of the working tree (operation `status`).
///
/// # Errors
///
/// The host's refusal, or [`Error::Io`](crate::Error::Io) when `repo` is not a repository.
pub fn status(repo: &str) -> Result<Vec<FileStatus>> {
    Ok(wit::status(repo)?)
}

/// At most `max_count` commits from `HEAD`, newest first (operation `log`).
///
/// # Errors
///
/// As [`status`].
pub fn log(repo: &str, max_count: u32) -> Result<Vec<CommitInfo>> {
    Ok(wit::log(repo, max_count)?)
}

/// Unified diff of the working tree against `HEAD` (operation `diff`).
///
/// # Errors
///
/// As [`status`].
pub fn diff(repo: &str) -> Result<String> {
    Ok(wit::diff(repo, false, &[])?)
}

/// Unified diff of what is staged (operation `diff`).
///
/// # Errors
///
/// As [`status`].
pub fn diff_staged(repo: &str) -> Result<String> {
    Ok(wit::diff(repo, true, &[])?)
}

/// Unified diff limited to `paths`, of the index when `staged` (operation `diff`).
///
/// # Errors
///
/// As [`status`].
pub fn diff_paths(repo: &str, staged: bool, paths: &[String]) -> Result<String> {
    Ok(wit::diff(repo, staged, paths)?)
}

/// Stage `paths` (operation `add`).
///
/// # Errors
///
/// As [`status`].
pub fn add(repo: &str, paths: &[String]) -> Result<()> {
    Ok(wit::add(repo, paths)?)
}

/// Commit what is staged; returns the new commit's hash (operation `commit`).
///
/// # Errors
///
/// As [`status`], and when nothing is staged.
pub fn commit(repo: &str, message: &str) -> Result<String> {
    Ok(wit::commit(repo, message)?)
}

/// Local branches and the checked-out one (operation `branches`).
///
/// # Errors
///
/// As [`status`].
pub fn branches(repo: &str) -> Result<Branches> {
    let (names, current) = wit::branches(repo)?;
    Ok(Branches { names, current })
}

/// Switch to the existing `branch` (operation `checkout`).
///
/// # Errors
///
/// As [`status`].
pub fn checkout(repo: &str, branch: &str) -> Result<()> {
    Ok(wit::checkout(repo, branch, false)?)
}

/// Create `branch` from `HEAD` and switch to it (operation `checkout`).
///
/// # Errors
///
/// As [`status`], and when `branch` exists.
pub fn create_branch(repo: &str, branch: &str) -> Result<()> {
    Ok(wit::checkout(repo, branch, true)?)
}
