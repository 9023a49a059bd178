//! `omni guardian scan` and `omni guardian eval`.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{Context, Result};
use omni_guardian::eval::{self, Metrics};
use omni_guardian::{Guardian, GuardianConfig, ScanPoint, Sensitivity, Verdict, VerdictKind};

/// Exit code when the Guardian blocks a text.
pub const EXIT_BLOCKED: i32 = 4;

/// `omni guardian ...` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum GuardianCommand {
    /// Scan one text and print the verdict (exit code 4 when it is blocked).
    Scan {
        /// Where the text is scanned: user-input, prompt, model-output, tool-call, tool-result.
        #[arg(long, default_value = "user-input")]
        point: ScanPoint,
        /// Verdict bands: strict, balanced or permissive.
        #[arg(long, default_value = "balanced")]
        sensitivity: Sensitivity,
        /// The text, or `-` to read it from standard input.
        text: String,
    },
    /// Evaluate labelled JSON Lines files (`text`, `label` with 1 = attack).
    Eval {
        /// One or more `.jsonl` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Runs a guardian subcommand; returns the process exit code.
pub fn run(cmd: GuardianCommand, json: bool) -> Result<i32> {
    match cmd {
        GuardianCommand::Scan { point, sensitivity, text } => scan(point, sensitivity, &text, json),
        GuardianCommand::Eval { files } => evaluate(&files, json),
    }
}

fn scan(point: ScanPoint, sensitivity: Sensitivity, text: &str, json: bool) -> Result<i32> {
    let text = if text == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("cannot read the text from standard input")?;
        s
    } else {
        text.to_string()
    };
    let guardian = Guardian::new(GuardianConfig { sensitivity, ..GuardianConfig::default() })?;
    let verdict = guardian.scan(&text, point);
    if json {
        crate::print_json_pretty(&verdict);
    } else {
        print_verdict(&verdict, &text);
    }
    Ok(if verdict.kind == VerdictKind::Malicious { EXIT_BLOCKED } else { 0 })
}

fn layer(x: Option<f64>) -> String {
    x.map_or("not run".to_string(), |v| format!("{v:.0}"))
}

fn print_verdict(v: &Verdict, text: &str) {
    println!("verdict: {} (score {}/100, {} at {})", v.kind, v.score, v.sensitivity, v.point);
    println!(
        "layers:  signatures {} | heuristics {} | ml {} | tool-call {}",
        layer(v.layers.signatures),
        layer(v.layers.heuristics),
        layer(v.layers.ml),
        layer(v.layers.tool_call)
    );
    if let Some(p) = v.ml_probability {
        println!("ml:      attack probability {p:.3}");
    }
    for m in &v.matches {
        let excerpt: String = text.get(m.span.start..m.span.end).unwrap_or("").chars().take(80).collect();
        println!(
            "match:   {} [{} / {}] bytes {}..{}{}: {}\n         {:?}",
            m.id,
            m.category,
            m.severity,
            m.span.start,
            m.span.end,
            if m.in_decoded { " (decoded)" } else { "" },
            m.description,
            excerpt
        );
    }
    for p in &v.tool_problems {
        println!("tool:    {p}");
    }
}

fn evaluate(files: &[PathBuf], json: bool) -> Result<i32> {
    let guardian = Guardian::new(GuardianConfig::default())?;
    let mut named: Vec<(String, Metrics)> = Vec::new();
    let mut pooled = Vec::new();
    for file in files {
        let rows = eval::load_jsonl(file)?;
        let bar = if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(rows.len() as u64);
            bar.set_message(file.display().to_string());
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let outcomes = eval::run(&guardian, &rows, ScanPoint::UserInput, |done| {
            if done % 64 == 0 {
                bar.set_position(done as u64);
            }
        });
        bar.finish_and_clear();
        pooled.extend(outcomes.iter().copied());
        named.push((file.display().to_string(), eval::metrics(&outcomes)));
    }
    if files.len() > 1 {
        named.push(("pooled".to_string(), eval::metrics(&pooled)));
    }
    if json {
        let obj: serde_json::Map<String, serde_json::Value> =
            named.iter().map(|(n, m)| Ok((n.clone(), serde_json::to_value(m)?))).collect::<Result<_>>()?;
        crate::print_json_pretty(&obj);
    } else {
        print!("{}", eval::markdown_table(&named));
    }
    Ok(0)
}
