//! The extension manifest (`manifest.toml` beside the component): types, parsing,
//! validation that reports every problem, and writing back to TOML.

use crate::catalog::{closest_key, lookup};
use crate::error::{ManifestError, Problem, Problems};
use crate::scope::{display_key, is_invisible, truncate, Scope};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Largest manifest file accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;
/// Default `runtime.max_memory_mb`.
pub const DEFAULT_MAX_MEMORY_MB: u32 = 64;
/// Default `runtime.max_cpu_ms_per_call`.
pub const DEFAULT_MAX_CPU_MS_PER_CALL: u64 = 5000;
/// Default `runtime.max_concurrent_calls`.
pub const DEFAULT_MAX_CONCURRENT_CALLS: u32 = 4;

const MAX_ID_LEN: usize = 128;
const MAX_NAME_LEN: usize = 64;
const MAX_AUTHOR_LEN: usize = 128;
const MAX_DESCRIPTION_LEN: usize = 4096;
const MAX_REASON_LEN: usize = 512;
const MAX_CATEGORIES: usize = 16;
const MAX_CATEGORY_LEN: usize = 32;
const MAX_PERMISSIONS: usize = 64;
const MAX_TOOLS: usize = 256;
const MAX_TOOL_NAME_LEN: usize = 64;
const MAX_PARAMETERS_BYTES: usize = 64 * 1024;
/// Deepest nesting accepted in a tool's parameter schema.
const MAX_SCHEMA_DEPTH: usize = 32;
/// Most schema nodes a tool's parameters may expand to when every `$ref` is inlined.
///
/// Validating arguments costs time in proportion to this expansion (times the size of the
/// arguments), not to the schema's text: definitions that refer to each other twice over
/// double the work at every level, so a schema of two kilobytes can expand to hundreds of
/// millions of nodes. Twenty thousand nodes validate in a few milliseconds and leave room
/// for any schema a person writes by hand.
const MAX_SCHEMA_EXPANSION: u64 = 20_000;
/// Longest chain of `$ref`s followed from one place in a tool's parameters.
const MAX_SCHEMA_REF_CHAIN: usize = 32;
/// Most problems listed for one call's arguments.
const MAX_ARGUMENT_PROBLEMS: usize = 16;
/// Most problems listed for one manifest; the rest are counted.
const MAX_PROBLEMS: usize = 100;

/// A validated extension manifest.
///
/// ```
/// use omni_capabilities::Manifest;
/// let m = Manifest::from_toml_str(r#"
///     [extension]
///     id = "dev.omni.weather"
///     name = "Weather"
///     version = "0.1.0"
///     author = "Omni"
///     description = "Current weather and forecasts from Open-Meteo."
///
///     [[permissions]]
///     capability = "network.http"
///     reason = "Fetch the forecast"
///     scope = { domains = ["api.open-meteo.com"] }
///
///     [[tools]]
///     name = "get_weather"
///     description = "Current weather at a place"
///     parameters = { type = "object", properties = { city = { type = "string" } } }
/// "#, "manifest.toml").unwrap();
/// assert_eq!(m.runtime.entrypoint, "weather.wasm");
/// assert_eq!(m.runtime.max_memory_mb, 64);
/// assert!(m.permission("network.http").unwrap().required);
/// assert!(m.tool("get_weather").is_some());
/// assert_eq!(Manifest::from_toml_str(&m.to_toml_string(), "again").unwrap(), m);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Who the extension is.
    pub extension: ExtensionInfo,
    /// How it runs.
    pub runtime: RuntimeLimits,
    /// What it may do; at most one entry per capability.
    pub permissions: Vec<Permission>,
    /// What it offers; names are unique.
    pub tools: Vec<ToolSpec>,
}

/// The `[extension]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionInfo {
    /// Reverse-domain id, e.g. `"dev.omni.weather"`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Semantic version.
    pub version: semver::Version,
    /// Author or organization.
    pub author: String,
    /// What the extension does (may span lines).
    pub description: String,
    /// Lowercase tags, e.g. `["weather"]` (default none).
    pub categories: Vec<String>,
}

/// The `[runtime]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeLimits {
    /// File name of the component beside the manifest, ending `.wasm`.
    pub entrypoint: String,
    /// Linear memory limit in MiB (default 64, at most 4096).
    pub max_memory_mb: u32,
    /// CPU time per tool call in milliseconds (default 5000, at most 600000).
    pub max_cpu_ms_per_call: u64,
    /// Tool calls running at once (default 4, at most 256).
    pub max_concurrent_calls: u32,
}

impl RuntimeLimits {
    /// The defaults for an extension with this id: entry point `<last id label>.wasm`
    /// with `-` replaced by `_` (what `cargo` names the component), default limits.
    ///
    /// ```
    /// let r = omni_capabilities::RuntimeLimits::defaults_for("dev.omni.open-meteo");
    /// assert_eq!(r.entrypoint, "open_meteo.wasm");
    /// assert_eq!((r.max_memory_mb, r.max_cpu_ms_per_call, r.max_concurrent_calls), (64, 5000, 4));
    /// ```
    pub fn defaults_for(id: &str) -> RuntimeLimits {
        let last = id.rsplit('.').next().unwrap_or(id).replace('-', "_");
        RuntimeLimits {
            entrypoint: format!("{last}.wasm"),
            max_memory_mb: DEFAULT_MAX_MEMORY_MB,
            max_cpu_ms_per_call: DEFAULT_MAX_CPU_MS_PER_CALL,
            max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
        }
    }

    /// Whether these limits give the extension nothing beyond `other`: no more memory,
    /// CPU time per call or calls at once. An update that raises any of them needs a
    /// new review, like a wider scope.
    ///
    /// ```
    /// let old = omni_capabilities::RuntimeLimits::defaults_for("dev.omni.x");
    /// let more = omni_capabilities::RuntimeLimits { max_memory_mb: 4096, ..old.clone() };
    /// assert!(old.is_within(&old) && old.is_within(&more) && !more.is_within(&old));
    /// ```
    pub fn is_within(&self, other: &RuntimeLimits) -> bool {
        self.max_memory_mb <= other.max_memory_mb
            && self.max_cpu_ms_per_call <= other.max_cpu_ms_per_call
            && self.max_concurrent_calls <= other.max_concurrent_calls
    }
}

/// One `[[permissions]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// The capability key, e.g. `"network.http"` (always a catalog key).
    pub capability: String,
    /// What the capability may reach.
    pub scope: Scope,
    /// Why the extension needs it, shown at install time.
    pub reason: String,
    /// Whether the extension cannot work without it (default true). Optional
    /// permissions may be refused at install and the extension still installed.
    pub required: bool,
}

/// One `[[tools]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// `[a-z][a-z0-9_]*`, unique within the manifest.
    pub name: String,
    /// What the tool does, for people and models.
    pub description: String,
    /// JSON Schema of the arguments; its top-level `type` is `"object"`.
    pub parameters: serde_json::Value,
}

impl ToolSpec {
    /// Validates call arguments against `parameters`; the error lists every
    /// violation as `"<JSON pointer>: <message>"` (the pointer is empty for the root).
    ///
    /// ```
    /// use omni_capabilities::ToolSpec;
    /// let tool = ToolSpec {
    ///     name: "add".into(),
    ///     description: "Adds".into(),
    ///     parameters: serde_json::json!({"type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]}),
    /// };
    /// assert!(tool.validate_arguments(&serde_json::json!({"a": 1})).is_ok());
    /// assert_eq!(tool.validate_arguments(&serde_json::json!({"a": "x"})).unwrap_err().len(), 1);
    /// ```
    pub fn validate_arguments(&self, args: &serde_json::Value) -> Result<(), Vec<String>> {
        self.compile_parameters().map_err(|e| vec![e])?.validate(args)
    }

    /// Compiles the parameter schema once, for hosts that validate many calls.
    pub fn compile_parameters(&self) -> Result<ArgumentValidator, String> {
        jsonschema::validator_for(&self.parameters)
            .map(|validator| ArgumentValidator { validator })
            .map_err(|e| format!("the parameter schema of tool {} is invalid: {e}", self.name))
    }
}

/// A tool's compiled parameter schema (see [`ToolSpec::compile_parameters`]).
pub struct ArgumentValidator {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for ArgumentValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArgumentValidator")
    }
}

