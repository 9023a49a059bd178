//! `process.spawn`: run an allow-listed program, directly, with bounded time and output.
//!
//! * **The program.** An absolute path, or a bare name looked up in the folders of
//!   `[process] search_path` (a fixed list in `omni.toml`, never the host's or the guest's
//!   `PATH`). Relative paths with a slash (`./x`, `bin/x`) and paths with `.` or `..`
//!   components are refused. The name found is then resolved to its real path, and must be
//!   one of the scope's `executables`, compared exactly as written or by real path (so a
//!   grant of `/bin/echo` covers `/usr/bin/echo` where `/bin` links to `/usr/bin`, and a
//!   link planted elsewhere that points at an allowed program still runs that program
//!   only).
//! * **Arguments** go to the program as they are: no shell is ever involved, so `;`, `|`,
//!   `&&`, `$(...)`, backticks and newlines are just bytes. The scope's `denied_args` and
//!   `allowed_args` (exact strings or whole-argument regexes) are checked on every
//!   argument; an argument with a NUL byte is invalid input.
//! * **Environment.** The child starts with an empty environment: the host adds nothing
//!   (no `PATH`, no `HOME`). The guest may set only locale and display variables (`LANG`,
//!   `LANGUAGE`, `LC_*`, `TZ`, `NO_COLOR`, `TERM`, `COLUMNS`, `LINES`); anything else
//!   (`LD_PRELOAD`, `PATH`, `GIT_SSH_COMMAND`...) could change what the program runs, so
//!   it is refused and audited.
//! * **Working folder.** `working-dir` is resolved like a filesystem path and must be a
//!   folder the extension's `filesystem.read` (or `filesystem.write`) grant covers, checked
//!   by the permission engine. Unset, the program runs in a fresh empty temporary folder
//!   removed afterwards.
//! * **Time.** The program is killed (its whole process group, on Unix) when `timeout-ms`
//!   (capped by `[process] max_timeout_ms`) elapses, and also when the call itself is
//!   stopped by its own time limit, since dropping the call drops the wait.
//! * **Output.** stdout and stderr are each kept up to `[process] max_output_bytes`; the
//!   rest is read and dropped so the program never blocks on a full pipe. Pipes are read
//!   (and stdin written) by tasks that stop when the call ends: once the program has
//!   exited and its pipes stay open half a second more (a descendant that left the process
//!   group holds them), the host closes its ends, so no host thread waits on them.
//! * **Concurrency.** At most the scope's `max_concurrent` (else `[process]
//!   max_concurrent`) programs of one extension run at once.

use std::collections::HashMap;
use std::future::Future;
#[cfg(not(unix))]
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omni_capabilities::{ProcessScope, Scope};
use serde::{Deserialize, Serialize};

use super::try_budget;
use crate::bindings::omni::caps::process::{Command, Host, Output};
use crate::bindings::{CapError, RateLimitedInfo};
use crate::sandbox::CallState;

/// Capability key.
pub const CAPABILITY: &str = "process.spawn";

/// Environment variables a guest may set for a child: locale and display only.
pub const ALLOWED_ENV: &[&str] = &["LANG", "LANGUAGE", "TZ", "NO_COLOR", "TERM", "COLUMNS", "LINES"];

/// How long the host waits for a dead program's output pipes to close (a descendant that
/// left its process group may hold them open); then it stops reading and closes them.
const PIPE_GRACE: Duration = Duration::from_millis(500);

