//! Run programs on the host (capability `process.spawn`).
//!
//! No shell is involved: arguments are passed as they are and never re-parsed. The child
//! starts with an empty environment plus what you set.
//!
//! ```no_run
//! use omni_guest_sdk::process::{self, Command};
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let out = process::run("/usr/bin/git", ["--version"])?;
//! println!("{}", out.stdout_text());
//!
//! let out = Command::new("/usr/bin/jq")
//!     .arg(".name")
//!     .stdin(br#"{"name": "omni"}"#.to_vec())
//!     .timeout_ms(2_000)
//!     .run()?;
//! assert!(out.success());
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::process as wit;
use crate::Result;

pub use wit::{Command, Output};

impl Command {
    /// A command running `program` (an absolute path, or a name the host looks up in its
    /// `PATH`) with no arguments.
    pub fn new(program: impl Into<String>) -> Self {
        Command {
            program: program.into(),
            args: Vec::new(),
            stdin: None,
            working_dir: None,
            env: Vec::new(),
            timeout_ms: None,
        }
    }

    /// Add one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Add arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Write `data` to the child's standard input, then close it.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// Run in directory `dir`.
    pub fn current_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// Set an environment variable for the child.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Kill the child after `ms` milliseconds (the host caps it).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Run to completion.
    ///
    /// # Errors
    ///
    /// As [`run_command`].
    pub fn run(&self) -> Result<Output> {
        run_command(self)
    }
}

impl Output {
    /// Whether the child exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// Standard output as text (invalid UTF-8 replaced by U+FFFD).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text (invalid UTF-8 replaced by U+FFFD).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Run `program` with `args` to completion; a non-zero exit is not an error (see
/// [`Output::success`]).
///
/// # Errors
///
/// As [`run_command`].
pub fn run<I, S>(program: &str, args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    run_command(&Command::new(program).args(args))
}

/// Run `command` to completion.
///
/// # Errors
///
/// The host's refusal (program not in the grant's `executables`, an argument refused by
/// `allowed_args`/`denied_args`, too many running) or a failure to start it.
pub fn run_command(command: &Command) -> Result<Output> {
    Ok(wit::run(command)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_and_output_helpers() {
        let c = Command::new("/bin/echo")
            .arg("a")
            .args(["b", "c"])
            .stdin(b"in".to_vec())
            .current_dir("/tmp")
            .env("K", "V")
            .timeout_ms(10);
        assert_eq!(c.args, ["a", "b", "c"]);
        assert_eq!(c.env, [("K".to_string(), "V".to_string())]);
        assert_eq!((c.working_dir.as_deref(), c.timeout_ms), (Some("/tmp"), Some(10)));
        let out = Output { exit_code: Some(0), stdout: b"ok\xff".to_vec(), stderr: Vec::new(), timed_out: false };
        assert!(out.success());
        assert_eq!(out.stdout_text(), "ok\u{fffd}");
        assert!(!Output { exit_code: None, ..out }.success());
    }
}
