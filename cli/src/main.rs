//! `omni`: install, review, call, audit and scan Omni extensions.
//!
//! Exit codes: 0 ok, 1 error, 2 usage, 3 permission denied, 4 blocked by the Guardian or
//! the scanner.

mod audit_cmd;
mod grants_cmd;
mod guardian_cmd;
mod schedules_cmd;

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use omni_capabilities::text::{escape, escape_multiline};
use omni_host::policy::{Decision, DenyPrompter, GrantDuration, Prompter, TerminalPrompter};
use omni_host::{CallError, InstallPlan, Omni, OmniError, PermissionDecision};
use serde_json::json;

/// Exit code for a refused permission.
const EXIT_DENIED: i32 = 3;

#[derive(Parser)]
#[command(name = "omni", version, about = "Run AI-agent extensions without trusting them", long_about = None)]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(clap::Args)]
struct Globals {
    /// Data directory (default: $OMNI_DATA_DIR, else the platform data dir).
    #[arg(long, global = true, env = "OMNI_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Configuration file (default: omni.toml in the data dir).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Review an extension's permissions and install it.
    Install(InstallArgs),
    /// List installed extensions.
    List,
    /// Remove an extension with its grants and storage.
    Uninstall {
        /// Extension id.
        id: String,
    },
    /// Call a tool of an installed extension.
    Call {
        /// Extension id.
        id: String,
        /// Tool name.
        tool: String,
        /// JSON arguments, or `-` to read them from stdin (default `{}`).
        args: Option<String>,
        /// Session the call belongs to (Session grants and audit records).
        #[arg(long)]
        session: Option<String>,
    },
    /// Inspect or revoke grants.
    #[command(subcommand)]
    Grants(grants_cmd::GrantsCommand),
    /// Revoke every grant of every extension at once.
    KillSwitch,
    /// Query, export or verify the audit log.
    Audit(audit_cmd::AuditArgs),
    /// List the jobs extensions scheduled, or run the ones that are due.
    #[command(subcommand)]
    Schedules(schedules_cmd::SchedulesCommand),
    /// Scan text with the Guardian, or evaluate it on labelled data.
    #[command(subcommand)]
    Guardian(guardian_cmd::GuardianCommand),
}

#[derive(clap::Args)]
struct InstallArgs {
    /// Folder with manifest.toml and the component, or the manifest file.
    source: PathBuf,
    /// Grant every declared capability.
    #[arg(long, conflicts_with_all = ["grant", "deny"])]
    yes: bool,
    /// Grant this capability (repeatable).
    #[arg(long, value_name = "CAP", num_args = 1..)]
    grant: Vec<String>,
    /// Deny this capability (repeatable).
    #[arg(long, value_name = "CAP", num_args = 1..)]
    deny: Vec<String>,
    /// How long grants last.
    #[arg(long, value_enum, default_value_t = DurationArg::Always)]
    duration: DurationArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum DurationArg {
    Once,
    Session,
    Always,
}

impl From<DurationArg> for GrantDuration {
    fn from(d: DurationArg) -> Self {
        match d {
            DurationArg::Once => GrantDuration::Once,
            DurationArg::Session => GrantDuration::Session,
            DurationArg::Always => GrantDuration::Always,
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let json = cli.globals.json;
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let code = exit_code_for(&e);
            // Each cause once: many errors already repeat their source in their message.
            let text = omni_capabilities::text::error_chain(e.as_ref());
            if json {
                print_json(&json!({ "error": text, "exit_code": code }));
            } else {
                // Errors repeat what extensions and manifests said (tool errors, a
                // guest's stderr, schemas): printed as text that cannot drive the terminal.
                eprintln!("error: {}", escape_multiline(&text));
            }
            code
        }
    };
    std::process::exit(code);
}

/// Whether a tool's error message only repeats one of the refusals it met: tools usually
/// pass the host's refusal on (`out of scope: <the refusal>`), and saying it twice hides
/// nothing but wastes the person's attention. Compared by the refusal's last words, since
/// the refusal is kept as `<capability> <target>: <why>` (maybe with `(N times)`).
fn repeats_a_denial(message: &str, denials: &[String]) -> bool {
    denials.iter().any(|d| {
        let d = d.rsplit_once(" (").filter(|(_, n)| n.ends_with(" times)")).map_or(d.as_str(), |(d, _)| d);
        let start = d.char_indices().rev().nth(59).map_or(0, |(i, _)| i);
        message.contains(&d[start..])
    })
}

/// Prints a JSON value on one line, with C1 and bidi characters escaped
/// ([`omni_capabilities::text::escape_json`]): the value is unchanged for any reader, and
/// the printed text cannot drive a terminal.
pub(crate) fn print_json(value: &impl serde::Serialize) {
    let text = serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"cannot print JSON: {e}\"}}"));
    println!("{}", omni_capabilities::text::escape_json(&text));
}

/// [`print_json`], indented for people.
pub(crate) fn print_json_pretty(value: &impl serde::Serialize) {
    let text =
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"cannot print JSON: {e}\"}}"));
    println!("{}", omni_capabilities::text::escape_json(&text));
}

