//! `filesystem.read` and `filesystem.write`: files under the folders a person granted.
//!
//! A guest path goes through these steps before anything is read or written:
//!
//! 1. **Parsing.** `~` and `~/...` expand to the home folder of the person running Omni
//!    (`$HOME`); an absolute path stays as it is; a relative path names a file in the
//!    extension's own data folder (`[filesystem] extension_files`/`<extension id>`), and is
//!    refused when the host configures none. Nothing else is expanded: `$VAR`, `%VAR%` and
//!    `~user` are not variables here. Empty paths, NUL and control characters are
//!    invalid input; backslashes and percent-encoded dots or slashes are refused and
//!    audited, since paths are never URL-decoded and such a path can only be an attempt to
//!    hide a `..`.
//! 2. **Lexical normalization.** `.` is dropped and `..` removes the previous component, so
//!    `..` never reaches the operating system.
//! 3. **Choosing the granted root.** The scope's `paths` entries are expanded the same way
//!    (home for `~/`, the data folder for relative entries); the longest entry that is a
//!    component-wise prefix of the path is the root. No root: the permission engine refuses
//!    the path as out of scope.
//! 4. **Resolution beneath the root.** The backend walks the path inside the root one
//!    component at a time, following symbolic links only while they stay inside it. A link
//!    that leads out (an absolute target elsewhere, or `..` above the root) is refused and
//!    audited. The result is the real path, free of links.
//! 5. **Authorization.** The permission engine gets the real path as the target
//!    (`read /real/path`), so `[security] blocked_paths` (which win over any grant, also
//!    under a granted folder), `allowed_paths`, `read_only`, the grant and the scope
//!    (`paths`, `extensions`, `max_size`) are all checked against what will really be
//!    touched.
//! 6. **The operation**, on a capability-based directory handle of the root (cap-std), so
//!    even a link swapped in after step 4 cannot lead outside the root. Files are opened
//!    without following a final link and without blocking, and anything that is not a
//!    regular file (device, pipe, socket) is refused and audited.
//!
//! Writes are atomic: the data goes to a temporary file in the same folder, is flushed to
//! disk, and replaces the target with one rename, so a reader sees the old content or the
//! new one, never a mix. Listings are bounded and never show blocked paths.
//!
//! A folder operation touches files it does not name, which a per-file filter of the
//! `filesystem.write` scope never checks: under `extensions` a recursive removal removes
//! only an empty folder, and under `extensions` or `max_size` (the size of a moved file) a
//! folder is never renamed. Checking every file first would race with files added before
//! the operation; refusing cannot.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use omni_capabilities::{FsRoots, FsScope, Scope};
use serde::{Deserialize, Serialize};

use super::try_budget;
use crate::bindings::omni::caps::{fs_read, fs_write};
use crate::bindings::CapError;
use crate::sandbox::CallState;

/// Capability key of the reading interface.
pub const READ: &str = "filesystem.read";
/// Capability key of the writing interface.
pub const WRITE: &str = "filesystem.write";
/// Longest path accepted from a guest, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Most symbolic links followed while resolving one path (as Linux does).
pub const MAX_SYMLINK_HOPS: u32 = 40;

/// `[filesystem]` settings in `omni.toml`.
///
/// ```toml
/// [filesystem]
/// extension_files = "/var/lib/omni-files"
/// max_read_bytes = 67108864
/// max_list_entries = 10000
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FsConfig {
    /// Folder holding one data folder per extension (`<folder>/<extension id>`, created on
    /// first use), which relative scope entries and relative guest paths name. `None`:
    /// relative entries match nothing. Keep it outside Omni's own data dir, which is
    /// always blocked. Must be absolute; a relative folder is ignored.
    pub extension_files: Option<PathBuf>,
    /// Largest read (whole file or range) the host performs for one call, in bytes.
    pub max_read_bytes: u64,
    /// Most entries one `list-dir` returns; a bigger folder is refused.
    pub max_list_entries: u32,
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig { extension_files: None, max_read_bytes: 64 * 1024 * 1024, max_list_entries: 10_000 }
    }
}

/// One granted place, as a backend opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsRoot {
    /// The absolute folder the backend opens; nothing outside it may ever be reached.
    pub dir: PathBuf,
    /// The part of `dir` the grant covers, relative to it: empty when a folder was
    /// granted, the file name when a single file was granted.
    pub scope: PathBuf,
}

impl FsRoot {
    /// The root for a granted scope entry that resolved to `entry`: the entry itself when
    /// it is a folder, else its parent folder restricted to the entry's name.
    pub fn for_entry(entry: &Path) -> FsRoot {
        match (std::fs::metadata(entry), entry.parent(), entry.file_name()) {
            (Ok(m), _, _) if m.is_dir() => FsRoot { dir: entry.to_path_buf(), scope: PathBuf::new() },
            (Err(_), _, _) if entry.extension().is_none() => FsRoot { dir: entry.to_path_buf(), scope: PathBuf::new() },
            (_, Some(parent), Some(name)) => FsRoot { dir: parent.to_path_buf(), scope: PathBuf::from(name) },
            _ => FsRoot { dir: entry.to_path_buf(), scope: PathBuf::new() },
        }
    }

    /// The granted entry as an absolute path.
    pub fn entry(&self) -> PathBuf {
        join_rel(&self.dir, &self.scope)
    }
}

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// A symbolic link (only reported where links are not followed).
    Symlink,
    /// A device, pipe or socket.
    Other,
}

/// A path resolved beneath its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The path relative to [`FsRoot::dir`], with no symbolic link, `.` or `..` in it.
    pub rel: PathBuf,
    /// What is there; `None` when nothing is (yet).
    pub kind: Option<FileKind>,
    /// Its size in bytes (0 for folders and missing paths).
    pub size: u64,
}

/// Facts about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsMetadata {
    /// What it is.
    pub kind: FileKind,
    /// Size in bytes (0 for folders).
    pub size: u64,
    /// Last modification, milliseconds since the Unix epoch, when known.
    pub modified_ms: Option<u64>,
    /// Whether the host process may not write it.
    pub readonly: bool,
}

/// One entry of a folder listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsEntry {
    /// File name (lossily decoded when not UTF-8).
    pub name: String,
    /// What it is; links are not followed.
    pub kind: FileKind,
    /// Size in bytes (0 for folders).
    pub size: u64,
}

/// Why a filesystem operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    /// The path leads outside its granted root (a symbolic link out, `..` above it). The
    /// host audits it as a refusal.
    #[error("{0}")]
    Escape(String),
    /// The path is a device, pipe or socket, which the capability never opens. Audited.
    #[error("{0}")]
    NotRegular(String),
    /// A file grew past a size bound while it was read or written.
    #[error("{0}")]
    TooLarge(String),
    /// The operation makes no sense for what is there (listing a file, a folder not empty).
    #[error("{0}")]
    Invalid(String),
    /// The operating system failed the operation.
    #[error("{0}")]
    Io(String),
}

