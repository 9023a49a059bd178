//! `mcp.server`: tools of Model Context Protocol servers configured on the host.
//!
//! Scope ([`McpScope`]): `allowed_servers` is matched exactly against the `server`
//! argument, `allowed_tools` exactly against the `tool` (absent allows every tool of the
//! allowed servers). `list-servers` returns only the configured servers the grant allows,
//! and `list-tools` only the allowed tools, so an extension cannot even learn what else
//! the host reaches. The default backend answers `unavailable`; an embedder plugs its MCP
//! client in with [`Integrations::with_mcp`](super::Integrations::with_mcp).

use omni_capabilities::{McpScope, Scope};

use super::integrations::{check_name, json_object, wrong_scope, BackendFuture, NotConfigured};
use super::try_budget;
use crate::bindings::omni::caps::mcp::Host;
use crate::bindings::CapError;
use crate::sandbox::CallState;

pub use crate::bindings::omni::caps::mcp::{CallResult, ToolInfo};

const CAPABILITY: &str = "mcp.server";

/// The MCP client an embedder plugs in; it knows the servers the host is configured with.
pub trait McpBackend: Send + Sync {
    /// Names of every configured server (the host filters them by the grant).
    fn servers(&self) -> BackendFuture<'_, Vec<String>>;
    /// The tools `server` offers (the host filters them by the grant).
    fn list_tools(&self, server: String) -> BackendFuture<'_, Vec<ToolInfo>>;
    /// Calls `tool` on `server` with `arguments` (a JSON object, already checked).
    fn call_tool(&self, server: String, tool: String, arguments: serde_json::Value) -> BackendFuture<'_, CallResult>;
}

fn unavailable<'a, T: Send + 'a>() -> BackendFuture<'a, T> {
    NotConfigured::future(CAPABILITY, "MCP client", "with_mcp")
}

impl McpBackend for NotConfigured {
    fn servers(&self) -> BackendFuture<'_, Vec<String>> {
        unavailable()
    }
    fn list_tools(&self, _: String) -> BackendFuture<'_, Vec<ToolInfo>> {
        unavailable()
    }
    fn call_tool(&self, _: String, _: String, _: serde_json::Value) -> BackendFuture<'_, CallResult> {
        unavailable()
    }
}

fn mcp_scope(scope: &Scope) -> Result<&McpScope, String> {
    match scope {
        Scope::Mcp(s) => Ok(s),
        other => Err(wrong_scope(CAPABILITY, other)),
    }
}

/// The server alone (listing its tools).
fn check_server(scope: &Scope, server: &str) -> Result<(), String> {
    let s = mcp_scope(scope)?;
    if s.allowed_servers.iter().any(|a| a == server) {
        Ok(())
    } else {
        Err(format!("MCP server {server:?} is not in scope; allowed_servers: {}", s.allowed_servers.join(", ")))
    }
}

/// The server and the tool called on it.
fn check_call(scope: &Scope, server: &str, tool: &str) -> Result<(), String> {
    mcp_scope(scope)?.check(server, tool)
}

fn tool_allowed(scope: Option<&Scope>, tool: &str) -> bool {
    match scope {
        Some(Scope::Mcp(s)) => s.allowed_tools.as_ref().is_none_or(|t| t.iter().any(|a| a == tool)),
        // Without a grant's scope (a one-off prompt answer) nothing is known to be allowed.
        _ => false,
    }
}

fn server_allowed(scope: Option<&Scope>, server: &str) -> bool {
    matches!(scope, Some(Scope::Mcp(s)) if s.allowed_servers.iter().any(|a| a == server))
}

impl Host for CallState {
    async fn list_servers(&mut self) -> wasmtime::Result<Result<Vec<String>, CapError>> {
        let scope = match self.authorize_scoped(CAPABILITY, "list servers", |s| mcp_scope(s).map(|_| ())).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let backend = self.host.integrations.mcp.clone();
        let result = backend.servers().await;
        let result = self.backend_result(CAPABILITY, "list servers", result).await;
        Ok(result.map(|all| all.into_iter().filter(|s| server_allowed(scope.as_ref(), s)).collect()))
    }

    async fn list_tools(&mut self, server: String) -> wasmtime::Result<Result<Vec<ToolInfo>, CapError>> {
        try_budget!(self, server.len());
        if let Err(e) = check_name("server", &server) {
            return Ok(Err(e));
        }
        let target = format!("list tools of {server}");
        let scope = match self.authorize_scoped(CAPABILITY, &target, |s| check_server(s, &server)).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let backend = self.host.integrations.mcp.clone();
        let result = backend.list_tools(server).await;
        let result = self.backend_result(CAPABILITY, &target, result).await;
        Ok(result.map(|all| all.into_iter().filter(|t| tool_allowed(scope.as_ref(), &t.name)).collect()))
    }

    async fn call_tool(
        &mut self,
        server: String,
        tool: String,
        arguments: String,
    ) -> wasmtime::Result<Result<CallResult, CapError>> {
        try_budget!(self, server.len() + tool.len() + arguments.len());
        if let Err(e) = check_name("server", &server).and(check_name("tool", &tool)) {
            return Ok(Err(e));
        }
        let arguments = match json_object("the MCP tool arguments", &arguments) {
            Ok(map) => serde_json::Value::Object(map),
            Err(e) => return Ok(Err(e)),
        };
        let target = format!("{server}/{tool}");
        if let Err(e) = self.authorize(CAPABILITY, &target, &|s: &Scope| check_call(s, &server, &tool)).await {
            return Ok(Err(e));
        }
        let backend = self.host.integrations.mcp.clone();
        let result = backend.call_tool(server, tool, arguments).await;
        Ok(self.backend_result(CAPABILITY, &target, result).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(tools: Option<&[&str]>) -> Scope {
        Scope::Mcp(McpScope {
            allowed_servers: vec!["files".into()],
            allowed_tools: tools.map(|t| t.iter().map(|s| s.to_string()).collect()),
        })
    }

    #[test]
    fn servers_and_tools_match_exactly() {
        let s = scope(Some(&["read_file"]));
        assert!(check_call(&s, "files", "read_file").is_ok());
        for (server, tool) in [
            ("files", "write_file"),
            ("files", "read_file "),
            ("files", "READ_FILE"),
            ("Files", "read_file"),
            ("files2", "read_file"),
            ("", "read_file"),
        ] {
            assert!(check_call(&s, server, tool).is_err(), "{server}/{tool}");
        }
        assert!(check_server(&s, "files").is_ok());
        assert!(check_server(&s, "shell").is_err());
        assert!(check_call(&scope(None), "files", "anything").is_ok());
        assert!(check_call(&Scope::None, "files", "read_file").is_err());
    }

    #[test]
    fn listings_are_filtered_by_the_grant() {
        let s = scope(Some(&["read_file"]));
        assert!(tool_allowed(Some(&s), "read_file"));
        assert!(!tool_allowed(Some(&s), "delete_file"));
        assert!(!tool_allowed(None, "read_file"));
        assert!(server_allowed(Some(&s), "files"));
        assert!(!server_allowed(Some(&s), "shell"));
    }
}