/// `[process]` settings in `omni.toml`.
///
/// ```toml
/// [process]
/// search_path = ["/usr/local/bin", "/usr/bin", "/bin"]
/// default_timeout_ms = 10000
/// max_timeout_ms = 60000
/// max_output_bytes = 1048576
/// max_concurrent = 4
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessConfig {
    /// Folders searched, in order, for a program named without a slash.
    pub search_path: Vec<PathBuf>,
    /// Time allowed when the guest gives no `timeout-ms`.
    pub default_timeout_ms: u64,
    /// Longest time any program may run.
    pub max_timeout_ms: u64,
    /// Bytes of stdout, and of stderr, kept per program.
    pub max_output_bytes: usize,
    /// Programs one extension may run at once when its scope sets no `max_concurrent`
    /// (default [`omni_capabilities::DEFAULT_PROCESS_MAX_CONCURRENT`], which an update's
    /// review compares a newly set `max_concurrent` with).
    pub max_concurrent: u32,
    /// Most arguments one program may get.
    pub max_args: usize,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            search_path: ["/usr/local/bin", "/usr/bin", "/bin"].iter().map(PathBuf::from).collect(),
            default_timeout_ms: 10_000,
            max_timeout_ms: 60_000,
            max_output_bytes: 1024 * 1024,
            max_concurrent: omni_capabilities::DEFAULT_PROCESS_MAX_CONCURRENT,
            max_args: 1024,
        }
    }
}

/// One checked program run, as the backend receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnRequest {
    /// The real, absolute path of the program (already checked against the scope).
    pub program: PathBuf,
    /// Arguments, passed as they are.
    pub args: Vec<String>,
    /// The whole environment of the child.
    pub env: Vec<(String, String)>,
    /// The folder the child starts in.
    pub working_dir: PathBuf,
    /// Bytes for the child's stdin, which is then closed; `None`: stdin is empty.
    pub stdin: Option<Vec<u8>>,
    /// Kill the child after this long.
    pub timeout: Duration,
    /// Bytes kept of stdout and of stderr each.
    pub max_output: usize,
}

/// What a finished child left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnOutput {
    /// Exit code; `None` when a signal (or the timeout) ended it.
    pub exit_code: Option<i32>,
    /// Captured stdout, at most `max_output` bytes.
    pub stdout: Vec<u8>,
    /// Captured stderr, at most `max_output` bytes.
    pub stderr: Vec<u8>,
    /// Whether the timeout killed it.
    pub timed_out: bool,
}

/// Why a program could not be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// The program did not start.
    #[error("{0}")]
    Start(String),
    /// Waiting for it or reading its output failed.
    #[error("{0}")]
    Io(String),
}

/// Future returned by [`ProcessBackend::run`].
pub type RunFuture<'a> = Pin<Box<dyn Future<Output = Result<SpawnOutput, ProcessError>> + Send + 'a>>;

/// How programs are started; an embedder may replace it (a container, a remote runner, a
/// recording fake in tests).
///
/// The host has checked everything in the request. An implementation must not involve a
/// shell, must give the child exactly `env`, must kill the child when `timeout` elapses,
/// and must kill it when the returned future is dropped (the call was stopped).
pub trait ProcessBackend: Send + Sync {
    /// Runs one program to completion.
    fn run(&self, request: SpawnRequest) -> RunFuture<'_>;
}

/// The default backend: the host's own processes, each in a process group of its own.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemProcess;

/// Kills a child's process group when dropped, unless disarmed: the call that owns it
/// was stopped, or the program must not outlive it.
struct KillGroup {
    pid: Option<u32>,
}

impl KillGroup {
    fn kill(&self) {
        #[cfg(unix)]
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()).and_then(rustix::process::Pid::from_raw) {
            // ESRCH (nothing left) is the normal case after a clean exit.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for KillGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Keeps the first `cap` bytes of what a pipe delivers in `buf`, dropping the rest.
fn keep(buf: &Mutex<Vec<u8>>, cap: usize, chunk: &[u8]) {
    let mut b = buf.lock().unwrap_or_else(|p| p.into_inner());
    let room = cap.saturating_sub(b.len()).min(chunk.len());
    b.extend_from_slice(&chunk[..room]);
}

/// Reads a pipe to its end, keeping the first `cap` bytes in `buf`.
///
/// The read is asynchronous so that the task can be stopped: a descendant that left the
/// program's process group may hold the pipe open forever, and a blocked reading thread
/// could never be told to stop.
#[cfg(unix)]
async fn drain(pipe: impl Into<std::os::fd::OwnedFd>, buf: Arc<Mutex<Vec<u8>>>, cap: usize) {
    use tokio::io::AsyncReadExt;
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(pipe.into()) else { return };
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => keep(&buf, cap, &chunk[..n]),
        }
    }
}

