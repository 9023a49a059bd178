//! `debug.session`: debug programs through a Debug Adapter Protocol adapter on the host.
//!
//! The capability has no scope fields: a grant lets the extension start programs under a
//! debugger, which is as strong as running them, hence its `high` severity. Each session
//! is a resource owned by the call that launched it: it lives in the call's handle table
//! (bounded by `max_resource_handles`), every method of it is authorized again (so a
//! revocation or the kill switch stops a session at its next step), and it is dropped,
//! and with it the debugged program, when the guest drops it or the call ends. One
//! extension may hold at most [`MAX_SESSIONS`] sessions at once; one more is refused
//! with `rate-limited`, audited.
//! The default backend answers `unavailable`; an embedder plugs a DAP client in with
//! [`Integrations::with_debugger`](super::Integrations::with_debugger).

use wasmtime::component::Resource;
use wasmtime_wasi::WasiView;

use super::integrations::{BackendFuture, NotConfigured, Slot};
use super::try_budget;
use crate::bindings::omni::caps::debugger::{Host, HostSession, Session};
use crate::bindings::CapError;
use crate::sandbox::CallState;

pub use crate::bindings::omni::caps::debugger::{Breakpoint, LaunchConfig, StackFrame, StepKind, StopReason, Variable};

const CAPABILITY: &str = "debug.session";
/// Longest wait one `resume` may ask for, in milliseconds (longer waits are cut to it).
pub const MAX_RESUME_WAIT_MS: u32 = 60_000;
/// Most arguments a launched program may get.
pub const MAX_ARGS: usize = 1024;
/// Most debug sessions one extension may hold open at once, across its calls: each is a
/// running program, so the handle bound alone would allow far too many.
pub const MAX_SESSIONS: u32 = 4;

/// A debugger an embedder plugs in (a DAP client that starts adapters such as `lldb-dap`
/// or `debugpy`).
pub trait DebugBackend: Send + Sync {
    /// Starts `config.program` under a debugger.
    fn launch(&self, config: LaunchConfig) -> BackendFuture<'_, Box<dyn DebugSession>>;
}

/// One program running under a debugger. Dropping it must end the program.
pub trait DebugSession: Send {
    /// Breaks at `line` (1-based) of `path`, only when `condition` holds if given.
    fn set_breakpoint(&mut self, path: String, line: u32, condition: Option<String>) -> BackendFuture<'_, Breakpoint>;
    /// Removes breakpoint `id`.
    fn remove_breakpoint(&mut self, id: u32) -> BackendFuture<'_, ()>;
    /// Runs until the program stops, or at most `timeout_ms` (at most [`MAX_RESUME_WAIT_MS`]).
    fn resume(&mut self, timeout_ms: u32) -> BackendFuture<'_, StopReason>;
    /// Steps once.
    fn step(&mut self, kind: StepKind) -> BackendFuture<'_, StopReason>;
    /// The call stack, innermost frame first.
    fn stack_trace(&mut self) -> BackendFuture<'_, Vec<StackFrame>>;
    /// The variables of frame `frame_id`.
    fn variables(&mut self, frame_id: u32) -> BackendFuture<'_, Vec<Variable>>;
    /// Evaluates `expression` in frame `frame_id` (the innermost when `None`).
    fn evaluate(&mut self, expression: String, frame_id: Option<u32>) -> BackendFuture<'_, String>;
    /// Kills the program and ends the session.
    fn terminate(&mut self) -> BackendFuture<'_, ()>;
}

impl DebugBackend for NotConfigured {
    fn launch(&self, _: LaunchConfig) -> BackendFuture<'_, Box<dyn DebugSession>> {
        NotConfigured::future(CAPABILITY, "debugger", "with_debugger")
    }
}

/// What the handle table holds for one session.
struct SessionEntry {
    /// The program, for audit targets.
    program: String,
    inner: Box<dyn DebugSession>,
    /// Frees this session's place under [`MAX_SESSIONS`] when the session is dropped.
    _slot: Option<Slot>,
}

/// No scope fields: a grant covers any program.
fn any_program(_: &omni_capabilities::Scope) -> Result<(), String> {
    Ok(())
}

fn entry(handle: &Resource<Session>) -> Resource<SessionEntry> {
    Resource::new_borrow(handle.rep())
}

impl CallState {
    /// The session behind `handle` and the audit target for `operation` on it, after the
    /// call is authorized again.
    async fn debug_allow(&mut self, handle: &Resource<Session>, operation: &str) -> Result<String, CapError> {
        let program = match self.ctx().table.get(&entry(handle)) {
            Ok(e) => e.program.clone(),
            Err(e) => return Err(CapError::InvalidInput(format!("not a debug session handle ({e})"))),
        };
        let target = format!("{operation} {program}");
        self.authorize(CAPABILITY, &target, &any_program).await?;
        Ok(target)
    }

    fn debug_session(&mut self, handle: &Resource<Session>) -> Result<&mut Box<dyn DebugSession>, CapError> {
        match self.ctx().table.get_mut(&entry(handle)) {
            Ok(e) => Ok(&mut e.inner),
            Err(e) => Err(CapError::InvalidInput(format!("not a debug session handle ({e})"))),
        }
    }
}

