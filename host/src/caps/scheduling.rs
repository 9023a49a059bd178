//! `system.scheduling`: later calls of an extension's own tools.
//!
//! Jobs live in redb ([`RedbSchedules`]), so they survive a restart. A job only ever
//! calls a tool of the extension that scheduled it, with the arguments it gave, through
//! the ordinary call path: the extension's grants *when the job fires* apply, and the
//! scheduling grant itself is checked again first. A job whose extension no longer holds
//! `system.scheduling` (revoked, kill switch, uninstalled) is refused, audited, and
//! removed, so it never fires again.
//!
//! Jobs fire when the embedder says: [`Omni::run_due_schedules`] runs every job due at a
//! given time (deterministic, for tests and for hosts with their own timer), and
//! [`Omni::spawn_scheduler`] starts a Tokio task that calls it periodically.
//!
//! Cron expressions have five fields (minute hour day-of-month month day-of-week),
//! evaluated in UTC. Each field is `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`,
//! or a comma-separated list of those; day-of-week is 0-7 with 0 and 7 both Sunday. Names
//! (`MON`, `JAN`) are not accepted. As in Vixie cron, when both day fields are restricted
//! a day matching either one fires.

use std::sync::Arc;
use std::time::Duration;

use omni_capabilities::Scope;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::try_budget;
use crate::bindings::omni::caps::scheduling as wit;
use crate::bindings::CapError;
use crate::policy::{AccessRequest, Denial};
use crate::sandbox::CallState;
use crate::Omni;

const CAPABILITY: &str = "system.scheduling";
const JOBS: TableDefinition<(&str, &str), &str> = TableDefinition::new("schedule_jobs");
const META: TableDefinition<&str, u64> = TableDefinition::new("schedule_meta");
const NEXT_ID: &str = "next_id";
const MS_PER_MINUTE: u64 = 60_000;

/// `[scheduling]` settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulingConfig {
    /// Most jobs one extension may have at once.
    pub max_jobs_per_extension: u32,
    /// Shortest period an `every` trigger may have, in milliseconds.
    pub min_interval_ms: u64,
    /// Largest JSON arguments a job may carry, in bytes.
    pub max_argument_bytes: usize,
}

impl Default for SchedulingConfig {
    fn default() -> Self {
        SchedulingConfig { max_jobs_per_extension: 32, min_interval_ms: 60_000, max_argument_bytes: 64 * 1024 }
    }
}

/// When a job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Trigger {
    /// A five-field cron expression in UTC.
    Cron(String),
    /// Once, at this time (milliseconds since the Unix epoch).
    At(u64),
    /// Repeatedly, every this many milliseconds.
    Every(u64),
}

impl Trigger {
    /// When the job runs next after it was due at `due_ms` and the clock reads `now_ms`;
    /// `None` when it never runs again. Runs missed while the host was down are skipped,
    /// not replayed one after another.
    pub fn following(&self, due_ms: u64, now_ms: u64) -> Option<u64> {
        match self {
            Trigger::At(_) => None,
            Trigger::Every(period) => {
                let period = (*period).max(1);
                let behind = now_ms.saturating_sub(due_ms) / period + 1;
                Some(due_ms.saturating_add(behind.saturating_mul(period)))
            }
            Trigger::Cron(expr) => Cron::parse(expr).ok()?.next_after(now_ms),
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Cron(c) => write!(f, "cron {c:?}"),
            Trigger::At(t) => write!(f, "at {t} ms"),
            Trigger::Every(p) => write!(f, "every {p} ms"),
        }
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its id (`job-N`), assigned by the store.
    pub id: String,
    /// The extension that scheduled it, and whose tool it calls.
    pub extension: String,
    /// The tool to call.
    pub tool: String,
    /// The JSON arguments.
    pub arguments: String,
    /// When it runs.
    pub trigger: Trigger,
    /// The next time it runs (ms since the Unix epoch); `None`: never again.
    pub next_run_ms: Option<u64>,
}

/// Why a schedule operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The extension already has as many jobs as allowed.
    #[error("{extension} already has {limit} scheduled jobs, the most allowed ([scheduling] max_jobs_per_extension); cancel one first")]
    TooMany {
        /// The extension.
        extension: String,
        /// The limit.
        limit: u32,
    },
    /// The database failed.
    #[error("the schedule store failed: {0}")]
    Storage(String),
}