/// Writes the program's input, then closes its stdin; stoppable like [`drain`].
#[cfg(unix)]
async fn feed(pipe: std::process::ChildStdin, data: Vec<u8>) {
    use tokio::io::AsyncWriteExt;
    if let Ok(mut pipe) = tokio::net::unix::pipe::Sender::from_owned_fd(pipe.into()) {
        let _ = pipe.write_all(&data).await;
    }
}

/// Elsewhere pipes are read by threads, which stop at the pipe's end only.
#[cfg(not(unix))]
async fn drain(mut pipe: impl Read + Send + 'static, buf: Arc<Mutex<Vec<u8>>>, cap: usize) {
    let _ = tokio::task::spawn_blocking(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => keep(&buf, cap, &chunk[..n]),
            }
        }
    })
    .await;
}

#[cfg(not(unix))]
async fn feed(mut pipe: std::process::ChildStdin, data: Vec<u8>) {
    let _ = tokio::task::spawn_blocking(move || pipe.write_all(&data)).await;
}

/// A pipe task that is stopped (and its end of the pipe closed) when dropped: when the
/// call ends, whether or not something still holds the other end.
struct PipeTask(tokio::task::JoinHandle<()>);

impl PipeTask {
    fn spawn(task: impl Future<Output = ()> + Send + 'static) -> PipeTask {
        PipeTask(tokio::spawn(task))
    }
}

impl Drop for PipeTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn take(buf: &Arc<Mutex<Vec<u8>>>) -> Vec<u8> {
    std::mem::take(&mut *buf.lock().unwrap_or_else(|p| p.into_inner()))
}

impl ProcessBackend for SystemProcess {
    fn run(&self, req: SpawnRequest) -> RunFuture<'_> {
        Box::pin(async move {
            let mut cmd = std::process::Command::new(&req.program);
            cmd.args(&req.args)
                .env_clear()
                .envs(req.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .current_dir(&req.working_dir)
                .stdin(if req.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            #[cfg(unix)]
            {
                use std::os::unix::process::CommandExt;
                cmd.process_group(0);
            }
            let mut child =
                cmd.spawn().map_err(|e| ProcessError::Start(format!("cannot start {}: {e}", req.program.display())))?;
            let group = KillGroup { pid: Some(child.id()) };
            // A child that never reads its input must not block the host.
            let _feeding = match (child.stdin.take(), req.stdin) {
                (Some(pipe), Some(data)) => Some(PipeTask::spawn(feed(pipe, data))),
                _ => None,
            };
            let out = Arc::new(Mutex::new(Vec::new()));
            let err = Arc::new(Mutex::new(Vec::new()));
            let mut readers = Vec::new();
            if let Some(pipe) = child.stdout.take() {
                readers.push(PipeTask::spawn(drain(pipe, out.clone(), req.max_output)));
            }
            if let Some(pipe) = child.stderr.take() {
                readers.push(PipeTask::spawn(drain(pipe, err.clone(), req.max_output)));
            }
            let (status_tx, mut status_rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let _ = status_tx.send(child.wait());
            });
            let (status, timed_out) = match tokio::time::timeout(req.timeout, &mut status_rx).await {
                Ok(status) => (status, false),
                Err(_) => {
                    group.kill();
                    (status_rx.await, true)
                }
            };
            let status = status
                .map_err(|_| ProcessError::Io(format!("lost track of {}", req.program.display())))?
                .map_err(|e| ProcessError::Io(format!("cannot wait for {}: {e}", req.program.display())))?;
            // Whatever the program left running in its group ends with it.
            drop(group);
            let _ = tokio::time::timeout(PIPE_GRACE, async {
                for reader in &mut readers {
                    let _ = (&mut reader.0).await;
                }
            })
            .await;
            // Readers still waiting (a descendant outside the group holds a pipe) stop
            // here, closing the host's ends of the pipes.
            drop(readers);
            Ok(SpawnOutput { exit_code: status.code(), stdout: take(&out), stderr: take(&err), timed_out })
        })
    }
}

