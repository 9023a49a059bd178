//! Layer 4: tool-call validation against the declared tools' JSON Schemas.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::GuardianError;

/// The tools an extension declared, each with the JSON Schema of its arguments.
///
/// ```
/// let mut tools = omni_guardian::ToolRegistry::new();
/// tools.register("weather", serde_json::json!({"type": "object"}))?;
/// assert!(tools.contains("weather"));
/// # Ok::<(), omni_guardian::GuardianError>(())
/// ```
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, (Value, Arc<jsonschema::Validator>)>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolRegistry").field("tools", &self.tools.keys().collect::<Vec<_>>()).finish()
    }
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a tool; fails if `schema` is not a valid JSON Schema.
    pub fn register(&mut self, name: impl Into<String>, schema: Value) -> Result<(), GuardianError> {
        let name = name.into();
        let validator = jsonschema::validator_for(&schema)
            .map_err(|e| GuardianError::InvalidToolSchema { tool: name.clone(), problem: e.to_string() })?;
        self.tools.insert(name, (schema, Arc::new(validator)));
        Ok(())
    }

    /// Whether `name` is declared.
    pub fn contains(&self, name: &str) -> bool {
        self.tools.contains_key(name)
    }

    /// The schema declared for `name`.
    pub fn schema(&self, name: &str) -> Option<&Value> {
        self.tools.get(name).map(|(s, _)| s)
    }

    /// Declared tool names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    /// Runs layer 4 and extracts the argument text for layers 1-3.
    pub(crate) fn check(&self, tool: &str, args_json: &str) -> ToolCheck {
        let mut problems = Vec::new();
        let mut fatal = false;
        let mut schema_failed = false;
        let validator = self.tools.get(tool).map(|(_, v)| v);
        if validator.is_none() {
            fatal = true;
            let known: Vec<&str> = self.names().collect();
            problems.push(format!(
                "tool {tool:?} is not declared by the extension (declared: {}); add it to the manifest's [[tools]]",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ));
        }
        let text = match serde_json::from_str::<Value>(args_json) {
            Ok(value) => {
                if let Some(v) = validator {
                    for e in v.iter_errors(&value).take(8) {
                        schema_failed = true;
                        let at = e.instance_path().to_string();
                        problems.push(format!(
                            "arguments violate the schema of {tool:?} at {}: {e}",
                            if at.is_empty() { "/".to_string() } else { at }
                        ));
                    }
                }
                let mut out = String::new();
                collect_strings(&value, &mut out);
                out
            }
            Err(e) => {
                fatal = true;
                problems.push(format!("arguments of {tool:?} are not valid JSON: {e}"));
                // Still scan what was sent.
                args_json.to_string()
            }
        };
        let score = if fatal {
            0.0
        } else if schema_failed {
            25.0
        } else {
            100.0
        };
        ToolCheck { score, fatal, problems, text }
    }
}

/// Outcome of layer 4.
#[derive(Debug, Clone)]
pub(crate) struct ToolCheck {
    pub score: f64,
    pub fatal: bool,
    pub problems: Vec<String>,
    pub text: String,
}

/// Appends every string value (and object key) of `v`, one per line.
fn collect_strings(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                if k.len() > 24 {
                    out.push_str(k);
                    out.push('\n');
                }
                collect_strings(x, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registry() -> ToolRegistry {
        let mut r = ToolRegistry::new();
        let schema = json!({"type": "object", "properties": {"to": {"type": "string"}, "n": {"type": "integer"}}, "required": ["to"], "additionalProperties": false});
        r.register("send", schema).expect("valid schema");
        r
    }

    #[test]
    fn valid_call_passes_and_strings_are_extracted() {
        let c = registry().check("send", r#"{"to": "alice", "n": 3}"#);
        assert_eq!(c.score, 100.0);
        assert!(c.problems.is_empty());
        assert_eq!(c.text, "alice\n");
    }

    #[test]
    fn undeclared_tool_and_bad_json_are_fatal() {
        let c = registry().check("shell", "{}");
        assert!(c.fatal && c.problems[0].contains("not declared"));
        let c = registry().check("send", "{to: alice");
        assert!(c.fatal && c.problems[0].contains("not valid JSON"));
    }

    #[test]
    fn schema_violations_are_listed() {
        let c = registry().check("send", r#"{"n": "x", "extra": 1}"#);
        assert!(!c.fatal);
        assert_eq!(c.score, 25.0);
        assert!(c.problems.len() >= 2, "{:?}", c.problems);
    }

    #[test]
    fn invalid_schema_is_refused() {
        let mut r = ToolRegistry::new();
        assert!(r.register("x", json!({"type": 12})).is_err());
    }
}