impl ArgumentValidator {
    /// Checks `args`; each problem reads "JSON pointer: message". At most
    /// sixteen are listed (the errors are produced lazily, so stopping
    /// there also stops the work of finding more).
    pub fn validate(&self, args: &serde_json::Value) -> Result<(), Vec<String>> {
        let mut errors: Vec<String> = self
            .validator
            .iter_errors(args)
            .take(MAX_ARGUMENT_PROBLEMS + 1)
            // A problem of the arguments as a whole has an empty pointer: say just what it is.
            .map(|e| match e.instance_path().to_string() {
                path if path.is_empty() => e.to_string(),
                path => format!("{path}: {e}"),
            })
            .collect();
        if errors.len() > MAX_ARGUMENT_PROBLEMS {
            errors.truncate(MAX_ARGUMENT_PROBLEMS);
            errors.push(format!("(only the first {MAX_ARGUMENT_PROBLEMS} problems are listed)"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

impl Manifest {
    /// Parses and validates a manifest. `origin` names the source (usually the
    /// file name) in error messages. All problems are reported together.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::single(
                origin,
                Problem::new(
                    "",
                    format!("the manifest is {} bytes, more than the limit of {MAX_MANIFEST_BYTES}", text.len()),
                    "shorten descriptions and schemas",
                ),
            ));
        }
        let doc: toml::Table = toml::from_str(text).map_err(|e| {
            ManifestError::single(
                origin,
                Problem::new(
                    "",
                    format!("not valid TOML{}: {}", position(text, e.span()), one_line(e.message())),
                    "fix the syntax at the position shown",
                ),
            )
        })?;
        let mut p = Problems::default();
        const TOP: [&str; 4] = ["extension", "runtime", "permissions", "tools"];
        for key in doc.keys() {
            if !TOP.contains(&key.as_str()) {
                p.push(
                    display_key(key),
                    format!("unknown top-level key {:?}", truncate(key, 64)),
                    "remove it; valid sections are [extension], [runtime], [[permissions]] and [[tools]]",
                );
            }
        }
        let extension = parse_extension(doc.get("extension"), &mut p);
        let id = extension.as_ref().map(|e| e.id.as_str()).unwrap_or("extension");
        let runtime = parse_runtime(doc.get("runtime"), id, &mut p);
        let permissions = parse_permissions(doc.get("permissions"), &mut p);
        let tools = parse_tools(doc.get("tools"), &mut p);
        match (extension, runtime) {
            (Some(extension), Some(runtime)) if p.is_empty() => Ok(Manifest { extension, runtime, permissions, tools }),
            _ => {
                let mut problems = p.0;
                if problems.len() > MAX_PROBLEMS {
                    // A hostile file could hold a million bad entries; the first ones say enough.
                    let hidden = problems.len() - MAX_PROBLEMS;
                    problems.truncate(MAX_PROBLEMS);
                    problems.push(Problem::new(
                        "",
                        format!("{hidden} more problems not shown"),
                        "fix the problems above and validate again",
                    ));
                }
                Err(ManifestError { origin: origin.to_owned(), problems })
            }
        }
    }

    /// Reads and validates a manifest file; problems name the file as given.
    pub fn from_path(path: &Path) -> Result<Manifest, ManifestError> {
        let origin = path.display().to_string();
        let io_problem = |e: std::io::Error| {
            ManifestError::single(
                &origin,
                Problem::new(
                    "",
                    format!("cannot read the manifest: {e}"),
                    "check that the file exists and is readable",
                ),
            )
        };
        let meta = std::fs::metadata(path).map_err(io_problem)?;
        if meta.len() > MAX_MANIFEST_BYTES as u64 {
            return Err(ManifestError::single(
                &origin,
                Problem::new(
                    "",
                    format!("the manifest is {} bytes, more than the limit of {MAX_MANIFEST_BYTES}", meta.len()),
                    "shorten descriptions and schemas",
                ),
            ));
        }
        let bytes = std::fs::read(path).map_err(io_problem)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            ManifestError::single(
                &origin,
                Problem::new(
                    "",
                    format!("the manifest is not UTF-8 (invalid byte at offset {})", e.utf8_error().valid_up_to()),
                    "save the file as UTF-8",
                ),
            )
        })?;
        Manifest::from_toml_str(&text, &origin)
    }

    /// The manifest as TOML that [`Manifest::from_toml_str`] reads back to an equal value.
    pub fn to_toml_string(&self) -> String {
        let mut doc = toml::Table::new();
        let e = &self.extension;
        let mut ext = toml::Table::new();
        ext.insert("id".into(), e.id.clone().into());
        ext.insert("name".into(), e.name.clone().into());
        ext.insert("version".into(), e.version.to_string().into());
        ext.insert("author".into(), e.author.clone().into());
        ext.insert("description".into(), e.description.clone().into());
        ext.insert("categories".into(), toml::Value::Array(e.categories.iter().map(|c| c.clone().into()).collect()));
        doc.insert("extension".into(), toml::Value::Table(ext));

        let r = &self.runtime;
        let mut rt = toml::Table::new();
        rt.insert("entrypoint".into(), r.entrypoint.clone().into());
        rt.insert("max_memory_mb".into(), toml::Value::Integer(i64::from(r.max_memory_mb)));
        // Bounded to 600000 by validation; saturate rather than fail for hand-built values.
        rt.insert(
            "max_cpu_ms_per_call".into(),
            toml::Value::Integer(i64::try_from(r.max_cpu_ms_per_call).unwrap_or(i64::MAX)),
        );
        rt.insert("max_concurrent_calls".into(), toml::Value::Integer(i64::from(r.max_concurrent_calls)));
        doc.insert("runtime".into(), toml::Value::Table(rt));

        let perms: Vec<toml::Value> = self
            .permissions
            .iter()
            .map(|p| {
                let mut t = toml::Table::new();
                t.insert("capability".into(), p.capability.clone().into());
                t.insert("reason".into(), p.reason.clone().into());
                t.insert("required".into(), p.required.into());
                if let Some(scope) = p.scope.to_toml() {
                    t.insert("scope".into(), toml::Value::Table(scope));
                }
                toml::Value::Table(t)
            })
            .collect();
        doc.insert("permissions".into(), toml::Value::Array(perms));

        let tools: Vec<toml::Value> = self
            .tools
            .iter()
            .map(|tool| {
                let mut t = toml::Table::new();
                t.insert("name".into(), tool.name.clone().into());
                t.insert("description".into(), tool.description.clone().into());
                // TOML has no null: schemas using null are written as a JSON string.
                let params = json_to_toml(&tool.parameters, 0)
                    .unwrap_or_else(|| toml::Value::String(tool.parameters.to_string()));
                t.insert("parameters".into(), params);
                toml::Value::Table(t)
            })
            .collect();
        doc.insert("tools".into(), toml::Value::Array(tools));

        toml::to_string(&doc).unwrap_or_else(|e| format!("# the manifest could not be written as TOML: {e}\n"))
    }

    /// The permission for a capability key, if the manifest asks for it.
    pub fn permission(&self, capability: &str) -> Option<&Permission> {
        self.permissions.iter().find(|p| p.capability == capability)
    }

    /// The tool with this name, if any.
    pub fn tool(&self, name: &str) -> Option<&ToolSpec> {
        self.tools.iter().find(|t| t.name == name)
    }

    /// Compares a component's imports with the declared permissions.
    ///
    /// Every `omni:caps/...` import must belong to a capability the manifest
    /// declares (the shared `omni:caps/types` excepted); imports of other
    /// packages (`wasi:...`) are the host's business and are ignored here. The
    /// error lists one message per offending import, naming the import and the
    /// capability it needs.
    ///
    /// ```
    /// use omni_capabilities::Manifest;
    /// let m = Manifest::from_toml_str(r#"
    ///     [extension]
    ///     id = "dev.example.t"
    ///     name = "T"
    ///     version = "1.0.0"
    ///     author = "A"
    ///     description = "D"
    ///     [[permissions]]
    ///     capability = "clipboard.read"
    ///     reason = "Read it"
    /// "#, "manifest.toml").unwrap();
    /// assert!(m.check_imports(["omni:caps/clipboard-read@0.1.0", "omni:caps/types@0.1.0", "wasi:io/streams@0.2.6"]).is_ok());
    /// let errors = m.check_imports(["omni:caps/http@0.1.0"]).unwrap_err();
    /// assert!(errors[0].contains("network.http"));
    /// ```
    pub fn check_imports<'a>(&self, imports: impl IntoIterator<Item = &'a str>) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        for import in imports {
            let name = import.split_once('@').map_or(import, |(n, _)| n);
            if !name.starts_with("omni:caps/") || name == "omni:caps/types" {
                continue;
            }
            match crate::catalog::capability_for_import(import) {
                Some(cap) if self.permission(cap.key).is_some() => {}
                Some(cap) => errors.push(format!(
                    "the component imports {import}, which needs the {} capability, but the manifest does not declare it; add a [[permissions]] entry with capability = \"{}\" or rebuild without that import",
                    cap.key, cap.key
                )),
                None => errors.push(format!(
                    "the component imports {}, which is not a capability interface this host knows",
                    truncate(import, 128)
                )),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Where the component lives: `entrypoint` resolved in the manifest's folder.
    pub fn entrypoint_path(&self, manifest_dir: &Path) -> PathBuf {
        manifest_dir.join(&self.runtime.entrypoint)
    }
}

/// " at line L, column C" for a byte offset range of `text`, or nothing.
fn position(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(start) = span.map(|r| r.start) else {
        return String::new();
    };
    let before = text.get(..start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(" at line {line}, column {column}")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn type_name(v: &toml::Value) -> &'static str {
    v.type_str()
}

/// Reports keys of `t` not in `allowed`.
fn deny_unknown(t: &toml::Table, allowed: &[&str], base: &str, p: &mut Problems) {
    for key in t.keys() {
        if !allowed.contains(&key.as_str()) {
            p.push(
                format!("{base}.{}", display_key(key)),
                format!("unknown field {:?}", truncate(key, 64)),
                format!("remove it; valid fields in {base}: {}", allowed.join(", ")),
            );
        }
    }
}

/// How a text field may be written.
#[derive(Clone, Copy)]
enum Text {
    /// One line: no control characters at all.
    Line,
    /// Paragraphs: newlines and tabs allowed.
    Paragraphs,
}

/// Reads a string field, checking length, emptiness and hidden characters.
fn text(t: &toml::Table, key: &str, base: &str, kind: Text, max: usize, p: &mut Problems) -> Option<String> {
    let field = format!("{base}.{key}");
    let Some(v) = t.get(key) else {
        p.push(field, format!("missing required field {key:?}"), format!("add {key} = \"...\" to [{base}]"));
        return None;
    };
    let Some(s) = v.as_str() else {
        p.push(field, format!("must be a string, found {}", type_name(v)), "quote the value");
        return None;
    };
    // Files saved with Windows line endings keep "\r\n" inside multi-line strings.
    // A lone "\r" stays refused: in a terminal it moves the cursor back and can
    // hide the start of a line behind what follows.
    let s = match kind {
        Text::Paragraphs => s.replace("\r\n", "\n"),
        Text::Line => s.to_owned(),
    };
    check_text(&s, &field, kind, max, p).then_some(s)
}

fn check_text(s: &str, field: &str, kind: Text, max: usize, p: &mut Problems) -> bool {
    if s.trim().is_empty() {
        p.push(field, "must not be empty", "write some text");
        return false;
    }
    if s.chars().count() > max {
        p.push(field, format!("is {} characters long, more than the limit of {max}", s.chars().count()), "shorten it");
        return false;
    }
    let bad = s.chars().find(|&c| match kind {
        Text::Line => crate::text::is_unsafe(c),
        Text::Paragraphs => crate::text::is_unsafe(c) && c != '\n' && c != '\t',
    });
    if let Some(c) = bad {
        let what = if is_invisible(c) { "an invisible or text-direction character" } else { "a control character" };
        let fix = match kind {
            Text::Line => "write it on one line with visible characters only",
            Text::Paragraphs => "remove it; only visible characters, newlines and tabs are allowed",
        };
        p.push(field, format!("contains {what} (U+{:04X})", u32::from(c)), fix);
        return false;
    }
    true
}

fn table<'a>(v: Option<&'a toml::Value>, field: &str, header: &str, p: &mut Problems) -> Option<&'a toml::Table> {
    match v {
        None => {
            p.push(field, format!("missing required section {header}"), format!("add a {header} section"));
            None
        }
        Some(toml::Value::Table(t)) => Some(t),
        Some(other) => {
            p.push(
                field,
                format!("must be a table, found {}", type_name(other)),
                format!("write it as a {header} section"),
            );
            None
        }
    }
}