/// Programs running per extension, for `max_concurrent`.
#[derive(Debug, Default)]
pub(crate) struct Running {
    counts: Arc<Mutex<HashMap<String, u32>>>,
}

/// One running program's place in [`Running`], given back when dropped.
pub(crate) struct RunningSlot {
    counts: Arc<Mutex<HashMap<String, u32>>>,
    extension: String,
}

impl Running {
    fn enter(&self, extension: &str, max: u32) -> Option<RunningSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(extension.to_string()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(RunningSlot { counts: self.counts.clone(), extension: extension.to_string() })
    }
}

impl Drop for RunningSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.extension) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.extension);
            }
        }
    }
}

/// Why a program name was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramProblem {
    /// Malformed: `invalid-input`.
    Invalid(String),
    /// A form that is never run (relative path, `..`): refused and audited.
    Refused(String),
    /// Not found in the search path, or unreadable.
    NotFound(String),
}

/// The program as named (absolute) and its real path.
///
/// ```
/// use omni_host::caps::process::{locate_program, ProgramProblem};
/// use std::path::PathBuf;
/// assert!(matches!(locate_program("./x", &[]), Err(ProgramProblem::Refused(_))));
/// assert!(matches!(locate_program("/usr/bin/../bin/sh", &[]), Err(ProgramProblem::Refused(_))));
/// assert!(matches!(locate_program("", &[]), Err(ProgramProblem::Invalid(_))));
/// ```
pub fn locate_program(program: &str, search_path: &[PathBuf]) -> Result<(PathBuf, PathBuf), ProgramProblem> {
    let shown: String = program.chars().take(200).collect();
    if program.is_empty() || program.len() > 4096 || program.chars().any(char::is_control) {
        return Err(ProgramProblem::Invalid(format!(
            "the program {shown:?} is empty, too long or holds control characters; name an allowed program by absolute path"
        )));
    }
    let named = if program.contains('/') {
        let p = Path::new(program);
        if !p.has_root() {
            return Err(ProgramProblem::Refused(format!(
                "the program {shown:?} is a relative path; programs are named by absolute path or by a bare name looked up in [process] search_path"
            )));
        }
        // `Path::components` hides inner `.` and `//`, so look at the text itself.
        if program.split('/').skip(1).any(|seg| seg.is_empty() || seg == "." || seg == "..") {
            return Err(ProgramProblem::Refused(format!(
                "the program path {shown:?} is not normalized (it holds . or ..); write the program's plain absolute path"
            )));
        }
        p.to_path_buf()
    } else {
        search_path.iter().map(|d| d.join(program)).find(|c| c.is_file()).ok_or_else(|| {
            let dirs: Vec<String> = search_path.iter().map(|d| d.display().to_string()).collect();
            ProgramProblem::NotFound(format!(
                "no program {shown:?} in the host's search path ({}); name it by absolute path",
                dirs.join(", ")
            ))
        })?
    };
    let real = std::fs::canonicalize(&named)
        .map_err(|e| ProgramProblem::NotFound(format!("cannot find the program {}: {e}", named.display())))?;
    if !real.is_file() {
        return Err(ProgramProblem::NotFound(format!("{} is not a program file", real.display())));
    }
    Ok((named, real))
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().enumerate().all(|(i, b)| {
            b == b'_' || b.is_ascii_uppercase() || b.is_ascii_lowercase() || (i > 0 && b.is_ascii_digit())
        })
}

