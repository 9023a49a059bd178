//! Files on the host (capabilities `filesystem.read` and `filesystem.write`).
//!
//! Paths are host paths (absolute, or starting with `~/`). The host resolves symbolic
//! links and `..` before it checks the result against the grant's `paths`, `extensions`
//! and `max_size`; the reading functions need `filesystem.read`, the writing ones
//! `filesystem.write`.
//!
//! ```no_run
//! use omni_guest_sdk::fs;
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! for entry in fs::list("~/Documents/reports")? {
//!     if entry.kind == fs::EntryKind::File && entry.name.ends_with(".md") {
//!         let text = fs::read_to_string(&format!("~/Documents/reports/{}", entry.name))?;
//!         fs::append("~/Documents/reports/index.txt", format!("{}: {} lines\n", entry.name, text.lines().count()))?;
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::{fs_read, fs_write};
use crate::Result;

pub use fs_read::{DirEntry, EntryKind, FileMetadata};

/// The whole content of the file at `path`.
///
/// # Errors
///
/// The host's refusal (no grant, path or extension outside the scope, file larger than
/// `max_size`) or [`Error::Io`](crate::Error::Io) (missing file, ...).
pub fn read(path: &str) -> Result<Vec<u8>> {
    Ok(fs_read::read(path)?)
}

/// The whole content of the file at `path` as text.
///
/// # Errors
///
/// As [`read`]; the host refuses content that is not UTF-8.
pub fn read_to_string(path: &str) -> Result<String> {
    Ok(fs_read::read_text(path)?)
}

/// At most `length` bytes of the file at `path` from byte `offset` (fewer at the end).
///
/// # Errors
///
/// As [`read`].
pub fn read_range(path: &str, offset: u64, length: u32) -> Result<Vec<u8>> {
    Ok(fs_read::read_range(path, offset, length)?)
}

/// The entries of the directory at `path`, sorted by name.
///
/// # Errors
///
/// As [`read`].
pub fn list(path: &str) -> Result<Vec<DirEntry>> {
    Ok(fs_read::list_dir(path)?)
}

/// Kind, size and modification time of `path`.
///
/// # Errors
///
/// As [`read`].
pub fn metadata(path: &str) -> Result<FileMetadata> {
    Ok(fs_read::metadata(path)?)
}

/// Whether `path` exists (needs `filesystem.read` covering it).
///
/// # Errors
///
/// The host's refusal.
pub fn exists(path: &str) -> Result<bool> {
    Ok(fs_read::exists(path)?)
}

/// Create or replace the file at `path` with `data`.
///
/// # Errors
///
/// The host's refusal (no `filesystem.write` grant, path outside it, too large, read-only
/// policy) or [`Error::Io`](crate::Error::Io).
pub fn write(path: &str, data: impl AsRef<[u8]>) -> Result<()> {
    Ok(fs_write::write(path, data.as_ref())?)
}

/// Add `data` at the end of the file at `path`, creating it if needed.
///
/// # Errors
///
/// As [`write()`].
pub fn append(path: &str, data: impl AsRef<[u8]>) -> Result<()> {
    Ok(fs_write::append(path, data.as_ref())?)
}

/// Create the directory `path`; its parent must exist.
///
/// # Errors
///
/// As [`write()`], and when `path` already exists.
pub fn create_dir(path: &str) -> Result<()> {
    Ok(fs_write::create_dir(path, false)?)
}

/// Create the directory `path` and any missing parents; an existing directory is fine.
///
/// # Errors
///
/// As [`write()`].
pub fn create_dir_all(path: &str) -> Result<()> {
    Ok(fs_write::create_dir(path, true)?)
}

/// Remove the file or empty directory at `path`.
///
/// # Errors
///
/// As [`write()`], and when a directory is not empty.
pub fn remove(path: &str) -> Result<()> {
    Ok(fs_write::remove(path, false)?)
}

/// Remove `path` and, for a directory, everything inside it.
///
/// # Errors
///
/// As [`write()`].
pub fn remove_all(path: &str) -> Result<()> {
    Ok(fs_write::remove(path, true)?)
}

/// Move `from` to `to`, replacing a file already there; both must be in the scope.
///
/// # Errors
///
/// As [`write()`].
pub fn rename(from: &str, to: &str) -> Result<()> {
    Ok(fs_write::rename(from, to)?)
}