fn storage<E: std::fmt::Display>(e: E) -> ScheduleError {
    ScheduleError::Storage(e.to_string())
}

/// Where jobs are kept; an embedder may replace it (e.g. with its own job system).
///
/// Implementations must keep extensions' jobs apart: `cancel` and `list` only ever see
/// the named extension's jobs.
pub trait ScheduleStore: Send + Sync {
    /// Stores `job` under a new id (the given `id` is ignored) if the extension has fewer
    /// than `max_per_extension` jobs; returns it with its id.
    fn add(&self, job: Job, max_per_extension: u32) -> Result<Job, ScheduleError>;
    /// Removes `extension`'s job `id`; whether it existed.
    fn cancel(&self, extension: &str, id: &str) -> Result<bool, ScheduleError>;
    /// `extension`'s jobs.
    fn list(&self, extension: &str) -> Result<Vec<Job>, ScheduleError>;
    /// Every job with `next_run_ms <= now_ms`, soonest first.
    fn due(&self, now_ms: u64) -> Result<Vec<Job>, ScheduleError>;
    /// Claims a due job: if its next run is still `due_ms`, moves it to `next_run_ms`
    /// (`None` removes the job) and returns `true`, atomically; `false` when the job is
    /// gone or another runner claimed it first, so two runners never fire one run twice.
    fn claim(&self, extension: &str, id: &str, due_ms: u64, next_run_ms: Option<u64>) -> Result<bool, ScheduleError>;
    /// Removes every job of `extension` (on uninstall).
    fn clear(&self, extension: &str) -> Result<(), ScheduleError>;
}

/// The default store: tables in Omni's redb database.
pub struct RedbSchedules {
    db: Arc<Database>,
}

impl RedbSchedules {
    /// Uses (and creates if needed) the schedule tables of `db`.
    pub fn new(db: Arc<Database>) -> Result<RedbSchedules, ScheduleError> {
        let tx = db.begin_write().map_err(storage)?;
        tx.open_table(JOBS).map_err(storage)?;
        tx.open_table(META).map_err(storage)?;
        tx.commit().map_err(storage)?;
        Ok(RedbSchedules { db })
    }

    fn all(&self) -> Result<Vec<Job>, ScheduleError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(JOBS).map_err(storage)?;
        let mut jobs = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (_, v) = entry.map_err(storage)?;
            // A record this version cannot read is skipped rather than failing every job.
            if let Ok(job) = serde_json::from_str::<Job>(v.value()) {
                jobs.push(job);
            }
        }
        Ok(jobs)
    }
}

fn ext_range(extension: &str) -> std::ops::RangeFrom<(&str, &str)> {
    (extension, "")..
}