/// Whether a guest may set environment variable `name` for a child.
pub fn env_allowed(name: &str) -> bool {
    ALLOWED_ENV.contains(&name) || (name.starts_with("LC_") && valid_env_name(name))
}

/// Why the value of an allowed variable is refused, if it is: locale and zone variables
/// name data files the C library loads, and a value that is a path (an absolute one, or one
/// climbing with `..`) would make it load a file of the extension's choosing.
///
/// `LANG`, `LANGUAGE`, `LC_*` and `TERM` are plain names (`en_US.UTF-8`, `xterm-256color`)
/// with no `/` at all. `TZ` may name a zone with slashes (`Europe/Berlin`, `:Europe/Berlin`)
/// or be a POSIX rule (`CET-1CEST`), but may not start with `/` (also after the `:`) nor
/// hold a `..`.
///
/// ```
/// use omni_host::caps::process::env_value_problem;
/// assert!(env_value_problem("LANG", "en_US.UTF-8").is_none());
/// assert!(env_value_problem("TZ", "Europe/Berlin").is_none());
/// assert!(env_value_problem("LC_ALL", "/tmp/evil").is_some());
/// assert!(env_value_problem("TZ", ":/tmp/zone").is_some());
/// ```
pub fn env_value_problem(name: &str, value: &str) -> Option<String> {
    let shown: String = value.chars().take(64).collect();
    if value.chars().any(char::is_control) {
        return Some(format!("the value of {name} holds control characters"));
    }
    let path_like = match name {
        "TZ" => {
            let zone = value.strip_prefix(':').unwrap_or(value);
            zone.starts_with('/') || zone.split('/').any(|part| part == "..")
        }
        "LANG" | "LANGUAGE" | "TERM" => value.contains('/'),
        _ if name.starts_with("LC_") => value.contains('/'),
        _ => false,
    };
    path_like.then(|| {
        format!(
            "the value {shown:?} of {name} is a file path, which would make the program load a file of the extension's choosing; give a plain name (LANG=en_US.UTF-8, TZ=Europe/Berlin)"
        )
    })
}

/// An argument list shown in the audit target: quoted where needed, bounded.
fn shown_command(program: &Path, args: &[String]) -> String {
    let mut s = program.display().to_string();
    for a in args {
        if s.len() > 1000 {
            s.push_str(" …");
            break;
        }
        s.push(' ');
        if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_=.,/:@+%".contains(c)) {
            s.push_str(a);
        } else {
            s.push_str(&format!("{a:?}"));
        }
    }
    s
}

/// The scope check for one command: the program matches an entry as written or by real
/// path, then the arguments are checked by the scope.
fn command_check(
    named: PathBuf,
    real: PathBuf,
    args: Vec<String>,
    canonical: Vec<(PathBuf, Option<PathBuf>)>,
) -> impl Fn(&Scope) -> Result<(), String> + Send + Sync {
    move |scope: &Scope| {
        let Some(p) = scope.as_process() else {
            return Err("the grant has no process scope".into());
        };
        let matched = p.executables.iter().find(|e| {
            **e == named
                || **e == real
                || canonical.iter().any(|(entry, c)| entry == *e && c.as_deref() == Some(real.as_path()))
        });
        match matched {
            Some(entry) => p.check_command(entry, &args),
            // No entry matches, so this names the program and lists the allowed ones.
            None => p.check_command(&real, &args),
        }
    }
}

impl CallState {
    fn process_scope(&self) -> Option<ProcessScope> {
        self.ext.manifest.permission(CAPABILITY).and_then(|p| p.scope.as_process().cloned())
    }

