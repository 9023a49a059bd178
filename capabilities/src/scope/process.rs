//! The `process.spawn` scope: which programs, with which arguments.

use super::{join, opt_num, truncate, Fields};
use regex_automata::meta::Regex;
use regex_syntax::hir::{Hir, Look};
use regex_syntax::ParserBuilder;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Component, Path, PathBuf};

/// Compiled size limit for argument regexes, so a hostile pattern cannot exhaust memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Deepest nesting of groups and repetitions an argument regex may have (the `regex`
/// crate's own default), so parsing a hostile pattern cannot exhaust the stack.
const REGEX_NEST_LIMIT: u32 = 250;

/// One `allowed_args` / `denied_args` entry.
///
/// Written `"/.../"` it is a regular expression (Rust `regex` syntax) that must
/// match the **whole** argument; anything else is an exact string. To match
/// exactly a string that starts and ends with `/`, write it as an escaped regex.
///
/// The body between the slashes is parsed on its own, and the anchors are added
/// to the parsed pattern, not pasted around its text: a body that would close the
/// anchoring group early (`/--version)|(.*/`) is an unbalanced parenthesis and is
/// refused, so what the manifest shows is what is matched. At review a regex shows
/// as `/.../ (regex, whole argument)` so a person can tell it from an exact string.
///
/// ```
/// use omni_capabilities::ArgPattern;
/// let p = ArgPattern::parse("/--format=(json|text)/").unwrap();
/// assert!(p.matches("--format=json"));
/// assert!(!p.matches("--format=json; rm -rf ~"));
/// assert!(ArgPattern::parse("--verbose").unwrap().matches("--verbose"));
/// assert!(ArgPattern::parse("/(/").is_err());
/// assert!(ArgPattern::parse("/--version)|(.*/").is_err());
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ArgPattern {
    source: String,
    regex: Option<Regex>,
}

impl ArgPattern {
    /// Parses one entry; a `/.../` entry must be a valid regular expression on its own.
    pub fn parse(input: &str) -> Result<ArgPattern, String> {
        if input.len() > super::MAX_ENTRY_LEN {
            return Err(format!("pattern is longer than {} bytes", super::MAX_ENTRY_LEN));
        }
        if input.len() >= 2 && input.starts_with('/') && input.ends_with('/') {
            let body = &input[1..input.len() - 1];
            let invalid = |problem: &str| {
                format!("{:?} is not a valid regular expression: {}", truncate(input, 80), first_line(problem))
            };
            let hir = ParserBuilder::new()
                .nest_limit(REGEX_NEST_LIMIT)
                .build()
                .parse(body)
                .map_err(|e| invalid(&e.to_string()))?;
            let regex = whole(hir).map_err(|e| invalid(&e))?;
            Ok(ArgPattern { source: input.to_owned(), regex: Some(regex) })
        } else {
            if input.contains('\0') {
                return Err("pattern contains a NUL character".into());
            }
            Ok(ArgPattern { source: input.to_owned(), regex: None })
        }
    }

    /// Whether this entry is a regular expression.
    pub fn is_regex(&self) -> bool {
        self.regex.is_some()
    }

    /// The entry exactly as the manifest wrote it (`/.../` for a regex).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether `arg` matches (the whole argument, for regexes).
    pub fn matches(&self, arg: &str) -> bool {
        match &self.regex {
            Some(re) => re.is_match(arg),
            None => self.source == arg,
        }
    }

    /// Whether everything this entry matches is matched by `other`. Two different
    /// regexes are never compared (false), which at worst asks for a review.
    fn is_within(&self, other: &ArgPattern) -> bool {
        match &self.regex {
            None => other.matches(&self.source),
            Some(_) => other.regex.is_some() && other.source == self.source,
        }
    }
}

/// Compiles `body` so that it must match a whole argument: the anchors are nodes of
/// the syntax tree around the parsed body, which no text inside the body can undo.
fn whole(body: Hir) -> Result<Regex, String> {
    let anchored = Hir::concat(vec![Hir::look(Look::Start), body, Hir::look(Look::End)]);
    Regex::builder()
        .configure(
            regex_automata::meta::Config::new()
                .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                .hybrid_cache_capacity(2 * REGEX_SIZE_LIMIT),
        )
        .build_from_hir(&anchored)
        .map_err(|e| e.to_string())
}

fn first_line(s: &str) -> String {
    s.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim().to_owned()
}

impl PartialEq for ArgPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for ArgPattern {}