impl ScheduleStore for RedbSchedules {
    fn add(&self, mut job: Job, max_per_extension: u32) -> Result<Job, ScheduleError> {
        let tx = self.db.begin_write().map_err(storage)?;
        {
            let mut jobs = tx.open_table(JOBS).map_err(storage)?;
            let mut count = 0u32;
            for entry in jobs.range(ext_range(&job.extension)).map_err(storage)? {
                let (k, _) = entry.map_err(storage)?;
                if k.value().0 != job.extension {
                    break;
                }
                count += 1;
            }
            if count >= max_per_extension {
                return Err(ScheduleError::TooMany { extension: job.extension, limit: max_per_extension });
            }
            let mut meta = tx.open_table(META).map_err(storage)?;
            let n = meta.get(NEXT_ID).map_err(storage)?.map(|v| v.value()).unwrap_or(1);
            meta.insert(NEXT_ID, n + 1).map_err(storage)?;
            job.id = format!("job-{n}");
            let json = serde_json::to_string(&job).map_err(storage)?;
            jobs.insert((job.extension.as_str(), job.id.as_str()), json.as_str()).map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        Ok(job)
    }

    fn cancel(&self, extension: &str, id: &str) -> Result<bool, ScheduleError> {
        let tx = self.db.begin_write().map_err(storage)?;
        let existed = tx.open_table(JOBS).map_err(storage)?.remove((extension, id)).map_err(storage)?.is_some();
        tx.commit().map_err(storage)?;
        Ok(existed)
    }

    fn list(&self, extension: &str) -> Result<Vec<Job>, ScheduleError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(JOBS).map_err(storage)?;
        let mut jobs = Vec::new();
        for entry in table.range(ext_range(extension)).map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            if k.value().0 != extension {
                break;
            }
            if let Ok(job) = serde_json::from_str::<Job>(v.value()) {
                jobs.push(job);
            }
        }
        Ok(jobs)
    }

    fn due(&self, now_ms: u64) -> Result<Vec<Job>, ScheduleError> {
        let mut due: Vec<Job> =
            self.all()?.into_iter().filter(|j| j.next_run_ms.is_some_and(|t| t <= now_ms)).collect();
        due.sort_by_key(|j| j.next_run_ms);
        Ok(due)
    }

    fn claim(&self, extension: &str, id: &str, due_ms: u64, next_run_ms: Option<u64>) -> Result<bool, ScheduleError> {
        let tx = self.db.begin_write().map_err(storage)?;
        let claimed = {
            let mut table = tx.open_table(JOBS).map_err(storage)?;
            let current = table.get((extension, id)).map_err(storage)?.map(|v| v.value().to_owned());
            let job = match current.map(|json| serde_json::from_str::<Job>(&json)) {
                Some(Ok(job)) if job.next_run_ms == Some(due_ms) => job,
                Some(Err(e)) => return Err(storage(e)),
                _ => return Ok(false),
            };
            match next_run_ms {
                None => {
                    table.remove((extension, id)).map_err(storage)?;
                }
                Some(next) => {
                    let json = serde_json::to_string(&Job { next_run_ms: Some(next), ..job }).map_err(storage)?;
                    table.insert((extension, id), json.as_str()).map_err(storage)?;
                }
            }
            true
        };
        tx.commit().map_err(storage)?;
        Ok(claimed)
    }

    fn clear(&self, extension: &str) -> Result<(), ScheduleError> {
        let tx = self.db.begin_write().map_err(storage)?;
        {
            let mut table = tx.open_table(JOBS).map_err(storage)?;
            let mut ids = Vec::new();
            for entry in table.range(ext_range(extension)).map_err(storage)? {
                let (k, _) = entry.map_err(storage)?;
                let (ext, id) = k.value();
                if ext != extension {
                    break;
                }
                ids.push(id.to_owned());
            }
            for id in &ids {
                table.remove((extension, id.as_str())).map_err(storage)?;
            }
        }
        tx.commit().map_err(storage)
    }
}

/// Removes the jobs of `extension` (every extension's when `None`) from the default
/// store's table in `db`, when revoking or the kill switch takes away the grant they ran
/// under: a later grant must not revive arguments an extension chose before. Returns how
/// many were removed. A no-op for an embedder's own [`ScheduleStore`].
pub(crate) fn drop_stored_jobs(db: &Database, extension: Option<&str>) -> Result<usize, ScheduleError> {
    let tx = db.begin_write().map_err(storage)?;
    let removed = {
        let mut table = tx.open_table(JOBS).map_err(storage)?;
        let mut doomed = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (k, _) = entry.map_err(storage)?;
            let (ext, id) = k.value();
            if extension.is_none_or(|e| e == ext) {
                doomed.push((ext.to_owned(), id.to_owned()));
            }
        }
        for (ext, id) in &doomed {
            table.remove((ext.as_str(), id.as_str())).map_err(storage)?;
        }
        doomed.len()
    };
    tx.commit().map_err(storage)?;
    Ok(removed)
}

/// A parsed five-field cron expression (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    any_day: bool,
    any_weekday: bool,
}

fn bit(set: u64, n: u8) -> bool {
    set & (1u64 << n) != 0
}

fn cron_field(text: &str, name: &str, min: u8, max: u8) -> Result<u64, String> {
    let mut set = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u8 = s.parse().map_err(|_| format!("the {name} field has a bad step {s:?}"))?;
                if step == 0 {
                    return Err(format!("the {name} field has a step of 0"));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let number = |s: &str| -> Result<u8, String> {
            let n: u8 = s
                .parse()
                .map_err(|_| format!("the {name} field has {s:?}, which is not a number from {min} to {max}"))?;
            if n < min || n > max {
                return Err(format!("the {name} field has {n}, outside {min}-{max}"));
            }
            Ok(n)
        };
        let (lo, hi) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                // `a/n` means from a to the end, every n.
                None if step > 1 => (number(r)?, max),
                None => {
                    let n = number(r)?;
                    (n, n)
                }
            },
        };
        if lo > hi {
            return Err(format!("the {name} field has the range {lo}-{hi}, which runs backwards"));
        }
        let mut n = lo;
        while n <= hi {
            set |= 1u64 << n;
            n = match n.checked_add(step) {
                Some(next) => next,
                None => break,
            };
        }
    }
    Ok(set)
}

