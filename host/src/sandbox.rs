//! The sandbox one extension call runs in: import checks, link-time gating, limits.
//!
//! Invariants this module keeps:
//!
//! * A component's linker holds the WASI base set and, for each capability the manifest
//!   declares, either the real backend (granted) or a refusal stub (not granted). An
//!   import the manifest does not declare is never defined, so instantiation fails.
//! * Every call gets a fresh instance and a fresh [`CallState`]; nothing a call leaves
//!   behind is visible to the next one except through a capability backend.
//! * Every call is bounded: linear memory by a [`ResourceLimiter`], time by the epoch
//!   callback (code that never calls out) plus an outer timeout (code waiting in a host
//!   call), bytes moved into the host by [`CallBudget`], captured output by [`LogPipe`].

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use omni_capabilities::{capability_for_import, ArgumentValidator, CapabilityInfo, Manifest};
use tokio::sync::Semaphore;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasData, Linker, ResourceTable, ResourceType, Val};
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_io::streams::{OutputStream, StreamError};

use crate::audit::NewRecord;
use crate::bindings::{CapError, ExtensionPre, ToolError};
use crate::caps;
use crate::config::HostLimits;
use crate::engine::OmniEngine;
use crate::policy::Decision;
use crate::HostShared;

/// A limit that ended a call. Raised as a trap, so it unwinds the guest at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// The call ran past `max_cpu_ms_per_call`.
    #[error("the call ran longer than its limit of {limit_ms} ms (max_cpu_ms_per_call in the manifest's [runtime])")]
    Time {
        /// The limit.
        limit_ms: u64,
    },
    /// Linear memory would have grown past `max_memory_mb`.
    #[error("the extension tried to grow its memory to {wanted_mb} MiB, past its limit of {limit_mb} MiB (max_memory_mb in the manifest's [runtime])")]
    Memory {
        /// The limit.
        limit_mb: u64,
        /// What it asked for.
        wanted_mb: u64,
    },
    /// The extension moved more bytes into the host than one call may.
    #[error("the extension moved more than {limit} bytes into the host in one call (host limit max_bytes_into_host_per_call)")]
    HostBytes {
        /// The limit.
        limit: u64,
    },
    /// The extension kept making host calls that were refused.
    #[error("the extension met more than {limit} permission refusals in one call and was stopped (host limit max_refusals_per_call)")]
    Refusals {
        /// The limit.
        limit: u64,
    },
    /// A table would have grown past the host's bound.
    #[error("the extension tried to grow a table to {wanted} elements, past the host's bound of {limit}")]
    Table {
        /// The limit.
        limit: usize,
        /// What it asked for.
        wanted: usize,
    },
}

/// Largest table any guest may have; far above what compiled Rust or C needs.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// How each import of a component is classified against the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportKind {
    /// Part of the WASI base set every extension gets.
    WasiBase,
    /// Shared capability types (`omni:caps/types`), no functions.
    SharedTypes,
    /// A capability interface.
    Capability(&'static CapabilityInfo),
    /// An interface Omni never links.
    Forbidden(&'static str),
    /// Something Omni does not know.
    Unknown,
}

/// Classifies one import name such as `wasi:io/streams@0.2.3` or `omni:caps/kv@0.1.0`.
pub fn classify_import(name: &str) -> ImportKind {
    let bare = name.split('@').next().unwrap_or(name);
    const BASE: &[&str] = &[
        "wasi:io/",
        "wasi:clocks/",
        "wasi:random/",
        "wasi:cli/",
        // Linked with no preopened directory, so every path the guest names fails: Rust's
        // std imports these as soon as anything touches `std::fs`.
        "wasi:filesystem/types",
        "wasi:filesystem/preopens",
    ];
    if BASE.iter().any(|p| bare.starts_with(p)) {
        return ImportKind::WasiBase;
    }
    if bare == "omni:caps/types" {
        return ImportKind::SharedTypes;
    }
    if let Some(info) = capability_for_import(bare) {
        return ImportKind::Capability(info);
    }
    if bare.starts_with("wasi:sockets/") {
        return ImportKind::Forbidden("extensions reach the network only through network.http or network.websocket");
    }
    if bare.starts_with("wasi:http/") {
        return ImportKind::Forbidden("extensions reach the network only through network.http (omni:caps/http)");
    }
    ImportKind::Unknown
}

/// A problem with a component's imports, found before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The component imports a capability its manifest does not declare.
    #[error("the component imports `{import}`, which needs the capability `{capability}`, but manifest.toml does not declare it\nadd a [[permissions]] entry with capability = \"{capability}\" and a reason, or remove the calls to it")]
    Undeclared {
        /// The import name.
        import: String,
        /// The capability that would allow it.
        capability: &'static str,
    },
    /// The component imports an interface Omni never links.
    #[error("the component imports `{import}`, which Omni never links: {why}")]
    Forbidden {
        /// The import name.
        import: String,
        /// Why, and what to use instead.
        why: &'static str,
    },
    /// The component imports something unknown.
    #[error("the component imports `{import}`, which is neither part of the WASI base set nor an Omni capability\nbuild against the omni:extension world (the omni-guest-sdk crate) and use capabilities for outside access")]
    Unknown {
        /// The import name.
        import: String,
    },
}