impl Hash for ArgPattern {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

/// The review form: an exact string as written, a regex marked as one that must match
/// the whole argument (`/--count=[0-9]+/ (regex, whole argument)`).
impl fmt::Display for ArgPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if self.is_regex() {
            f.write_str(" (regex, whole argument)")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for ArgPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ArgPattern::parse(&s)
    }
}

impl From<ArgPattern> for String {
    fn from(p: ArgPattern) -> String {
        p.source
    }
}

/// Which programs an extension may run.
///
/// Matching ([`ProcessScope::check_command`]): the executable must equal one of
/// `executables` exactly (absolute paths; the host resolves the real path
/// first); no argument may match any `denied_args` entry; when `allowed_args`
/// is set, every argument must match one of its entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessScope {
    /// Absolute paths of the allowed programs (at least one).
    pub executables: Vec<PathBuf>,
    /// When set, every argument must match one of these.
    pub allowed_args: Option<Vec<ArgPattern>>,
    /// No argument may match any of these (checked first).
    pub denied_args: Vec<ArgPattern>,
    /// Processes running at once; `None`: the host's default.
    pub max_concurrent: Option<u32>,
}

impl ProcessScope {
    pub(super) fn parse(f: &mut Fields<'_>) -> ProcessScope {
        let mut executables = Vec::new();
        if let Some(items) = f.strings("executables", true) {
            let mut good = Vec::new();
            for (path, s) in items {
                let p = PathBuf::from(&s);
                let fix = "write the absolute path of the program, e.g. \"/usr/bin/git\"";
                if s.chars().any(|c| c.is_control() || super::is_invisible(c)) {
                    f.problem(path, format!("{:?} contains control or invisible characters", truncate(&s, 80)), fix);
                } else if !p.is_absolute() {
                    f.problem(
                        path,
                        format!("{:?} is not an absolute path; programs are not looked up in PATH", truncate(&s, 80)),
                        fix,
                    );
                } else if p.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir))
                    || s.ends_with('/')
                {
                    f.problem(path, format!("{:?} is not a normalized path to a program", truncate(&s, 80)), fix);
                } else {
                    f.push_unique(&mut good, path, DisplayPath(p));
                }
            }
            executables = good.into_iter().map(|d| d.0).collect();
        }
        let allowed_args = args(f, "allowed_args").filter(|v| !v.is_empty());
        let denied_args = args(f, "denied_args").unwrap_or_default();
        let max_concurrent = f.u32_in("max_concurrent", 1, 1024);
        ProcessScope { executables, allowed_args, denied_args, max_concurrent }
    }

    pub(super) fn write_toml(&self, t: &mut toml::Table) {
        let exes: Vec<String> = self.executables.iter().map(|p| p.display().to_string()).collect();
        super::put_strings(t, "executables", &exes);
        let sources = |p: &[ArgPattern]| p.iter().map(|p| p.source.clone()).collect::<Vec<_>>();
        if let Some(a) = &self.allowed_args {
            super::put_strings(t, "allowed_args", &sources(a));
        }
        if !self.denied_args.is_empty() {
            super::put_strings(t, "denied_args", &sources(&self.denied_args));
        }
        super::put_opt_u32(t, "max_concurrent", self.max_concurrent);
    }

    /// Checks a command line against the scope.
    ///
    /// ```
    /// use omni_capabilities::{lookup, Scope};
    /// use std::path::Path;
    /// let cap = lookup("process.spawn").unwrap();
    /// let v: toml::Value = toml::from_str(r#"
    ///     executables = ["/usr/bin/git"]
    ///     allowed_args = ["status", "log", "/--max-count=[0-9]+/"]
    ///     denied_args = ["/--upload-pack.*/"]
    /// "#).unwrap();
    /// let scope = Scope::parse(cap, Some(&v), "scope").unwrap();
    /// let p = scope.as_process().unwrap();
    /// assert!(p.check_command(Path::new("/usr/bin/git"), &["log", "--max-count=5"]).is_ok());
    /// assert!(p.check_command(Path::new("/usr/bin/git"), &["push"]).is_err());
    /// assert!(p.check_command(Path::new("/bin/sh"), &["-c", "git log"]).is_err());
    /// ```
    pub fn check_command<S: AsRef<str>>(&self, executable: &Path, args: &[S]) -> Result<(), String> {
        if !self.executables.iter().any(|e| e == executable) {
            return Err(format!(
                "program {} is not in scope; allowed programs: {}",
                executable.display(),
                self.executables.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ));
        }
        for (i, arg) in args.iter().enumerate() {
            let arg = arg.as_ref();
            if let Some(d) = self.denied_args.iter().find(|d| d.matches(arg)) {
                return Err(format!("argument {i} {:?} is denied by {d}", truncate(arg, 80)));
            }
            if let Some(allowed) = &self.allowed_args {
                if !allowed.iter().any(|a| a.matches(arg)) {
                    return Err(format!(
                        "argument {i} {:?} is not in scope; allowed arguments: {}",
                        truncate(arg, 80),
                        join(allowed)
                    ));
                }
            }
        }
        Ok(())
    }

    pub(super) fn is_within(&self, other: &ProcessScope) -> bool {
        let exes = super::set_within(&self.executables, &other.executables);
        let allowed = match (&self.allowed_args, &other.allowed_args) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a.iter().all(|p| b.iter().any(|o| p.is_within(o))),
        };
        // Self must still deny everything other denies.
        let denied = other.denied_args.iter().all(|d| self.denied_args.iter().any(|s| d.is_within(s)));
        exes && allowed
            && denied
            && super::limit_within(
                self.max_concurrent,
                other.max_concurrent,
                Some(super::DEFAULT_PROCESS_MAX_CONCURRENT),
            )
    }
}