fn exit_code_for(e: &anyhow::Error) -> i32 {
    match e.downcast_ref::<OmniError>() {
        Some(OmniError::RequiredDenied { .. }) => EXIT_DENIED,
        Some(OmniError::Blocked { .. }) => guardian_cmd::EXIT_BLOCKED,
        _ => 1,
    }
}

fn data_dir(cli: &Globals) -> anyhow::Result<PathBuf> {
    if let Some(d) = &cli.data_dir {
        return Ok(d.clone());
    }
    dirs::data_dir()
        .map(|d| d.join("omni"))
        .context("no platform data directory; pass --data-dir DIR or set OMNI_DATA_DIR")
}

fn open(cli: &Globals) -> anyhow::Result<Omni> {
    let mut builder = Omni::builder(data_dir(cli)?);
    if let Some(c) = &cli.config {
        builder = builder.config_path(c);
    }
    let prompter: Arc<dyn Prompter> = if std::io::stdin().is_terminal() && !cli.json {
        Arc::new(TerminalPrompter::new())
    } else {
        Arc::new(DenyPrompter)
    };
    Ok(builder.prompter(prompter).open()?)
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let Cli { globals: env, command } = cli;
    let json = env.json;
    match command {
        Command::Guardian(cmd) => guardian_cmd::run(cmd, json),
        Command::Install(args) => install(&env, &args),
        Command::List => list(&open(&env)?, json),
        Command::Uninstall { id } => {
            let removed = open(&env)?.uninstall(&id)?;
            if json {
                print_json(&json!({ "id": id, "removed": removed }));
            } else if removed {
                println!("uninstalled {}: its grants, storage and files are gone", escape(&id));
            } else {
                println!("{} was not installed", escape(&id));
            }
            Ok(if removed { 0 } else { 1 })
        }
        Command::Call { id, tool, args, session } => call(&open(&env)?, &id, &tool, args, session, json),
        Command::Grants(cmd) => grants_cmd::run(cmd, open(&env)?.policy(), json),
        Command::KillSwitch => grants_cmd::kill_switch(open(&env)?.policy(), json),
        Command::Audit(args) => audit_cmd::run(&args, open(&env)?.audit(), json),
        Command::Schedules(cmd) => schedules_cmd::run(cmd, &open(&env)?, json),
    }
}

fn install(cli: &Globals, args: &InstallArgs) -> anyhow::Result<i32> {
    let omni = open(cli)?;
    let plan = omni.prepare_install(&args.source)?;
    for cap in args.grant.iter().chain(&args.deny) {
        if plan.manifest.permission(cap).is_none() {
            anyhow::bail!("{} does not declare `{cap}`; it declares: {}", plan.manifest.extension.id, declared(&plan));
        }
    }
    if !cli.json {
        print_review(&plan);
    }
    let duration: GrantDuration = args.duration.into();
    let interactive = std::io::stdin().is_terminal() && !cli.json;
    let mut decisions = Vec::new();
    // Capabilities refused only because nobody could be asked: said out loud below.
    let mut unasked = Vec::new();
    for row in plan.review() {
        let decision = if args.yes || args.grant.contains(&row.capability) {
            Some(Decision::Allow)
        } else if args.deny.contains(&row.capability) {
            Some(Decision::Deny)
        } else if plan.previous.is_some() && !plan.needs_review {
            // An update that adds nothing and widens nothing keeps the grants it had.
            None
        } else if interactive {
            Some(ask(&format!("Grant {} ({})?", row.capability, row.severity))?)
        } else {
            unasked.push(row.capability.clone());
            Some(Decision::Deny)
        };
        if let Some(decision) = decision {
            decisions.push(PermissionDecision { capability: row.capability.clone(), decision, duration });
        }
    }
    let record = omni.install(&plan, &decisions)?;
    if !unasked.is_empty() && !cli.json {
        let grants: Vec<String> = unasked.iter().map(|c| format!("--grant {c}")).collect();
        eprintln!(
            "note: not granted, since there is no terminal to ask on: {}; to grant, install again with {} (or --yes for all)",
            unasked.join(", "),
            grants.join(" ")
        );
    }
    if cli.json {
        print_json(&json!({
                "id": record.id,
                "version": record.version,
                "digest": record.digest,
                "imports": record.imports,
                "review": plan.review(),
                "decisions": decisions.iter().map(|d| json!({
                    "capability": d.capability,
                    "decision": d.decision.to_string(),
                    "duration": d.duration.to_string(),
                })).collect::<Vec<_>>(),
        }));
    } else {
        println!("installed {} {} (sha256 {})", record.id, record.version, &record.digest[..16]);
        for d in &decisions {
            println!("  {:<22} {} ({})", d.capability, d.decision, d.duration);
        }
    }
    Ok(0)
}

fn declared(plan: &InstallPlan) -> String {
    let caps: Vec<&str> = plan.manifest.permissions.iter().map(|p| p.capability.as_str()).collect();
    if caps.is_empty() {
        "no capabilities".into()
    } else {
        caps.join(", ")
    }
}