/// The file system an embedder may replace (a virtual file system, a remote store).
///
/// Every method gets the granted [`FsRoot`] and a path relative to its folder that the
/// host has normalized (no `..`, no root) and, except for [`FsBackend::resolve`], already
/// resolved and authorized. Implementations must never reach anything outside
/// `root.dir`, whatever links they meet, and must answer [`FsError::Escape`] for a path
/// that would.
pub trait FsBackend: Send + Sync {
    /// Resolves `rel` inside `root`, following symbolic links while they stay inside it
    /// (the last component only when `follow_last`). A missing tail is kept as written.
    fn resolve(&self, root: &FsRoot, rel: &Path, follow_last: bool) -> Result<Resolved, FsError>;
    /// At most `len` bytes of the regular file `rel`, from byte `offset`.
    fn read(&self, root: &FsRoot, rel: &Path, offset: u64, len: u64) -> Result<Vec<u8>, FsError>;
    /// The entries of folder `rel`, sorted by name, at most `limit` (more is an error).
    fn list(&self, root: &FsRoot, rel: &Path, limit: u32) -> Result<Vec<FsEntry>, FsError>;
    /// Kind, size and times of `rel`.
    fn metadata(&self, root: &FsRoot, rel: &Path) -> Result<FsMetadata, FsError>;
    /// Replaces (or creates) file `rel` with `data` atomically: readers see the old or the
    /// new content, never a mix, and a failure leaves the old file and no temporary file.
    fn write(&self, root: &FsRoot, rel: &Path, data: &[u8]) -> Result<(), FsError>;
    /// Appends `data` to file `rel`, creating it; refuses when the file would exceed
    /// `max_size` bytes. The check and the write must be one step for concurrent
    /// appends to the same file (the default backend holds an exclusive lock on it).
    fn append(&self, root: &FsRoot, rel: &Path, data: &[u8], max_size: Option<u64>) -> Result<(), FsError>;
    /// Creates folder `rel` (and its missing parents with `recursive`).
    fn create_dir(&self, root: &FsRoot, rel: &Path, recursive: bool) -> Result<(), FsError>;
    /// Removes file, link or empty folder `rel` (a whole tree with `recursive`, never
    /// following links inside it).
    fn remove(&self, root: &FsRoot, rel: &Path, recursive: bool) -> Result<(), FsError>;
    /// Moves `from` (in `from_root`) to `to` (in `to_root`), replacing a file there.
    fn rename(&self, from_root: &FsRoot, from: &Path, to_root: &FsRoot, to: &Path) -> Result<(), FsError>;
}

/// The default backend: the host's file system through cap-std directory handles.
#[derive(Debug, Default, Clone, Copy)]
pub struct CapStdFs;

fn io_err(what: &str, path: &Path, e: std::io::Error) -> FsError {
    FsError::Io(format!("{what} {}: {e}", path.display()))
}