impl Cron {
    /// Parses `minute hour day-of-month month day-of-week`.
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let [m, h, dom, mon, dow] = fields.as_slice() else {
            return Err(format!(
                "the cron expression {expr:?} has {} fields; write five: minute hour day-of-month month day-of-week, e.g. \"0 7 * * 1-5\"",
                fields.len()
            ));
        };
        let mut weekdays = cron_field(dow, "day-of-week", 0, 7)?;
        if bit(weekdays, 7) {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        Ok(Cron {
            minutes: cron_field(m, "minute", 0, 59)?,
            hours: cron_field(h, "hour", 0, 23)?,
            days: cron_field(dom, "day-of-month", 1, 31)?,
            months: cron_field(mon, "month", 1, 12)?,
            weekdays,
            any_day: dom.starts_with('*'),
            any_weekday: dow.starts_with('*'),
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = bit(self.days, date.day());
        let dow = bit(self.weekdays, date.weekday().number_days_from_sunday());
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The first whole minute strictly after `after_ms` that matches, within five years;
    /// `None` when none does (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let start = i64::try_from((after_ms / MS_PER_MINUTE + 1) * 60).ok()?;
        let mut t = OffsetDateTime::from_unix_timestamp(start).ok()?;
        let last_year = t.year() + 5;
        while t.year() <= last_year {
            let date = t.date();
            if !bit(self.months, date.month() as u8) {
                let (y, m) = if date.month() == Month::December {
                    (date.year() + 1, Month::January)
                } else {
                    (date.year(), date.month().next())
                };
                t = PrimitiveDateTime::new(Date::from_calendar_date(y, m, 1).ok()?, Time::MIDNIGHT).assume_utc();
                continue;
            }
            if !self.day_matches(date) {
                t = PrimitiveDateTime::new(date.next_day()?, Time::MIDNIGHT).assume_utc();
                continue;
            }
            if !bit(self.hours, t.hour()) {
                t = (t + time::Duration::hours(1)).replace_minute(0).ok()?;
                continue;
            }
            if !bit(self.minutes, t.minute()) {
                t += time::Duration::minutes(1);
                continue;
            }
            return u64::try_from(t.unix_timestamp()).ok().map(|s| s * 1000);
        }
        None
    }
}

pub(crate) fn now_ms() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

fn to_cap_error(e: ScheduleError) -> CapError {
    match e {
        ScheduleError::TooMany { .. } => CapError::InvalidInput(e.to_string()),
        ScheduleError::Storage(m) => CapError::Io(m),
    }
}

fn no_scope(_: &Scope) -> Result<(), String> {
    Ok(())
}

fn from_wit(t: &wit::Trigger) -> Trigger {
    match t {
        wit::Trigger::Cron(c) => Trigger::Cron(c.clone()),
        wit::Trigger::At(a) => Trigger::At(*a),
        wit::Trigger::Every(e) => Trigger::Every(*e),
    }
}

fn to_wit(job: Job) -> wit::Job {
    wit::Job {
        id: job.id,
        tool: job.tool,
        arguments: job.arguments,
        when: match job.trigger {
            Trigger::Cron(c) => wit::Trigger::Cron(c),
            Trigger::At(a) => wit::Trigger::At(a),
            Trigger::Every(e) => wit::Trigger::Every(e),
        },
        next_run_ms: job.next_run_ms,
    }
}

impl CallState {
    /// The first run of a new job, or why the trigger is refused.
    fn first_run(&self, trigger: &Trigger, now: u64) -> Result<u64, CapError> {
        match trigger {
            Trigger::At(t) => Ok(*t),
            Trigger::Every(p) => {
                let min = self.host.config.scheduling.min_interval_ms;
                if *p < min {
                    return Err(CapError::InvalidInput(format!(
                        "every {p} ms is more often than this host allows; the shortest period is {min} ms ([scheduling] min_interval_ms)"
                    )));
                }
                Ok(now.saturating_add(*p))
            }
            Trigger::Cron(expr) => {
                let cron = Cron::parse(expr).map_err(CapError::InvalidInput)?;
                cron.next_after(now).ok_or_else(|| {
                    CapError::InvalidInput(format!("the cron expression {expr:?} never fires in the next five years"))
                })
            }
        }
    }

    fn schedule_blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn ScheduleStore, &str) -> Result<T, ScheduleError> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, CapError>> + Send + 'static {
        let store = self.host.schedules.clone();
        let ext = self.ext.id.clone();
        async move {
            match tokio::task::spawn_blocking(move || op(store.as_ref(), &ext)).await {
                Ok(r) => r.map_err(to_cap_error),
                Err(e) => Err(CapError::Io(format!("the schedule store task failed: {e}"))),
            }
        }
    }
}

