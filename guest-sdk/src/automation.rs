//! Drive desktop applications (capability `app.automation`).
//!
//! ```no_run
//! use omni_guest_sdk::automation;
//! use serde_json::{json, Value};
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let answer: Value = automation::run("Music", "play", &json!({"playlist": "Focus"}))?;
//! # Ok(())
//! # }
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bindings::omni::caps::automation as wit;
use crate::Result;

/// Perform `action` in `app` with `arguments` (serialized as JSON) and parse the
/// application's JSON answer into `R` (use `serde_json::Value` for anything).
///
/// # Errors
///
/// The host's refusal (app or action outside the grant), the application's failure, or
/// [`Error::Decode`](crate::Error::Decode) when the answer is not of the shape of `R`.
pub fn run<T, R>(app: &str, action: &str, arguments: &T) -> Result<R>
where
    T: Serialize + ?Sized,
    R: DeserializeOwned,
{
    let answer = run_json(app, action, &crate::to_json(arguments)?)?;
    crate::from_json("the application's answer as JSON", &answer)
}

/// [`run`] with JSON text in and out.
///
/// # Errors
///
/// As [`run`].
pub fn run_json(app: &str, action: &str, arguments: &str) -> Result<String> {
    Ok(wit::run(app, action, arguments)?)
}
