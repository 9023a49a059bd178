//! Exporting tools: [`ToolError`], [`invoke`] and the [`export_tools!`](crate::export_tools)
//! macro.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bindings::exports::omni::extension::tool::ToolError as WitToolError;

/// Why a tool failed; returned by the functions given to
/// [`export_tools!`](crate::export_tools).
///
/// The message reaches the calling agent (after the host's Guardian scanned it), so write
/// it for a reader who can fix the call: name the bad field and the accepted values.
///
/// ```
/// use omni_guest_sdk::ToolError;
///
/// let e = ToolError::invalid("`days` must be between 1 and 16, got 40");
/// assert_eq!(e.to_string(), "invalid arguments: `days` must be between 1 and 16, got 40");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The arguments parsed but make no sense (out of range, contradictory, ...).
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The tool ran and failed.
    #[error("{0}")]
    Failed(String),
}

impl ToolError {
    /// A failure while running the tool.
    pub fn failed(message: impl Into<String>) -> Self {
        ToolError::Failed(message.into())
    }

    /// Arguments that the tool cannot accept.
    pub fn invalid(message: impl Into<String>) -> Self {
        ToolError::InvalidArguments(message.into())
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        match self {
            ToolError::InvalidArguments(m) | ToolError::Failed(m) => m,
        }
    }
}

/// A capability error fails the tool with the host's explanation, so that `?` works on
/// capability calls inside tools.
impl From<crate::Error> for ToolError {
    fn from(err: crate::Error) -> Self {
        ToolError::Failed(err.to_string())
    }
}

/// Raw binding calls (e.g. [`debugger::Session`](crate::debugger::Session) methods) return
/// the WIT error; `?` on them inside a tool works the same way.
impl From<crate::bindings::omni::caps::types::Error> for ToolError {
    fn from(err: crate::bindings::omni::caps::types::Error) -> Self {
        crate::Error::from(err).into()
    }
}

impl From<ToolError> for WitToolError {
    fn from(err: ToolError) -> Self {
        match err {
            ToolError::InvalidArguments(m) => WitToolError::InvalidArguments(m),
            ToolError::Failed(m) => WitToolError::Failed(m),
        }
    }
}

/// The argument type of a tool that takes none: accepts `{}` (other fields are ignored)
/// and an empty argument string.
///
/// ```
/// use omni_guest_sdk::{export_tools, NoArgs, ToolError};
///
/// fn version(_: NoArgs) -> Result<&'static str, ToolError> {
///     Ok(env!("CARGO_PKG_VERSION"))
/// }
/// export_tools!(version);
/// # fn main() {}
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoArgs {}

/// Run one tool: parse `arguments` (JSON) into the tool's argument type, call it, and
/// serialize what it returns as JSON.
///
/// This is what [`export_tools!`](crate::export_tools) calls for each tool; call it
/// yourself when you implement the `tool` interface by hand. Empty (or all-whitespace)
/// `arguments` count as `{}`. Arguments that do not parse, or do not have the shape of
/// `A`, give `invalid-arguments` with serde's message (which names the field and the
/// position).
///
/// ```
/// use omni_guest_sdk::{bindings::exports::omni::extension::tool::ToolError, invoke};
///
/// fn double(n: i64) -> Result<i64, omni_guest_sdk::ToolError> {
///     Ok(n * 2)
/// }
/// assert_eq!(invoke(double, "21").unwrap(), "42");
/// assert!(matches!(invoke(double, "\"x\""), Err(ToolError::InvalidArguments(_))));
/// ```
pub fn invoke<A, R, E, F>(tool: F, arguments: &str) -> Result<String, WitToolError>
where
    A: DeserializeOwned,
    R: Serialize,
    E: Into<ToolError>,
    F: FnOnce(A) -> Result<R, E>,
{
    let arguments = if arguments.trim().is_empty() { "{}" } else { arguments };
    let args: A = serde_json::from_str(arguments).map_err(|e| WitToolError::InvalidArguments(e.to_string()))?;
    let output = tool(args).map_err(|e| WitToolError::from(e.into()))?;
    serde_json::to_string(&output)
        .map_err(|e| WitToolError::Failed(format!("the tool's result is not valid JSON: {e}")))
}

/// The error for a tool name the extension does not export, listing those it does.
#[doc(hidden)]
pub fn unknown_tool(name: &str, known: &[&str]) -> WitToolError {
    WitToolError::UnknownTool(format!("this extension has no tool `{name}`; its tools are: {}", known.join(", ")))
}