    async fn process_run(&mut self, cmd: Command) -> Result<Output, CapError> {
        let config = self.host.config.process.clone();
        if cmd.args.len() > config.max_args {
            return Err(CapError::InvalidInput(format!(
                "{} arguments, more than the {} one program may get ([process] max_args)",
                cmd.args.len(),
                config.max_args
            )));
        }
        if let Some(i) = cmd.args.iter().position(|a| a.contains('\0')) {
            return Err(CapError::InvalidInput(format!("argument {i} holds a NUL byte, which no program can receive")));
        }
        let (named, real) = match locate_program(&cmd.program, &config.search_path) {
            Ok(found) => found,
            Err(ProgramProblem::Invalid(m)) => return Err(CapError::InvalidInput(m)),
            Err(ProgramProblem::NotFound(m)) => return Err(CapError::Io(m)),
            Err(ProgramProblem::Refused(reason)) => {
                let shown: String = cmd.program.chars().take(200).collect();
                return Err(self.refuse(CAPABILITY, &format!("run {shown}"), reason).await);
            }
        };
        let target = format!("run {}", shown_command(&real, &cmd.args));
        let canonical: Vec<(PathBuf, Option<PathBuf>)> = self
            .process_scope()
            .map(|s| s.executables.iter().map(|e| (e.clone(), std::fs::canonicalize(e).ok())).collect())
            .unwrap_or_default();
        let check = command_check(named, real.clone(), cmd.args.clone(), canonical);
        self.authorize(CAPABILITY, &target, &check).await?;

        let mut env = Vec::with_capacity(cmd.env.len());
        for (k, v) in cmd.env {
            if !env_allowed(&k) {
                let reason = format!(
                    "the environment variable {:?} is not passed to programs: children start with an empty environment, and a guest may set only {}, LC_*",
                    k.chars().take(64).collect::<String>(),
                    ALLOWED_ENV.join(", ")
                );
                return Err(self.refuse(CAPABILITY, &target, reason).await);
            }
            if v.contains('\0') || v.len() > 4096 {
                return Err(CapError::InvalidInput(format!(
                    "the value of {k} holds a NUL byte or is longer than 4096 bytes"
                )));
            }
            if let Some(reason) = env_value_problem(&k, &v) {
                return Err(self.refuse(CAPABILITY, &target, reason).await);
            }
            env.push((k, v));
        }

        let max = self.process_scope().and_then(|s| s.max_concurrent).unwrap_or(config.max_concurrent);
        let Some(_slot) = self.host.running.enter(&self.ext.id, max) else {
            return Err(CapError::RateLimited(RateLimitedInfo {
                retry_after_ms: 100,
                reason: format!(
                    "{max} programs of this extension are already running (max_concurrent); wait for one to finish"
                ),
            }));
        };
        let (working_dir, _scratch) = match &cmd.working_dir {
            Some(dir) => (self.fs_working_dir(CAPABILITY, dir).await?, None),
            None => {
                let scratch = tempfile::Builder::new()
                    .prefix("omni-run-")
                    .tempdir()
                    .map_err(|e| CapError::Io(format!("cannot create a working folder for the program: {e}")))?;
                (scratch.path().to_path_buf(), Some(scratch))
            }
        };
        let timeout = Duration::from_millis(
            cmd.timeout_ms.map_or(config.default_timeout_ms, u64::from).min(config.max_timeout_ms),
        );
        let request = SpawnRequest {
            program: real,
            args: cmd.args,
            env,
            working_dir,
            stdin: cmd.stdin,
            timeout,
            max_output: config.max_output_bytes,
        };
        let backend = self.host.process.clone();
        let out = backend.run(request).await.map_err(|e| CapError::Io(e.to_string()))?;
        Ok(Output { exit_code: out.exit_code, stdout: out.stdout, stderr: out.stderr, timed_out: out.timed_out })
    }
}