impl wit::Host for CallState {
    async fn schedule(
        &mut self,
        tool: String,
        arguments: String,
        when: wit::Trigger,
    ) -> wasmtime::Result<Result<String, CapError>> {
        let trigger = from_wit(&when);
        let cron_len = match &trigger {
            Trigger::Cron(c) => c.len(),
            _ => 8,
        };
        try_budget!(self, tool.len() + arguments.len() + cron_len);
        if self.ext.manifest.tool(&tool).is_none() {
            let tools: Vec<&str> = self.ext.manifest.tools.iter().map(|t| t.name.as_str()).collect();
            return Ok(Err(CapError::InvalidInput(format!(
                "this extension has no tool {tool:?}; a job can call only its own tools: {}",
                tools.join(", ")
            ))));
        }
        let max_args = self.host.config.scheduling.max_argument_bytes;
        if arguments.len() > max_args {
            return Ok(Err(CapError::InvalidInput(format!(
                "the arguments are {} bytes, more than the {max_args} allowed ([scheduling] max_argument_bytes)",
                arguments.len()
            ))));
        }
        if !matches!(serde_json::from_str::<serde_json::Value>(&arguments), Ok(serde_json::Value::Object(_))) {
            return Ok(Err(CapError::InvalidInput(
                "the arguments must be a JSON object, e.g. {} or {\"city\":\"Paris\"}".into(),
            )));
        }
        let now = now_ms();
        let next = match self.first_run(&trigger, now) {
            Ok(n) => n,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = self.authorize(CAPABILITY, &format!("schedule {tool} {trigger}"), &no_scope).await {
            return Ok(Err(e));
        }
        let max = self.host.config.scheduling.max_jobs_per_extension;
        let job = Job {
            id: String::new(),
            extension: self.ext.id.clone(),
            tool,
            arguments,
            trigger,
            next_run_ms: Some(next),
        };
        Ok(self.schedule_blocking(move |s, _| s.add(job, max)).await.map(|j| j.id))
    }

    async fn cancel(&mut self, id: String) -> wasmtime::Result<Result<bool, CapError>> {
        try_budget!(self, id.len());
        if let Err(e) = self.authorize(CAPABILITY, &format!("cancel {id}"), &no_scope).await {
            return Ok(Err(e));
        }
        Ok(self.schedule_blocking(move |s, ext| s.cancel(ext, &id)).await)
    }

    async fn list_jobs(&mut self) -> wasmtime::Result<Result<Vec<wit::Job>, CapError>> {
        if let Err(e) = self.authorize(CAPABILITY, "list jobs", &no_scope).await {
            return Ok(Err(e));
        }
        let jobs = self.schedule_blocking(|s, ext| s.list(ext)).await;
        Ok(jobs.map(|mut jobs| {
            jobs.sort_by_key(|j| (j.next_run_ms.is_none(), j.next_run_ms));
            jobs.into_iter().map(to_wit).collect()
        }))
    }
}

/// What happened to one due job.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// The tool ran; its JSON result.
    Completed(String),
    /// The call was made and failed (the tool's error, a limit, the Guardian...).
    Failed(String),
    /// The job was not run: its extension no longer holds `system.scheduling` or is no
    /// longer installed. The refusal is in the audit log and the job is removed.
    Refused(String),
}

/// One due job that [`Omni::run_due_schedules`] handled.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledRun {
    /// The job id.
    pub job: String,
    /// Its extension.
    pub extension: String,
    /// The tool it calls.
    pub tool: String,
    /// What happened.
    pub outcome: RunOutcome,
    /// When it runs next; `None` when it will not.
    pub next_run_ms: Option<u64>,
}

/// Why the scheduler could not read or update its jobs.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SchedulerError(#[from] ScheduleError);

