//! Run flowcharts defined in the embedding application (capability `flowchart.invoke`).
//!
//! ```no_run
//! use serde_json::{json, Value};
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let out: Value = omni_guest_sdk::flowchart::invoke("triage-ticket", &json!({"id": 42}))?;
//! # Ok(())
//! # }
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bindings::omni::caps::flowchart as wit;
use crate::Result;

/// Run flowchart `name` with `input` (serialized as JSON) and parse its output into `O`.
///
/// # Errors
///
/// The host's refusal (flowchart outside the grant), the flowchart's failure, or
/// [`Error::Decode`](crate::Error::Decode) when the output is not of the shape of `O`.
pub fn invoke<I, O>(name: &str, input: &I) -> Result<O>
where
    I: Serialize + ?Sized,
    O: DeserializeOwned,
{
    let output = invoke_json(name, &crate::to_json(input)?)?;
    crate::from_json("the flowchart's output as JSON", &output)
}

/// [`invoke`] with JSON text in and out.
///
/// # Errors
///
/// As [`invoke`].
pub fn invoke_json(name: &str, input: &str) -> Result<String> {
    Ok(wit::invoke(name, input)?)
}