fn join_rel(base: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

/// Components of a relative path as names, keeping `..` (links may contain it).
fn names(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn kind_of(t: &cap_std::fs::FileType) -> FileKind {
    if t.is_symlink() {
        FileKind::Symlink
    } else if t.is_dir() {
        FileKind::Dir
    } else if t.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    }
}

/// Flags for every file the backend opens: a final link is never followed and a pipe
/// never blocks the open.
#[cfg(unix)]
fn safe_open(mut options: OpenOptions) -> OpenOptions {
    use cap_std::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    options.custom_flags(flags.bits() as i32);
    options
}

#[cfg(not(unix))]
fn safe_open(options: OpenOptions) -> OpenOptions {
    options
}

impl CapStdFs {
    fn open_root(root: &FsRoot) -> Result<Dir, FsError> {
        Dir::open_ambient_dir(&root.dir, ambient_authority())
            .map_err(|e| io_err("cannot open the granted folder", &root.dir, e))
    }

    fn open_regular(dir: &Dir, root: &FsRoot, rel: &Path, options: OpenOptions) -> Result<cap_std::fs::File, FsError> {
        let shown = root.dir.join(rel);
        let file = dir.open_with(rel, &safe_open(options)).map_err(|e| io_err("cannot open", &shown, e))?;
        let meta = file.metadata().map_err(|e| io_err("cannot inspect", &shown, e))?;
        if !meta.is_file() {
            return Err(FsError::NotRegular(format!(
                "{} is not a regular file (a device, pipe, socket or folder); the filesystem capabilities only read and write regular files",
                shown.display()
            )));
        }
        Ok(file)
    }

    /// Flushes a folder's entries to disk (after a rename); best effort where folders
    /// cannot be synced.
    fn sync_dir(dir: &Dir) {
        if let Ok(d) = dir.try_clone() {
            let _ = d.into_std_file().sync_all();
        }
    }

    fn temp_name(name: &std::ffi::OsStr, attempt: u32) -> OsString {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(attempt);
        h.write_u32(std::process::id());
        let mut t = OsString::from(".");
        t.push(name);
        t.push(format!(".omni-{:016x}.tmp", h.finish()));
        t
    }
}

/// `: <link> is a symbolic link to <target>` for the last link a resolution followed,
/// so an escape names the link that led it there; empty when none was followed.
fn link_note(root: &Path, last_link: Option<&(PathBuf, PathBuf)>) -> String {
    last_link
        .map(|(l, t)| format!(": {} is a symbolic link to {}", root.join(l).display(), t.display()))
        .unwrap_or_default()
}

impl FsBackend for CapStdFs {
    fn resolve(&self, root: &FsRoot, rel: &Path, follow_last: bool) -> Result<Resolved, FsError> {
        let dir = Self::open_root(root)?;
        let canonical_root = std::fs::canonicalize(&root.dir).ok();
        let mut queue = names(rel);
        let mut done = PathBuf::new();
        let mut kind = Some(FileKind::Dir);
        let mut size = 0;
        let mut missing = false;
        let mut hops = 0u32;
        let mut last_link: Option<(PathBuf, PathBuf)> = None;
        while let Some(name) = queue.pop_front() {
            if name == ".." && missing {
                // Only a link's target can put `..` here (guest paths are normalized
                // first). The system fails `missing/..`, and stepping back out of the
                // missing part would leave every later part uninspected: a link behind it
                // could lead into a blocked folder unseen.
                let via = link_note(&root.dir, last_link.as_ref());
                return Err(FsError::Escape(format!(
                    "{} climbs back out of the missing {} with \"..\", which the system does not resolve{via}",
                    root.dir.join(rel).display(),
                    root.dir.join(&done).display()
                )));
            }
            if name == ".." {
                if !done.pop() {
                    let via = link_note(&root.dir, last_link.as_ref());
                    return Err(FsError::Escape(format!(
                        "the path leads above the granted folder {}{via}",
                        root.dir.display()
                    )));
                }
                if !missing {
                    kind = Some(FileKind::Dir);
                    size = 0;
                }
                continue;
            }
            let candidate = done.join(&name);
            if missing {
                done = candidate;
                continue;
            }
            let meta = match dir.symlink_metadata(&candidate) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    missing = true;
                    kind = None;
                    size = 0;
                    done = candidate;
                    continue;
                }
                Err(e) => return Err(io_err("cannot inspect", &root.dir.join(&candidate), e)),
            };
            let ft = meta.file_type();
            if ft.is_symlink() && (follow_last || !queue.is_empty()) {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(FsError::Invalid(format!(
                        "more than {MAX_SYMLINK_HOPS} symbolic links while resolving {}; is there a loop?",
                        root.dir.join(rel).display()
                    )));
                }
                let target = dir
                    .read_link_contents(&candidate)
                    .map_err(|e| io_err("cannot read the link", &root.dir.join(&candidate), e))?;
                let mut prefix = if target.has_root() {
                    let t = normalize_lexically(&target);
                    let inside = t
                        .strip_prefix(&root.dir)
                        .ok()
                        .or_else(|| canonical_root.as_deref().and_then(|c| t.strip_prefix(c).ok()))
                        .map(Path::to_path_buf);
                    match inside {
                        Some(r) => {
                            done = PathBuf::new();
                            names(&r)
                        }
                        None => {
                            return Err(FsError::Escape(format!(
                                "{} is a symbolic link to {}, outside the granted folder {}",
                                root.dir.join(&candidate).display(),
                                target.display(),
                                root.dir.display()
                            )))
                        }
                    }
                } else {
                    names(&target)
                };
                last_link = Some((candidate, target));
                while let Some(c) = prefix.pop_back() {
                    queue.push_front(c);
                }
                continue;
            }
            if !queue.is_empty() && !ft.is_dir() {
                return Err(FsError::Invalid(format!(
                    "{} is not a folder, but the path continues below it",
                    root.dir.join(&candidate).display()
                )));
            }
            kind = Some(kind_of(&ft));
            size = if ft.is_file() { meta.len() } else { 0 };
            done = candidate;
        }
        if !done.starts_with(&root.scope) {
            return Err(FsError::Escape(format!(
                "{} resolves to {}, outside the granted file {}",
                root.dir.join(rel).display(),
                root.dir.join(&done).display(),
                root.entry().display()
            )));
        }
        Ok(Resolved { rel: done, kind, size })
    }

    fn read(&self, root: &FsRoot, rel: &Path, offset: u64, len: u64) -> Result<Vec<u8>, FsError> {
        let dir = Self::open_root(root)?;
        let shown = root.dir.join(rel);
        let mut options = OpenOptions::new();
        options.read(true);
        let mut file = Self::open_regular(&dir, root, rel, options)?;
        file.seek(SeekFrom::Start(offset)).map_err(|e| io_err("cannot seek in", &shown, e))?;
        let mut buf = Vec::new();
        file.take(len).read_to_end(&mut buf).map_err(|e| io_err("cannot read", &shown, e))?;
        Ok(buf)
    }

    fn list(&self, root: &FsRoot, rel: &Path, limit: u32) -> Result<Vec<FsEntry>, FsError> {
        let dir = Self::open_root(root)?;
        let shown = root.dir.join(rel);
        let entries = if rel.as_os_str().is_empty() { dir.entries() } else { dir.read_dir(rel) }
            .map_err(|e| io_err("cannot list", &shown, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err("cannot list", &shown, e))?;
            if out.len() >= limit as usize {
                return Err(FsError::Invalid(format!(
                    "{} has more than {limit} entries, the most one listing returns ([filesystem] max_list_entries); list a subfolder",
                    shown.display()
                )));
            }
            let ft = entry.file_type().map_err(|e| io_err("cannot inspect an entry of", &shown, e))?;
            let kind = kind_of(&ft);
            let size = if kind == FileKind::File { entry.metadata().map(|m| m.len()).unwrap_or(0) } else { 0 };
            out.push(FsEntry { name: entry.file_name().to_string_lossy().into_owned(), kind, size });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn metadata(&self, root: &FsRoot, rel: &Path) -> Result<FsMetadata, FsError> {
        let dir = Self::open_root(root)?;
        let shown = root.dir.join(rel);
        let meta = if rel.as_os_str().is_empty() { dir.dir_metadata() } else { dir.symlink_metadata(rel) }
            .map_err(|e| io_err("cannot inspect", &shown, e))?;
        let kind = kind_of(&meta.file_type());
        let modified_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.into_std().duration_since(UNIX_EPOCH).ok())
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Ok(FsMetadata {
            kind,
            size: if kind == FileKind::File { meta.len() } else { 0 },
            modified_ms,
            readonly: meta.permissions().readonly(),
        })
    }

    fn write(&self, root: &FsRoot, rel: &Path, data: &[u8]) -> Result<(), FsError> {
        let root_dir = Self::open_root(root)?;
        let shown = root.dir.join(rel);
        let (parent, name) = match (rel.parent(), rel.file_name()) {
            (Some(p), Some(n)) => (p, n),
            _ => return Err(FsError::Invalid(format!("{} is a folder, not a file", shown.display()))),
        };
        let dir = if parent.as_os_str().is_empty() {
            root_dir
        } else {
            root_dir.open_dir(parent).map_err(|e| io_err("cannot open the folder of", &shown, e))?
        };
        let existing = match dir.symlink_metadata(name) {
            Ok(m) if m.is_dir() => {
                return Err(FsError::Invalid(format!("{} is a folder, not a file", shown.display())))
            }
            Ok(m) if !m.is_file() => {
                return Err(FsError::NotRegular(format!(
                    "{} is not a regular file; the filesystem capabilities only replace regular files",
                    shown.display()
                )))
            }
            Ok(m) => Some(m.permissions()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("cannot inspect", &shown, e)),
        };
        let mut attempt = 0;
        let (tmp, mut file) = loop {
            let tmp = Self::temp_name(name, attempt);
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            match dir.open_with(&tmp, &safe_open(options)) {
                Ok(f) => break (tmp, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
                Err(e) => return Err(io_err("cannot create a temporary file next to", &shown, e)),
            }
        };
        let written = (|| {
            if let Some(perms) = existing {
                file.set_permissions(perms)?;
            }
            file.write_all(data)?;
            file.sync_all()?;
            drop(file);
            dir.rename(&tmp, &dir, name)
        })();
        if let Err(e) = written {
            let _ = dir.remove_file(&tmp);
            return Err(io_err("cannot write", &shown, e));
        }
        Self::sync_dir(&dir);
        Ok(())
    }

    fn append(&self, root: &FsRoot, rel: &Path, data: &[u8], max_size: Option<u64>) -> Result<(), FsError> {
        let dir = Self::open_root(root)?;
        let shown = root.dir.join(rel);
        let mut options = OpenOptions::new();
        options.append(true).create(true);
        let mut file = Self::open_regular(&dir, root, rel, options)?;
        // The size check and the write are one step for every append through the host:
        // without the lock, concurrent calls could each see room and together pass
        // `max_size`. Released when the file closes.
        #[cfg(unix)]
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err("cannot lock", &shown, e.into()))?;
        let len = file.metadata().map_err(|e| io_err("cannot inspect", &shown, e))?.len();
        if let Some(max) = max_size {
            if len.saturating_add(data.len() as u64) > max {
                return Err(FsError::TooLarge(format!(
                    "appending {} bytes would make {} {} bytes long, more than the {max} bytes the scope allows (max_size)",
                    data.len(),
                    shown.display(),
                    len.saturating_add(data.len() as u64)
                )));
            }
        }
        file.write_all(data).map_err(|e| io_err("cannot append to", &shown, e))?;
        file.sync_all().map_err(|e| io_err("cannot flush", &shown, e))
    }

    fn create_dir(&self, root: &FsRoot, rel: &Path, recursive: bool) -> Result<(), FsError> {
        let dir = Self::open_root(root)?;
        let shown = root.dir.join(rel);
        if rel.as_os_str().is_empty() {
            return if recursive {
                Ok(())
            } else {
                Err(FsError::Invalid(format!("{} already exists", shown.display())))
            };
        }
        let made = if recursive { dir.create_dir_all(rel) } else { dir.create_dir(rel) };
        made.map_err(|e| io_err("cannot create the folder", &shown, e))
    }

    fn remove(&self, root: &FsRoot, rel: &Path, recursive: bool) -> Result<(), FsError> {
        let dir = Self::open_root(root)?;
        let shown = root.dir.join(rel);
        if rel.as_os_str().is_empty() {
            return Err(FsError::Invalid(format!(
                "{} is the granted folder itself, which the capability does not remove",
                shown.display()
            )));
        }
        let meta = dir.symlink_metadata(rel).map_err(|e| io_err("cannot inspect", &shown, e))?;
        let removed = if meta.is_dir() {
            if recursive {
                dir.remove_dir_all(rel)
            } else {
                dir.remove_dir(rel)
            }
        } else {
            dir.remove_file(rel)
        };
        removed.map_err(|e| io_err("cannot remove", &shown, e))
    }

    fn rename(&self, from_root: &FsRoot, from: &Path, to_root: &FsRoot, to: &Path) -> Result<(), FsError> {
        let a = Self::open_root(from_root)?;
        let b = Self::open_root(to_root)?;
        let shown = from_root.dir.join(from);
        if from.as_os_str().is_empty() || to.as_os_str().is_empty() {
            return Err(FsError::Invalid(format!(
                "renaming {} to {} would move a granted folder itself",
                shown.display(),
                to_root.dir.join(to).display()
            )));
        }
        a.rename(from, &b, to).map_err(|e| io_err("cannot rename", &shown, e))?;
        Self::sync_dir(&b);
        Ok(())
    }
}

