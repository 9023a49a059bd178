//! `app.automation`: drive desktop applications through their automation interfaces.
//!
//! Scope ([`AutomationScope`]): `allowed_apps` (exact, case-sensitive match of the `app`
//! argument), `allowed_actions` (exact match of `action`; absent allows every action of
//! the allowed apps), `rate_limit` (enforced by the permission engine) and
//! `max_concurrent` (runs of this extension in progress at once; enforced here).
//! There is no default automation on a headless host: the default backend answers
//! `unavailable` until an embedder plugs one in with
//! [`Integrations::with_automation`](super::Integrations::with_automation).

use omni_capabilities::{AutomationScope, Scope};

use super::integrations::{check_name, json_object, wrong_scope, BackendFuture, NotConfigured};
use super::try_budget;
use crate::bindings::omni::caps::automation::Host;
use crate::bindings::CapError;
use crate::sandbox::CallState;

const CAPABILITY: &str = "app.automation";

/// Application automation an embedder plugs in (AppleScript, UI Automation, D-Bus...).
pub trait AutomationBackend: Send + Sync {
    /// Performs `action` in `app` with `arguments` (a JSON object, already checked) and
    /// returns the application's answer as JSON (`null` when it has none).
    ///
    /// `app` and `action` have passed the grant's `allowed_apps` and `allowed_actions`.
    fn run(&self, app: String, action: String, arguments: serde_json::Value) -> BackendFuture<'_, serde_json::Value>;
}

impl AutomationBackend for NotConfigured {
    fn run(&self, _: String, _: String, _: serde_json::Value) -> BackendFuture<'_, serde_json::Value> {
        NotConfigured::future(CAPABILITY, "application automation", "with_automation")
    }
}

/// The scope check: exact application and action.
fn check(scope: &Scope, app: &str, action: &str) -> Result<(), String> {
    match scope {
        Scope::Automation(s) => AutomationScope::check(s, app, Some(action)),
        other => Err(wrong_scope(CAPABILITY, other)),
    }
}

impl Host for CallState {
    async fn run(
        &mut self,
        app: String,
        action: String,
        arguments: String,
    ) -> wasmtime::Result<Result<String, CapError>> {
        try_budget!(self, app.len() + action.len() + arguments.len());
        if let Err(e) = check_name("application", &app).and(check_name("action", &action)) {
            return Ok(Err(e));
        }
        let arguments = match json_object("the automation arguments", &arguments) {
            Ok(map) => serde_json::Value::Object(map),
            Err(e) => return Ok(Err(e)),
        };
        let target = format!("{app} {action}");
        let scope = match self.authorize_scoped(CAPABILITY, &target, |s| check(s, &app, &action)).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let _slot = match self
            .take_slot(
                CAPABILITY,
                &target,
                scope.and_then(|s| s.max_concurrent()),
                "max_concurrent in the grant's scope",
            )
            .await
        {
            Ok(slot) => slot,
            Err(e) => return Ok(Err(e)),
        };
        let backend = self.host.integrations.automation.clone();
        let result = backend.run(app, action, arguments).await.map(|v| v.to_string());
        Ok(self.backend_result(CAPABILITY, &target, result).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(actions: Option<&[&str]>) -> Scope {
        Scope::Automation(AutomationScope {
            allowed_apps: vec!["com.example.editor".into()],
            allowed_actions: actions.map(|a| a.iter().map(|s| s.to_string()).collect()),
            rate_limit: None,
            max_concurrent: None,
        })
    }

    #[test]
    fn apps_and_actions_match_exactly() {
        let s = scope(Some(&["open"]));
        assert!(check(&s, "com.example.editor", "open").is_ok());
        for (app, action) in [
            ("com.example.Editor", "open"),
            ("com.example.editor ", "open"),
            ("com.example.editor.evil", "open"),
            ("com.example", "open"),
            ("com.example.editor", "Open"),
            ("com.example.editor", "open;delete"),
            ("com.example.editor", "delete"),
        ] {
            assert!(check(&s, app, action).is_err(), "{app} {action}");
        }
        // No action list: every action of an allowed app.
        assert!(check(&scope(None), "com.example.editor", "anything").is_ok());
        assert!(check(&scope(None), "com.other", "open").is_err());
        assert!(check(&Scope::None, "com.example.editor", "open").is_err());
    }
}