fn args(f: &mut Fields<'_>, name: &str) -> Option<Vec<ArgPattern>> {
    let items = f.strings(name, false)?;
    let mut good = Vec::new();
    let before = f.problems.len();
    for (path, s) in items {
        match ArgPattern::parse(&s) {
            Ok(p) => f.push_unique(&mut good, path, p),
            Err(message) => f.problem(
                path,
                message,
                "write an exact argument, or a regular expression between slashes: \"/--count=[0-9]+/\"",
            ),
        }
    }
    (f.problems.len() == before).then_some(good)
}

/// A path that prints itself, so duplicates can be reported by `Fields::push_unique`.
#[derive(PartialEq)]
struct DisplayPath(PathBuf);

impl fmt::Display for DisplayPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

impl fmt::Display for ProcessScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exes: Vec<String> = self.executables.iter().map(|p| p.display().to_string()).collect();
        write!(f, "executables: {}", exes.join(", "))?;
        match &self.allowed_args {
            Some(a) => write!(f, "; allowed_args: {}", join(a))?,
            None => f.write_str("; allowed_args: any")?,
        }
        if !self.denied_args.is_empty() {
            write!(f, "; denied_args: {}", join(&self.denied_args))?;
        }
        write!(f, "; max_concurrent: {}", opt_num(self.max_concurrent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::lookup;
    use crate::scope::Scope;

    fn parse(text: &str) -> Result<Scope, Vec<String>> {
        let value: toml::Value = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        let info = lookup("process.spawn").unwrap_or_else(|| panic!());
        Scope::parse(info, Some(&value), "scope").map_err(|p| p.into_iter().map(|p| p.field).collect())
    }

    fn scope(text: &str) -> ProcessScope {
        match parse(text) {
            Ok(Scope::Process(p)) => p,
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    #[test]
    fn commands() {
        let s = scope(
            r#"executables = ["/usr/bin/git", "/usr/bin/rg"]
               allowed_args = ["status", "log", "/--max-count=[0-9]{1,4}/", "/[a-z]+\\.rs/"]
               denied_args = ["/.*--exec.*/", "log"]
               max_concurrent = 2"#,
        );
        let git = Path::new("/usr/bin/git");
        assert!(s.check_command(git, &["status"]).is_ok());
        assert!(s.check_command(git, &[] as &[&str]).is_ok());
        assert!(s.check_command(git, &["--max-count=10", "main.rs"]).is_ok());
        let e = s.check_command(git, &["log"]).unwrap_err();
        assert!(e.contains("denied"), "{e}");
        assert!(s.check_command(git, &["--max-count=12345"]).is_err());
        assert!(s.check_command(git, &["--max-count=1; rm -rf /"]).is_err(), "regex is anchored");
        assert!(s.check_command(git, &["xmain.rsx!"]).is_err());
        assert!(s.check_command(git, &["status", "--exec=sh"]).is_err());
        let e = s.check_command(Path::new("/bin/sh"), &["-c", "git status"]).unwrap_err();
        assert!(e.contains("/bin/sh") && e.contains("/usr/bin/git"), "{e}");
        assert!(s.check_command(Path::new("/usr/bin/../bin/git"), &["status"]).is_err(), "exact match only");
        assert!(s.check_command(Path::new("git"), &["status"]).is_err());
        assert_eq!(
            s.to_string(),
            "executables: /usr/bin/git, /usr/bin/rg; allowed_args: status, log, /--max-count=[0-9]{1,4}/ (regex, whole argument), /[a-z]+\\.rs/ (regex, whole argument); denied_args: /.*--exec.*/ (regex, whole argument), log; max_concurrent: 2"
        );
        let any_args = scope("executables = ['/usr/bin/date']");
        assert!(any_args.check_command(Path::new("/usr/bin/date"), &["+%s", "anything"]).is_ok());
    }

    #[test]
    fn errors_name_fields() {
        assert_eq!(parse("").unwrap_err(), ["scope.executables"]);
        assert_eq!(
            parse("executables = ['git', '/usr/bin/../bin/sh', '/usr/bin/', '/usr/bin/git', '/usr/bin/git']")
                .unwrap_err(),
            ["scope.executables[0]", "scope.executables[1]", "scope.executables[2]", "scope.executables[4]"]
        );
        assert_eq!(
            parse("executables = ['/bin/x']\nallowed_args = ['/(/', 'ok', 'ok']").unwrap_err(),
            ["scope.allowed_args[0]", "scope.allowed_args[2]"]
        );
        assert_eq!(parse("executables = ['/bin/x']\ndenied_args = ['/[z-a]/']").unwrap_err(), ["scope.denied_args[0]"]);
        assert_eq!(parse("executables = ['/bin/x']\nmax_concurrent = 0").unwrap_err(), ["scope.max_concurrent"]);
        // A regex whose compiled form is huge is refused rather than built.
        let huge = format!("executables = ['/bin/x']\nallowed_args = ['/{}/']", "(a{1000}){1000}");
        assert_eq!(parse(&huge).unwrap_err(), ["scope.allowed_args[0]"]);
    }

    #[test]
    fn patterns() {
        let p = |s: &str| ArgPattern::parse(s).unwrap_or_else(|e| panic!("{e}"));
        assert!(p("/a|b/").matches("a") && p("/a|b/").matches("b") && !p("/a|b/").matches("ab"));
        assert!(p("/").matches("/"), "a single slash is an exact string");
        assert!(!p("/").is_regex());
        assert!(p("//").is_regex() && p("//").matches(""));
        assert_eq!(p("/x/"), p("/x/"));
        assert_ne!(p("/x/"), p("x"));
        let json = serde_json::to_string(&p("/x+/")).unwrap_or_default();
        assert_eq!(json, "\"/x+/\"");
        assert!(serde_json::from_str::<ArgPattern>("\"/(/\"").is_err());
    }

    #[test]
    fn within() {
        let wide = Scope::Process(scope(
            "executables = ['/usr/bin/git']\nallowed_args = ['/[a-z]+/']\ndenied_args = ['push']\nmax_concurrent = 4",
        ));
        let narrow = Scope::Process(scope("executables = ['/usr/bin/git']\nallowed_args = ['status', 'log']\ndenied_args = ['push', 'fetch']\nmax_concurrent = 1"));
        assert!(narrow.is_within(&wide));
        assert!(!wide.is_within(&narrow));
        let drops_denial =
            Scope::Process(scope("executables = ['/usr/bin/git']\nallowed_args = ['status']\nmax_concurrent = 1"));
        assert!(!drops_denial.is_within(&wide));
        let denial_by_regex = Scope::Process(scope(
            "executables = ['/usr/bin/git']\nallowed_args = ['status']\ndenied_args = ['/p.*/']\nmax_concurrent = 1",
        ));
        assert!(denial_by_regex.is_within(&wide), "/p.*/ denies 'push' too");
        let other_regex = Scope::Process(scope(
            "executables = ['/usr/bin/git']\nallowed_args = ['/[a-c]+/']\ndenied_args = ['push']\nmax_concurrent = 1",
        ));
        assert!(!other_regex.is_within(&wide), "different regexes are not compared");
        let new_exe = Scope::Process(scope("executables = ['/usr/bin/git', '/bin/sh']\nallowed_args = ['status']\ndenied_args = ['push']\nmax_concurrent = 1"));
        assert!(!new_exe.is_within(&wide));
        let any_args =
            Scope::Process(scope("executables = ['/usr/bin/git']\ndenied_args = ['push']\nmax_concurrent = 1"));
        assert!(!any_args.is_within(&wide));
    }
}