impl Omni {
    /// The scheduled jobs of `extension`, or of every installed extension, soonest first.
    pub fn scheduled_jobs(&self, extension: Option<&str>) -> Result<Vec<Job>, SchedulerError> {
        let store = self.schedules();
        let mut jobs = Vec::new();
        match extension {
            Some(id) => jobs = store.list(id)?,
            None => {
                // Installed extensions only: uninstall removes an extension's jobs.
                for ext in self.list().map_err(|e| ScheduleError::Storage(e.to_string()))? {
                    jobs.extend(store.list(&ext.id)?);
                }
            }
        }
        jobs.sort_by(|a, b| a.next_run_ms.cmp(&b.next_run_ms).then_with(|| a.id.cmp(&b.id)));
        Ok(jobs)
    }

    /// Runs every job due at `now_ms` (milliseconds since the Unix epoch), soonest first,
    /// each in this host's session; returns what happened to each.
    ///
    /// Each job is claimed, i.e. rescheduled (or removed) atomically, *before* it runs, so
    /// a call that fails or hangs, or a second runner at the same time, never runs it
    /// twice for the same due time. Deterministic: pass the time to run
    /// at; the background driver [`Omni::spawn_scheduler`] passes the clock.
    pub async fn run_due_schedules(&self, now_ms: u64) -> Result<Vec<ScheduledRun>, SchedulerError> {
        let store = self.schedules().clone();
        let due = store.due(now_ms)?;
        let mut runs = Vec::with_capacity(due.len());
        for job in due {
            let Some(due_at) = job.next_run_ms else { continue };
            let mut next = job.trigger.following(due_at, now_ms);
            if !store.claim(&job.extension, &job.id, due_at, next)? {
                continue;
            }
            // A job may schedule new ones while it runs; none of them may run sooner than
            // the shortest period after this run, or a job rescheduling itself `at` a
            // past time would run on every pass.
            let before: Vec<String> = store.list(&job.extension)?.into_iter().map(|j| j.id).collect();
            let outcome = match self.fire(&job).await {
                Ok(outcome) => outcome,
                Err(reason) => {
                    store.cancel(&job.extension, &job.id)?;
                    next = None;
                    RunOutcome::Refused(reason)
                }
            };
            let earliest = now_ms.saturating_add(self.config().scheduling.min_interval_ms);
            for new in store.list(&job.extension)? {
                if let Some(at) = new.next_run_ms.filter(|at| *at < earliest && !before.contains(&new.id)) {
                    store.claim(&new.extension, &new.id, at, Some(earliest))?;
                }
            }
            runs.push(ScheduledRun {
                job: job.id,
                extension: job.extension,
                tool: job.tool,
                outcome,
                next_run_ms: next,
            });
        }
        Ok(runs)
    }

    /// Checks the scheduling grant again and makes the call. `Err` means the job must not
    /// run again.
    async fn fire(&self, job: &Job) -> Result<RunOutcome, String> {
        if self.installed(&job.extension).is_err() {
            return Err(format!("{} is no longer installed", job.extension));
        }
        let target = format!("run {} {}", job.id, job.tool);
        let request = AccessRequest {
            session: self.session(),
            extension: &job.extension,
            capability: CAPABILITY,
            target: &target,
            check_scope: &no_scope,
        };
        match self.policy().authorize_async(&request).await {
            Ok(_) => {}
            Err(Denial::PermissionDenied(m)) | Err(Denial::OutOfScope(m)) => return Err(m),
            // Rate limits and an unavailable audit log are temporary: skip this run only.
            Err(other) => return Ok(RunOutcome::Failed(other.to_string())),
        }
        Ok(match self.call(&job.extension, &job.tool, &job.arguments).await {
            Ok(out) => RunOutcome::Completed(out.output),
            Err(e) => RunOutcome::Failed(e.to_string()),
        })
    }