/// The review screen. Every text the manifest chose is printed through [`escape`], one
/// line each: a description with line breaks or escape sequences cannot draw a fake
/// review above the real one.
fn print_review(plan: &InstallPlan) {
    let m = &plan.manifest.extension;
    println!("{} {} ({}) by {}", escape(&m.name), m.version, escape(&m.id), escape(&m.author));
    println!("  {}", escape(&m.description));
    if plan.previous.is_some() {
        println!(
            "  update of the installed version: {}",
            if plan.needs_review {
                "it adds capabilities or widens a scope, so it needs a new review"
            } else {
                "no new capability or wider scope; current grants carry over"
            }
        );
    }
    let rows = plan.review();
    if rows.is_empty() {
        println!("  asks for no capabilities: it can only compute on what it is given");
        return;
    }
    let header = ["capability", "severity", "scope", "reason", "needed"];
    let body: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                escape(&r.capability).into_owned(),
                r.severity.to_string(),
                if r.scope.is_empty() { "-".into() } else { escape(&r.scope).into_owned() },
                escape(&r.reason).into_owned(),
                if r.required { "required".into() } else { "optional".into() },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &body {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::from("  ");
        for (i, c) in cells.iter().enumerate() {
            s.push_str(&format!("{:<w$}  ", c, w = widths[i]));
        }
        println!("{}", s.trim_end());
    };
    line(header);
    for row in &body {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
}

fn ask(question: &str) -> anyhow::Result<Decision> {
    loop {
        print!("{question} [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        match answer.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => return Ok(Decision::Allow),
            "" | "n" | "no" => return Ok(Decision::Deny),
            _ => println!("answer y or n"),
        }
    }
}

fn list(omni: &Omni, json: bool) -> anyhow::Result<i32> {
    let installed = omni.list()?;
    let grants = omni.policy().grants(None)?;
    if json {
        let rows: Vec<_> = installed
            .iter()
            .map(|e| {
                let granted: Vec<String> = grants
                    .iter()
                    .filter(|g| g.extension == e.id && g.decision == Decision::Allow)
                    .map(|g| g.capability.clone())
                    .collect();
                json!({ "id": e.id, "name": e.name, "version": e.version, "digest": e.digest,
                        "installed_at": e.installed_at, "imports": e.imports, "granted": granted })
            })
            .collect();
        print_json_pretty(&rows);
        return Ok(0);
    }
    if installed.is_empty() {
        println!("no extensions installed; `omni install <DIR>` adds one");
        return Ok(0);
    }
    for e in &installed {
        let granted: Vec<&str> = grants
            .iter()
            .filter(|g| g.extension == e.id && g.decision == Decision::Allow)
            .map(|g| g.capability.as_str())
            .collect();
        println!(
            "{:<36} {:<10} {:<20} granted: {}",
            escape(&e.id),
            escape(&e.version),
            escape(&e.name),
            if granted.is_empty() { "-".to_string() } else { granted.join(", ") }
        );
    }
    Ok(0)
}

fn call(
    omni: &Omni,
    id: &str,
    tool: &str,
    args: Option<String>,
    session: Option<String>,
    json: bool,
) -> anyhow::Result<i32> {
    let args = match args.as_deref() {
        None => "{}".to_string(),
        Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("reading arguments from stdin")?;
            s
        }
        Some(a) => a.to_string(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let session = session.unwrap_or_else(|| omni.session().to_string());
    let result = runtime.block_on(omni.call_in_session(session.as_str(), id, tool, &args));
    match result {
        Ok(out) => {
            let value: serde_json::Value =
                serde_json::from_str(&out.output).unwrap_or(serde_json::Value::String(out.output.clone()));
            let guardian = out.verdict.as_ref().map(|v| json!({ "score": v.score, "verdict": v.kind.to_string() }));
            if json {
                print_json(&json!({ "output": value, "stdout": out.stdout, "stderr": out.stderr,
                        "elapsed_ms": out.elapsed.as_secs_f64() * 1000.0, "denials": out.denials,
                        "guardian": guardian }));
            } else {
                print_json_pretty(&value);
                for d in &out.denials {
                    eprintln!("note: refused during the call: {}", escape(d));
                }
                if let Some(v) = out.verdict.as_ref().filter(|v| v.kind != omni_guardian::VerdictKind::Clean) {
                    let rules: Vec<&str> = v.matches.iter().map(|m| m.id.as_str()).collect();
                    eprintln!(
                        "warning: the Guardian finds this result {} (score {}/100{}); treat it as untrusted input",
                        v.kind,
                        v.score,
                        if rules.is_empty() { String::new() } else { format!(", matched {}", rules.join(", ")) }
                    );
                }
            }
            Ok(0)
        }
        Err(OmniError::Call(CallError::Tool { message, denials })) if !denials.is_empty() => {
            if json {
                print_json(&json!({ "error": message, "denials": denials, "exit_code": EXIT_DENIED }));
            } else {
                eprintln!("permission denied: {}", escape(&denials.join("; ")));
                if !repeats_a_denial(&message, &denials) {
                    eprintln!("the tool reported: {}", escape_multiline(&message));
                }
            }
            Ok(EXIT_DENIED)
        }
        Err(e) => Err(e.into()),
    }
}
