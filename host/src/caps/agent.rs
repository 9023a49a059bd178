//! `agent.spawn`: delegate a task to a sub-agent run by the host.
//!
//! Scope ([`AgentScope`]): `max_iterations` bounds the model turns a task may ask for (a
//! task asking for more is refused, `out-of-scope`, audited; a task asking for none gets
//! the scope's bound, or [`DEFAULT_MAX_ITERATIONS`]); `max_concurrent` bounds the
//! extension's sub-agents running at once (default [`DEFAULT_MAX_CONCURRENT`]; one more is
//! refused, `rate-limited`, audited). Tools are named `extension-id/tool`.
//!
//! Running a sub-agent means running a model with tools on the user's behalf, which only
//! the embedding application can wire up (its model, its tool router, the rule that a
//! sub-agent holds no permission its parent lacks). So the default backend refuses with
//! `unavailable`; plug a runner in with
//! [`Integrations::with_agent`](super::Integrations::with_agent).

use omni_capabilities::{AgentScope, Scope};

use super::integrations::{wrong_scope, BackendFuture, NotConfigured};
use super::try_budget;
use crate::bindings::omni::caps::agent::{Host, Outcome, Task};
use crate::bindings::CapError;
use crate::sandbox::CallState;

pub use crate::bindings::omni::caps::agent::Outcome as AgentOutcome;

const CAPABILITY: &str = "agent.spawn";
/// Model turns a task gets when neither the task nor the scope says.
pub const DEFAULT_MAX_ITERATIONS: u32 = 10;
/// Sub-agents one extension may run at once when the scope does not say.
pub const DEFAULT_MAX_CONCURRENT: u32 = omni_capabilities::DEFAULT_AGENT_MAX_CONCURRENT;
/// Most tools one task may list.
pub const MAX_TOOLS: usize = 64;

/// A task as the host hands it to the runner, after every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRequest {
    /// The extension that asked; the sub-agent may hold no permission it lacks.
    pub extension: String,
    /// What to do, in words.
    pub instructions: String,
    /// Tools the sub-agent may call, each `extension-id/tool`.
    pub tools: Vec<String>,
    /// Model turns allowed: the task's request within the scope's bound.
    pub max_iterations: u32,
    /// A model name; `None` picks the runner's default.
    pub model: Option<String>,
}

/// The sub-agent runner an embedder plugs in.
pub trait AgentBackend: Send + Sync {
    /// Runs `request` to completion, within `request.max_iterations` model turns.
    fn spawn(&self, request: AgentRequest) -> BackendFuture<'_, AgentOutcome>;
}

impl AgentBackend for NotConfigured {
    fn spawn(&self, _: AgentRequest) -> BackendFuture<'_, AgentOutcome> {
        NotConfigured::future(CAPABILITY, "sub-agent runner", "with_agent")
    }
}

/// The scope check: the model turns the task asks for.
fn check(scope: &Scope, iterations: Option<u32>) -> Result<(), String> {
    match scope {
        Scope::Agent(s) => iterations.map_or(Ok(()), |n| AgentScope::check_iterations(s, n)),
        other => Err(wrong_scope(CAPABILITY, other)),
    }
}

fn check_tools(tools: &[String]) -> Result<(), CapError> {
    if tools.len() > MAX_TOOLS {
        return Err(CapError::InvalidInput(format!(
            "the task lists {} tools, more than {MAX_TOOLS}; list fewer",
            tools.len()
        )));
    }
    for t in tools {
        let well_formed = match t.split_once('/') {
            Some((ext, tool)) => {
                !ext.is_empty() && !tool.is_empty() && !tool.contains('/') && !t.chars().any(char::is_control)
            }
            None => false,
        };
        if !well_formed {
            return Err(CapError::InvalidInput(format!(
                "{t:?} is not a tool name; name tools as `extension-id/tool`, e.g. `dev.omni.weather/get_weather`"
            )));
        }
    }
    Ok(())
}

impl Host for CallState {
    async fn spawn(&mut self, t: Task) -> wasmtime::Result<Result<Outcome, CapError>> {
        try_budget!(
            self,
            t.instructions.len()
                + t.tools.iter().map(String::len).sum::<usize>()
                + t.model.as_deref().map_or(0, str::len)
        );
        if t.instructions.trim().is_empty() {
            return Ok(Err(CapError::InvalidInput(
                "the task has no instructions; say what the sub-agent should do".into(),
            )));
        }
        if t.max_iterations == Some(0) {
            return Ok(Err(CapError::InvalidInput("max-iterations is 0; allow at least one model turn".into())));
        }
        if let Err(e) = check_tools(&t.tools) {
            return Ok(Err(e));
        }
        let target = format!(
            "spawn ({} iterations, {} tools)",
            t.max_iterations.map_or_else(|| "default".to_string(), |n| n.to_string()),
            t.tools.len()
        );
        let requested = t.max_iterations;
        let scope = match self.authorize_scoped(CAPABILITY, &target, move |s| check(s, requested)).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let (bound, concurrent) = match &scope {
            Some(Scope::Agent(s)) => (s.max_iterations, s.max_concurrent),
            _ => (None, None),
        };
        let max_iterations = requested.or(bound).unwrap_or(DEFAULT_MAX_ITERATIONS);
        let source = if concurrent.is_some() {
            "max_concurrent in the grant's scope"
        } else {
            "the host's default when the scope sets no max_concurrent"
        };
        let _slot =
            match self.take_slot(CAPABILITY, &target, Some(concurrent.unwrap_or(DEFAULT_MAX_CONCURRENT)), source).await
            {
                Ok(slot) => slot,
                Err(e) => return Ok(Err(e)),
            };
        let request = AgentRequest {
            extension: self.ext.id.clone(),
            instructions: t.instructions,
            tools: t.tools,
            max_iterations,
            model: t.model,
        };
        let backend = self.host.integrations.agent.clone();
        let result = backend.spawn(request).await;
        Ok(self.backend_result(CAPABILITY, &target, result).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterations_are_bounded_by_the_scope() {
        let s = Scope::Agent(AgentScope { max_concurrent: Some(1), max_iterations: Some(5) });
        assert!(check(&s, Some(5)).is_ok());
        assert!(check(&s, None).is_ok());
        assert!(check(&s, Some(6)).is_err());
        assert!(check(&s, Some(u32::MAX)).is_err());
        assert!(check(&Scope::None, Some(1)).is_err());
    }

    #[test]
    fn tool_names_are_extension_slash_tool() {
        assert!(check_tools(&["dev.omni.weather/get_weather".into()]).is_ok());
        for bad in ["get_weather", "/x", "x/", "a/b/c", "a/b\n"] {
            assert!(check_tools(&[bad.into()]).is_err(), "{bad:?}");
        }
        assert!(check_tools(&vec!["a/b".to_string(); MAX_TOOLS + 1]).is_err());
    }
}