impl Host for CallState {
    async fn run(&mut self, cmd: Command) -> wasmtime::Result<Result<Output, CapError>> {
        let moved = cmd.program.len()
            + cmd.args.iter().map(String::len).sum::<usize>()
            + cmd.stdin.as_ref().map_or(0, Vec::len)
            + cmd.working_dir.as_ref().map_or(0, String::len)
            + cmd.env.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        try_budget!(self, moved);
        Ok(self.process_run(cmd).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(program: &str, args: &[&str]) -> SpawnRequest {
        SpawnRequest {
            program: PathBuf::from(program),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            working_dir: std::env::temp_dir(),
            stdin: None,
            timeout: Duration::from_secs(30),
            max_output: 1024,
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
    }

    #[test]
    fn programs_are_found_only_by_absolute_path_or_the_fixed_search_path() {
        let dirs = vec![PathBuf::from("/usr/bin"), PathBuf::from("/bin")];
        let (named, real) = locate_program("env", &dirs).expect("env is on every Unix host");
        assert!(named.is_absolute() && real.is_absolute());
        assert!(matches!(locate_program("env", &[]), Err(ProgramProblem::NotFound(_))));
        for refused in ["./env", "bin/env", "../../usr/bin/env", "/usr/./bin/env", "/usr//bin/env"] {
            assert!(matches!(locate_program(refused, &dirs), Err(ProgramProblem::Refused(_))), "{refused}");
        }
        assert!(matches!(locate_program("a\nb", &dirs), Err(ProgramProblem::Invalid(_))));
    }

    #[test]
    fn only_locale_and_display_variables_pass() {
        for ok in ["LANG", "LC_ALL", "LC_MESSAGES", "TZ", "NO_COLOR"] {
            assert!(env_allowed(ok), "{ok}");
        }
        for bad in
            ["PATH", "LD_PRELOAD", "DYLD_INSERT_LIBRARIES", "GIT_SSH_COMMAND", "HOME", "LC_A=B", "BASH_ENV", "lang"]
        {
            assert!(!env_allowed(bad), "{bad}");
        }
    }

    /// Allowed variables whose values glibc reads as file names: an absolute path or a
    /// `..` once passed, making a program load a locale or zone file the extension chose.
    #[test]
    fn locale_and_zone_values_that_are_paths_are_refused() {
        for (name, value) in [
            ("LANG", "en_US.UTF-8"),
            ("LANGUAGE", "de_DE:en"),
            ("LC_ALL", "C"),
            ("LC_MESSAGES", "fr_FR.utf8@euro"),
            ("TZ", "Europe/Berlin"),
            ("TZ", ":Europe/Berlin"),
            ("TZ", "CET-1CEST,M3.5.0,M10.5.0/3"),
            ("TZ", "UTC"),
            ("TERM", "xterm-256color"),
            ("NO_COLOR", "1"),
        ] {
            assert!(env_value_problem(name, value).is_none(), "{name}={value}");
        }
        for (name, value) in [
            ("LANG", "/tmp/evil"),
            ("LANGUAGE", "en:/tmp/evil"),
            ("LC_ALL", "../../../tmp/evil"),
            ("LC_CTYPE", "x/y"),
            ("TZ", "/tmp/zone"),
            ("TZ", ":/tmp/zone"),
            ("TZ", "../../tmp/zone"),
            ("TZ", ":Europe/../../../tmp/zone"),
            ("TERM", "../../tmp/terminfo"),
            ("TZ", "UTC\n"),
        ] {
            assert!(env_value_problem(name, value).is_some(), "{name}={value:?} passed");
        }
    }

    #[cfg(unix)]
    #[test]
    fn arguments_reach_the_program_literally_with_an_empty_environment() {
        let args = ["; rm -rf /", "$(id)", "`id`", "a | b", "x && y", "line\nbreak"];
        let out = rt().block_on(SystemProcess.run(request("/usr/bin/env", &[]))).expect("env runs");
        assert_eq!(out.exit_code, Some(0));
        assert!(out.stdout.is_empty(), "the environment must be empty: {:?}", String::from_utf8_lossy(&out.stdout));
        let Ok((_, printf)) = locate_program("printf", &[PathBuf::from("/usr/bin"), PathBuf::from("/bin")]) else {
            return;
        };
        let mut all = vec!["%s\\0"];
        all.extend(args);
        let out = rt().block_on(SystemProcess.run(request(&printf.display().to_string(), &all))).expect("printf runs");
        let printed: Vec<&[u8]> = out.stdout.split(|b| *b == 0).filter(|s| !s.is_empty()).collect();
        let want: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        assert_eq!(printed, want);
    }

    #[cfg(unix)]
    #[test]
    fn timeouts_kill_and_output_is_capped() {
        let mut r = request("/bin/sleep", &["30"]);
        r.timeout = Duration::from_millis(100);
        let out = rt().block_on(SystemProcess.run(r)).expect("sleep runs");
        assert!(out.timed_out);
        assert_eq!(out.exit_code, None);
        let mut r = request("/usr/bin/head", &["-c", "100000", "/dev/zero"]);
        r.max_output = 10;
        let out = rt().block_on(SystemProcess.run(r)).expect("head runs");
        assert_eq!((out.exit_code, out.stdout.len(), out.timed_out), (Some(0), 10, false));
        let mut r = request("/bin/cat", &[]);
        r.stdin = Some(b"fed through stdin".to_vec());
        assert_eq!(rt().block_on(SystemProcess.run(r)).expect("cat runs").stdout, b"fed through stdin");
        assert!(matches!(
            rt().block_on(SystemProcess.run(request("/nonexistent/x", &[]))),
            Err(ProcessError::Start(_))
        ));
    }

    /// A program whose grandchild leaves the process group (`setsid`) and keeps the output
    /// pipes open once left the host's reading threads blocked on them for good. Now the
    /// host closes its ends soon after the program exits: the grandchild's next write
    /// fails, and it says so in a marker file.
    #[cfg(unix)]
    #[test]
    fn a_grandchild_outside_the_group_cannot_keep_the_host_reading() {
        let Ok((_, setsid)) = locate_program("setsid", &[PathBuf::from("/usr/bin"), PathBuf::from("/bin")]) else {
            return;
        };
        let dir = tempfile::tempdir().expect("dir");
        let marker = dir.path().join("pipe-closed");
        // The grandchild writes every 50 ms for at most 60 s; a write that fails means the
        // host closed the pipe.
        // The program waits until the grandchild has left its group, so that killing the
        // group when the program exits does not reach it.
        let ready = dir.path().join("ready");
        let script = format!(
            "{} /bin/sh -c ': > {ready}; trap \"\" PIPE; i=0; while [ $i -lt 1200 ]; do sleep 0.05; echo tick || {{ : > {marker}; exit 0; }}; i=$((i+1)); done' & while [ ! -e {ready} ]; do sleep 0.01; done",
            setsid.display(),
            ready = ready.display(),
            marker = marker.display()
        );
        let mut r = request("/bin/sh", &["-c", &script]);
        r.stdin = Some(vec![b'x'; 1 << 20]);
        // The runtime stays up: tasks it would drop on shutdown must stop by themselves.
        let rt = rt();
        let out = rt.block_on(SystemProcess.run(r)).expect("sh runs");
        assert_eq!(out.exit_code, Some(0));
        // Generous: the grandchild notices within a tick or two once the pipe is closed.
        let mut waited = 0;
        while !marker.exists() && waited < 400 {
            std::thread::sleep(Duration::from_millis(50));
            waited += 1;
        }
        assert!(marker.exists(), "the host still holds the grandchild's output pipe open after 20 s");
    }

    #[test]
    fn concurrency_slots_are_given_back() {
        let running = Running::default();
        let a = running.enter("e", 2).expect("first");
        let _b = running.enter("e", 2).expect("second");
        assert!(running.enter("e", 2).is_none());
        assert!(running.enter("other", 2).is_some());
        drop(a);
        assert!(running.enter("e", 2).is_some());
    }
}
