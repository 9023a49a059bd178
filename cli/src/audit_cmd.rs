//! `omni audit [filters] [--format table|json|csv]` and `omni audit verify`.

use std::io::Write as _;

use anyhow::Context as _;
use omni_capabilities::text::escape;
use omni_host::audit::{self, AuditFilter, AuditLog, AuditRecord};
use omni_host::policy::Decision;

/// `omni audit`: list or export audit records, or check the hash chain.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    /// `verify`: check the hash chain instead of listing.
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// Only records of this extension id.
    #[arg(long, value_name = "ID")]
    pub extension: Option<String>,
    /// Only records of this capability key (e.g. network.http).
    #[arg(long, value_name = "CAP")]
    pub capability: Option<String>,
    /// Only records with this decision.
    #[arg(long, value_parser = parse_decision, value_name = "allow|deny|prompt")]
    pub decision: Option<Decision>,
    /// Only records at or after this time: RFC 3339 or an age such as 30m, 1h, 2d.
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Only records before this time: RFC 3339 or an age such as 30m, 1h, 2d.
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Output format (`--json` selects json too).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Subcommands of `omni audit`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain; exit 1 naming the first altered, missing or unlinked record.
    Verify,
}

/// Output formats of `omni audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// A JSON array of records.
    Json,
    /// CSV with a header row.
    Csv,
}

fn parse_decision(s: &str) -> Result<Decision, String> {
    s.parse()
}

/// Runs `omni audit`; returns the process exit code (1 when `verify` finds damage, 2 for a
/// time that cannot be parsed).
pub fn run(args: &AuditArgs, audit: &AuditLog, json: bool) -> anyhow::Result<i32> {
    if let Some(AuditCommand::Verify) = args.command {
        return verify(audit, json);
    }
    let now = audit::OffsetDateTime::now_utc();
    let parse = |t: &Option<String>| t.as_deref().map(|s| audit::parse_time(s, now)).transpose();
    let (since, until) = match (parse(&args.since), parse(&args.until)) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    let filter = AuditFilter {
        extension: args.extension.clone(),
        capability: args.capability.clone(),
        decision: args.decision,
        since,
        until,
        ..AuditFilter::default()
    };
    let records = audit.query(&filter).context("cannot read the audit log")?;
    let format = if json { Format::Json } else { args.format };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        Format::Json => {
            audit::write_json(&records, &mut out)?;
            writeln!(out)?;
        }
        Format::Csv => audit::write_csv(&records, &mut out)?,
        Format::Table => print_table(&records, &mut out)?,
    }
    Ok(0)
}

fn verify(audit: &AuditLog, json: bool) -> anyhow::Result<i32> {
    let report = audit.verify().context("cannot read the audit log")?;
    if json {
        crate::print_json_pretty(&report);
    } else if let Some(problem) = &report.problem {
        println!("audit log is BROKEN at {}", escape(&problem.to_string()));
        println!("{} record(s) before it verified", report.records);
    } else if let (Some(first), Some(last)) = (report.first_seq, report.last_seq) {
        let pruned = report.checkpoint_seq.map(|c| format!(", records up to {c} pruned")).unwrap_or_default();
        println!("audit log intact: {} record(s), {first}..{last}{pruned}", report.records);
        println!("head hash: {}", report.head_hash.as_deref().unwrap_or(""));
    } else {
        println!("audit log intact: no records");
    }
    Ok(if report.is_ok() { 0 } else { 1 })
}

/// One row per record. Every cell is printed through [`escape`]: a target or reason with
/// a line break or an escape sequence cannot print a row the chain does not contain.
fn print_table(records: &[AuditRecord], out: &mut impl std::io::Write) -> anyhow::Result<()> {
    if records.is_empty() {
        writeln!(out, "no audit records match")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>6}  {:<20}  {:<14}  {:<28}  {:<18}  {:<8}  {:<8}  TARGET / REASON",
        "SEQ", "TIME", "KIND", "EXTENSION", "CAPABILITY", "DECISION", "DURATION"
    )?;
    for r in records {
        let time =
            r.timestamp.replace_nanosecond(0).map_or_else(|_| audit::format_time(r.timestamp), audit::format_time);
        let decision = r.decision.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
        let duration = r.duration.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
        let target = escape(r.target.as_deref().unwrap_or(""));
        let sep = if target.is_empty() { "" } else { " / " };
        writeln!(
            out,
            "{:>6}  {:<20}  {:<14}  {:<28}  {:<18}  {:<8}  {:<8}  {target}{sep}{}",
            r.seq,
            time,
            r.kind.as_str(),
            if r.extension.is_empty() { "-".into() } else { escape(&r.extension) },
            escape(r.capability.as_deref().unwrap_or("-")),
            decision,
            duration,
            escape(&r.reason),
        )?;
    }
    Ok(())
}