/// Resolves `.` and `..` without touching the disk; `..` never climbs above the root.
pub fn normalize_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if out.parent().is_some() {
                    out.pop();
                }
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Why a guest path was not accepted as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathProblem {
    /// Malformed: the guest gets `invalid-input`.
    Invalid(String),
    /// A disguised traversal: refused as `out-of-scope` and audited.
    Suspicious(String),
}

/// Sequences that decode to `.`, `/` or `\` under URL decoding (also the overlong UTF-8
/// forms), or a `%` that would start a second decoding round.
const ENCODED_TRICKS: &[&str] = &["%2e", "%2f", "%5c", "%25", "%c0%ae", "%c0%af", "%c1%9c", "%e0%80%ae", "%u002e"];

/// Turns a guest path into an absolute, lexically normalized host path.
///
/// `home` expands `~` and `~/...`; `data` (the extension's data folder) anchors relative
/// paths.
///
/// ```
/// use omni_host::caps::fs::{parse_guest_path, PathProblem};
/// use std::path::Path;
/// let home = Some(Path::new("/home/ada"));
/// assert_eq!(parse_guest_path("~/notes/../a.md", home, None).unwrap(), Path::new("/home/ada/a.md"));
/// assert!(matches!(parse_guest_path("/srv/%2e%2e/etc", home, None), Err(PathProblem::Suspicious(_))));
/// assert!(matches!(parse_guest_path("notes.md", home, None), Err(PathProblem::Invalid(_))));
/// ```
pub fn parse_guest_path(input: &str, home: Option<&Path>, data: Option<&Path>) -> Result<PathBuf, PathProblem> {
    let shown: String = input.chars().take(120).collect();
    if input.is_empty() {
        return Err(PathProblem::Invalid("the path is empty; write an absolute path or one starting with ~/".into()));
    }
    if input.len() > MAX_PATH_BYTES {
        return Err(PathProblem::Invalid(format!("the path is longer than {MAX_PATH_BYTES} bytes")));
    }
    if input.chars().any(char::is_control) {
        return Err(PathProblem::Invalid(format!("the path {shown:?} contains NUL or control characters")));
    }
    if input.contains('\\') {
        return Err(PathProblem::Suspicious(format!(
            "the path {shown:?} contains a backslash, which is not a separator on this host; such a path is refused so that \"..\\\" cannot hide a traversal"
        )));
    }
    let lower = input.to_ascii_lowercase();
    if ENCODED_TRICKS.iter().any(|t| lower.contains(t)) {
        return Err(PathProblem::Suspicious(format!(
            "the path {shown:?} contains a percent-encoded dot, slash or percent sign; paths are never URL-decoded, write the plain path"
        )));
    }
    let absolute = if input == "~" || input.starts_with("~/") {
        let Some(home) = home else {
            return Err(PathProblem::Invalid(
                "the path starts with ~ but this host has no home folder ($HOME); write an absolute path".into(),
            ));
        };
        join_rel(home, Path::new(input.trim_start_matches('~').trim_start_matches('/')))
    } else if input.starts_with('~') {
        return Err(PathProblem::Invalid(format!(
            "the path {shown:?} names another user's home; only ~/... (the home of the person running Omni) is supported"
        )));
    } else if Path::new(input).has_root() {
        PathBuf::from(input)
    } else {
        let Some(data) = data else {
            return Err(PathProblem::Invalid(format!(
                "the path {shown:?} is relative, and relative paths name files in the extension's data folder, which this host does not configure ([filesystem] extension_files); write an absolute path or one starting with ~/"
            )));
        };
        data.join(input)
    };
    Ok(normalize_lexically(&absolute))
}

/// What a path-taking operation needs once the path is resolved.
struct Located {
    root: FsRoot,
    resolved: Resolved,
    /// `root.dir` joined with the resolved relative path: what the policy checks.
    real: PathBuf,
}

/// Folders a relative scope entry or guest path is resolved against.
#[derive(Clone)]
struct Anchors {
    home: Option<PathBuf>,
    data: Option<PathBuf>,
}

impl Anchors {
    fn roots(&self) -> FsRoots<'_> {
        FsRoots { home: self.home.as_deref(), data: self.data.as_deref() }
    }
}

/// How a path is checked against the scope.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    /// A file: folders, extension allow-list and (when given) size.
    File(Option<u64>),
    /// A folder, or a path whose content is not touched: folders only.
    Location,
}

fn scope_check(anchors: Anchors, real: PathBuf, check: Check) -> impl Fn(&Scope) -> Result<(), String> + Send + Sync {
    move |scope: &Scope| {
        let Some(fs) = scope.as_fs() else {
            return Err("the grant has no filesystem scope".into());
        };
        let roots = anchors.roots();
        match check {
            Check::File(size) => {
                fs.check_path_in(&real, &roots)?;
                size.map_or(Ok(()), |s| fs.check_size(s))
            }
            Check::Location => fs.check_dir_in(&real, &roots),
        }
    }
}

fn fs_error(e: FsError) -> CapError {
    match e {
        FsError::Escape(m) | FsError::NotRegular(m) => CapError::OutOfScope(m),
        FsError::TooLarge(m) => CapError::OutOfScope(m),
        FsError::Invalid(m) => CapError::InvalidInput(m),
        FsError::Io(m) => CapError::Io(m),
    }
}