/// Checks the reverse-domain id rule; returns the problem message and fix.
fn check_id(id: &str) -> Result<(), (String, String)> {
    let fix_general =
        "use lowercase labels of a-z, 0-9 and '-' separated by dots, e.g. \"dev.example.my-tool\"".to_owned();
    if id.len() > MAX_ID_LEN {
        return Err((format!("is longer than {MAX_ID_LEN} bytes"), "use a shorter id".into()));
    }
    if let Some(c) = id.chars().find(|c| !c.is_ascii()) {
        return Err((
            format!("contains the non-ASCII character {c:?} (U+{:04X}), which can imitate another id", u32::from(c)),
            fix_general,
        ));
    }
    if id.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(("contains uppercase letters".into(), format!("write {:?}", id.to_ascii_lowercase())));
    }
    let labels: Vec<&str> = id.split('.').collect();
    if labels.len() < 2 {
        return Err(("is not reverse-domain: it needs at least two labels separated by '.'".into(), fix_general));
    }
    for label in labels {
        if label.is_empty() {
            return Err(("has an empty label (\"..\", or a leading or trailing dot)".into(), fix_general));
        }
        if label.len() > 63 {
            return Err((format!("label {label:?} is longer than 63 characters"), fix_general));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
            return Err((format!("contains {c:?}, which is not allowed"), fix_general));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err((format!("label {label:?} starts or ends with '-'"), fix_general));
        }
    }
    Ok(())
}

fn parse_extension(v: Option<&toml::Value>, p: &mut Problems) -> Option<ExtensionInfo> {
    let t = table(v, "extension", "[extension]", p)?;
    let base = "extension";
    deny_unknown(t, &["id", "name", "version", "author", "description", "categories"], base, p);
    let id = match t.get("id") {
        None => {
            p.push(
                "extension.id",
                "missing required field \"id\"",
                "add id = \"dev.example.my-tool\" (reverse-domain) to [extension]",
            );
            None
        }
        Some(toml::Value::String(s)) => match check_id(s) {
            Ok(()) => Some(s.clone()),
            Err((message, fix)) => {
                p.push("extension.id", format!("id {:?} {message}", truncate(s, 64)), fix);
                None
            }
        },
        Some(other) => {
            p.push("extension.id", format!("must be a string, found {}", type_name(other)), "quote the id");
            None
        }
    };
    let name = text(t, "name", base, Text::Line, MAX_NAME_LEN, p);
    let version = match t.get("version") {
        None => {
            p.push(
                "extension.version",
                "missing required field \"version\"",
                "add version = \"0.1.0\" (semantic version) to [extension]",
            );
            None
        }
        Some(toml::Value::String(s)) => match semver::Version::parse(s) {
            Ok(v) => Some(v),
            Err(e) => {
                p.push(
                    "extension.version",
                    format!("{:?} is not a semantic version: {e}", truncate(s, 64)),
                    "write MAJOR.MINOR.PATCH, e.g. \"1.2.0\"",
                );
                None
            }
        },
        Some(other) => {
            p.push(
                "extension.version",
                format!("must be a string, found {}", type_name(other)),
                "quote it, e.g. version = \"0.1.0\"",
            );
            None
        }
    };
    let author = text(t, "author", base, Text::Line, MAX_AUTHOR_LEN, p);
    let description = text(t, "description", base, Text::Paragraphs, MAX_DESCRIPTION_LEN, p);
    let categories = parse_categories(t.get("categories"), p);
    Some(ExtensionInfo {
        id: id?,
        name: name?,
        version: version?,
        author: author?,
        description: description?,
        categories: categories?,
    })
}

fn parse_categories(v: Option<&toml::Value>, p: &mut Problems) -> Option<Vec<String>> {
    let field = "extension.categories";
    let Some(v) = v else { return Some(Vec::new()) };
    let Some(items) = v.as_array() else {
        p.push(field, format!("must be a list of strings, found {}", type_name(v)), "write categories = [\"weather\"]");
        return None;
    };
    if items.len() > MAX_CATEGORIES {
        p.push(
            field,
            format!("has {} entries, more than the limit of {MAX_CATEGORIES}", items.len()),
            "keep the most fitting ones",
        );
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    let before = p.len();
    for (i, item) in items.iter().enumerate() {
        let f = format!("{field}[{i}]");
        match item.as_str() {
            Some(s)
                if !s.is_empty()
                    && s.len() <= MAX_CATEGORY_LEN
                    && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
            {
                if out.iter().any(|c| c == s) {
                    p.push(f, format!("duplicate category {s:?}"), "remove the repeated entry");
                } else {
                    out.push(s.to_owned());
                }
            }
            Some(s) => p.push(
                f,
                format!("{:?} is not a valid category", truncate(s, 64)),
                format!("use 1 to {MAX_CATEGORY_LEN} characters of a-z, 0-9 and '-'"),
            ),
            None => p.push(f, format!("must be a string, found {}", type_name(item)), "quote the category"),
        }
    }
    (p.len() == before).then_some(out)
}

fn parse_runtime(v: Option<&toml::Value>, id: &str, p: &mut Problems) -> Option<RuntimeLimits> {
    let mut r = RuntimeLimits::defaults_for(id);
    let Some(v) = v else { return Some(r) };
    let Some(t) = v.as_table() else {
        p.push("runtime", format!("must be a table, found {}", type_name(v)), "write it as a [runtime] section");
        return None;
    };
    deny_unknown(t, &["entrypoint", "max_memory_mb", "max_cpu_ms_per_call", "max_concurrent_calls"], "runtime", p);
    let before = p.len();
    if let Some(e) = t.get("entrypoint") {
        match e.as_str() {
            Some(s) => match check_entrypoint(s) {
                Ok(()) => r.entrypoint = s.to_owned(),
                Err(message) => p.push(
                    "runtime.entrypoint",
                    message,
                    "give the file name of the component beside the manifest, e.g. \"weather.wasm\"",
                ),
            },
            None => {
                p.push("runtime.entrypoint", format!("must be a string, found {}", type_name(e)), "quote the file name")
            }
        }
    }
    let mut int = |key: &str, max: i64| -> Option<i64> {
        let v = t.get(key)?;
        let field = format!("runtime.{key}");
        match v.as_integer() {
            Some(n) if n > 0 && n <= max => Some(n),
            Some(n) => {
                p.push(field, format!("{n} is out of range"), format!("use a whole number from 1 to {max}"));
                None
            }
            None => {
                p.push(
                    field,
                    format!("must be a whole number, found {}", type_name(v)),
                    format!("use a whole number from 1 to {max}"),
                );
                None
            }
        }
    };
    if let Some(n) = int("max_memory_mb", 4096).and_then(|n| u32::try_from(n).ok()) {
        r.max_memory_mb = n;
    }
    if let Some(n) = int("max_cpu_ms_per_call", 600_000).and_then(|n| u64::try_from(n).ok()) {
        r.max_cpu_ms_per_call = n;
    }
    if let Some(n) = int("max_concurrent_calls", 256).and_then(|n| u32::try_from(n).ok()) {
        r.max_concurrent_calls = n;
    }
    (p.len() == before).then_some(r)
}

fn check_entrypoint(s: &str) -> Result<(), String> {
    let shown = truncate(s, 64);
    if s.contains(['/', '\\']) {
        return Err(format!("{shown:?} contains a path separator; the component must sit beside the manifest"));
    }
    if s.len() > 255 {
        return Err(format!("{shown:?} is longer than 255 bytes"));
    }
    if !s.ends_with(".wasm") || s.len() == ".wasm".len() {
        return Err(format!("{shown:?} is not a .wasm file name"));
    }
    if s.starts_with('.') {
        return Err(format!("{shown:?} is a hidden file name"));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(format!("{shown:?} contains characters other than A-Z, a-z, 0-9, '.', '_' and '-'"));
    }
    Ok(())
}

/// The array-of-tables under `key`, or a problem.
fn array_of_tables<'a>(
    v: Option<&'a toml::Value>,
    key: &str,
    max: usize,
    p: &mut Problems,
) -> Vec<Option<&'a toml::Table>> {
    let Some(v) = v else { return Vec::new() };
    let Some(items) = v.as_array() else {
        p.push(
            key,
            format!("must be an array of tables, found {}", type_name(v)),
            format!("write each entry under its own [[{key}]] header"),
        );
        return Vec::new();
    };
    if items.len() > max {
        p.push(
            key,
            format!("has {} entries, more than the limit of {max}", items.len()),
            "split the extension or merge entries",
        );
        return Vec::new();
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let t = item.as_table();
            if t.is_none() {
                p.push(
                    format!("{key}[{i}]"),
                    format!("must be a table, found {}", type_name(item)),
                    format!("write each entry under its own [[{key}]] header"),
                );
            }
            t
        })
        .collect()
}

