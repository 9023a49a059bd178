//! `flowchart.invoke`: run flowcharts (workflows) defined by the embedding application.
//!
//! Scope ([`FlowchartScope`]): `allowed_flowcharts` is matched exactly against the
//! `name` argument. The input must be JSON; the output is JSON. The default backend is a
//! [`FlowchartRegistry`] the embedder fills with named functions before opening the host
//! (empty by default, so every name answers `unavailable`); a workflow engine can replace
//! it through [`Integrations::with_flowchart`](super::Integrations::with_flowchart).

use std::collections::BTreeMap;
use std::sync::Arc;

use omni_capabilities::{FlowchartScope, Scope};
use serde_json::Value;

use super::integrations::{check_name, wrong_scope, BackendFuture, IntegrationError};
use super::try_budget;
use crate::bindings::omni::caps::flowchart::Host;
use crate::bindings::CapError;
use crate::sandbox::CallState;

const CAPABILITY: &str = "flowchart.invoke";

/// A flowchart runner an embedder plugs in.
pub trait FlowchartBackend: Send + Sync {
    /// Runs flowchart `name` (allowed by the grant) with `input`; its JSON output.
    fn invoke(&self, name: String, input: Value) -> BackendFuture<'_, Value>;
}

/// One registered flowchart: JSON in, JSON out, or a message saying why it failed.
pub type FlowchartFn = Arc<dyn Fn(Value) -> Result<Value, String> + Send + Sync>;

/// The default runner: flowcharts registered by name before the host opens.
///
/// ```
/// use omni_host::caps::flowchart::FlowchartRegistry;
/// let flows = FlowchartRegistry::new()
///     .register("word-count", |input| {
///         let text = input["text"].as_str().ok_or("`text` must be a string")?;
///         Ok(serde_json::json!({ "words": text.split_whitespace().count() }))
///     });
/// assert_eq!(flows.names(), vec!["word-count"]);
/// ```
#[derive(Clone, Default)]
pub struct FlowchartRegistry {
    flows: BTreeMap<String, FlowchartFn>,
}

impl FlowchartRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) flowchart `name`. It runs on the host's async executor, so it
    /// must not block for long.
    pub fn register(
        mut self,
        name: impl Into<String>,
        flow: impl Fn(Value) -> Result<Value, String> + Send + Sync + 'static,
    ) -> Self {
        self.flows.insert(name.into(), Arc::new(flow));
        self
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.flows.keys().map(String::as_str).collect()
    }
}

impl std::fmt::Debug for FlowchartRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowchartRegistry").field("flows", &self.names()).finish()
    }
}

impl FlowchartBackend for FlowchartRegistry {
    fn invoke(&self, name: String, input: Value) -> BackendFuture<'_, Value> {
        let result = match self.flows.get(&name) {
            Some(flow) => flow(input).map_err(|m| IntegrationError::Io(format!("flowchart {name:?} failed: {m}"))),
            None => Err(IntegrationError::Unavailable(format!(
                "no flowchart named {name:?} is registered on this host (registered: {}); the application embedding Omni registers flowcharts with `FlowchartRegistry::register` passed to `Integrations::with_flowchart`",
                if self.flows.is_empty() { "none".to_string() } else { self.names().join(", ") }
            ))),
        };
        Box::pin(std::future::ready(result))
    }
}

/// The scope check: the flowchart's exact name.
fn check(scope: &Scope, name: &str) -> Result<(), String> {
    match scope {
        Scope::Flowchart(s) => FlowchartScope::check(s, name),
        other => Err(wrong_scope(CAPABILITY, other)),
    }
}

impl Host for CallState {
    async fn invoke(&mut self, name: String, input: String) -> wasmtime::Result<Result<String, CapError>> {
        try_budget!(self, name.len() + input.len());
        if let Err(e) = check_name("flowchart name", &name) {
            return Ok(Err(e));
        }
        let input: Value = match serde_json::from_str(&input) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Err(CapError::InvalidInput(format!(
                    "the flowchart input is not valid JSON ({e}); pass a JSON value"
                ))))
            }
        };
        if let Err(e) = self.authorize(CAPABILITY, &name, &|s: &Scope| check(s, &name)).await {
            return Ok(Err(e));
        }
        let backend = self.host.integrations.flowchart.clone();
        let target = name.clone();
        let result = backend.invoke(name, input).await.map(|v| v.to_string());
        Ok(self.backend_result(CAPABILITY, &target, result).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_registry_runs_registered_flowcharts_only() {
        let flows =
            FlowchartRegistry::new().register("double", |v| Ok(Value::from(v.as_i64().ok_or("not a number")? * 2)));
        assert_eq!(flows.invoke("double".into(), Value::from(21)).await, Ok(Value::from(42)));
        assert!(matches!(flows.invoke("double".into(), Value::from("x")).await, Err(IntegrationError::Io(_))));
        match flows.invoke("other".into(), Value::Null).await {
            Err(IntegrationError::Unavailable(m)) => {
                assert!(m.contains("double") && m.contains("FlowchartRegistry::register"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_match_exactly() {
        let s = Scope::Flowchart(FlowchartScope { allowed_flowcharts: vec!["summarize".into()] });
        assert!(check(&s, "summarize").is_ok());
        for bad in ["Summarize", "summarize ", "summarize/../x", "summ", ""] {
            assert!(check(&s, bad).is_err(), "{bad:?}");
        }
    }
}
