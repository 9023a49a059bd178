//! Debug programs through a Debug Adapter Protocol adapter on the host
//! (capability `debug.session`).
//!
//! ```no_run
//! use omni_guest_sdk::debugger::{self, LaunchConfig, StopReason};
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let session = debugger::launch(&LaunchConfig::new("/home/me/src/app/target/debug/app").arg("--verbose"))?;
//! session.set_breakpoint("/home/me/src/app/src/main.rs", 42, None)?;
//! if let StopReason::Breakpoint(_) = session.resume(Some(10_000))? {
//!     let frame = session.stack_trace()?.first().map(|f| f.id);
//!     println!("x = {}", session.evaluate("x", frame)?);
//! }
//! session.terminate()?;
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::debugger as wit;
use crate::Result;

pub use wit::{Breakpoint, LaunchConfig, Session, StackFrame, StepKind, StopReason, Variable};

impl LaunchConfig {
    /// Debug `program` with no arguments, letting the host pick the adapter.
    pub fn new(program: impl Into<String>) -> Self {
        LaunchConfig {
            program: program.into(),
            args: Vec::new(),
            working_dir: None,
            adapter: None,
            stop_on_entry: false,
        }
    }

    /// Add an argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Run in directory `dir`.
    pub fn current_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// Use `adapter` (e.g. `lldb`, `debugpy`).
    pub fn adapter(mut self, adapter: impl Into<String>) -> Self {
        self.adapter = Some(adapter.into());
        self
    }

    /// Stop at the entry point before running any code.
    pub fn stop_on_entry(mut self, stop: bool) -> Self {
        self.stop_on_entry = stop;
        self
    }
}

/// Start `config.program` under the debugger. Drive it with the [`Session`] methods
/// (`set_breakpoint`, `resume`, `step`, `stack_trace`, `variables`, `evaluate`,
/// `terminate`), each of which returns the raw host error; convert with `?` into
/// [`Error`](crate::Error) or [`ToolError`](crate::ToolError).
///
/// # Errors
///
/// The host's refusal, or [`Error::Unavailable`](crate::Error::Unavailable) when no
/// adapter is installed.
pub fn launch(config: &LaunchConfig) -> Result<Session> {
    Ok(Session::launch(config)?)
}