fn parse_permissions(v: Option<&toml::Value>, p: &mut Problems) -> Vec<Permission> {
    let mut out = Vec::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (i, t) in array_of_tables(v, "permissions", MAX_PERMISSIONS, p).into_iter().enumerate() {
        let Some(t) = t else { continue };
        let base = format!("permissions[{i}]");
        deny_unknown(t, &["capability", "scope", "reason", "required"], &base, p);
        let cap_field = format!("{base}.capability");
        let info = match t.get("capability") {
            None => {
                p.push(
                    cap_field,
                    "missing required field \"capability\"",
                    "add capability = \"...\" with a key from the capability catalog, e.g. \"network.http\"",
                );
                None
            }
            Some(toml::Value::String(key)) => match lookup(key) {
                Some(info) => {
                    if let Some((_, first)) = seen.iter().find(|(k, _)| k == key) {
                        p.push(
                            cap_field,
                            format!("{key} is already requested by permissions[{first}]"),
                            "merge the two entries into one (one permission per capability)",
                        );
                        None
                    } else {
                        seen.push((key.clone(), i));
                        Some(info)
                    }
                }
                None => {
                    let fix = match closest_key(key) {
                        Some(k) => format!("did you mean {k:?}? See the capability catalog in the manifest reference"),
                        None => {
                            "use a key from the capability catalog in the manifest reference, e.g. \"network.http\""
                                .to_owned()
                        }
                    };
                    p.push(cap_field, format!("unknown capability {:?}", truncate(key, 64)), fix);
                    // A typo should not hide the entry's other problems: check its scope as
                    // the capability it most likely means.
                    if let Some(meant) = closest_key(key).and_then(lookup) {
                        if let Err(problems) = Scope::parse(meant, t.get("scope"), &format!("{base}.scope")) {
                            p.0.extend(problems);
                        }
                    }
                    None
                }
            },
            Some(other) => {
                p.push(cap_field, format!("must be a string, found {}", type_name(other)), "quote the capability key");
                None
            }
        };
        let reason = text(t, "reason", &base, Text::Line, MAX_REASON_LEN, p);
        let required = match t.get("required") {
            None => Some(true),
            Some(toml::Value::Boolean(b)) => Some(*b),
            Some(other) => {
                p.push(
                    format!("{base}.required"),
                    format!("must be true or false, found {}", type_name(other)),
                    "write required = true or required = false",
                );
                None
            }
        };
        let scope = info.and_then(|info| match Scope::parse(info, t.get("scope"), &format!("{base}.scope")) {
            Ok(s) => Some(s),
            Err(problems) => {
                p.0.extend(problems);
                None
            }
        });
        if let (Some(info), Some(scope), Some(reason), Some(required)) = (info, scope, reason, required) {
            out.push(Permission { capability: info.key.to_owned(), scope, reason, required });
        }
    }
    out
}

fn parse_tools(v: Option<&toml::Value>, p: &mut Problems) -> Vec<ToolSpec> {
    let mut out: Vec<ToolSpec> = Vec::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (i, t) in array_of_tables(v, "tools", MAX_TOOLS, p).into_iter().enumerate() {
        let Some(t) = t else { continue };
        let base = format!("tools[{i}]");
        deny_unknown(t, &["name", "description", "parameters"], &base, p);
        let name_field = format!("{base}.name");
        let name = match t.get("name") {
            None => {
                p.push(name_field, "missing required field \"name\"", "add name = \"my_tool\"");
                None
            }
            Some(toml::Value::String(s)) => {
                let valid = s.len() <= MAX_TOOL_NAME_LEN
                    && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                    && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !valid {
                    p.push(
                        name_field,
                        format!("{:?} is not a valid tool name", truncate(s, 64)),
                        format!("start with a-z, then a-z, 0-9 or '_', at most {MAX_TOOL_NAME_LEN} characters, e.g. \"get_weather\""),
                    );
                    None
                } else if let Some((_, first)) = seen.iter().find(|(n, _)| n == s) {
                    p.push(
                        name_field,
                        format!("tool {s:?} is already defined by tools[{first}]"),
                        "give each tool a unique name",
                    );
                    None
                } else {
                    seen.push((s.clone(), i));
                    Some(s.clone())
                }
            }
            Some(other) => {
                p.push(name_field, format!("must be a string, found {}", type_name(other)), "quote the name");
                None
            }
        };
        let description = text(t, "description", &base, Text::Paragraphs, MAX_DESCRIPTION_LEN, p);
        let parameters = parse_parameters(t.get("parameters"), &format!("{base}.parameters"), name.as_deref(), p);
        if let (Some(name), Some(description), Some(parameters)) = (name, description, parameters) {
            out.push(ToolSpec { name, description, parameters });
        }
    }
    out
}

/// Drafts whose meta-schemas are bundled; any other `$schema` would need a download.
const KNOWN_DRAFTS: [&str; 10] = [
    "http://json-schema.org/draft-04/schema#",
    "http://json-schema.org/draft-04/schema",
    "http://json-schema.org/draft-06/schema#",
    "http://json-schema.org/draft-06/schema",
    "http://json-schema.org/draft-07/schema#",
    "http://json-schema.org/draft-07/schema",
    "https://json-schema.org/draft/2019-09/schema",
    "https://json-schema.org/draft/2019-09/schema#",
    "https://json-schema.org/draft/2020-12/schema",
    "https://json-schema.org/draft/2020-12/schema#",
];

fn parse_parameters(
    v: Option<&toml::Value>,
    field: &str,
    tool: Option<&str>,
    p: &mut Problems,
) -> Option<serde_json::Value> {
    let fix = "write a JSON Schema object such as { type = \"object\", properties = { city = { type = \"string\" } } }";
    let schema = match v {
        None => return Some(serde_json::json!({ "type": "object", "properties": {} })),
        Some(toml::Value::String(s)) => {
            if s.len() > MAX_PARAMETERS_BYTES {
                p.push(
                    field,
                    format!("is {} bytes, more than the limit of {MAX_PARAMETERS_BYTES}", s.len()),
                    "simplify the schema",
                );
                return None;
            }
            match serde_json::from_str::<serde_json::Value>(s) {
                Ok(v) => v,
                Err(e) => {
                    p.push(field, format!("is a string but not valid JSON: {e}"), fix);
                    return None;
                }
            }
        }
        Some(toml::Value::Table(t)) => match toml_to_json(&toml::Value::Table(t.clone()), 0) {
            Ok(v) => v,
            Err(message) => {
                p.push(field, message, fix);
                return None;
            }
        },
        Some(other) => {
            p.push(field, format!("must be a table or a string holding JSON, found {}", type_name(other)), fix);
            return None;
        }
    };
    if json_depth_exceeds(&schema, MAX_SCHEMA_DEPTH) {
        p.push(field, format!("is nested more than {MAX_SCHEMA_DEPTH} levels deep"), "flatten the schema");
        return None;
    }
    let Some(obj) = schema.as_object() else {
        p.push(field, "must be a JSON object (a schema)", fix);
        return None;
    };
    if obj.get("type").and_then(|t| t.as_str()) != Some("object") {
        p.push(
            field,
            "the top-level \"type\" must be \"object\" (tools take named arguments)",
            "add type = \"object\" and describe the arguments under properties",
        );
        return None;
    }
    if let Some(s) = obj.get("$schema") {
        if !s.as_str().is_some_and(|s| KNOWN_DRAFTS.contains(&s)) {
            p.push(field, "\"$schema\" names a meta-schema that is not bundled", "remove \"$schema\" or use a standard draft URL such as \"https://json-schema.org/draft/2020-12/schema\"");
            return None;
        }
    }
    if let Err(e) = jsonschema::meta::validate(&schema) {
        p.push(field, format!("is not a valid JSON Schema: {} (at {})", e, e.instance_path()), fix);
        return None;
    }
    if let Err(e) = jsonschema::validator_for(&schema) {
        p.push(
            field,
            format!("cannot be compiled as a JSON Schema: {e}"),
            "fix the keyword named in the message; remote $ref is not supported",
        );
        return None;
    }
    if let Err(e) = schema_expansion(&schema) {
        let tool = tool.map_or_else(String::new, |t| format!("of tool {t:?} "));
        p.push(field, format!("{tool}{e}"), e.fix());
        return None;
    }
    Some(schema)
}

/// Why a parameter schema is refused by [`schema_expansion`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum SchemaCost {
    /// It expands past [`MAX_SCHEMA_EXPANSION`] nodes.
    TooLarge,
    /// `$ref`s lead through more than [`MAX_SCHEMA_REF_CHAIN`] others.
    ChainTooLong(String),
    /// A `$ref` leads back to a schema it is part of.
    Recursive(String),
    /// A `$ref` that is not a reference into this schema.
    NotLocal(String),
    /// A `$ref` whose target is missing.
    Unresolved(String),
    /// An `$id` below the top, which would change what `$ref`s inside it mean.
    NestedId(String),
}

impl std::fmt::Display for SchemaCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchemaCost::TooLarge => write!(
                f,
                "expands to more than {MAX_SCHEMA_EXPANSION} schema nodes when its $refs are followed, which would make checking the arguments of each call take too long"
            ),
            SchemaCost::ChainTooLong(r) => write!(f, "follows more than {MAX_SCHEMA_REF_CHAIN} $refs in a row (at {r:?})"),
            SchemaCost::Recursive(r) => write!(f, "refers back to itself through $ref {r:?}"),
            SchemaCost::NotLocal(r) => write!(f, "has the $ref {r:?}, which does not point into this schema"),
            SchemaCost::Unresolved(r) => write!(f, "has the $ref {r:?}, which points at nothing"),
            SchemaCost::NestedId(id) => write!(f, "sets $id {id:?} below the top level"),
        }
    }
}

impl SchemaCost {
    fn fix(&self) -> &'static str {
        match self {
            SchemaCost::TooLarge | SchemaCost::ChainTooLong(_) => {
                "simplify the schema: refer to each definition once (not twice through allOf/anyOf/oneOf at every level) and keep it under the limit"
            }
            SchemaCost::Recursive(_) => {
                "tool parameters cannot be recursive; describe nested values to a fixed depth instead"
            }
            SchemaCost::NotLocal(_) | SchemaCost::Unresolved(_) | SchemaCost::NestedId(_) => {
                "use references into this schema only, such as \"#/$defs/name\" or \"#anchor\", and no $id below the top"
            }
        }
    }
}

