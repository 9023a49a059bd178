//! `omni schedules list|run`: the jobs extensions scheduled with `system.scheduling`.
//!
//! The `omni` command exits after each command, so nothing runs a job by itself: `run`
//! runs the jobs that are due now, and `run --watch` keeps running them as they fall due
//! (until interrupted). An embedder calls `Omni::spawn_scheduler` instead.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use omni_capabilities::text::escape;
use omni_host::caps::scheduling::{Job, RunOutcome, Trigger};
use omni_host::Omni;
use serde_json::json;

/// `omni schedules ...`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SchedulesCommand {
    /// List scheduled jobs, of every installed extension or of one.
    List {
        /// Only this extension's jobs.
        id: Option<String>,
    },
    /// Run the jobs that are due, each under the grants its extension holds now.
    Run {
        /// Keep running jobs as they fall due, checking every `--every` seconds, until
        /// interrupted.
        #[arg(long)]
        watch: bool,
        /// Seconds between checks with `--watch` (at least 1).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
        every: u64,
    },
}

/// Runs a `schedules` subcommand; returns the process exit code.
pub fn run(cmd: SchedulesCommand, omni: &Omni, json: bool) -> anyhow::Result<i32> {
    match cmd {
        SchedulesCommand::List { id } => {
            let jobs = omni.scheduled_jobs(id.as_deref()).context("cannot read the scheduled jobs")?;
            if json {
                crate::print_json_pretty(&jobs);
            } else if jobs.is_empty() {
                println!("no scheduled jobs");
            } else {
                println!("{:<10} {:<36} {:<20} {:<24} next run", "job", "extension", "tool", "trigger");
                for job in &jobs {
                    println!(
                        "{:<10} {:<36} {:<20} {:<24} {}",
                        escape(&job.id.to_string()),
                        escape(&job.extension),
                        escape(&job.tool),
                        escape(&trigger_text(&job.trigger)),
                        next_run_text(job)
                    );
                }
            }
            Ok(0)
        }
        SchedulesCommand::Run { watch, every } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let mut failed = false;
            loop {
                let runs =
                    runtime.block_on(omni.run_due_schedules(now_ms())).context("cannot run the scheduled jobs")?;
                for r in &runs {
                    let (state, detail) = match &r.outcome {
                        RunOutcome::Completed(out) => ("completed", out.clone()),
                        RunOutcome::Failed(why) => ("failed", why.clone()),
                        RunOutcome::Refused(why) => ("refused", why.clone()),
                    };
                    failed |= !matches!(r.outcome, RunOutcome::Completed(_));
                    if json {
                        crate::print_json(&json!({ "job": r.job, "extension": r.extension, "tool": r.tool,
                                "outcome": state, "detail": detail, "next_run_ms": r.next_run_ms }));
                    } else {
                        // The detail is a tool's result or error: the extension chose it.
                        println!(
                            "{} {} {}: {state}: {}",
                            escape(&r.job.to_string()),
                            escape(&r.extension),
                            escape(&r.tool),
                            escape(&detail)
                        );
                    }
                }
                if !watch {
                    if runs.is_empty() && !json {
                        println!("no job is due");
                    }
                    // A refused or failed job is worth a non-zero exit in scripts.
                    return Ok(i32::from(failed));
                }
                std::thread::sleep(Duration::from_secs(every));
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn trigger_text(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Cron(expr) => format!("cron {expr}"),
        Trigger::At(ms) => format!("once at {}", time_text(*ms)),
        Trigger::Every(ms) => format!("every {}s", ms / 1000),
    }
}

fn next_run_text(job: &Job) -> String {
    job.next_run_ms.map_or_else(|| "never".to_string(), time_text)
}

fn time_text(ms: u64) -> String {
    i64::try_from(ms / 1000)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .map_or_else(|| format!("{ms} ms"), omni_host::audit::format_time)
}
