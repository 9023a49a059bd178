//! Validation problems and the error that carries all of them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One thing wrong with a manifest: where, what, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Path of the offending field, e.g. `"permissions[1].scope.domains[0]"`;
    /// empty when the problem concerns the whole file.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// What the author should do about it.
    pub fix: String,
}

impl Problem {
    /// Builds a problem from its three parts.
    pub fn new(field: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Problem { field: field.into(), message: message.into(), fix: fix.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{} (fix: {})", self.message, self.fix)
        } else {
            write!(f, "{}: {} (fix: {})", self.field, self.message, self.fix)
        }
    }
}

/// A manifest was refused; `problems` lists every reason, not just the first.
///
/// `Display` prints a header naming the file, then one problem per line:
///
/// ```
/// use omni_capabilities::Manifest;
/// let err = Manifest::from_toml_str("[extension]\nid = \"x\"\n", "manifest.toml").unwrap_err();
/// let text = err.to_string();
/// assert!(text.starts_with("manifest.toml:"));
/// assert!(text.lines().any(|l| l.contains("extension.id")));
/// assert!(text.lines().any(|l| l.contains("extension.name")));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct ManifestError {
    /// The file (or other source) the manifest came from, as given by the caller.
    pub origin: String,
    /// Every problem found, in file order.
    pub problems: Vec<Problem>,
}

impl ManifestError {
    pub(crate) fn single(origin: &str, problem: Problem) -> Self {
        ManifestError { origin: origin.to_owned(), problems: vec![problem] }
    }

    /// Whether some problem concerns `field` exactly.
    pub fn has_field(&self, field: &str) -> bool {
        self.problems.iter().any(|p| p.field == field)
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "{}: invalid manifest ({} problem{})", self.origin, n, if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            write!(f, "\n  {}: {p}", self.origin)?;
        }
        Ok(())
    }
}

/// Collects problems while walking a document, so validation reports all of them.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl Problems {
    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Problem::new(field, message, fix));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}