/// What a component imports, grouped.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// Every import name, in the component's order.
    pub all: Vec<String>,
    /// The capability keys imported.
    pub capabilities: Vec<&'static str>,
}

/// Checks a compiled component's real imports against its manifest.
///
/// Returns every problem, not just the first.
pub fn check_imports(component: &Component, manifest: &Manifest) -> Result<ImportReport, Vec<ImportError>> {
    let engine = component.engine();
    let mut report = ImportReport::default();
    let mut problems = Vec::new();
    for (name, _) in component.component_type().imports(engine) {
        report.all.push(name.to_string());
        match classify_import(name) {
            ImportKind::WasiBase | ImportKind::SharedTypes => {}
            ImportKind::Capability(info) => {
                if manifest.permission(info.key).is_none() {
                    problems.push(ImportError::Undeclared { import: name.to_string(), capability: info.key });
                } else if !report.capabilities.contains(&info.key) {
                    report.capabilities.push(info.key);
                }
            }
            ImportKind::Forbidden(why) => problems.push(ImportError::Forbidden { import: name.to_string(), why }),
            ImportKind::Unknown => problems.push(ImportError::Unknown { import: name.to_string() }),
        }
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(problems)
    }
}

/// Everything one call's store holds.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: CallLimiter,
    /// Host-wide services (policy, backends, configuration).
    pub(crate) host: Arc<HostShared>,
    /// The extension making the call.
    pub(crate) ext: Arc<ExtensionIdentity>,
    /// The session the call belongs to (audit and Session grants).
    pub(crate) session: Arc<str>,
    /// Host-side bounds for this call.
    pub(crate) budget: CallBudget,
    /// The permission refusals the guest met during this call, within bounds.
    pub(crate) denials: crate::caps::Refusals,
    /// Pages `browser.scrape` loaded in this call, for the scope's `max_pages`.
    pub(crate) pages_loaded: u32,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Who is calling: the extension id and its manifest.
#[derive(Debug)]
pub struct ExtensionIdentity {
    /// Extension id.
    pub id: String,
    /// Its installed manifest.
    pub manifest: Manifest,
}

/// Counts what one call moves into the host and the handles it holds.
pub(crate) struct CallBudget {
    bytes_in: u64,
    max_bytes_in: u64,
    max_arg: u64,
}

impl CallBudget {
    fn new(limits: &HostLimits) -> CallBudget {
        CallBudget {
            bytes_in: 0,
            max_bytes_in: limits.max_bytes_into_host_per_call,
            max_arg: limits.max_host_arg_bytes,
        }
    }

    /// Accounts `len` bytes of arguments moved into the host by one host call.
    ///
    /// The outer `Err` is a trap (the per-call total is spent: the call ends); the inner
    /// one refuses just this host call (one argument larger than the host accepts).
    pub(crate) fn take_in(&mut self, len: usize) -> wasmtime::Result<Result<(), CapError>> {
        let len = len as u64;
        self.bytes_in = self.bytes_in.saturating_add(len);
        if self.bytes_in > self.max_bytes_in {
            return Err(LimitExceeded::HostBytes { limit: self.max_bytes_in }.into());
        }
        if len > self.max_arg {
            return Ok(Err(CapError::InvalidInput(format!(
                "{len} bytes passed to one host call, more than the host accepts ({} bytes, host limit max_host_arg_bytes); send smaller pieces",
                self.max_arg
            ))));
        }
        Ok(Ok(()))
    }
}