fn wit_kind(k: FileKind) -> fs_read::EntryKind {
    match k {
        FileKind::File => fs_read::EntryKind::File,
        FileKind::Dir => fs_read::EntryKind::Directory,
        FileKind::Symlink => fs_read::EntryKind::Symlink,
        FileKind::Other => fs_read::EntryKind::Other,
    }
}

impl CallState {
    fn fs_anchors(&self) -> Anchors {
        Anchors {
            home: crate::policy::home_dir(),
            // A relative folder would make every check depend on the host's working
            // directory; such a setting names no data folder at all.
            data: self
                .host
                .config
                .filesystem
                .extension_files
                .as_ref()
                .filter(|d| d.is_absolute())
                .map(|d| d.join(&self.ext.id)),
        }
    }

    /// The manifest's scope for `capability`: the granted scope is the declared one.
    fn fs_scope(&self, capability: &str) -> Option<FsScope> {
        self.ext.manifest.permission(capability).and_then(|p| p.scope.as_fs().cloned())
    }

    /// Runs a blocking backend operation off the async executor.
    fn fs_blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn FsBackend) -> Result<T, FsError> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, FsError>> + Send + 'static {
        let backend = self.host.fs.clone();
        async move {
            match tokio::task::spawn_blocking(move || op(backend.as_ref())).await {
                Ok(r) => r,
                Err(e) => Err(FsError::Io(format!("the filesystem task failed: {e}"))),
            }
        }
    }

    /// Parses, picks the root and resolves `path` beneath it (steps 1 to 4 of the module
    /// documentation). Refusals that are about where the path leads are audited.
    async fn fs_locate(
        &mut self,
        capability: &'static str,
        op: &str,
        path: &str,
        follow_last: bool,
    ) -> Result<(Located, Anchors), CapError> {
        let anchors = self.fs_anchors();
        let lexical = match parse_guest_path(path, anchors.home.as_deref(), anchors.data.as_deref()) {
            Ok(p) => p,
            Err(PathProblem::Invalid(m)) => return Err(CapError::InvalidInput(m)),
            Err(PathProblem::Suspicious(reason)) => {
                let shown: String = path.chars().take(200).collect();
                return Err(self.refuse(capability, &format!("{op} {shown}"), reason).await);
            }
        };
        let target = format!("{op} {}", lexical.display());
        let entries: Vec<PathBuf> = self
            .fs_scope(capability)
            .map(|s| s.paths.iter().filter_map(|p| p.resolve(&anchors.roots())).collect())
            .unwrap_or_default();
        let best = entries.iter().filter(|e| lexical.starts_with(e)).max_by_key(|e| e.components().count()).cloned();
        let Some(entry) = best else {
            // Outside every granted entry: let the permission engine say so (and audit it).
            let check = scope_check(anchors.clone(), lexical.clone(), Check::Location);
            self.authorize(capability, &target, &check).await?;
            return Err(self
                .refuse(
                    capability,
                    &target,
                    format!("{} is outside every folder granted to this extension", lexical.display()),
                )
                .await);
        };
        if let Some(data) = &anchors.data {
            if entry.starts_with(data) && !entry.exists() && entry.extension().is_none() {
                // The extension's own data folders are made on first use.
                let _ = std::fs::create_dir_all(&entry);
            }
        }
        let root = FsRoot::for_entry(&entry);
        let rel = match lexical.strip_prefix(&root.dir) {
            Ok(r) => r.to_path_buf(),
            Err(_) => {
                return Err(self
                    .refuse(capability, &target, format!("{} is outside {}", lexical.display(), root.dir.display()))
                    .await)
            }
        };
        let r = root.clone();
        let resolved = match self.fs_blocking(move |b| b.resolve(&r, &rel, follow_last)).await {
            Ok(res) => res,
            Err(e @ (FsError::Escape(_) | FsError::NotRegular(_))) => {
                return Err(self.refuse(capability, &target, e.to_string()).await)
            }
            Err(e) => return Err(fs_error(e)),
        };
        let real = join_rel(&root.dir, &resolved.rel);
        if !real.starts_with(root.entry()) {
            let reason = format!(
                "{} resolves to {}, outside the granted {}",
                lexical.display(),
                real.display(),
                root.entry().display()
            );
            return Err(self.refuse(capability, &target, reason).await);
        }
        Ok((Located { root, resolved, real }, anchors))
    }

    /// Locates, refuses devices where a file is needed, then authorizes the real path.
    async fn fs_authorized(
        &mut self,
        capability: &'static str,
        op: &str,
        path: &str,
        follow_last: bool,
        check: Check,
    ) -> Result<Located, CapError> {
        let (loc, anchors) = self.fs_locate(capability, op, path, follow_last).await?;
        let target = format!("{op} {}", loc.real.display());
        if loc.resolved.kind == Some(FileKind::Other) {
            let reason = format!(
                "{} is a device, pipe or socket; the filesystem capabilities only touch regular files and folders",
                loc.real.display()
            );
            return Err(self.refuse(capability, &target, reason).await);
        }
        let check = scope_check(anchors, loc.real.clone(), check);
        self.authorize(capability, &target, &check).await?;
        Ok(loc)
    }

    /// Refuses an operation on a folder that holds a blocked path (removing or moving it
    /// would reach the blocked path without naming it).
    async fn fs_refuse_blocked_inside(
        &mut self,
        capability: &'static str,
        op: &str,
        real: &Path,
    ) -> Result<(), CapError> {
        let host = self.host.clone();
        let blocked = host.policy.blocked_paths();
        if let Some(b) = blocked.iter().find(|b| b.starts_with(real) && b.as_path() != real) {
            let reason = format!(
                "{} holds the blocked path {} ([security] blocked_paths and the built-in list); it cannot be removed or moved as a whole",
                real.display(),
                b.display()
            );
            return Err(self.refuse(capability, &format!("{op} {}", real.display()), reason).await);
        }
        Ok(())
    }

    async fn fs_read_bytes(&mut self, op: &str, path: String, range: Option<(u64, u32)>) -> Result<Vec<u8>, CapError> {
        let (loc, anchors) = self.fs_locate(READ, op, &path, true).await?;
        let target = format!("{op} {}", loc.real.display());
        match loc.resolved.kind {
            Some(FileKind::File) => {}
            Some(FileKind::Dir) => {
                return Err(CapError::InvalidInput(format!("{} is a folder; use list-dir", loc.real.display())))
            }
            Some(_) => {
                let reason = format!(
                    "{} is a device, pipe or socket; the filesystem capabilities only read regular files",
                    loc.real.display()
                );
                return Err(self.refuse(READ, &target, reason).await);
            }
            None => return Err(CapError::Io(format!("{} does not exist", loc.real.display()))),
        }
        let size = loc.resolved.size;
        let check = scope_check(anchors.clone(), loc.real.clone(), Check::File(Some(size)));
        self.authorize(READ, &target, &check).await?;
        let host_max = self.host.config.filesystem.max_read_bytes;
        let scope_max = self.fs_scope(READ).and_then(|s| s.max_size).unwrap_or(u64::MAX);
        let (offset, len) = match range {
            Some((offset, length)) => (offset, u64::from(length).min(host_max)),
            None => {
                if size > host_max {
                    return Err(CapError::InvalidInput(format!(
                        "{} is {size} bytes, more than the {host_max} bytes one read returns ([filesystem] max_read_bytes); use read-range",
                        loc.real.display()
                    )));
                }
                // One byte more than allowed shows a file that grew since it was checked.
                (0, host_max.min(scope_max).saturating_add(1))
            }
        };
        let root = loc.root.clone();
        let rel = loc.resolved.rel.clone();
        let data = match self.fs_blocking(move |b| b.read(&root, &rel, offset, len)).await {
            Ok(d) => d,
            Err(e @ FsError::NotRegular(_)) => return Err(self.refuse(READ, &target, e.to_string()).await),
            Err(e) => return Err(fs_error(e)),
        };
        if range.is_none() && data.len() as u64 > host_max.min(scope_max) {
            return Err(CapError::OutOfScope(format!(
                "{} grew past the size allowed while it was read ({} bytes)",
                loc.real.display(),
                host_max.min(scope_max)
            )));
        }
        Ok(data)
    }
}

