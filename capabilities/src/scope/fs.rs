//! Filesystem scopes (`filesystem.read`, `filesystem.write`): path entries and
//! lexical, component-wise matching.

use super::{human_size, join, truncate, Fields};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// One `paths` entry, kept in the form the manifest wrote it.
///
/// - `"/srv/data"`: an absolute path.
/// - `"~"` or `"~/Documents"`: under the home folder of the person running Omni,
///   expanded when a call is checked (the manifest does not know whose machine it runs on).
/// - `"notes"` (no leading `/` or `~`): relative to the extension's own data folder,
///   which the host chooses.
///
/// `..` components, `~user` forms, backslashes, NUL and control characters and
/// the bare root `/` are refused. `.` components and trailing slashes are dropped.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FsPath {
    /// An absolute path.
    Absolute(PathBuf),
    /// A path under the home folder (empty for the home folder itself).
    Home(PathBuf),
    /// A path under the extension's data folder (empty for the folder itself).
    Data(PathBuf),
}

impl FsPath {
    /// Parses one `paths` entry.
    ///
    /// ```
    /// use omni_capabilities::FsPath;
    /// use std::path::PathBuf;
    /// assert_eq!(FsPath::parse("~/Documents/").unwrap(), FsPath::Home(PathBuf::from("Documents")));
    /// assert!(FsPath::parse("/data/../etc").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<FsPath, String> {
        let shown = truncate(input, 80);
        if input.is_empty() {
            return Err("empty path".into());
        }
        if input.len() > 4096 {
            return Err(format!("path {shown:?} is longer than 4096 bytes"));
        }
        if input.chars().any(|c| c.is_control() || super::is_invisible(c)) {
            return Err(format!("path {shown:?} contains control or invisible characters"));
        }
        if input.contains('\\') {
            return Err(format!("path {shown:?} contains a backslash; use forward slashes"));
        }
        let (kind, rest): (fn(PathBuf) -> FsPath, &str) = if input == "~" {
            (FsPath::Home, "")
        } else if input == "." || input == "./" {
            // The data folder itself.
            (FsPath::Data, "")
        } else if let Some(rest) = input.strip_prefix("~/") {
            (FsPath::Home, rest)
        } else if input.starts_with('~') {
            return Err(format!(
                "path {shown:?} names another user's home; only \"~/...\" (your own home) is supported"
            ));
        } else if Path::new(input).has_root() {
            (FsPath::Absolute, input)
        } else {
            (FsPath::Data, input)
        };
        let mut clean = PathBuf::new();
        for comp in Path::new(rest).components() {
            match comp {
                Component::ParentDir => {
                    return Err(format!("path {shown:?} contains \"..\"; write the folder it leads to instead"));
                }
                Component::CurDir => {}
                Component::Normal(_) | Component::RootDir | Component::Prefix(_) => clean.push(comp),
            }
        }
        let entry = kind(clean);
        if let FsPath::Absolute(p) = &entry {
            if p.parent().is_none() {
                return Err(format!("path {shown:?} is the whole filesystem; name the folders the extension needs"));
            }
            if !p.is_absolute() {
                return Err(format!("path {shown:?} is not absolute on this platform"));
            }
        }
        if let FsPath::Home(p) | FsPath::Data(p) = &entry {
            if p.has_root() {
                return Err(format!("path {shown:?} has a root after \"~/\""));
            }
        }
        Ok(entry)
    }

    /// The absolute folder this entry stands for, given the home and data folders;
    /// `None` when the needed folder is not known.
    pub fn resolve(&self, roots: &FsRoots<'_>) -> Option<PathBuf> {
        match self {
            FsPath::Absolute(p) => Some(p.clone()),
            FsPath::Home(p) => roots.home.map(|h| join_rel(h, p)),
            FsPath::Data(p) => roots.data.map(|d| join_rel(d, p)),
        }
    }

    fn is_within(&self, other: &FsPath) -> bool {
        match (self, other) {
            (FsPath::Absolute(a), FsPath::Absolute(b))
            | (FsPath::Home(a), FsPath::Home(b))
            | (FsPath::Data(a), FsPath::Data(b)) => a.starts_with(b),
            // Home and data folders are only known on the machine; do not guess.
            _ => false,
        }
    }
}