/// Keywords whose values are data, not schemas: a `$ref` inside them is not followed.
const DATA_KEYWORDS: [&str; 4] = ["enum", "const", "default", "examples"];
/// Keywords that point at another schema.
const REF_KEYWORDS: [&str; 3] = ["$ref", "$dynamicRef", "$recursiveRef"];

/// The number of nodes `schema` expands to when every `$ref` is inlined, or why it is
/// refused. Each target is sized once (memoized), so the count itself costs time in
/// proportion to the schema's text, however large the expansion.
fn schema_expansion(schema: &serde_json::Value) -> Result<u64, SchemaCost> {
    let mut anchors = HashMap::new();
    collect_anchors(schema, String::new(), true, &mut anchors)?;
    let mut walk = Expansion { root: schema, anchors, memo: HashMap::new(), active: Vec::new() };
    let n = walk.size(schema)?;
    if n > MAX_SCHEMA_EXPANSION {
        return Err(SchemaCost::TooLarge);
    }
    Ok(n)
}

/// Records each `$anchor` (and `$dynamicAnchor`, and the older `$id = "#name"`) by the
/// JSON pointer of the schema that carries it; refuses an `$id` below the top level.
fn collect_anchors(
    v: &serde_json::Value,
    pointer: String,
    top: bool,
    anchors: &mut HashMap<String, String>,
) -> Result<(), SchemaCost> {
    match v {
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                if let (Some(s), true) = (x.as_str(), matches!(k.as_str(), "$anchor" | "$dynamicAnchor")) {
                    anchors.insert(s.to_owned(), pointer.clone());
                } else if let (Some(s), true) = (x.as_str(), matches!(k.as_str(), "$id" | "id")) {
                    match s.strip_prefix('#') {
                        Some(name) if !name.is_empty() && !name.starts_with('/') => {
                            anchors.insert(name.to_owned(), pointer.clone());
                        }
                        _ if top => {}
                        _ => return Err(SchemaCost::NestedId(s.to_owned())),
                    }
                } else if !DATA_KEYWORDS.contains(&k.as_str()) {
                    collect_anchors(
                        x,
                        format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1")),
                        false,
                        anchors,
                    )?;
                }
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                collect_anchors(x, format!("{pointer}/{i}"), false, anchors)?;
            }
        }
        _ => {}
    }
    Ok(())
}

struct Expansion<'a> {
    root: &'a serde_json::Value,
    /// Anchor name to the JSON pointer of its schema.
    anchors: HashMap<String, String>,
    /// Expanded size of each `$ref` target already sized, by JSON pointer.
    memo: HashMap<String, u64>,
    /// The `$ref` targets being sized, outermost first.
    active: Vec<String>,
}

impl Expansion<'_> {
    /// Sizes are capped just past the limit, so sums cannot overflow and the walk stops
    /// as soon as the answer is known.
    fn size(&mut self, v: &serde_json::Value) -> Result<u64, SchemaCost> {
        let mut n = 1u64;
        match v {
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    n += match (REF_KEYWORDS.contains(&k.as_str()), x.as_str()) {
                        (true, Some(r)) => self.follow(r)?,
                        _ if DATA_KEYWORDS.contains(&k.as_str()) => data_size(x),
                        _ => self.size(x)?,
                    };
                    if n > MAX_SCHEMA_EXPANSION {
                        return Err(SchemaCost::TooLarge);
                    }
                }
            }
            serde_json::Value::Array(a) => {
                for x in a {
                    n += self.size(x)?;
                    if n > MAX_SCHEMA_EXPANSION {
                        return Err(SchemaCost::TooLarge);
                    }
                }
            }
            _ => {}
        }
        Ok(n)
    }

    fn follow(&mut self, reference: &str) -> Result<u64, SchemaCost> {
        let pointer = match reference.strip_prefix('#') {
            None => return Err(SchemaCost::NotLocal(reference.to_owned())),
            Some(p) if p.is_empty() || p.starts_with('/') => percent_decode(p),
            Some(name) => match self.anchors.get(name) {
                Some(p) => p.clone(),
                None => return Err(SchemaCost::Unresolved(reference.to_owned())),
            },
        };
        if let Some(n) = self.memo.get(&pointer) {
            return Ok(*n);
        }
        if self.active.contains(&pointer) {
            return Err(SchemaCost::Recursive(reference.to_owned()));
        }
        if self.active.len() >= MAX_SCHEMA_REF_CHAIN {
            return Err(SchemaCost::ChainTooLong(reference.to_owned()));
        }
        let Some(target) = self.root.pointer(&pointer) else {
            return Err(SchemaCost::Unresolved(reference.to_owned()));
        };
        self.active.push(pointer.clone());
        let n = self.size(target);
        self.active.pop();
        let n = n?;
        self.memo.insert(pointer, n);
        Ok(n)
    }
}

/// Nodes in a data value (an `enum` list, a `default`), which validation compares whole.
fn data_size(v: &serde_json::Value) -> u64 {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(data_size).sum::<u64>(),
        serde_json::Value::Object(o) => 1 + o.values().map(data_size).sum::<u64>(),
        _ => 1,
    }
}

/// A URI fragment's `%XX` escapes decoded (a JSON pointer in a `$ref` is written as one).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_depth_exceeds(v: &serde_json::Value, max: usize) -> bool {
    // Iterative, so a deep value cannot overflow the stack here.
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        if d > max {
            return true;
        }
        match v {
            serde_json::Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            serde_json::Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    false
}