/// Runs `op` on the session behind `handle` once authorized; the guest's result.
macro_rules! with_session {
    ($state:expr, $handle:expr, $operation:expr, |$s:ident| $call:expr) => {{
        let target = match $state.debug_allow(&$handle, $operation).await {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let result = match $state.debug_session(&$handle) {
            Ok($s) => $call.await,
            Err(e) => return Ok(Err(e)),
        };
        Ok($state.backend_result(CAPABILITY, &target, result).await)
    }};
}

impl HostSession for CallState {
    async fn launch(&mut self, config: LaunchConfig) -> wasmtime::Result<Result<Resource<Session>, CapError>> {
        let moved = config.program.len()
            + config.args.iter().map(String::len).sum::<usize>()
            + config.working_dir.as_deref().map_or(0, str::len)
            + config.adapter.as_deref().map_or(0, str::len);
        try_budget!(self, moved);
        if config.program.is_empty() || config.program.contains('\0') {
            return Ok(Err(CapError::InvalidInput(
                "the program is empty or contains a NUL character; pass the program's path".into(),
            )));
        }
        if config.args.len() > MAX_ARGS {
            return Ok(Err(CapError::InvalidInput(format!(
                "{} arguments, more than {MAX_ARGS}; pass fewer",
                config.args.len()
            ))));
        }
        let target = format!("launch {}", config.program);
        if let Err(e) = self.authorize(CAPABILITY, &target, &any_program).await {
            return Ok(Err(e));
        }
        let slot = match self
            .take_slot(CAPABILITY, &target, Some(MAX_SESSIONS), "the host's bound on open debug sessions per extension")
            .await
        {
            Ok(slot) => slot,
            Err(e) => return Ok(Err(e)),
        };
        let program = config.program.clone();
        let backend = self.host.integrations.debugger.clone();
        let result = backend.launch(config).await;
        let inner = match self.backend_result(CAPABILITY, &target, result).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        // A full table drops the new session, which ends its program.
        match self.ctx().table.push(SessionEntry { program, inner, _slot: slot }) {
            Ok(r) => Ok(Ok(Resource::new_own(r.rep()))),
            Err(e) => Ok(Err(CapError::InvalidInput(format!(
                "this call holds too many handles to open a debug session ({e}); terminate other sessions first"
            )))),
        }
    }

    async fn set_breakpoint(
        &mut self,
        handle: Resource<Session>,
        path: String,
        line: u32,
        condition: Option<String>,
    ) -> wasmtime::Result<Result<Breakpoint, CapError>> {
        try_budget!(self, path.len() + condition.as_deref().map_or(0, str::len));
        if line == 0 {
            return Ok(Err(CapError::InvalidInput("line 0 does not exist; lines count from 1".into())));
        }
        with_session!(self, handle, "set-breakpoint", |s| s.set_breakpoint(path, line, condition))
    }

    async fn remove_breakpoint(
        &mut self,
        handle: Resource<Session>,
        id: u32,
    ) -> wasmtime::Result<Result<(), CapError>> {
        with_session!(self, handle, "remove-breakpoint", |s| s.remove_breakpoint(id))
    }

    async fn resume(
        &mut self,
        handle: Resource<Session>,
        timeout_ms: Option<u32>,
    ) -> wasmtime::Result<Result<StopReason, CapError>> {
        let wait = timeout_ms.unwrap_or(MAX_RESUME_WAIT_MS).min(MAX_RESUME_WAIT_MS);
        with_session!(self, handle, "resume", |s| s.resume(wait))
    }

    async fn step(
        &mut self,
        handle: Resource<Session>,
        kind: StepKind,
    ) -> wasmtime::Result<Result<StopReason, CapError>> {
        with_session!(self, handle, "step", |s| s.step(kind))
    }

    async fn stack_trace(&mut self, handle: Resource<Session>) -> wasmtime::Result<Result<Vec<StackFrame>, CapError>> {
        with_session!(self, handle, "stack-trace", |s| s.stack_trace())
    }

    async fn variables(
        &mut self,
        handle: Resource<Session>,
        frame_id: u32,
    ) -> wasmtime::Result<Result<Vec<Variable>, CapError>> {
        with_session!(self, handle, "variables", |s| s.variables(frame_id))
    }

    async fn evaluate(
        &mut self,
        handle: Resource<Session>,
        expression: String,
        frame_id: Option<u32>,
    ) -> wasmtime::Result<Result<String, CapError>> {
        try_budget!(self, expression.len());
        with_session!(self, handle, "evaluate", |s| s.evaluate(expression, frame_id))
    }

    async fn terminate(&mut self, handle: Resource<Session>) -> wasmtime::Result<Result<(), CapError>> {
        with_session!(self, handle, "terminate", |s| s.terminate())
    }

    async fn drop(&mut self, handle: Resource<Session>) -> wasmtime::Result<()> {
        // Dropping the entry drops the backend's session, which ends the program.
        let owned: Resource<SessionEntry> = Resource::new_own(handle.rep());
        self.ctx().table.delete(owned)?;
        Ok(())
    }
}

impl Host for CallState {}
