//! Tools of Model Context Protocol servers configured on the host (capability
//! `mcp.server`).
//!
//! ```no_run
//! use omni_guest_sdk::mcp;
//! use serde_json::json;
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! for server in mcp::servers()? {
//!     for tool in mcp::tools(&server)? {
//!         println!("{server}/{}: {}", tool.name, tool.description);
//!     }
//! }
//! let result = mcp::call("github", "search_issues", &json!({"query": "is:open label:bug"}))?;
//! if !result.is_error {
//!     let content: serde_json::Value = result.content_json()?;
//! }
//! # Ok(())
//! # }
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bindings::omni::caps::mcp as wit;
use crate::Result;

pub use wit::{CallResult, ToolInfo};

impl CallResult {
    /// The MCP `content` array parsed into `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`](crate::Error::Decode) when it is not of the shape of `T`.
    pub fn content_json<T: DeserializeOwned>(&self) -> Result<T> {
        crate::from_json("the MCP content as JSON", &self.content)
    }
}

/// Names of the configured servers this extension may reach.
///
/// # Errors
///
/// The host's refusal.
pub fn servers() -> Result<Vec<String>> {
    Ok(wit::list_servers()?)
}

/// The tools `server` offers.
///
/// # Errors
///
/// The host's refusal (server outside the grant) or the server's failure.
pub fn tools(server: &str) -> Result<Vec<ToolInfo>> {
    Ok(wit::list_tools(server)?)
}

/// Call `tool` on `server` with `arguments` (serialized as JSON).
///
/// # Errors
///
/// As [`tools`], and [`Error::InvalidInput`](crate::Error::InvalidInput) when `arguments`
/// cannot be serialized. A tool that ran and failed is not an error here: see
/// [`CallResult::is_error`].
pub fn call<T: Serialize + ?Sized>(server: &str, tool: &str, arguments: &T) -> Result<CallResult> {
    Ok(wit::call_tool(server, tool, &crate::to_json(arguments)?)?)
}