fn toml_to_json(v: &toml::Value, depth: usize) -> Result<serde_json::Value, String> {
    if depth > MAX_SCHEMA_DEPTH {
        return Err(format!("is nested more than {MAX_SCHEMA_DEPTH} levels deep"));
    }
    Ok(match v {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(n) => serde_json::Value::from(*n),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| format!("contains {f}, which JSON cannot represent"))?,
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => {
            return Err(format!("contains the date-time {d}, which JSON Schema cannot hold; quote it"))
        }
        toml::Value::Array(a) => {
            serde_json::Value::Array(a.iter().map(|x| toml_to_json(x, depth + 1)).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(t) => serde_json::Value::Object(
            t.iter().map(|(k, x)| Ok((k.clone(), toml_to_json(x, depth + 1)?))).collect::<Result<_, String>>()?,
        ),
    })
}

/// JSON as TOML; `None` when TOML cannot hold it (null, or integers beyond i64).
fn json_to_toml(v: &serde_json::Value, depth: usize) -> Option<toml::Value> {
    if depth > MAX_SCHEMA_DEPTH {
        return None;
    }
    Some(match v {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => toml::Value::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None if n.is_u64() => return None,
            None => toml::Value::Float(n.as_f64()?),
        },
        serde_json::Value::String(s) => toml::Value::String(s.clone()),
        serde_json::Value::Array(a) => {
            toml::Value::Array(a.iter().map(|x| json_to_toml(x, depth + 1)).collect::<Option<_>>()?)
        }
        serde_json::Value::Object(o) => toml::Value::Table(
            o.iter().map(|(k, x)| Some((k.clone(), json_to_toml(x, depth + 1)?))).collect::<Option<_>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HEADER: &str = r#"
[extension]
id = "dev.omni.weather"
name = "Weather"
version = "0.1.0"
author = "Omni"
description = "Current weather and forecasts from Open-Meteo."
"#;

    const FULL: &str = r#"
[extension]
id = "dev.omni.weather"
name = "Weather"
version = "1.2.3-beta.1+build.5"
author = "Omni"
description = """
Current weather and forecasts.
Second line\twith a tab."""
categories = ["weather", "data-2"]

[runtime]
entrypoint = "weather.wasm"
max_memory_mb = 128
max_cpu_ms_per_call = 10000
max_concurrent_calls = 2

[[permissions]]
capability = "network.http"
reason = "Fetch the forecast"
required = true
scope = { domains = ["api.open-meteo.com", "http://legacy.example.org"], methods = ["GET"], ports = [443, 80] }

[[permissions]]
capability = "storage.persistent"
reason = "Cache forecasts"
required = false
scope = { max_bytes = "1MiB" }

[[permissions]]
capability = "system.notifications"
reason = "Warn about storms"

[[tools]]
name = "get_weather"
description = "Current weather at a place"
parameters = { type = "object", properties = { latitude = { type = "number", minimum = -90.0, maximum = 90.0 }, longitude = { type = "number" } }, required = ["latitude", "longitude"] }

[[tools]]
name = "forecast"
description = "Forecast"
parameters = '{"type": "object", "properties": {"days": {"type": ["integer", "null"], "default": null}}}'
"#;

    fn manifest(text: &str) -> Manifest {
        Manifest::from_toml_str(text, "manifest.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn fields(text: &str) -> Vec<String> {
        match Manifest::from_toml_str(text, "manifest.toml") {
            Ok(m) => panic!("accepted: {m:?}"),
            Err(e) => e.problems.into_iter().map(|p| p.field).collect(),
        }
    }

    fn with(extra: &str) -> String {
        format!("{HEADER}\n{extra}")
    }

    /// Top-level keys must come before the first table header.
    fn top(extra: &str) -> String {
        format!("{extra}\n{HEADER}")
    }

    fn ext(replace: &str, by: &str) -> String {
        assert!(HEADER.contains(replace), "{replace}");
        HEADER.replacen(replace, by, 1)
    }

    /// A mistyped capability key does not hide the entry's other problems: its scope is
    /// checked as the capability the key most likely means.
    #[test]
    fn a_mistyped_capability_still_shows_its_scope_problems() {
        let got = fields(&with(
            "[[permissions]]\ncapability = \"network.htp\"\nreason = \"Fetch\"\nscope = { domains = [\"*\"], methods = [\"FETCH\"] }",
        ));
        assert_eq!(
            got,
            ["permissions[0].capability", "permissions[0].scope.domains[0]", "permissions[0].scope.methods[0]"],
            "{got:?}"
        );
    }

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m = manifest(HEADER);
        assert_eq!(m.extension.id, "dev.omni.weather");
        assert_eq!(m.extension.version, semver::Version::new(0, 1, 0));
        assert!(m.extension.categories.is_empty());
        assert_eq!(m.runtime, RuntimeLimits::defaults_for("dev.omni.weather"));
        assert_eq!(m.runtime.entrypoint, "weather.wasm");
        assert!(m.permissions.is_empty() && m.tools.is_empty());
        let m = manifest(&with("[[tools]]\nname = \"ping\"\ndescription = \"Ping\"\n[[permissions]]\ncapability = \"clipboard.write\"\nreason = \"Copy\""));
        assert_eq!(m.tool("ping").map(|t| t.parameters.clone()), Some(json!({"type": "object", "properties": {}})));
        assert_eq!(m.permission("clipboard.write").map(|p| (p.required, p.scope.clone())), Some((true, Scope::None)));
        assert!(m.permission("clipboard.read").is_none());
        assert!(m.tool("pong").is_none());
        let m = manifest(&with("[runtime]\nmax_memory_mb = 32"));
        assert_eq!(
            (m.runtime.max_memory_mb, m.runtime.max_cpu_ms_per_call, m.runtime.max_concurrent_calls),
            (32, 5000, 4)
        );
        assert_eq!(m.entrypoint_path(Path::new("ext")), Path::new("ext").join("weather.wasm"));
    }

    #[test]
    fn full_manifest() {
        let m = manifest(FULL);
        assert_eq!(m.extension.version.to_string(), "1.2.3-beta.1+build.5");
        assert_eq!(m.extension.categories, ["weather", "data-2"]);
        assert!(m.extension.description.contains('\n'));
        assert_eq!(m.runtime.max_memory_mb, 128);
        assert_eq!(m.permissions.len(), 3);
        let http = m.permission("network.http").and_then(|p| p.scope.as_network().cloned());
        assert_eq!(
            http.map(|n| n.to_string()).as_deref(),
            Some("domains: api.open-meteo.com, http://legacy.example.org; methods: GET; ports: 443, 80")
        );
        assert_eq!(m.permission("storage.persistent").map(|p| p.required), Some(false));
        assert_eq!(m.tools.len(), 2);
        assert_eq!(m.tools[1].parameters["properties"]["days"]["default"], serde_json::Value::Null);
    }

    #[test]
    fn round_trips_through_toml_and_json() {
        for text in [HEADER, FULL] {
            let m = manifest(text);
            let written = m.to_toml_string();
            let back = Manifest::from_toml_str(&written, "written").unwrap_or_else(|e| panic!("{e}\n{written}"));
            assert_eq!(back, m, "{written}");
            // And once more: the written form is stable.
            assert_eq!(back.to_toml_string(), written);
            let json = serde_json::to_string(&m).unwrap_or_default();
            let from_json: Manifest = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
            assert_eq!(from_json, m);
        }
    }

    #[test]
    fn toml_syntax_and_size() {
        let e = Manifest::from_toml_str("[extension\nid = 1", "bad.toml").unwrap_err();
        assert_eq!(e.problems.len(), 1);
        assert_eq!(e.problems[0].field, "");
        assert!(e.problems[0].message.starts_with("not valid TOML at line 1, column 11:"), "{}", e.problems[0].message);
        let e = Manifest::from_toml_str("[extension]\nid = \"a.b\"\nname = \"x\" y\n", "bad.toml").unwrap_err();
        assert!(e.problems[0].message.starts_with("not valid TOML at line 3, column"), "{}", e.problems[0].message);
        assert!(e.to_string().starts_with("bad.toml: invalid manifest (1 problem)"));
        let huge = format!("{HEADER}\n# {}", "x".repeat(MAX_MANIFEST_BYTES));
        let e = Manifest::from_toml_str(&huge, "huge.toml").unwrap_err();
        assert!(e.problems[0].message.contains("bytes"));
        assert_eq!(fields(""), ["extension"]);
        assert_eq!(fields("extension = 1"), ["extension"]);
    }

    #[test]
    fn hostile_nesting_is_refused_without_crashing() {
        let deep_array = format!("{HEADER}\nx = {}{}", "[".repeat(50_000), "]".repeat(50_000));
        assert!(Manifest::from_toml_str(&deep_array, "deep.toml").is_err());
        let deep_table = format!("{HEADER}\nx = {}1{}", "{a = ".repeat(50_000), "}".repeat(50_000));
        assert!(Manifest::from_toml_str(&deep_table, "deep.toml").is_err());
        let deep_schema = format!(
            "{HEADER}\n[[tools]]\nname = \"t\"\ndescription = \"d\"\nparameters = {{ type = \"object\", properties = {{ a = {}1{} }} }}",
            "{ x = ".repeat(40),
            "}".repeat(40)
        );
        assert_eq!(fields(&deep_schema), ["tools[0].parameters"]);
        let deep_json = format!(
            "{HEADER}\n[[tools]]\nname = \"t\"\ndescription = \"d\"\nparameters = '{{\"type\": \"object\", \"properties\": {}1{}}}'",
            "{\"a\": ".repeat(60),
            "}".repeat(60)
        );
        assert_eq!(fields(&deep_json), ["tools[0].parameters"]);
        let very_deep_json = format!(
            "{HEADER}\n[[tools]]\nname = \"t\"\ndescription = \"d\"\nparameters = '{}1{}'",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(fields(&very_deep_json), ["tools[0].parameters"]);
    }

    #[test]
    fn unknown_keys_everywhere() {
        assert_eq!(fields(&top("homepage = 'x'\n[extras]\na = 1")), ["homepage", "extras"]);
        assert_eq!(fields(&ext("author", "homepage = 'https://x'\nauthor")), ["extension.homepage"]);
        assert_eq!(fields(&with("[runtime]\nthreads = 2")), ["runtime.threads"]);
        assert_eq!(
            fields(&with("[[permissions]]\ncapability = 'clipboard.write'\nreason = 'r'\nwhy = 'x'")),
            ["permissions[0].why"]
        );
        assert_eq!(fields(&with("[[tools]]\nname = 't'\ndescription = 'd'\nschema = {}")), ["tools[0].schema"]);
        let e = Manifest::from_toml_str(&with("[runtime]\nthreads = 2"), "m.toml").unwrap_err();
        assert!(e.problems[0].fix.contains("entrypoint, max_memory_mb"), "{}", e.problems[0].fix);
    }

    #[test]
    fn extension_id_rules() {
        for good in ["dev.omni.weather", "a.b", "com.example.my-tool", "io.x9.t-1", "0.1"] {
            assert!(Manifest::from_toml_str(&ext("dev.omni.weather", good), "m").is_ok(), "{good}");
        }
        let long = format!("dev.{}", "a".repeat(MAX_ID_LEN));
        let label = format!("dev.{}", "a".repeat(64));
        for bad in [
            "weather",
            "",
            "Dev.omni.weather",
            "dev..weather",
            ".dev.weather",
            "dev.weather.",
            "dev.-omni",
            "dev.omni-",
            "dev.omni_weather",
            "dev.omni weather",
            "d\u{0435}v.omni.weather",
            "dev.omni.weather\u{200B}",
            "dev/omni",
            long.as_str(),
            label.as_str(),
        ] {
            assert_eq!(fields(&ext("dev.omni.weather", bad)), ["extension.id"], "{bad:?}");
        }
        let e = Manifest::from_toml_str(&ext("dev.omni.weather", "d\u{0435}v.omni.weather"), "m").unwrap_err();
        assert!(e.problems[0].message.contains("U+0435"), "{}", e.problems[0].message);
        let e = Manifest::from_toml_str(&ext("dev.omni.weather", "Dev.Omni.X"), "m").unwrap_err();
        assert!(e.problems[0].fix.contains("dev.omni.x"));
        assert_eq!(fields(&ext("id = \"dev.omni.weather\"", "id = 7")), ["extension.id"]);
        assert_eq!(fields(&ext("id = \"dev.omni.weather\"", "")), ["extension.id"]);
    }

    #[test]
    fn extension_text_rules() {
        assert_eq!(fields(&ext("name = \"Weather\"", "name = \"\"")), ["extension.name"]);
        assert_eq!(fields(&ext("name = \"Weather\"", "name = \"   \"")), ["extension.name"]);
        assert_eq!(fields(&ext("name = \"Weather\"", "name = \"Wea\\nther\"")), ["extension.name"]);
        assert_eq!(fields(&ext("name = \"Weather\"", "name = \"Weather\\u202Eexe.txt\"")), ["extension.name"]);
        assert_eq!(
            fields(&ext("name = \"Weather\"", &format!("name = \"{}\"", "W".repeat(MAX_NAME_LEN + 1)))),
            ["extension.name"]
        );
        assert_eq!(fields(&ext("name = \"Weather\"", "name = 1")), ["extension.name"]);
        assert_eq!(fields(&ext("name = \"Weather\"", "")), ["extension.name"]);
        assert_eq!(fields(&ext("author = \"Omni\"", "")), ["extension.author"]);
        assert_eq!(fields(&ext("author = \"Omni\"", "author = \"O\\u0000\"")), ["extension.author"]);
        assert_eq!(
            fields(&ext("description = \"Current", "description = \"\\u200BCurrent")),
            ["extension.description"]
        );
        assert_eq!(
            fields(&ext("description = \"Current", "description = \"\\u0007Current")),
            ["extension.description"]
        );
        let huge = format!("description = \"{}\"", "d".repeat(1_000_000 - 1000));
        assert_eq!(
            fields(&ext("description = \"Current weather and forecasts from Open-Meteo.\"", &huge)),
            ["extension.description"]
        );
        // Non-Latin text is fine where it cannot impersonate an id.
        assert!(Manifest::from_toml_str(&ext("name = \"Weather\"", "name = \"Погода ☀\""), "m").is_ok());
    }

    #[test]
    fn version_rules() {
        for bad in [
            "version = \"0.1\"",
            "version = \"v1.0.0\"",
            "version = 0.1",
            "version = \"1.0.0.0\"",
            "version = \"\"",
            "",
        ] {
            assert_eq!(fields(&ext("version = \"0.1.0\"", bad)), ["extension.version"], "{bad}");
        }
    }

    #[test]
    fn categories_rules() {
        assert_eq!(fields(&with("").replace("author", "categories = 'weather'\nauthor")), ["extension.categories"]);
        assert_eq!(
            fields(&ext("author", "categories = ['ok', 'Weather', 'ok', 3, '']\nauthor")),
            [
                "extension.categories[1]",
                "extension.categories[2]",
                "extension.categories[3]",
                "extension.categories[4]"
            ]
        );
        let many = format!(
            "categories = [{}]\nauthor",
            (0..=MAX_CATEGORIES).map(|i| format!("'c{i}'")).collect::<Vec<_>>().join(",")
        );
        assert_eq!(fields(&ext("author", &many)), ["extension.categories"]);
    }

    #[test]
    fn runtime_rules() {
        for (text, field) in [
            ("entrypoint = '../weather.wasm'", "runtime.entrypoint"),
            ("entrypoint = 'dir/weather.wasm'", "runtime.entrypoint"),
            ("entrypoint = 'dir\\\\weather.wasm'", "runtime.entrypoint"),
            ("entrypoint = 'weather.wat'", "runtime.entrypoint"),
            ("entrypoint = '.wasm'", "runtime.entrypoint"),
            ("entrypoint = '.hidden.wasm'", "runtime.entrypoint"),
            ("entrypoint = 'we ather.wasm'", "runtime.entrypoint"),
            ("entrypoint = 5", "runtime.entrypoint"),
            ("max_memory_mb = 0", "runtime.max_memory_mb"),
            ("max_memory_mb = 4097", "runtime.max_memory_mb"),
            ("max_memory_mb = '64'", "runtime.max_memory_mb"),
            ("max_memory_mb = -1", "runtime.max_memory_mb"),
            ("max_cpu_ms_per_call = 0", "runtime.max_cpu_ms_per_call"),
            ("max_cpu_ms_per_call = 600001", "runtime.max_cpu_ms_per_call"),
            ("max_concurrent_calls = 257", "runtime.max_concurrent_calls"),
            ("max_concurrent_calls = 1.0", "runtime.max_concurrent_calls"),
        ] {
            assert_eq!(fields(&with(&format!("[runtime]\n{text}"))), [field], "{text}");
        }
        assert_eq!(fields(&top("runtime = 3")), ["runtime"]);
        let m = manifest(&with("[runtime]\nentrypoint = 'My_Tool-2.wasm'\nmax_memory_mb = 4096\nmax_cpu_ms_per_call = 600000\nmax_concurrent_calls = 256"));
        assert_eq!(m.runtime.entrypoint, "My_Tool-2.wasm");
        assert_eq!(
            (m.runtime.max_memory_mb, m.runtime.max_cpu_ms_per_call, m.runtime.max_concurrent_calls),
            (4096, 600_000, 256)
        );
    }

    #[test]
    fn permission_rules() {
        let e = Manifest::from_toml_str(&with("[[permissions]]\ncapability = 'network.htp'\nreason = 'r'"), "m")
            .unwrap_err();
        assert_eq!(e.problems[0].field, "permissions[0].capability");
        assert!(e.problems[0].fix.contains("network.http"), "{}", e.problems[0].fix);
        assert_eq!(fields(&with("[[permissions]]\nreason = 'r'")), ["permissions[0].capability"]);
        assert_eq!(fields(&with("[[permissions]]\ncapability = 3\nreason = 'r'")), ["permissions[0].capability"]);
        assert_eq!(fields(&with("[[permissions]]\ncapability = 'clipboard.read'")), ["permissions[0].reason"]);
        assert_eq!(
            fields(&with("[[permissions]]\ncapability = 'clipboard.read'\nreason = ''")),
            ["permissions[0].reason"]
        );
        assert_eq!(
            fields(&with("[[permissions]]\ncapability = 'clipboard.read'\nreason = 'r'\nrequired = 'yes'")),
            ["permissions[0].required"]
        );
        assert_eq!(
            fields(&with("[[permissions]]\ncapability = 'clipboard.read'\nreason = 'a'\n[[permissions]]\ncapability = 'clipboard.write'\nreason = 'b'\n[[permissions]]\ncapability = 'clipboard.read'\nreason = 'c'")),
            ["permissions[2].capability"]
        );
        let e = Manifest::from_toml_str(
            &with("[[permissions]]\ncapability = 'clipboard.read'\nreason = 'a'\n[[permissions]]\ncapability = 'clipboard.read'\nreason = 'c'"),
            "m",
        )
        .unwrap_err();
        assert!(e.problems[0].message.contains("permissions[0]"));
        assert_eq!(fields(&with("[permissions]\ncapability = 'clipboard.read'\nreason = 'a'")), ["permissions"]);
        assert_eq!(fields(&top("permissions = [1, 'x']")), ["permissions[0]", "permissions[1]"]);
        assert_eq!(
            fields(&with("[[permissions]]\ncapability = 'clipboard.read'\nreason = 'a'\nscope = { x = 1 }")),
            ["permissions[0].scope.x"]
        );
        assert_eq!(
            fields(&with("[[permissions]]\ncapability = 'network.http'\nreason = 'a'\nscope = { domains = ['ok.example.com', 'evil.com@example.com'] }")),
            ["permissions[0].scope.domains[1]"]
        );
        let many: String = (0..=MAX_PERMISSIONS)
            .map(|i| format!("[[permissions]]\ncapability = 'clipboard.read'\nreason = '{i}'\n"))
            .collect();
        assert_eq!(fields(&with(&many)), ["permissions"]);
    }

    #[test]
    fn tool_rules() {
        let tool = |name: &str, rest: &str| with(&format!("[[tools]]\nname = '{name}'\ndescription = 'd'\n{rest}"));
        for bad in ["GetWeather", "1abc", "get-weather", "_x", "", "get weather", "gét"] {
            assert_eq!(fields(&tool(bad, "")), ["tools[0].name"], "{bad:?}");
        }
        assert_eq!(fields(&tool(&"a".repeat(MAX_TOOL_NAME_LEN + 1), "")), ["tools[0].name"]);
        assert_eq!(fields(&format!("{}\n[[tools]]\nname = 'a'\ndescription = 'd'", tool("a", ""))), ["tools[1].name"]);
        assert_eq!(fields(&with("[[tools]]\ndescription = 'd'")), ["tools[0].name"]);
        assert_eq!(fields(&with("[[tools]]\nname = 'a'")), ["tools[0].description"]);
        assert_eq!(fields(&with("[tools]\nname = 'a'\ndescription = 'd'")), ["tools"]);
        assert_eq!(fields(&tool("t", "parameters = { type = 'string' }")), ["tools[0].parameters"]);
        assert_eq!(fields(&tool("t", "parameters = { properties = {} }")), ["tools[0].parameters"]);
        assert_eq!(fields(&tool("t", "parameters = { type = 'object', properties = 5 }")), ["tools[0].parameters"]);
        assert_eq!(fields(&tool("t", "parameters = { type = 'object', required = 'a' }")), ["tools[0].parameters"]);
        assert_eq!(
            fields(&tool("t", "parameters = { type = 'object', properties = { a = { type = 'strin' } } }")),
            ["tools[0].parameters"]
        );
        assert_eq!(
            fields(&tool(
                "t",
                "parameters = { type = 'object', properties = { a = { type = 'string', pattern = '(' } } }"
            )),
            ["tools[0].parameters"]
        );
        assert_eq!(
            fields(&tool("t", "parameters = { type = 'object', '$ref' = 'https://example.com/s.json' }")),
            ["tools[0].parameters"]
        );
        assert_eq!(
            fields(&tool("t", "parameters = { type = 'object', '$schema' = 'https://example.com/meta' }")),
            ["tools[0].parameters"]
        );
        assert_eq!(
            fields(&tool("t", "parameters = { type = 'object', default = 1979-05-27 }")),
            ["tools[0].parameters"]
        );
        assert_eq!(fields(&tool("t", "parameters = { type = 'object', maximum = nan }")), ["tools[0].parameters"]);
        assert_eq!(fields(&tool("t", "parameters = 5")), ["tools[0].parameters"]);
        assert_eq!(fields(&tool("t", "parameters = '{\"type\": \"object\",}'")), ["tools[0].parameters"]);
        assert_eq!(fields(&tool("t", "parameters = '[1]'")), ["tools[0].parameters"]);
        let big = format!(
            "parameters = '{{\"type\": \"object\", \"description\": \"{}\"}}'",
            "x".repeat(MAX_PARAMETERS_BYTES)
        );
        assert_eq!(fields(&tool("t", &big)), ["tools[0].parameters"]);
        assert_eq!(
            fields(&with("[[tools]]\nname = 'a'\ndescription = 'hidden\u{E0041}tag'")),
            ["tools[0].description"]
        );
        let ok = manifest(&tool(
            "t",
            "parameters = { '$schema' = 'https://json-schema.org/draft/2020-12/schema', type = 'object' }",
        ));
        assert_eq!(ok.tools[0].parameters["type"], "object");
    }

    #[test]
    fn validate_arguments() {
        let m = manifest(FULL);
        let Some(tool) = m.tool("get_weather") else { panic!("tool") };
        assert!(tool.validate_arguments(&json!({"latitude": 52.5, "longitude": 13.4})).is_ok());
        let errs = tool.validate_arguments(&json!({"latitude": 100, "longitude": "east"})).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("/latitude")), "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("/longitude")), "{errs:?}");
        // A missing property is a problem of the whole object: no empty pointer in front.
        let errs = tool.validate_arguments(&json!({"latitude": 52.5})).unwrap_err();
        assert_eq!(errs, ["\"longitude\" is a required property"], "{errs:?}");
        let errs = tool.validate_arguments(&json!({"latitude": 1})).unwrap_err();
        assert!(errs[0].contains("longitude"), "{errs:?}");
        assert!(tool.validate_arguments(&json!("not an object")).is_err());
        let broken = ToolSpec { name: "b".into(), description: "d".into(), parameters: json!({"type": 5}) };
        assert!(broken.validate_arguments(&json!({})).is_err());
    }

    #[test]
    fn every_problem_is_reported() {
        let text = r#"
unknown = 1
[extension]
id = "Bad"
name = ""
version = "one"
author = "A"
description = "D"
[runtime]
max_memory_mb = 0
[[permissions]]
capability = "network.http"
reason = "r"
scope = { domains = ["*"] , methods = ["get"] }
[[permissions]]
capability = "nope"
reason = ""
[[tools]]
name = "Bad"
description = "d"
parameters = { type = "array" }
"#;
        let e = Manifest::from_toml_str(text, "manifest.toml").unwrap_err();
        let f: Vec<_> = e.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            f,
            [
                "unknown",
                "extension.id",
                "extension.name",
                "extension.version",
                "runtime.max_memory_mb",
                "permissions[0].scope.domains[0]",
                "permissions[0].scope.methods[0]",
                "permissions[1].capability",
                "permissions[1].reason",
                "tools[0].name",
                "tools[0].parameters",
            ]
        );
        let shown = e.to_string();
        assert_eq!(shown.lines().count(), 1 + e.problems.len());
        assert!(shown.lines().skip(1).all(|l| l.starts_with("  manifest.toml: ") && l.contains("(fix: ")), "{shown}");
        assert!(e.has_field("tools[0].name"));
        assert!(e.problems.iter().all(|p| !p.message.is_empty() && !p.fix.is_empty()));
    }

    #[test]
    fn error_text_matches_the_documented_example() {
        let text = HEADER.replace("dev.omni.weather", "Dev.omni.weather")
            + "[[permissions]]\ncapability = \"network.http\"\nreason = \"r\"\nscope = { domains = [\"api.example.com\", \"*.com\"] }\n";
        let e = Manifest::from_toml_str(&text, "manifest.toml").unwrap_err();
        let expected = "manifest.toml: invalid manifest (2 problems)\n  manifest.toml: extension.id: id \"Dev.omni.weather\" contains uppercase letters (fix: write \"dev.omni.weather\")\n  manifest.toml: permissions[0].scope.domains[1]: domain \"*.com\" is a wildcard over a top-level domain; name the site, e.g. \"*.example.com\" (fix: write a host such as \"api.example.com\" or \"*.example.com\")";
        assert_eq!(e.to_string(), expected);
        let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/manifest.md"))
            .unwrap_or_default();
        assert!(docs.contains(expected), "docs/manifest.md shows a different message");
    }

    #[test]
    fn problem_flood_is_capped() {
        let keys: String = (0..5000).map(|i| format!("k{i} = 1\n")).collect();
        let e = Manifest::from_toml_str(&top(&keys), "flood.toml").unwrap_err();
        assert_eq!(e.problems.len(), MAX_PROBLEMS + 1);
        assert_eq!(e.problems[0].field, "k0");
        let last = &e.problems[MAX_PROBLEMS];
        assert_eq!(last.field, "");
        assert!(last.message.starts_with("4900 more problems"), "{}", last.message);
    }

    #[test]
    fn byte_order_mark_and_crlf_are_accepted() {
        let text = format!("\u{FEFF}{}", HEADER.replace('\n', "\r\n"));
        assert_eq!(manifest(&text), manifest(HEADER));
        let crlf = FULL.replace('\n', "\r\n");
        assert_eq!(manifest(&crlf), manifest(FULL));
        // A lone carriage return could hide text in a terminal.
        assert_eq!(
            fields(&ext("description = \"Current", "description = \"Safe\\rCurrent")),
            ["extension.description"]
        );
    }

    #[test]
    fn imports_must_be_declared() {
        let m = manifest(FULL);
        assert!(m
            .check_imports([
                "omni:caps/http@0.1.0",
                "omni:caps/kv@0.1.0",
                "omni:caps/notifications",
                "omni:caps/types@0.1.0",
                "wasi:cli/stdout@0.2.6"
            ])
            .is_ok());
        assert!(m.check_imports(std::iter::empty()).is_ok());
        let errors = m
            .check_imports([
                "omni:caps/process@0.1.0",
                "omni:caps/http@0.1.0",
                "omni:caps/teleport@0.1.0",
                "omni:caps/fs-read",
            ])
            .unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("omni:caps/process@0.1.0") && errors[0].contains("process.spawn"), "{}", errors[0]);
        assert!(errors[1].contains("omni:caps/teleport"), "{}", errors[1]);
        assert!(errors[2].contains("filesystem.read"), "{}", errors[2]);
    }

    #[test]
    fn from_path_reads_files_and_reports_io_problems() {
        let missing = Path::new(env!("CARGO_MANIFEST_DIR")).join("no-such-manifest.toml");
        let e = Manifest::from_path(&missing).unwrap_err();
        assert!(e.origin.ends_with("no-such-manifest.toml"));
        assert!(e.problems[0].message.contains("cannot read"));
        let dir = std::env::temp_dir().join(format!("omni-caps-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let bad = dir.join("latin1.toml");
        std::fs::write(&bad, b"[extension]\nname = \"caf\xe9\"\n").unwrap_or_else(|e| panic!("{e}"));
        let e = Manifest::from_path(&bad).unwrap_err();
        assert!(e.problems[0].message.contains("UTF-8"));
        let good = dir.join("manifest.toml");
        std::fs::write(&good, FULL).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Manifest::from_path(&good).ok(), Some(manifest(FULL)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A manifest with one tool `name` whose table ends with `rest`.
    fn tool_toml(name: &str, rest: &str) -> String {
        with(&format!("[[tools]]\nname = '{name}'\ndescription = 'd'\n{rest}"))
    }

    /// A parameter schema whose definitions each refer to the next one twice, `depth`
    /// levels deep: two kilobytes of text that validation expands 2^depth times.
    fn doubling_schema(depth: usize) -> String {
        let mut defs = Vec::new();
        for i in 0..depth {
            defs.push(format!(
                "\"d{i}\": {{\"allOf\": [{{\"$ref\": \"#/$defs/d{n}\"}}, {{\"$ref\": \"#/$defs/d{n}\"}}]}}",
                n = i + 1
            ));
        }
        defs.push(format!("\"d{depth}\": {{\"type\": \"string\"}}"));
        format!(
            "{{\"type\": \"object\", \"properties\": {{\"x\": {{\"$ref\": \"#/$defs/d0\"}}}}, \"$defs\": {{{}}}}}",
            defs.join(", ")
        )
    }

    #[test]
    fn hostile_schema_that_doubles_at_every_level_is_refused_at_install() {
        let schema = doubling_schema(28);
        assert!(schema.len() < 2200, "the attack is small: {} bytes", schema.len());
        let text = tool_toml("slow", &format!("parameters = '{schema}'"));
        let err = match Manifest::from_toml_str(&text, "manifest.toml") {
            Ok(_) => panic!("a schema expanding to 2^28 nodes was accepted"),
            Err(e) => e,
        };
        let problem = &err.problems[0];
        assert_eq!(problem.field, "tools[0].parameters");
        assert!(problem.message.contains("tool \"slow\""), "names the tool: {}", problem.message);
        assert!(problem.message.contains(&MAX_SCHEMA_EXPANSION.to_string()), "{}", problem.message);
        assert!(problem.fix.contains("refer to each definition once"), "{}", problem.fix);
        // Just past the limit is refused too; the count does not depend on the depth.
        assert_eq!(
            fields(&tool_toml("t", &format!("parameters = '{}'", doubling_schema(13)))),
            ["tools[0].parameters"]
        );
    }

    #[test]
    fn schemas_with_a_few_refs_still_install() {
        let schema = r##"{"type": "object",
            "properties": {
                "from": {"$ref": "#/$defs/place"}, "to": {"$ref": "#/$defs/place"},
                "via": {"type": "array", "items": {"$ref": "#/$defs/place"}, "maxItems": 5},
                "when": {"$ref": "#when"}
            },
            "$defs": {
                "place": {"type": "object", "properties": {"lat": {"$ref": "#/$defs/coord"}, "lon": {"$ref": "#/$defs/coord"}}},
                "coord": {"type": "number", "minimum": -180, "maximum": 180},
                "time": {"$anchor": "when", "type": "string", "enum": [{"$ref": "data, not a reference"}, "now"]}
            }}"##;
        let m = manifest(&tool_toml("route", &format!("parameters = '''{schema}'''")));
        let Some(route) = m.tool("route") else { panic!("tool") };
        assert!(route.validate_arguments(&json!({"from": {"lat": 1, "lon": 2}, "when": "now"})).is_ok());
        assert!(route.validate_arguments(&json!({"from": {"lat": 200}})).is_err());
        // The doubling pattern a few levels deep is fine: it stays small.
        manifest(&tool_toml("t", &format!("parameters = '{}'", doubling_schema(6))));
    }

    #[test]
    fn schema_refs_that_cannot_be_sized_are_refused() {
        let recursive = r##"parameters = '{"type": "object", "properties": {"tree": {"$ref": "#/$defs/node"}}, "$defs": {"node": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}}'"##;
        assert_eq!(fields(&tool_toml("t", recursive)), ["tools[0].parameters"]);
        let nested_id = r##"parameters = '{"type": "object", "properties": {"a": {"$id": "https://example.com/a", "type": "string"}}}'"##;
        assert_eq!(fields(&tool_toml("t", nested_id)), ["tools[0].parameters"]);
        let mut chain: Vec<String> =
            (0..40).map(|i| format!("\"c{i}\": {{\"$ref\": \"#/$defs/c{}\"}}", i + 1)).collect();
        chain.push("\"c40\": {\"type\": \"string\"}".into());
        let long = format!(
            "parameters = '{{\"type\": \"object\", \"properties\": {{\"a\": {{\"$ref\": \"#/$defs/c0\"}}}}, \"$defs\": {{{}}}}}'",
            chain.join(", ")
        );
        assert_eq!(fields(&tool_toml("t", &long)), ["tools[0].parameters"]);
    }
}