fn join_rel(base: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

impl fmt::Display for FsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsPath::Data(p) if p.as_os_str().is_empty() => f.write_str("."),
            FsPath::Absolute(p) | FsPath::Data(p) => write!(f, "{}", p.display()),
            FsPath::Home(p) if p.as_os_str().is_empty() => f.write_str("~"),
            FsPath::Home(p) => write!(f, "~/{}", p.display()),
        }
    }
}

impl TryFrom<String> for FsPath {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        FsPath::parse(&s)
    }
}

impl From<FsPath> for String {
    fn from(p: FsPath) -> String {
        p.to_string()
    }
}

/// The folders relative entries are resolved against when checking a path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsRoots<'a> {
    /// The home folder, for `~/...` entries.
    pub home: Option<&'a Path>,
    /// The extension's data folder, for relative entries.
    pub data: Option<&'a Path>,
}

/// What a filesystem capability may touch.
///
/// Matching is lexical: the host resolves symbolic links and `..` first and
/// passes the real absolute path. A path is in scope when some entry, resolved
/// against [`FsRoots`], is a component-wise prefix of it (`/data2` is not under
/// `/data`), and, when `extensions` is set, the file's extension, lowercased,
/// is listed (a file without extension is then refused).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsScope {
    /// Allowed folders or files (at least one).
    pub paths: Vec<FsPath>,
    /// Allowed file extensions, lowercase without dot; `None` allows any.
    pub extensions: Option<Vec<String>>,
    /// Largest file, in bytes, that may be read or written; `None`: no scope limit.
    pub max_size: Option<u64>,
}

