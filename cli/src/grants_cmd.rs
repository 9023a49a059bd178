//! `omni grants list|revoke` and `omni kill-switch`.

use anyhow::Context as _;
use omni_capabilities::text::escape;
use omni_host::policy::{GrantInfo, PolicyEngine};

/// `omni grants ...`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum GrantsCommand {
    /// List grants, of every extension or of one.
    List {
        /// Only this extension's grants.
        id: Option<String>,
    },
    /// Revoke an extension's grants (all, or one capability). The extension is refused
    /// from its next host call on, and stays refused until granted again.
    Revoke {
        /// The extension id.
        id: String,
        /// Only this capability (e.g. network.http).
        cap: Option<String>,
    },
}

/// Runs a `grants` subcommand; returns the process exit code.
pub fn run(cmd: GrantsCommand, engine: &PolicyEngine, json: bool) -> anyhow::Result<i32> {
    match cmd {
        GrantsCommand::List { id } => {
            let grants = engine.grants(id.as_deref()).context("cannot read grants")?;
            if json {
                let out = serde_json::json!({ "kill_switch": engine.kill_switch_engaged(), "grants": grants });
                crate::print_json_pretty(&out);
            } else {
                print_table(&grants, id.as_deref());
                if engine.kill_switch_engaged() {
                    println!("note: the kill switch is engaged; extensions not granted again since are refused");
                }
            }
            Ok(0)
        }
        GrantsCommand::Revoke { id, cap } => {
            let removed =
                engine.revoke(&id, cap.as_deref()).with_context(|| format!("cannot revoke grants of {id}"))?;
            if json {
                let out = serde_json::json!({ "extension": id, "capability": cap, "revoked": removed });
                crate::print_json_pretty(&out);
            } else {
                let what = escape(cap.as_deref().unwrap_or("all capabilities"));
                let id = escape(&id);
                println!("revoked {what} of {id}: {removed} grant(s) removed; it is refused until granted again (`omni install <dir>`)");
            }
            Ok(0)
        }
    }
}

/// `omni kill-switch`: revokes every grant of every extension; returns the exit code.
pub fn kill_switch(engine: &PolicyEngine, json: bool) -> anyhow::Result<i32> {
    let removed = engine.kill_switch().context("the kill switch could not be persisted")?;
    if json {
        crate::print_json(&serde_json::json!({ "kill_switch": true, "revoked": removed }));
    } else {
        println!("kill switch engaged: {removed} grant(s) revoked; every extension must be granted again (`omni install <dir>`)");
    }
    Ok(0)
}

fn print_table(grants: &[GrantInfo], id: Option<&str>) {
    if grants.is_empty() {
        match id {
            Some(id) => println!("no grants for {}", escape(id)),
            None => println!("no grants"),
        }
        return;
    }
    let rows: Vec<[String; 6]> = grants
        .iter()
        .map(|g| {
            // Ids and scopes come from manifests: one escaped line per cell.
            [
                escape(&g.extension).into_owned(),
                escape(&g.capability).into_owned(),
                g.decision.to_string(),
                g.duration.to_string(),
                omni_host::audit::format_time(g.granted_at),
                escape(&g.scope.to_string()).into_owned(),
            ]
        })
        .collect();
    let header = ["EXTENSION", "CAPABILITY", "DECISION", "DURATION", "GRANTED", "SCOPE"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        println!("{out}");
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
}