    /// Starts a Tokio task that runs due jobs every `period` (at least one second) until
    /// the returned handle is aborted or the host is dropped. Needs a Tokio runtime.
    pub fn spawn_scheduler(self: &Arc<Self>, period: Duration) -> tokio::task::JoinHandle<()> {
        let host = Arc::downgrade(self);
        let period = period.max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticker.tick().await;
                let Some(host) = host.upgrade() else { return };
                // A store failure now may clear up by the next tick; the jobs stay stored.
                let _ = host.run_due_schedules(now_ms()).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> u64 {
        let t = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
        u64::try_from(t.unix_timestamp()).unwrap() * 1000
    }

    #[test]
    fn cron_finds_the_next_matching_minute() {
        let weekdays_at_7 = Cron::parse("0 7 * * 1-5").unwrap();
        // 2026-11-21 is a Saturday: the next run is Monday 07:00.
        assert_eq!(weekdays_at_7.next_after(at("2026-11-21T10:00:00Z")), Some(at("2026-11-23T07:00:00Z")));
        assert_eq!(weekdays_at_7.next_after(at("2026-11-23T06:59:59Z")), Some(at("2026-11-23T07:00:00Z")));
        assert_eq!(
            weekdays_at_7.next_after(at("2026-11-23T07:00:00Z")),
            Some(at("2026-11-24T07:00:00Z")),
            "strictly after"
        );
        let every_15 = Cron::parse("*/15 * * * *").unwrap();
        assert_eq!(every_15.next_after(at("2026-11-21T10:14:30Z")), Some(at("2026-11-21T10:15:00Z")));
        let new_year = Cron::parse("0 0 1 1 *").unwrap();
        assert_eq!(new_year.next_after(at("2026-11-21T10:00:00Z")), Some(at("2027-01-01T00:00:00Z")));
        let sunday = Cron::parse("30 12 * * 7").unwrap();
        assert_eq!(sunday.next_after(at("2026-11-21T10:00:00Z")), Some(at("2026-11-22T12:30:00Z")));
        // Both day fields restricted: either matches (the 1st, or any Friday).
        let either = Cron::parse("0 0 1 * 5").unwrap();
        assert_eq!(either.next_after(at("2026-11-21T10:00:00Z")), Some(at("2026-11-27T00:00:00Z")));
        assert_eq!(Cron::parse("0 0 30 2 *").unwrap().next_after(at("2026-11-21T10:00:00Z")), None);
    }

    #[test]
    fn bad_cron_is_refused_with_the_field_named() {
        for (expr, word) in [
            ("* * * *", "fields"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day-of-month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day-of-week"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "backwards"),
            ("* * * * MON", "day-of-week"),
        ] {
            let e = Cron::parse(expr).unwrap_err();
            assert!(e.contains(word), "{expr}: {e}");
        }
    }

    #[test]
    fn every_skips_missed_runs_and_at_runs_once() {
        assert_eq!(Trigger::Every(100).following(1000, 1000), Some(1100));
        assert_eq!(Trigger::Every(100).following(1000, 1350), Some(1400));
        assert_eq!(Trigger::At(5).following(5, 10), None);
    }

    fn store() -> (tempfile::TempDir, RedbSchedules) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("s.redb")).unwrap());
        (dir, RedbSchedules::new(db).unwrap())
    }

    fn job(ext: &str, next: u64) -> Job {
        Job {
            id: String::new(),
            extension: ext.into(),
            tool: "t".into(),
            arguments: "{}".into(),
            trigger: Trigger::Every(60_000),
            next_run_ms: Some(next),
        }
    }

    #[test]
    fn store_bounds_isolates_and_orders() {
        let (_d, s) = store();
        let a = s.add(job("a.x", 300), 2).unwrap();
        let b = s.add(job("a.x", 100), 2).unwrap();
        assert_ne!(a.id, b.id);
        assert!(matches!(s.add(job("a.x", 1), 2), Err(ScheduleError::TooMany { limit: 2, .. })));
        // Another extension (whose id extends the first) has its own count and jobs.
        let c = s.add(job("a.xy", 200), 2).unwrap();
        assert_eq!(s.list("a.x").unwrap().len(), 2);
        assert!(!s.cancel("a.x", &c.id).unwrap(), "an extension cannot cancel another's job");
        let due: Vec<String> = s.due(250).unwrap().into_iter().map(|j| j.id).collect();
        assert_eq!(due, [b.id.clone(), c.id.clone()]);
        assert!(s.claim("a.x", &b.id, 100, Some(1000)).unwrap());
        assert!(!s.claim("a.x", &b.id, 100, Some(2000)).unwrap(), "a run is claimed once");
        assert!(s.claim("a.xy", &c.id, 200, None).unwrap());
        assert!(!s.claim("a.xy", &c.id, 200, None).unwrap(), "a removed job cannot be claimed");
        assert!(s.due(250).unwrap().is_empty());
        s.clear("a.x").unwrap();
        assert!(s.list("a.x").unwrap().is_empty() && s.list("a.xy").unwrap().is_empty());
    }
}
