//! Language-server queries on source files (capability `code.intelligence`).
//!
//! ```no_run
//! use omni_guest_sdk::code_intel::{self, Position};
//!
//! # fn main() -> omni_guest_sdk::Result<()> {
//! let file = "~/src/project/src/main.rs";
//! for d in code_intel::diagnostics(file)? {
//!     println!("{}:{}: {:?} {}", d.span.path, d.span.start.line + 1, d.severity, d.message);
//! }
//! let defs = code_intel::definition(file, Position::new(10, 4))?;
//! # Ok(())
//! # }
//! ```

use crate::bindings::omni::caps::code_intel as wit;
use crate::Result;

pub use wit::{Diagnostic, Position, Severity, Span, Symbol, SymbolKind};

impl Position {
    /// Line and column, both from 0 (`column` in UTF-8 bytes).
    pub fn new(line: u32, column: u32) -> Self {
        Position { line, column }
    }
}

/// Declarations in the file at `path`, in source order.
///
/// # Errors
///
/// The host's refusal, or [`Error::Unavailable`](crate::Error::Unavailable) when no
/// language server handles the file.
pub fn symbols(path: &str) -> Result<Vec<Symbol>> {
    Ok(wit::symbols(path)?)
}

/// Where the symbol at `at` in `path` is defined.
///
/// # Errors
///
/// As [`symbols`].
pub fn definition(path: &str, at: Position) -> Result<Vec<Span>> {
    Ok(wit::definition(path, at)?)
}

/// Every use of the symbol at `at`, and its declaration when `include_declaration`.
///
/// # Errors
///
/// As [`symbols`].
pub fn references(path: &str, at: Position, include_declaration: bool) -> Result<Vec<Span>> {
    Ok(wit::references(path, at, include_declaration)?)
}

/// The current diagnostics of the file at `path`.
///
/// # Errors
///
/// As [`symbols`].
pub fn diagnostics(path: &str) -> Result<Vec<Diagnostic>> {
    Ok(wit::diagnostics(path)?)
}

/// Hover documentation (Markdown) for the symbol at `at`, if any.
///
/// # Errors
///
/// As [`symbols`].
pub fn hover(path: &str, at: Position) -> Result<Option<String>> {
    Ok(wit::hover(path, at)?)
}
