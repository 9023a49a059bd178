//! Calculator: evaluates arithmetic expressions. Needs no capability at all.
//!
//! Tool `evaluate` `{ "expression": "2*(3+4)" }` returns `14`.
#![forbid(unsafe_code)]

mod parser;

use omni_guest_sdk::{export_tools, ToolError};
use serde::Deserialize;

/// Arguments of `evaluate`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluateArgs {
    /// The expression, e.g. `2 * (3 + 4) ^ 2 % 5`.
    expression: String,
}

/// Evaluate the expression; integral results come back as JSON integers.
fn evaluate(args: EvaluateArgs) -> Result<serde_json::Value, ToolError> {
    let value = parser::evaluate(&args.expression).map_err(|e| ToolError::invalid(e.to_string()))?;
    Ok(to_json_number(value))
}

/// `14.0` becomes `14` so that callers see the integer they expect; anything else stays
/// a float.
fn to_json_number(value: f64) -> serde_json::Value {
    // 2^53: past it, f64 no longer holds every integer, so the float form is more honest.
    const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;
    if value.fract() == 0.0 && value.abs() <= EXACT_INTEGER_LIMIT {
        // Exact: `value` is integral and within i64 range. `-0.0` becomes `0`.
        serde_json::Value::from(value as i64)
    } else {
        serde_json::Value::from(value)
    }
}

export_tools!(evaluate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_results_are_json_integers() {
        let out = evaluate(EvaluateArgs { expression: "2*(3+4)".into() }).unwrap();
        assert_eq!(out.to_string(), "14");
        assert_eq!(to_json_number(0.5).to_string(), "0.5");
        assert_eq!(to_json_number(-0.0).to_string(), "0");
        assert_eq!(to_json_number(1e300).to_string(), "1e+300");
    }

    #[test]
    fn errors_are_invalid_arguments_with_position() {
        let err = evaluate(EvaluateArgs { expression: "(1+2))".into() }).unwrap_err();
        assert_eq!(err, ToolError::invalid("unexpected ')' at 5"));
    }
}