impl fs_read::Host for CallState {
    async fn read(&mut self, path: String) -> wasmtime::Result<Result<Vec<u8>, CapError>> {
        try_budget!(self, path.len());
        Ok(self.fs_read_bytes("read", path, None).await)
    }

    async fn read_text(&mut self, path: String) -> wasmtime::Result<Result<String, CapError>> {
        try_budget!(self, path.len());
        Ok(self.fs_read_bytes("read", path.clone(), None).await.and_then(|bytes| {
            String::from_utf8(bytes).map_err(|e| {
                CapError::InvalidInput(format!(
                    "{path} is not valid UTF-8 (first bad byte at offset {}); use read for binary files",
                    e.utf8_error().valid_up_to()
                ))
            })
        }))
    }

    async fn read_range(
        &mut self,
        path: String,
        offset: u64,
        length: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, CapError>> {
        try_budget!(self, path.len());
        Ok(self.fs_read_bytes("read", path, Some((offset, length))).await)
    }

    async fn list_dir(&mut self, path: String) -> wasmtime::Result<Result<Vec<fs_read::DirEntry>, CapError>> {
        try_budget!(self, path.len());
        Ok(self.fs_list(path).await)
    }

    async fn metadata(&mut self, path: String) -> wasmtime::Result<Result<fs_read::FileMetadata, CapError>> {
        try_budget!(self, path.len());
        Ok(self.fs_metadata(path).await)
    }

    async fn exists(&mut self, path: String) -> wasmtime::Result<Result<bool, CapError>> {
        try_budget!(self, path.len());
        let loc = match self.fs_authorized(READ, "exists", &path, true, Check::Location).await {
            Ok(loc) => loc,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(loc.resolved.kind.is_some()))
    }
}

impl CallState {
    async fn fs_list(&mut self, path: String) -> Result<Vec<fs_read::DirEntry>, CapError> {
        let loc = self.fs_authorized(READ, "list", &path, true, Check::Location).await?;
        match loc.resolved.kind {
            Some(FileKind::Dir) => {}
            Some(_) => {
                return Err(CapError::InvalidInput(format!(
                    "{} is not a folder; use read or metadata",
                    loc.real.display()
                )))
            }
            None => return Err(CapError::Io(format!("{} does not exist", loc.real.display()))),
        }
        let limit = self.host.config.filesystem.max_list_entries;
        let (root, rel) = (loc.root.clone(), loc.resolved.rel.clone());
        let entries = self.fs_blocking(move |b| b.list(&root, &rel, limit)).await.map_err(fs_error)?;
        let host = self.host.clone();
        let blocked = host.policy.blocked_paths();
        Ok(entries
            .into_iter()
            .filter(|e| {
                let p = loc.real.join(&e.name);
                // A single-file grant shows only that file.
                p.starts_with(loc.root.entry()) && !blocked.iter().any(|b| p.starts_with(b))
            })
            .map(|e| fs_read::DirEntry { name: e.name, kind: wit_kind(e.kind), size: e.size })
            .collect())
    }

    async fn fs_metadata(&mut self, path: String) -> Result<fs_read::FileMetadata, CapError> {
        let loc = self.fs_authorized(READ, "metadata", &path, true, Check::Location).await?;
        if loc.resolved.kind.is_none() {
            return Err(CapError::Io(format!("{} does not exist", loc.real.display())));
        }
        let (root, rel) = (loc.root.clone(), loc.resolved.rel.clone());
        let m = self.fs_blocking(move |b| b.metadata(&root, &rel)).await.map_err(fs_error)?;
        Ok(fs_read::FileMetadata {
            kind: wit_kind(m.kind),
            size: m.size,
            modified_ms: m.modified_ms,
            readonly: m.readonly,
        })
    }

    async fn fs_write_data(&mut self, path: String, data: Vec<u8>, append: bool) -> Result<(), CapError> {
        let op = if append { "append" } else { "write" };
        let (loc, anchors) = self.fs_locate(WRITE, op, &path, true).await?;
        let target = format!("{op} {}", loc.real.display());
        let final_size = match loc.resolved.kind {
            None => data.len() as u64,
            Some(FileKind::File) if append => loc.resolved.size.saturating_add(data.len() as u64),
            Some(FileKind::File) => data.len() as u64,
            Some(FileKind::Dir) => {
                return Err(CapError::InvalidInput(format!("{} is a folder, not a file", loc.real.display())))
            }
            Some(_) => {
                let reason = format!(
                    "{} is a device, pipe or socket; the filesystem capabilities only write regular files",
                    loc.real.display()
                );
                return Err(self.refuse(WRITE, &target, reason).await);
            }
        };
        let check = scope_check(anchors, loc.real.clone(), Check::File(Some(final_size)));
        self.authorize(WRITE, &target, &check).await?;
        let max = self.fs_scope(WRITE).and_then(|s| s.max_size);
        let (root, rel) = (loc.root.clone(), loc.resolved.rel.clone());
        let done = self
            .fs_blocking(move |b| if append { b.append(&root, &rel, &data, max) } else { b.write(&root, &rel, &data) })
            .await;
        match done {
            Ok(()) => Ok(()),
            Err(e @ FsError::NotRegular(_)) => Err(self.refuse(WRITE, &target, e.to_string()).await),
            Err(e) => Err(fs_error(e)),
        }
    }

    async fn fs_create_dir(&mut self, path: String, recursive: bool) -> Result<(), CapError> {
        let loc = self.fs_authorized(WRITE, "create-dir", &path, true, Check::Location).await?;
        match loc.resolved.kind {
            Some(FileKind::Dir) if recursive => return Ok(()),
            Some(_) => return Err(CapError::Io(format!("{} already exists", loc.real.display()))),
            None => {}
        }
        let (root, rel) = (loc.root.clone(), loc.resolved.rel.clone());
        self.fs_blocking(move |b| b.create_dir(&root, &rel, recursive)).await.map_err(fs_error)
    }

