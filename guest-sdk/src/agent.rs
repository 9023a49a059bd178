//! Delegate a task to a sub-agent run by the host (capability `agent.spawn`).
//!
//! The sub-agent can call only the listed tools, with permissions this extension already
//! holds.
//!
//! ```no_run
//! use omni_guest_sdk::agent::{self, Task};
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let outcome = agent::spawn(
//!     &Task::new("Summarize tomorrow's weather in Lisbon in one sentence.")
//!         .tool("dev.omni.weather/get_forecast")
//!         .max_iterations(4),
//! )?;
//! println!("{} ({} turns)", outcome.output, outcome.iterations);
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::agent as wit;
use crate::Result;

pub use wit::{Outcome, Task};

impl Task {
    /// A task with `instructions`, no tools, and the host's defaults.
    pub fn new(instructions: impl Into<String>) -> Self {
        Task { instructions: instructions.into(), tools: Vec::new(), max_iterations: None, model: None }
    }

    /// Let the sub-agent call `tool` (`extension-id/tool`).
    pub fn tool(mut self, tool: impl Into<String>) -> Self {
        self.tools.push(tool.into());
        self
    }

    /// At most `n` model turns (the grant's `max_iterations` also applies).
    pub fn max_iterations(mut self, n: u32) -> Self {
        self.max_iterations = Some(n);
        self
    }

    /// Use `model`.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }
}

/// Run `task` to completion.
///
/// # Errors
///
/// The host's refusal (no grant, too many agents running) or the sub-agent's failure.
pub fn spawn(task: &Task) -> Result<Outcome> {
    Ok(wit::spawn(task)?)
}
