//! Files: read, write and list text files in one folder the person granted
//! (capabilities `filesystem.read` and `filesystem.write`).
//!
//! The host resolves every path (`~`, symbolic links, `..`) and checks it against the
//! grant, so this extension only shapes requests and results.
#![forbid(unsafe_code)]

use omni_guest_sdk::fs::{self, EntryKind};
use omni_guest_sdk::{export_tools, ToolError};
use serde::{Deserialize, Serialize};

/// Arguments of `read` and `list`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathArgs {
    pub path: String,
}

/// Arguments of `write`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    pub path: String,
    pub content: String,
}

/// Result of `read`.
#[derive(Debug, PartialEq, Serialize)]
pub struct FileText {
    pub path: String,
    pub content: String,
}

/// Result of `write`.
#[derive(Debug, PartialEq, Serialize)]
pub struct Written {
    pub path: String,
    pub bytes: usize,
}

/// One entry of `list`.
#[derive(Debug, PartialEq, Serialize)]
pub struct Entry {
    pub name: String,
    pub kind: &'static str,
    pub size: u64,
}

fn check_path(path: &str) -> Result<(), ToolError> {
    if path.trim().is_empty() {
        return Err(ToolError::invalid("`path` must not be empty"));
    }
    Ok(())
}

/// The name of an entry kind as the tool reports it.
pub fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "file",
        EntryKind::Directory => "directory",
        EntryKind::Symlink => "symlink",
        EntryKind::Other => "other",
    }
}

fn read(args: PathArgs) -> Result<FileText, ToolError> {
    check_path(&args.path)?;
    let content = fs::read_to_string(&args.path)?;
    Ok(FileText { path: args.path, content })
}

fn write(args: WriteArgs) -> Result<Written, ToolError> {
    check_path(&args.path)?;
    fs::write(&args.path, args.content.as_bytes())?;
    Ok(Written { bytes: args.content.len(), path: args.path })
}

fn list(args: PathArgs) -> Result<Vec<Entry>, ToolError> {
    check_path(&args.path)?;
    Ok(fs::list(&args.path)?
        .into_iter()
        .map(|e| Entry { name: e.name, kind: kind_name(e.kind), size: e.size })
        .collect())
}

export_tools!(read, write, list);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_paths_are_refused_before_any_host_call() {
        assert!(read(PathArgs { path: " ".into() }).is_err());
        assert!(list(PathArgs { path: String::new() }).is_err());
        assert_eq!(kind_name(EntryKind::Directory), "directory");
    }
}