impl FsScope {
    pub(super) fn parse(f: &mut Fields<'_>) -> FsScope {
        let mut paths = Vec::new();
        if let Some(items) = f.strings("paths", true) {
            let mut good = Vec::new();
            for (path, s) in items {
                match FsPath::parse(&s) {
                    Ok(p) => f.push_unique(&mut good, path, p),
                    Err(message) => f.problem(
                        path,
                        message,
                        "write an absolute path (\"/srv/data\"), a home path (\"~/Documents\") or a path inside the extension's data folder (\"cache\")",
                    ),
                }
            }
            paths = good;
        }
        let mut extensions = None;
        if let Some(items) = f.strings("extensions", false) {
            let before = f.problems.len();
            let mut good = Vec::new();
            for (path, s) in items {
                let bare = s.trim_start_matches('.');
                let valid = !bare.is_empty()
                    && bare.len() <= 16
                    && bare
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'+');
                if valid && bare.len() == s.len() {
                    f.push_unique(&mut good, path, s);
                } else if valid {
                    f.problem(
                        path,
                        format!("extension {:?} starts with a dot", truncate(&s, 32)),
                        format!("write {bare:?}"),
                    );
                } else if bare.to_ascii_lowercase() != bare && !bare.is_empty() && bare.is_ascii() {
                    f.problem(
                        path,
                        format!("extension {:?} is not lowercase", truncate(&s, 32)),
                        format!("write {:?}; matching ignores case", bare.to_ascii_lowercase()),
                    );
                } else {
                    f.problem(
                        path,
                        format!("{:?} is not a file extension", truncate(&s, 32)),
                        "write up to 16 characters a-z, 0-9, '_', '-' or '+', without dot, e.g. \"md\"",
                    );
                }
            }
            if f.problems.len() == before && !good.is_empty() {
                extensions = Some(good);
            }
        }
        let max_size = f.size("max_size");
        FsScope { paths, extensions, max_size }
    }

    pub(super) fn write_toml(&self, t: &mut toml::Table) {
        super::put_display(t, "paths", &self.paths);
        super::put_opt_strings(t, "extensions", self.extensions.as_deref());
        if let Some(n) = self.max_size {
            super::put_u64(t, "max_size", n);
        }
    }

    /// Checks a file path with only the home folder known (relative entries,
    /// which need the data folder, then match nothing). See [`FsScope::check_path_in`].
    pub fn check_path(&self, resolved: &Path, home: Option<&Path>) -> Result<(), String> {
        self.check_path_in(resolved, &FsRoots { home, data: None })
    }

    /// Checks a file path: folder prefix, then the extension allow-list.
    ///
    /// ```
    /// use omni_capabilities::{lookup, FsRoots, Scope};
    /// use std::path::Path;
    /// let cap = lookup("filesystem.read").unwrap();
    /// let v: toml::Value = toml::from_str("paths = ['/data', '~/Notes']\nextensions = ['md']").unwrap();
    /// let scope = Scope::parse(cap, Some(&v), "scope").unwrap();
    /// let fs = scope.as_fs().unwrap();
    /// let home = Some(Path::new("/home/ada"));
    /// assert!(fs.check_path(Path::new("/data/a/b.md"), home).is_ok());
    /// assert!(fs.check_path(Path::new("/home/ada/Notes/x.MD"), home).is_ok());
    /// assert!(fs.check_path(Path::new("/data2/b.md"), home).is_err());
    /// assert!(fs.check_path(Path::new("/data/b.exe"), home).is_err());
    /// ```
    pub fn check_path_in(&self, resolved: &Path, roots: &FsRoots<'_>) -> Result<(), String> {
        self.check_location(resolved, roots)?;
        if let Some(allowed) = &self.extensions {
            let ext = resolved.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
            match ext {
                Some(ext) if allowed.contains(&ext) => {}
                Some(ext) => {
                    return Err(format!(
                        "files ending in .{ext} are not in scope; allowed extensions: {}",
                        join(allowed)
                    ));
                }
                None => {
                    return Err(format!(
                        "{} has no file extension; allowed extensions: {}",
                        resolved.display(),
                        join(allowed)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks a folder path (listing, creating a folder): the prefix rule only,
    /// since extensions apply to files.
    pub fn check_dir_in(&self, resolved: &Path, roots: &FsRoots<'_>) -> Result<(), String> {
        self.check_location(resolved, roots)
    }

    /// Checks a file size against `max_size`.
    pub fn check_size(&self, bytes: u64) -> Result<(), String> {
        match self.max_size {
            Some(max) if bytes > max => {
                Err(format!("{} is larger than the {} this scope allows", human_size(bytes), human_size(max)))
            }
            _ => Ok(()),
        }
    }

    fn check_location(&self, resolved: &Path, roots: &FsRoots<'_>) -> Result<(), String> {
        if !resolved.is_absolute() {
            return Err(format!("{} is not an absolute path", resolved.display()));
        }
        if resolved.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir)) {
            return Err(format!("{} is not normalized (contains . or ..)", resolved.display()));
        }
        let inside = self.paths.iter().filter_map(|p| p.resolve(roots)).any(|base| resolved.starts_with(&base));
        if inside {
            Ok(())
        } else {
            Err(format!("{} is outside the allowed paths: {}", resolved.display(), join(&self.paths)))
        }
    }

    pub(super) fn is_within(&self, other: &FsScope) -> bool {
        self.paths.iter().all(|p| other.paths.iter().any(|o| p.is_within(o)))
            && match (&self.extensions, &other.extensions) {
                (_, None) => true,
                (None, Some(_)) => false,
                (Some(a), Some(b)) => super::set_within(a, b),
            }
            && match (self.max_size, other.max_size) {
                (_, None) => true,
                (None, Some(_)) => false,
                (Some(a), Some(b)) => a <= b,
            }
    }
}

impl fmt::Display for FsScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "paths: {}", join(&self.paths))?;
        match &self.extensions {
            Some(e) => write!(f, "; extensions: {}", join(e))?,
            None => f.write_str("; extensions: any")?,
        }
        match self.max_size {
            Some(n) => write!(f, "; max_size: {}", human_size(n)),
            None => f.write_str("; max_size: no limit"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::lookup;
    use crate::scope::Scope;

    fn scope(text: &str) -> FsScope {
        let value: toml::Value = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        let info = lookup("filesystem.read").unwrap_or_else(|| panic!());
        match Scope::parse(info, Some(&value), "scope") {
            Ok(Scope::Filesystem(s)) => s,
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    fn errors(text: &str) -> Vec<String> {
        let value: toml::Value = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        let info = lookup("filesystem.write").unwrap_or_else(|| panic!());
        match Scope::parse(info, Some(&value), "scope") {
            Ok(s) => panic!("{text:?} accepted as {s:?}"),
            Err(p) => p.into_iter().map(|p| p.field).collect(),
        }
    }

    #[test]
    fn path_forms() {
        assert_eq!(FsPath::parse("/srv/data/"), Ok(FsPath::Absolute(PathBuf::from("/srv/data"))));
        assert_eq!(FsPath::parse("/srv/./data"), Ok(FsPath::Absolute(PathBuf::from("/srv/data"))));
        assert_eq!(FsPath::parse("~"), Ok(FsPath::Home(PathBuf::new())));
        assert_eq!(FsPath::parse("~/Documents"), Ok(FsPath::Home(PathBuf::from("Documents"))));
        assert_eq!(FsPath::parse("cache/x"), Ok(FsPath::Data(PathBuf::from("cache/x"))));
        assert_eq!(FsPath::parse("~/"), Ok(FsPath::Home(PathBuf::new())));
        for bad in [
            "",
            "/",
            "//",
            "/srv/../etc",
            "../x",
            "~/../x",
            "~root/x",
            "~root",
            "a\\b",
            "/srv/\u{0}",
            "/srv/a\u{202E}b",
            "x/..",
        ] {
            assert!(FsPath::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(FsPath::parse(&"/a".repeat(3000)).is_err());
        assert_eq!(FsPath::parse("."), Ok(FsPath::Data(PathBuf::new())));
        assert_eq!(FsPath::parse("./"), Ok(FsPath::Data(PathBuf::new())));
        assert_eq!(FsPath::parse("./cache"), Ok(FsPath::Data(PathBuf::from("cache"))));
        for text in ["/srv/data", "~", "~/Documents", "cache/x", "."] {
            let p = FsPath::parse(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p.to_string(), text);
        }
    }

    #[test]
    fn component_wise_prefix() {
        let s = scope("paths = ['/data']");
        assert!(s.check_path(Path::new("/data"), None).is_ok());
        assert!(s.check_path(Path::new("/data/x"), None).is_ok());
        assert!(s.check_path(Path::new("/data/x/y/z.txt"), None).is_ok());
        let e = s.check_path(Path::new("/data2/x"), None).unwrap_err();
        assert!(e.contains("/data2/x") && e.contains("allowed paths: /data"), "{e}");
        assert!(s.check_path(Path::new("/dat"), None).is_err());
        assert!(s.check_path(Path::new("/"), None).is_err());
        assert!(s.check_path(Path::new("/data/../etc/passwd"), None).is_err());
        assert!(s.check_path(Path::new("/data/./x"), None).is_ok(), "Path drops inner '.' components");
        assert!(s.check_path(Path::new("data/x"), None).is_err());
    }

    #[test]
    fn home_and_data_entries() {
        let s = scope("paths = ['~/Notes', 'cache']");
        assert!(s.check_path(Path::new("/home/ada/Notes/a.md"), Some(Path::new("/home/ada"))).is_ok());
        assert!(s.check_path(Path::new("/home/ada/Notes2/a.md"), Some(Path::new("/home/ada"))).is_err());
        assert!(s.check_path(Path::new("/home/ada/Notes/a.md"), None).is_err(), "no home known");
        assert!(
            s.check_path(Path::new("/var/omni/ext/cache/k"), Some(Path::new("/home/ada"))).is_err(),
            "data dir not given"
        );
        let roots = FsRoots { home: Some(Path::new("/home/ada")), data: Some(Path::new("/var/omni/ext")) };
        assert!(s.check_path_in(Path::new("/var/omni/ext/cache/k"), &roots).is_ok());
        assert!(s.check_path_in(Path::new("/var/omni/ext/other"), &roots).is_err());
        let whole_home = scope("paths = ['~']");
        assert!(whole_home.check_path(Path::new("/home/ada/.ssh/id_ed25519"), Some(Path::new("/home/ada"))).is_ok());
        assert!(whole_home.check_path(Path::new("/home/adam/x"), Some(Path::new("/home/ada"))).is_err());
    }

    #[test]
    fn extensions_and_sizes() {
        let s = scope("paths = ['/data']\nextensions = ['md', 'txt']\nmax_size = '1KiB'");
        assert!(s.check_path(Path::new("/data/a.md"), None).is_ok());
        assert!(s.check_path(Path::new("/data/a.TXT"), None).is_ok());
        let e = s.check_path(Path::new("/data/a.exe"), None).unwrap_err();
        assert!(e.contains(".exe") && e.contains("md, txt"), "{e}");
        assert!(s.check_path(Path::new("/data/Makefile"), None).is_err());
        assert!(s.check_path(Path::new("/data/a.md.exe"), None).is_err());
        assert!(s.check_dir_in(Path::new("/data/sub"), &FsRoots::default()).is_ok());
        assert!(s.check_dir_in(Path::new("/other"), &FsRoots::default()).is_err());
        assert_eq!(s.max_size, Some(1024));
        assert!(s.check_size(1024).is_ok());
        let e = s.check_size(1025).unwrap_err();
        assert!(e.contains("1 KiB"), "{e}");
        assert!(scope("paths = ['/data']").check_size(u64::MAX).is_ok());
        assert_eq!(s.to_string(), "paths: /data; extensions: md, txt; max_size: 1 KiB");
        assert_eq!(scope("paths = ['/data']").to_string(), "paths: /data; extensions: any; max_size: no limit");
    }

    #[test]
    fn parse_errors_name_fields() {
        assert_eq!(errors(""), ["scope.paths"]);
        assert_eq!(
            errors("paths = ['/ok', '../up', '/ok/', '~bob']"),
            ["scope.paths[1]", "scope.paths[2]", "scope.paths[3]"]
        );
        assert_eq!(
            errors("paths = ['/ok']\nextensions = ['.md', 'TXT', 'a b', '', 'md']"),
            ["scope.extensions[0]", "scope.extensions[1]", "scope.extensions[2]", "scope.extensions[3]"]
        );
        assert_eq!(errors("paths = ['/ok']\nmax_size = '10 furlongs'"), ["scope.max_size"]);
        assert_eq!(errors("paths = ['/ok']\nmax_size = 0"), ["scope.max_size"]);
        assert_eq!(errors("paths = ['/ok']\nmax_size = 1.5"), ["scope.max_size"]);
    }

    #[test]
    fn within() {
        let wide = Scope::Filesystem(scope("paths = ['/data', '~/Notes']"));
        let narrow =
            Scope::Filesystem(scope("paths = ['/data/sub', '~/Notes/work']\nextensions = ['md']\nmax_size = 100"));
        assert!(narrow.is_within(&wide));
        assert!(!wide.is_within(&narrow));
        let sibling = Scope::Filesystem(scope("paths = ['/data2']"));
        assert!(!sibling.is_within(&wide));
        let home_vs_abs = Scope::Filesystem(scope("paths = ['/home/ada/Notes']"));
        assert!(!home_vs_abs.is_within(&wide), "home is unknown when comparing");
        let ext_a = Scope::Filesystem(scope("paths = ['/data']\nextensions = ['md']"));
        let ext_b = Scope::Filesystem(scope("paths = ['/data']\nextensions = ['md', 'txt']"));
        assert!(ext_a.is_within(&ext_b) && !ext_b.is_within(&ext_a));
        let size_a = Scope::Filesystem(scope("paths = ['/data']\nmax_size = '1MB'"));
        let size_b = Scope::Filesystem(scope("paths = ['/data']\nmax_size = '2MB'"));
        assert!(size_a.is_within(&size_b) && !size_b.is_within(&size_a));
        assert!(size_b.is_within(&wide));
    }
}