    async fn fs_remove(&mut self, path: String, recursive: bool) -> Result<(), CapError> {
        let (loc, anchors) = self.fs_locate(WRITE, "remove", &path, false).await?;
        let check = match loc.resolved.kind {
            None => return Err(CapError::Io(format!("{} does not exist", loc.real.display()))),
            Some(FileKind::File) => Check::File(None),
            Some(_) => Check::Location,
        };
        let target = format!("remove {}", loc.real.display());
        let check = scope_check(anchors, loc.real.clone(), check);
        self.authorize(WRITE, &target, &check).await?;
        let mut recursive = recursive;
        if loc.resolved.kind == Some(FileKind::Dir) {
            self.fs_refuse_blocked_inside(WRITE, "remove", &loc.real).await?;
            if recursive && self.fs_scope(WRITE).is_some_and(|s| s.extensions.is_some()) {
                // The filter names the files this extension may touch; a recursive removal
                // would delete files it never checked. An empty folder may still go, and
                // removing it non-recursively lets the operating system refuse one that
                // filled up since it was looked at.
                let (root, rel) = (loc.root.clone(), loc.resolved.rel.clone());
                if self.fs_blocking(move |b| b.list(&root, &rel, 0)).await.is_err() {
                    let reason = format!(
                        "{} is a folder that is not empty, and this extension's filesystem.write scope only allows some file extensions, which a recursive removal would not check; remove the files one by one",
                        loc.real.display()
                    );
                    return Err(self.refuse(WRITE, &target, reason).await);
                }
                recursive = false;
            }
        }
        let (root, rel) = (loc.root.clone(), loc.resolved.rel.clone());
        self.fs_blocking(move |b| b.remove(&root, &rel, recursive)).await.map_err(fs_error)
    }

    async fn fs_rename(&mut self, source: String, destination: String) -> Result<(), CapError> {
        let (from, anchors) = self.fs_locate(WRITE, "rename-from", &source, false).await?;
        let check = match from.resolved.kind {
            None => return Err(CapError::Io(format!("{} does not exist", from.real.display()))),
            Some(FileKind::File) => Check::File(Some(from.resolved.size)),
            Some(_) => Check::Location,
        };
        let from_target = format!("rename-from {}", from.real.display());
        self.authorize(WRITE, &from_target, &scope_check(anchors.clone(), from.real.clone(), check)).await?;
        if from.resolved.kind == Some(FileKind::Dir) {
            self.fs_refuse_blocked_inside(WRITE, "rename-from", &from.real).await?;
            if self.fs_scope(WRITE).is_some_and(|s| s.extensions.is_some() || s.max_size.is_some()) {
                // Moving a folder moves every file in it, none of them checked against the
                // per-file filter; refused outright, as a check then a move would race
                // with files added in between.
                let reason = format!(
                    "{} is a folder, and this extension's filesystem.write scope limits file extensions or sizes, which moving a whole folder would not check; move the files one by one",
                    from.real.display()
                );
                return Err(self.refuse(WRITE, &from_target, reason).await);
            }
        }
        let (to, _) = self.fs_locate(WRITE, "rename-to", &destination, false).await?;
        let check = match (from.resolved.kind, to.resolved.kind) {
            (_, Some(FileKind::Dir)) => {
                return Err(CapError::InvalidInput(format!(
                    "{} is a folder; name the new path itself",
                    to.real.display()
                )))
            }
            (Some(FileKind::File), _) => Check::File(Some(from.resolved.size)),
            _ => Check::Location,
        };
        let to_target = format!("rename-to {}", to.real.display());
        self.authorize(WRITE, &to_target, &scope_check(anchors, to.real.clone(), check)).await?;
        let (fr, fp, tr, tp) = (from.root.clone(), from.resolved.rel.clone(), to.root.clone(), to.resolved.rel.clone());
        self.fs_blocking(move |b| b.rename(&fr, &fp, &tr, &tp)).await.map_err(fs_error)
    }

    /// Resolves a working folder for `process.spawn` like a filesystem path, and
    /// authorizes it under the extension's `filesystem.read` (or else
    /// `filesystem.write`) grant: a program may only start inside a folder the extension
    /// could read or write anyway.
    pub(crate) async fn fs_working_dir(
        &mut self,
        spawn_capability: &'static str,
        path: &str,
    ) -> Result<PathBuf, CapError> {
        let anchors = self.fs_anchors();
        let lexical = parse_guest_path(path, anchors.home.as_deref(), anchors.data.as_deref());
        let (by_read, by_write) = {
            let covers = |cap: &str| match (&lexical, self.fs_scope(cap)) {
                (Ok(l), Some(s)) => {
                    s.paths.iter().filter_map(|p| p.resolve(&anchors.roots())).any(|e| l.starts_with(e))
                }
                _ => false,
            };
            (covers(READ), covers(WRITE))
        };
        let capability = if by_read {
            READ
        } else if by_write {
            WRITE
        } else {
            let shown: String = path.chars().take(200).collect();
            let reason = format!(
                "the working folder {shown} is not inside a folder this extension may read or write; grant filesystem.read on it, or leave working-dir unset"
            );
            return Err(self.refuse(spawn_capability, &format!("cwd {shown}"), reason).await);
        };
        let loc = self.fs_authorized(capability, "cwd", path, true, Check::Location).await?;
        match loc.resolved.kind {
            Some(FileKind::Dir) => Ok(loc.real),
            _ => Err(CapError::InvalidInput(format!(
                "the working folder {} is not an existing folder",
                loc.real.display()
            ))),
        }
    }
}

impl fs_write::Host for CallState {
    async fn write(&mut self, path: String, data: Vec<u8>) -> wasmtime::Result<Result<(), CapError>> {
        try_budget!(self, path.len() + data.len());
        Ok(self.fs_write_data(path, data, false).await)
    }

    async fn append(&mut self, path: String, data: Vec<u8>) -> wasmtime::Result<Result<(), CapError>> {
        try_budget!(self, path.len() + data.len());
        Ok(self.fs_write_data(path, data, true).await)
    }

    async fn create_dir(&mut self, path: String, recursive: bool) -> wasmtime::Result<Result<(), CapError>> {
        try_budget!(self, path.len());
        Ok(self.fs_create_dir(path, recursive).await)
    }

    async fn remove(&mut self, path: String, recursive: bool) -> wasmtime::Result<Result<(), CapError>> {
        try_budget!(self, path.len());
        Ok(self.fs_remove(path, recursive).await)
    }