/// Export functions as the extension's tools; each tool is named after its function.
///
/// Each function takes one argument whose type implements `serde::Deserialize` (the
/// tool's JSON arguments; use [`NoArgs`](crate::NoArgs) for none) and returns
/// `Result<R, E>` where `R: serde::Serialize` (the tool's JSON result) and
/// `E: Into<ToolError>` (usually [`ToolError`](crate::ToolError), or the capability
/// [`Error`](crate::Error)).
///
/// The macro implements the component's exported `tool` interface: it dispatches on the
/// tool name (an unknown name gives `unknown-tool` listing the known ones), and runs the
/// function through [`invoke`](crate::invoke). Use it once per extension crate. The tool
/// names and JSON schemas must also be listed in the manifest's `[[tools]]`.
///
/// ```
/// use omni_guest_sdk::{export_tools, ToolError};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Greet {
///     name: String,
/// }
///
/// fn greet(args: Greet) -> Result<String, ToolError> {
///     if args.name.is_empty() {
///         return Err(ToolError::invalid("`name` must not be empty"));
///     }
///     Ok(format!("Hello, {}!", args.name))
/// }
///
/// fn shout(args: Greet) -> Result<String, ToolError> {
///     Ok(greet(args)?.to_uppercase())
/// }
///
/// export_tools!(greet, shout);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_tools {
    ($($tool:ident),+ $(,)?) => {
        /// The extension's exported tools, generated by `omni_guest_sdk::export_tools!`.
        #[doc(hidden)]
        pub struct __OmniExtensionTools;

        impl $crate::__private::Guest for __OmniExtensionTools {
            fn call(
                name: ::std::string::String,
                arguments: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, $crate::__private::WitToolError> {
                match name.as_str() {
                    $(::std::stringify!($tool) => $crate::invoke($tool, &arguments),)+
                    _ => ::std::result::Result::Err($crate::__private::unknown_tool(
                        &name,
                        &[$(::std::stringify!($tool)),+],
                    )),
                }
            }
        }

        $crate::bindings::__export_extension!(__OmniExtensionTools with_types_in $crate::bindings);
    };
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use crate::__private::Guest;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Pair {
        a: i32,
        b: i32,
    }

    fn add(p: Pair) -> Result<i32, ToolError> {
        p.a.checked_add(p.b).ok_or_else(|| ToolError::failed("the sum overflows a 32-bit integer"))
    }

    fn divide(p: Pair) -> Result<i32, ToolError> {
        if p.b == 0 {
            return Err(ToolError::invalid("`b` must not be 0"));
        }
        Ok(p.a / p.b)
    }

    fn denied(_: NoArgs) -> Result<(), crate::Error> {
        Err(crate::Error::PermissionDenied("storage.persistent was not granted".into()))
    }

    crate::export_tools!(add, divide, denied);

    fn call(name: &str, args: &str) -> Result<String, WitToolError> {
        <__OmniExtensionTools as Guest>::call(name.into(), args.into())
    }

    #[test]
    fn dispatches_by_function_name() {
        assert_eq!(call("add", r#"{"a": 2, "b": 40}"#).unwrap(), "42");
        assert_eq!(call("divide", r#"{"a": 9, "b": 2}"#).unwrap(), "4");
    }

    #[test]
    fn unknown_tool_lists_the_known_ones() {
        match call("multiply", "{}") {
            Err(WitToolError::UnknownTool(m)) => {
                assert!(m.contains("`multiply`"), "{m}");
                assert!(m.contains("add, divide, denied"), "{m}");
            }
            other => panic!("expected unknown-tool, got {other:?}"),
        }
    }

    #[test]
    fn bad_json_and_wrong_shape_are_invalid_arguments() {
        for bad in [r#"{"a": 1"#, r#"{"a": 1}"#, r#"{"a": "1", "b": 2}"#, "[1, 2, 3]"] {
            match call("add", bad) {
                Err(WitToolError::InvalidArguments(m)) => assert!(!m.is_empty()),
                other => panic!("{bad}: expected invalid-arguments, got {other:?}"),
            }
        }
        match call("add", r#"{"a": 1}"#) {
            Err(WitToolError::InvalidArguments(m)) => assert!(m.contains("`b`"), "{m}"),
            other => panic!("expected invalid-arguments, got {other:?}"),
        }
    }

    #[test]
    fn tool_errors_keep_their_kind() {
        assert!(matches!(
            call("divide", r#"{"a": 1, "b": 0}"#),
            Err(WitToolError::InvalidArguments(m)) if m == "`b` must not be 0"
        ));
        assert!(matches!(
            call("add", r#"{"a": 2147483647, "b": 1}"#),
            Err(WitToolError::Failed(m)) if m.contains("overflows")
        ));
    }

    #[test]
    fn capability_errors_become_failures_with_the_host_message() {
        match call("denied", "") {
            Err(WitToolError::Failed(m)) => {
                assert_eq!(m, "permission denied: storage.persistent was not granted")
            }
            other => panic!("expected failed, got {other:?}"),
        }
    }

    #[test]
    fn no_args_accepts_empty_input_and_objects() {
        fn ok(_: NoArgs) -> Result<bool, ToolError> {
            Ok(true)
        }
        for args in ["", "  ", "{}", r#"{"ignored": 1}"#] {
            assert_eq!(invoke(ok, args).unwrap(), "true", "{args:?}");
        }
        assert!(matches!(invoke(ok, "42"), Err(WitToolError::InvalidArguments(_))));
    }

    #[test]
    fn tool_error_constructors_and_messages() {
        assert_eq!(ToolError::failed("x").message(), "x");
        assert_eq!(ToolError::invalid("y").to_string(), "invalid arguments: y");
        assert_eq!(ToolError::from(crate::Error::Io("disk full".into())).to_string(), "i/o error: disk full");
        let raw = crate::bindings::omni::caps::types::Error::OutOfScope("host b.example".into());
        assert_eq!(ToolError::from(raw), ToolError::failed("out of scope: host b.example"));
    }
}