struct CallLimiter {
    max_memory: usize,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            return Err(LimitExceeded::Memory {
                limit_mb: (self.max_memory / (1024 * 1024)) as u64,
                wanted_mb: (desired / (1024 * 1024)) as u64,
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(LimitExceeded::Table { limit: MAX_TABLE_ELEMENTS, wanted: desired }.into());
        }
        Ok(true)
    }
}

/// Captured stdout or stderr of one call: keeps the first `cap` bytes, counts the rest.
///
/// Writes never fail, so a chatty guest is not broken by the cap; it just loses output.
#[derive(Clone)]
pub(crate) struct LogPipe {
    buf: Arc<Mutex<Vec<u8>>>,
    dropped: Arc<AtomicU64>,
    cap: usize,
}

impl LogPipe {
    fn new(cap: usize) -> LogPipe {
        LogPipe { buf: Arc::default(), dropped: Arc::default(), cap }
    }

    fn push(&self, bytes: &[u8]) {
        let mut buf = match self.buf.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let room = self.cap.saturating_sub(buf.len());
        let take = room.min(bytes.len());
        buf.extend_from_slice(&bytes[..take]);
        self.dropped.fetch_add((bytes.len() - take) as u64, Ordering::Relaxed);
    }

    /// The captured text, with a note when bytes were dropped.
    pub(crate) fn contents(&self) -> String {
        let buf = match self.buf.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut text = String::from_utf8_lossy(&buf).into_owned();
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            text.push_str(&format!("\n[{dropped} more bytes dropped: log capped at {} bytes]", self.cap));
        }
        text
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi_io::poll::Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for LogPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

struct WasiIo;
impl HasData for WasiIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// Adds the WASI base set: io, clocks, random, cli (empty environment, no arguments,
/// empty stdin, captured stdout/stderr) and a filesystem with no preopened directory.
/// Sockets and wasi:http are never added.
fn add_wasi_base(l: &mut Linker<CallState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::WasiCli;
    use wasmtime_wasi::clocks::WasiClocks;
    use wasmtime_wasi::filesystem::WasiFilesystem;
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
    use wasmtime_wasi::random::WasiRandom;
    use wasmtime_wasi_io::bindings::wasi::io;

    io::error::add_to_linker::<CallState, WasiIo>(l, |t| t.ctx().table)?;
    io::poll::add_to_linker::<CallState, WasiIo>(l, |t| t.ctx().table)?;
    io::streams::add_to_linker::<CallState, WasiIo>(l, |t| t.ctx().table)?;
    clocks::wall_clock::add_to_linker::<CallState, WasiClocks>(l, CallState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<CallState, WasiClocks>(l, CallState::clocks)?;
    random::random::add_to_linker::<CallState, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure::add_to_linker::<CallState, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure_seed::add_to_linker::<CallState, WasiRandom>(l, |t| t.wasi.random())?;
    cli::exit::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::environment::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::stdin::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::stdout::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::stderr::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_input::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_output::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_stdin::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_stdout::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_stderr::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    filesystem::types::add_to_linker::<CallState, WasiFilesystem>(l, CallState::filesystem)?;
    filesystem::preopens::add_to_linker::<CallState, WasiFilesystem>(l, CallState::filesystem)?;
    Ok(())
}

/// How a declared capability is linked for one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Linkage {
    /// Granted: the capability's backend is linked (or an "unavailable" stub when this
    /// host has no backend for it).
    Granted,
    /// Declared but not granted: every function answers `permission-denied`.
    Refused,
}

/// Builds the linker for one component and one set of linkages.
pub(crate) fn build_linker(
    engine: &OmniEngine,
    component: &Component,
    linkage: &[(&'static CapabilityInfo, Linkage)],
) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine.engine());
    add_wasi_base(&mut linker)?;
    let imports: HashMap<String, ComponentItem> =
        component.component_type().imports(engine.engine()).map(|(n, item)| (n.to_string(), item.ty)).collect();
    for (info, how) in linkage {
        let Some((import_name, item)) = imports
            .iter()
            .find(|(name, _)| matches!(classify_import(name), ImportKind::Capability(i) if i.key == info.key))
        else {
            continue;
        };
        match how {
            Linkage::Granted if caps::link_backend(&mut linker, info.key)? => {}
            Linkage::Granted => {
                let msg = format!(
                    "{} is unavailable on this host: no backend for it is installed (an embedder can provide one)",
                    info.key
                );
                link_refusal(&mut linker, engine, import_name, item, info.key, "unavailable", msg)?;
            }
            Linkage::Refused => {
                let msg = format!(
                    "{} was not granted to this extension; a person can grant it by reinstalling with `omni install <DIR> --grant {}`",
                    info.key, info.key
                );
                link_refusal(&mut linker, engine, import_name, item, info.key, "permission-denied", msg)?;
            }
        }
    }
    Ok(linker)
}

/// Bytes charged to the call's budget for each call of a refused capability, on top of
/// its arguments: a refused call with no arguments still costs the host some work.
const REFUSED_CALL_BYTES: usize = 64;

/// About how many bytes a component value moved into the host.
fn val_bytes(v: &Val) -> usize {
    match v {
        Val::String(s) => s.len(),
        Val::List(items) | Val::Tuple(items) => items.iter().map(val_bytes).sum::<usize>() + 8,
        Val::Record(fields) => fields.iter().map(|(name, v)| name.len() + val_bytes(v)).sum(),
        Val::Variant(_, Some(v)) | Val::Option(Some(v)) | Val::Result(Ok(Some(v)) | Err(Some(v))) => 8 + val_bytes(v),
        Val::Flags(names) => names.iter().map(String::len).sum(),
        _ => 8,
    }
}

/// Defines every function of an imported capability instance as one that returns the
/// `error` case `case` with `message`, and every resource as an opaque type no call can
/// ever create. The real backend is never reachable through it.
fn link_refusal(
    linker: &mut Linker<CallState>,
    engine: &OmniEngine,
    import_name: &str,
    item: &ComponentItem,
    capability: &'static str,
    case: &'static str,
    message: String,
) -> wasmtime::Result<()> {
    let ComponentItem::ComponentInstance(instance) = item else {
        return Err(wasmtime::Error::msg(format!("import `{import_name}` is not an interface")));
    };
    let mut inst = linker.instance(import_name)?;
    let message: Arc<str> = message.into();
    let mut resource_id = 0u32;
    for (name, export) in instance.exports(engine.engine()) {
        match export.ty {
            ComponentItem::Resource(_) => {
                resource_id += 1;
                inst.resource(name, ResourceType::host_dynamic(resource_id), |_, _| Ok(()))?;
            }
            ComponentItem::ComponentFunc(_) => {
                let message = message.clone();
                let fname = name.to_string();
                // `omni:caps/kv@0.1.0` + `get` -> `kv.get`, the target the audit shows.
                let interface = import_name.rsplit('/').next().unwrap_or(import_name);
                let target: Arc<str> = format!("{}.{name}", interface.split('@').next().unwrap_or(interface)).into();
                inst.func_new_async(name, move |mut store, ty, params, results| {
                    let message = message.clone();
                    let fname = fname.clone();
                    let target = target.clone();
                    // What the guest passed is counted like any host call's arguments, so
                    // a loop on a refused call spends the call's budget too.
                    let passed = REFUSED_CALL_BYTES + params.iter().map(val_bytes).sum::<usize>();
                    Box::new(async move {
                        let state = store.data_mut();
                        let _ = state.budget.take_in(passed)?;
                        if case == "permission-denied" {
                            let limit = state.host.config.limits.max_refusals_per_call;
                            if state.denials.total() >= limit {
                                return Err(LimitExceeded::Refusals { limit }.into());
                            }
                            let audit = state.denials.note(capability, &target, Some(&message));
                            // A refused call is a decision like any other: it goes to the
                            // audit log so a person sees what the extension tried.
                            if audit && state.host.config.security.audit_enabled {
                                let record = NewRecord::decision(
                                    &state.session,
                                    &state.ext.id,
                                    capability,
                                    &target,
                                    Decision::Deny,
                                    None,
                                    message.to_string(),
                                );
                                let host = state.host.clone();
                                // The refusal stands even if it cannot be recorded.
                                let _ = host.policy.audit().append_async(record).await;
                            }
                        }
                        let Some(slot) = results.first_mut() else {
                            return Err(wasmtime::Error::msg(format!("{fname} has no result to carry the refusal")));
                        };
                        let is_error_result =
                            ty.results().next().is_some_and(|t| matches!(t, wasmtime::component::Type::Result(_)));
                        if !is_error_result {
                            return Err(wasmtime::Error::msg(format!("{fname}: {message}")));
                        }
                        let payload = Val::Variant(case.to_string(), Some(Box::new(Val::String(message.to_string()))));
                        *slot = Val::Result(Err(Some(Box::new(payload))));
                        Ok(())
                    })
                })?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// How every imported capability is linked, by key: what an instance template depends on.
type LinkageKey = Vec<(&'static str, Linkage)>;

/// One loaded extension: its compiled component, its instance templates, its slots.
pub struct Sandbox {
    pub(crate) identity: Arc<ExtensionIdentity>,
    component: Component,
    engine: OmniEngine,
    slots: Arc<Semaphore>,
    /// Instance templates by linkage; a grant change picks (or builds) another one.
    templates: Mutex<HashMap<LinkageKey, ExtensionPre<CallState>>>,
    /// Each tool's parameter schema, compiled once.
    validators: HashMap<String, Result<Arc<ArgumentValidator>, String>>,
    /// The declared capabilities the component imports, in import order.
    capability_imports: Vec<&'static CapabilityInfo>,
}

/// Validates `arguments` off the async workers; gives up after `limit`. Validation cannot
/// be interrupted, so a check that runs out of time finishes on its blocking thread, but
/// the manifest bounds what a schema can cost, so that thread is not held for long.
async fn validate_within(
    validator: Arc<ArgumentValidator>,
    arguments: serde_json::Value,
    limit: Duration,
) -> Result<(), Vec<String>> {
    let work = tokio::task::spawn_blocking(move || validator.validate(&arguments));
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(checked)) => checked,
        Ok(Err(e)) => Err(vec![format!("checking the arguments failed: {e}")]),
        Err(_) => Err(vec![format!(
            "checking the arguments against the tool's parameter schema took longer than the call may run ({} ms, max_cpu_ms_per_call in [runtime]); simplify the schema or the arguments",
            limit.as_millis()
        )]),
    }
}

/// What a finished call produced.
#[derive(Debug, Clone)]
pub struct CallOutput {
    /// The tool's JSON result.
    pub output: String,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
    /// Wall time of the call, including the wait for a slot.
    pub elapsed: Duration,
    /// Permission refusals the extension met (and handled) during the call.
    pub denials: Vec<String>,
    /// The Guardian's verdict on the output (a blocked output never gets this far).
    pub verdict: Option<omni_guardian::Verdict>,
}

/// Why a call did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The tool ran and reported an error.
    #[error("the tool failed: {message}{}", denial_note(.denials))]
    Tool {
        /// The tool's message.
        message: String,
        /// Permission refusals met during the call, which often explain the failure.
        denials: Vec<String>,
    },
    /// The tool name is not provided by the extension.
    #[error("unknown tool: {0}")]
    UnknownTool(String),
    /// The arguments were refused by the extension.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// A limit ended the call.
    #[error("the call was stopped: {0}")]
    Limit(LimitExceeded),
    /// The guest trapped (a bug or an attack inside the extension).
    #[error("the extension crashed: {message}\nstderr:\n{stderr}")]
    Trap {
        /// Wasmtime's description of the trap.
        message: String,
        /// What the guest printed to stderr before it died.
        stderr: String,
    },
    /// The component could not be instantiated with the current grants.
    #[error("the extension could not be started: {0}")]
    Link(String),
    /// The result was larger than the host accepts.
    #[error(
        "the tool returned {len} bytes, more than the host accepts ({limit} bytes, host limit max_tool_output_bytes)"
    )]
    OutputTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

impl Sandbox {
    /// Wraps a compiled component whose imports already passed [`check_imports`].
    pub(crate) fn new(engine: OmniEngine, component: Component, identity: ExtensionIdentity) -> Sandbox {
        let slots = Arc::new(Semaphore::new(identity.manifest.runtime.max_concurrent_calls.max(1) as usize));
        let validators =
            identity.manifest.tools.iter().map(|t| (t.name.clone(), t.compile_parameters().map(Arc::new))).collect();
        let mut capability_imports = Vec::new();
        for (name, _) in component.component_type().imports(engine.engine()) {
            if let ImportKind::Capability(info) = classify_import(name) {
                // Undeclared imports are never linked, so instantiation fails on them.
                if identity.manifest.permission(info.key).is_some() && !capability_imports.contains(&info) {
                    capability_imports.push(info);
                }
            }
        }
        Sandbox {
            capability_imports,
            identity: Arc::new(identity),
            component,
            engine,
            slots,
            templates: Mutex::new(HashMap::new()),
            validators,
        }
    }

    /// Checks `arguments` against the parameters of `tool` (which must be declared), on a
    /// blocking thread and within the extension's `max_cpu_ms_per_call`: the schema is the
    /// extension's, so checking against it is work done on the extension's behalf.
    pub(crate) async fn validate_arguments(&self, tool: &str, arguments: serde_json::Value) -> Result<(), Vec<String>> {
        let validator = match self.validators.get(tool) {
            Some(Ok(v)) => v.clone(),
            Some(Err(e)) => return Err(vec![e.clone()]),
            None => return Err(vec![format!("no tool `{tool}`")]),
        };
        let limit = Duration::from_millis(self.identity.manifest.runtime.max_cpu_ms_per_call.max(1));
        validate_within(validator, arguments, limit).await
    }

    /// The compiled component.
    pub fn component(&self) -> &Component {
        &self.component
    }

    /// The declared capabilities the component imports.
    pub fn capability_imports(&self) -> &[&'static CapabilityInfo] {
        &self.capability_imports
    }

    /// The instance template for a linkage, built once and cached.
    pub(crate) fn template(
        &self,
        linkage: &[(&'static CapabilityInfo, Linkage)],
    ) -> Result<ExtensionPre<CallState>, CallError> {
        let key: LinkageKey = linkage.iter().map(|(i, l)| (i.key, *l)).collect();
        let mut templates = match self.templates.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(pre) = templates.get(&key) {
            return Ok(pre.clone());
        }
        let linker =
            build_linker(&self.engine, &self.component, linkage).map_err(|e| CallError::Link(format!("{e:#}")))?;
        let pre = linker.instantiate_pre(&self.component).map_err(|e| CallError::Link(link_error_message(&e)))?;
        let pre = ExtensionPre::new(pre).map_err(|e| CallError::Link(format!("{e:#}")))?;
        templates.insert(key, pre.clone());
        Ok(pre)
    }

    /// A fresh store for one call, with its limits armed, plus its captured stdout and
    /// stderr.
    fn new_store(&self, host: &Arc<HostShared>, session: Arc<str>) -> (Store<CallState>, LogPipe, LogPipe) {
        let runtime = &self.identity.manifest.runtime;
        let limits = &host.config.limits;
        let stdout = LogPipe::new(limits.max_log_bytes);
        let stderr = LogPipe::new(limits.max_log_bytes);
        let wasi = wasmtime_wasi::WasiCtxBuilder::new().stdout(stdout.clone()).stderr(stderr.clone()).build();
        let max_memory = (runtime.max_memory_mb.min(limits.max_memory_mb) as usize) * 1024 * 1024;
        // Every host resource of the call (WASI streams and pollables, capability
        // handles) lives in this table; its capacity is the call's handle bound.
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_resource_handles as usize);
        let state = CallState {
            wasi,
            table,
            limiter: CallLimiter { max_memory },
            host: host.clone(),
            ext: self.identity.clone(),
            session,
            budget: CallBudget::new(limits),
            denials: crate::caps::Refusals::default(),
            pages_loaded: 0,
        };
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        let limit_ms = runtime.max_cpu_ms_per_call;
        let deadline = Instant::now() + Duration::from_millis(limit_ms);
        store.set_epoch_deadline(1);
        let max_refusals = limits.max_refusals_per_call;
        store.epoch_deadline_callback(move |store| {
            if Instant::now() >= deadline {
                Err(LimitExceeded::Time { limit_ms }.into())
            } else if store.data().denials.total() > max_refusals {
                // Refusals through the permission engine come back to the guest as
                // errors; the guest's next loop iteration ends the call here.
                Err(LimitExceeded::Refusals { limit: max_refusals }.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        (store, stdout, stderr)
    }

    /// Instantiates without calling: checks that the component links with the current
    /// grants and starts, then discards the instance.
    pub(crate) async fn instantiate(
        &self,
        host: &Arc<HostShared>,
        pre: ExtensionPre<CallState>,
        session: Arc<str>,
    ) -> Result<(), CallError> {
        let _slot = self.slots.acquire().await.map_err(|e| CallError::Link(e.to_string()))?;
        let (mut store, _stdout, stderr) = self.new_store(host, session);
        let _running = self.engine.running();
        match pre.instantiate_async(&mut store).await {
            Ok(_) => Ok(()),
            Err(e) => Err(classify_trap(&e, &stderr)),
        }
    }

    /// Runs one tool call in a fresh instance, waiting for a free slot first.
    pub(crate) async fn call(
        &self,
        host: &Arc<HostShared>,
        pre: ExtensionPre<CallState>,
        session: Arc<str>,
        tool: &str,
        arguments: &str,
    ) -> Result<CallOutput, CallError> {
        let started = Instant::now();
        // The semaphore is never closed, so acquiring cannot fail in practice.
        let _slot = self.slots.acquire().await.map_err(|e| CallError::Link(e.to_string()))?;
        let limit_ms = self.identity.manifest.runtime.max_cpu_ms_per_call;
        let (mut store, stdout, stderr) = self.new_store(host, session);
        let _running = self.engine.running();
        let run = async {
            let ext = pre.instantiate_async(&mut store).await?;
            ext.omni_extension_tool().call_call(&mut store, tool, arguments).await
        };
        // The epoch callback stops guest code; the timeout also stops a call that is
        // parked in a host function (a slow server, a stuck backend): dropping the future
        // cancels the host call and discards the instance.
        let outcome = tokio::time::timeout(Duration::from_millis(limit_ms) + self.engine.tick() * 2, run).await;
        // However the call ended, the refusals that were not audited one by one are.
        let state = store.data_mut();
        let summaries = state.denials.coalesced_records(&state.session, &state.ext.id);
        if state.host.config.security.audit_enabled {
            for record in summaries {
                let _ = host.policy.audit().append_async(record).await;
            }
        }
        let outcome = match outcome {
            Ok(r) => r,
            Err(_) => return Err(CallError::Limit(LimitExceeded::Time { limit_ms })),
        };
        let result = outcome.map_err(|e| classify_trap(&e, &stderr))?;
        let max_output = host.config.limits.max_tool_output_bytes;
        let output = match result {
            Ok(out) => out,
            Err(ToolError::UnknownTool(t)) => return Err(CallError::UnknownTool(capped(t, max_output))),
            Err(ToolError::InvalidArguments(m)) => return Err(CallError::InvalidArguments(capped(m, max_output))),
            Err(ToolError::Failed(message)) => {
                return Err(CallError::Tool {
                    message: capped(message, max_output),
                    denials: store.data_mut().denials.take_messages(),
                })
            }
        };
        if output.len() > max_output {
            return Err(CallError::OutputTooLarge { len: output.len(), limit: max_output });
        }
        Ok(CallOutput {
            output,
            stdout: stdout.contents(),
            stderr: stderr.contents(),
            elapsed: started.elapsed(),
            denials: store.data_mut().denials.take_messages(),
            verdict: None,
        })
    }
}

/// A message from the guest cut to the tool-output cap: an error message is output too.
fn capped(message: String, max: usize) -> String {
    if message.len() <= max {
        return message;
    }
    let total = message.len();
    let mut message = crate::caps::cap(message, max);
    message.push_str(&format!(" … (cut: the message was {total} bytes, more than max_tool_output_bytes)"));
    message
}

/// A limit that ended the call, or else the trap with what the guest printed.
fn classify_trap(e: &wasmtime::Error, stderr: &LogPipe) -> CallError {
    match e.downcast_ref::<LimitExceeded>() {
        Some(limit) => CallError::Limit(limit.clone()),
        None => CallError::Trap { message: trap_message(e), stderr: stderr.contents() },
    }
}

impl CallState {
    fn cli(&mut self) -> wasmtime_wasi::cli::WasiCliCtxView<'_> {
        wasmtime_wasi::cli::WasiCliView::cli(self)
    }
    fn clocks(&mut self) -> wasmtime_wasi::clocks::WasiClocksCtxView<'_> {
        wasmtime_wasi::clocks::WasiClocksView::clocks(self)
    }
    fn filesystem(&mut self) -> wasmtime_wasi::filesystem::WasiFilesystemCtxView<'_> {
        wasmtime_wasi::filesystem::WasiFilesystemView::filesystem(self)
    }
}

fn denial_note(denials: &[String]) -> String {
    if denials.is_empty() {
        String::new()
    } else {
        format!(" (refused during the call: {})", denials.join("; "))
    }
}

/// A trap's message without Wasmtime's internal backtrace noise.
fn trap_message(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("{trap}"),
        None => format!("{e:#}"),
    }
}

/// Turns Wasmtime's "import not defined" into a sentence that names the capability.
fn link_error_message(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    if let Some(start) = text.find("omni:caps/") {
        let import: String =
            text[start..].chars().take_while(|c| !c.is_whitespace() && *c != '`' && *c != '"').collect();
        if let ImportKind::Capability(info) = classify_import(&import) {
            return format!(
                "the component imports `{import}` (capability {}), which is not linked for this extension because its manifest does not declare it\n{text}",
                info.key
            );
        }
    }
    text
}

#[cfg(test)]
mod argument_validation_tests {
    use super::*;

    /// A schema whose definitions each refer to the next one twice, compiled directly:
    /// the manifest refuses it, but an extension installed before that bound would still
    /// carry it.
    fn doubling_validator(depth: usize) -> Arc<ArgumentValidator> {
        let mut defs = serde_json::Map::new();
        for i in 0..depth {
            let next = serde_json::json!({ "$ref": format!("#/$defs/d{}", i + 1) });
            defs.insert(format!("d{i}"), serde_json::json!({ "allOf": [next.clone(), next] }));
        }
        defs.insert(format!("d{depth}"), serde_json::json!({ "type": "string" }));
        let tool = omni_capabilities::ToolSpec {
            name: "slow".into(),
            description: "d".into(),
            parameters: serde_json::json!({
                "type": "object", "properties": { "x": { "$ref": "#/$defs/d0" } }, "$defs": defs
            }),
        };
        Arc::new(tool.compile_parameters().expect("compiles"))
    }

    #[test]
    fn hostile_schema_validation_gives_up_at_the_call_limit() {
        // One worker thread: were validation run on it, nothing else could run either.
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        let checked = rt.block_on(async {
            // Generous bound: this detects validation holding the worker, it does not
            // measure the validation.
            tokio::time::timeout(
                Duration::from_secs(60),
                validate_within(doubling_validator(26), serde_json::json!({ "x": "s" }), Duration::from_millis(50)),
            )
            .await
        });
        // The abandoned check finishes on its blocking thread; do not wait for it.
        rt.shutdown_background();
        let problems = checked.expect("validation returned").expect_err("validation ran out of time");
        assert!(problems[0].contains("max_cpu_ms_per_call"), "{problems:?}");
    }

    #[test]
    fn small_schemas_validate_as_before() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        let v = doubling_validator(3);
        let limit = Duration::from_secs(60);
        assert!(rt.block_on(validate_within(v.clone(), serde_json::json!({ "x": "s" }), limit)).is_ok());
        let problems = rt.block_on(validate_within(v, serde_json::json!({ "x": 5 }), limit)).expect_err("invalid");
        assert!(problems.iter().all(|p| p.starts_with("/x")), "{problems:?}");
    }
}