    async fn rename(&mut self, source: String, destination: String) -> wasmtime::Result<Result<(), CapError>> {
        try_budget!(self, source.len() + destination.len());
        Ok(self.fs_rename(source, destination).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(dir: &Path) -> FsRoot {
        FsRoot { dir: dir.to_path_buf(), scope: PathBuf::new() }
    }

    #[test]
    fn guest_paths_parse_expand_and_normalize() {
        let home = Some(Path::new("/home/ada"));
        let data = Some(Path::new("/srv/files/ext"));
        assert_eq!(parse_guest_path("~", home, None), Ok(PathBuf::from("/home/ada")));
        assert_eq!(parse_guest_path("~/a/./b/../c", home, None), Ok(PathBuf::from("/home/ada/a/c")));
        assert_eq!(parse_guest_path("/srv/x/../../etc/passwd", home, None), Ok(PathBuf::from("/etc/passwd")));
        assert_eq!(parse_guest_path("/../../..", home, None), Ok(PathBuf::from("/")));
        assert_eq!(parse_guest_path("notes/a.md", home, data), Ok(PathBuf::from("/srv/files/ext/notes/a.md")));
        assert_eq!(parse_guest_path("$HOME/x", home, data), Ok(PathBuf::from("/srv/files/ext/$HOME/x")));
        for bad in ["", "a\0b", "a\nb", "~root/x", "relative"] {
            assert!(matches!(parse_guest_path(bad, home, None), Err(PathProblem::Invalid(_))), "{bad:?}");
        }
        for sneaky in ["/srv/%2e%2e/etc", "/srv/..%2Fetc", "/srv/..\\..\\etc", "/srv/%252e%252e/", "/srv/%c0%ae%c0%ae/"]
        {
            assert!(matches!(parse_guest_path(sneaky, home, None), Err(PathProblem::Suspicious(_))), "{sneaky:?}");
        }
        assert!(parse_guest_path(&"/a".repeat(3000), home, None).is_err());
    }

    #[test]
    fn resolution_follows_links_inside_and_refuses_links_out() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let r = root(dir.path());
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.txt"), "a").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink("sub/a.txt", dir.path().join("rel-link")).unwrap();
            symlink(dir.path().join("sub"), dir.path().join("abs-link")).unwrap();
            symlink(outside.path().join("secret.txt"), dir.path().join("out")).unwrap();
            symlink("../../", dir.path().join("sub/up")).unwrap();
            symlink(outside.path(), dir.path().join("outdir")).unwrap();
            symlink("loop", dir.path().join("loop")).unwrap();
            let fs = CapStdFs;
            let got = fs.resolve(&r, Path::new("rel-link"), true).unwrap();
            assert_eq!((got.rel, got.kind, got.size), (PathBuf::from("sub/a.txt"), Some(FileKind::File), 1));
            assert_eq!(fs.resolve(&r, Path::new("abs-link/a.txt"), true).unwrap().rel, PathBuf::from("sub/a.txt"));
            assert_eq!(fs.resolve(&r, Path::new("rel-link"), false).unwrap().kind, Some(FileKind::Symlink));
            assert!(matches!(fs.resolve(&r, Path::new("out"), true), Err(FsError::Escape(_))));
            assert!(matches!(fs.resolve(&r, Path::new("outdir/secret.txt"), true), Err(FsError::Escape(_))));
            assert!(matches!(fs.resolve(&r, Path::new("outdir/new.txt"), true), Err(FsError::Escape(_))));
            assert!(matches!(fs.resolve(&r, Path::new("sub/up/etc"), true), Err(FsError::Escape(_))));
            assert!(matches!(fs.resolve(&r, Path::new("loop"), true), Err(FsError::Invalid(_))));
            // The link itself may be removed or renamed without following it.
            assert_eq!(fs.resolve(&r, Path::new("out"), false).unwrap().kind, Some(FileKind::Symlink));
        }
        #[cfg(unix)]
        {
            // A link that steps into a missing folder and back out with `..` once left
            // the rest of the path uninspected (`dodge/a.txt` came back as `abs-link/a.txt`,
            // `abs-link` never followed).
            std::os::unix::fs::symlink("nothere/../abs-link", dir.path().join("dodge")).unwrap();
            let got = CapStdFs.resolve(&r, Path::new("dodge/a.txt"), true);
            assert!(matches!(got, Err(FsError::Escape(_))), "{got:?}");
        }
        let missing = CapStdFs.resolve(&r, Path::new("sub/new/deeper.txt"), true).unwrap();
        assert_eq!((missing.rel, missing.kind), (PathBuf::from("sub/new/deeper.txt"), None));
        assert!(matches!(CapStdFs.resolve(&r, Path::new("sub/a.txt/x"), true), Err(FsError::Invalid(_))));
    }

    /// Appends that each checked the length and then wrote could, run at once, pass
    /// `max_size` together.
    #[test]
    fn concurrent_appends_never_pass_max_size() {
        let dir = tempfile::tempdir().unwrap();
        let r = root(dir.path());
        let (threads, chunk, max) = (8, 10usize, 40u64);
        for round in 0..100 {
            let name = PathBuf::from(format!("log-{round}.txt"));
            let start = std::sync::Arc::new(std::sync::Barrier::new(threads));
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let (r, name, start) = (r.clone(), name.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        CapStdFs.append(&r, &name, &vec![b'x'; chunk], Some(max)).is_ok()
                    })
                })
                .collect();
            let appended = workers.into_iter().map(|w| w.join()).filter(|r| matches!(r, Ok(true))).count();
            let len = std::fs::metadata(dir.path().join(&name)).unwrap().len();
            assert!(len <= max, "round {round}: {appended} appends of {chunk} bytes made {len} bytes, past {max}");
            assert_eq!(len, (appended * chunk) as u64);
        }
    }

    #[test]
    fn a_granted_file_is_the_only_thing_its_root_reaches() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("one.md"), "1").unwrap();
        std::fs::write(dir.path().join("two.md"), "2").unwrap();
        let r = FsRoot::for_entry(&dir.path().join("one.md"));
        assert_eq!(r.scope, PathBuf::from("one.md"));
        assert!(CapStdFs.resolve(&r, Path::new("one.md"), true).is_ok());
        assert!(matches!(CapStdFs.resolve(&r, Path::new("two.md"), true), Err(FsError::Escape(_))));
    }

    #[test]
    fn writes_are_atomic_keep_permissions_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let r = root(dir.path());
        let fs = CapStdFs;
        fs.write(&r, Path::new("f.txt"), b"old").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path().join("f.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
        }
        fs.write(&r, Path::new("f.txt"), b"new content").unwrap();
        assert_eq!(std::fs::read(dir.path().join("f.txt")).unwrap(), b"new content");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("f.txt")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o640);
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![OsString::from("f.txt")]);
        assert!(matches!(fs.write(&r, Path::new("missing/f.txt"), b"x"), Err(FsError::Io(_))));
        fs.append(&r, Path::new("f.txt"), b"!", Some(12)).unwrap();
        assert!(matches!(fs.append(&r, Path::new("f.txt"), b"!", Some(12)), Err(FsError::TooLarge(_))));
        assert_eq!(fs.read(&r, Path::new("f.txt"), 4, 3).unwrap(), b"con");
        assert_eq!(fs.read(&r, Path::new("f.txt"), 100, 3).unwrap(), b"");
    }

    #[test]
    fn listing_is_sorted_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let r = root(dir.path());
        for n in ["b", "a", "c"] {
            std::fs::write(dir.path().join(n), n).unwrap();
        }
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let names: Vec<_> =
            CapStdFs.list(&r, Path::new(""), 10).unwrap().into_iter().map(|e| (e.name, e.kind)).collect();
        assert_eq!(
            names,
            [
                ("a".into(), FileKind::File),
                ("b".into(), FileKind::File),
                ("c".into(), FileKind::File),
                ("d".into(), FileKind::Dir)
            ]
        );
        assert!(matches!(CapStdFs.list(&r, Path::new(""), 3), Err(FsError::Invalid(_))));
    }

    #[cfg(unix)]
    #[test]
    fn devices_are_not_regular_files() {
        let r = root(Path::new("/dev"));
        assert_eq!(CapStdFs.resolve(&r, Path::new("null"), true).unwrap().kind, Some(FileKind::Other));
        assert!(matches!(CapStdFs.read(&r, Path::new("zero"), 0, 10), Err(FsError::NotRegular(_))));
    }
}
