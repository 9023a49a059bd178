//! Text that an extension or a manifest controls, made safe to show a person.
//!
//! Extension ids, names, descriptions, scopes, storage keys, tool errors, a guest's
//! stderr: all of it reaches terminals, review screens, audit tables and CSV exports.
//! A single escape sequence in any of it can redraw a permission question, forge a
//! row of the audit table or rename a terminal window, and a bidi override can make
//! text read differently from what it is. Every place where Omni prints such text goes
//! through this module:
//!
//! - [`escape`]: one line of text (a table cell, a prompt line, a name). Every control
//!   character, line break, C1 control, bidi control and invisible character becomes a
//!   visible `\n`, `\t`, `\r` or `\u{…}` escape.
//! - [`escape_multiline`]: a block of text that may span lines (a tool's error
//!   message, a guest's stderr). Line feeds and tabs stay; everything else is escaped
//!   as by [`escape`].
//! - [`csv_cell`]: a CSV field that a spreadsheet may open. Escaped as by [`escape`],
//!   and a cell that would start a formula is prefixed with `'` (as OWASP advises).
//! - [`escape_json`]: serialized JSON about to be printed. JSON writers escape C0
//!   controls but leave C1 and bidi characters raw; this turns those into `\uXXXX`,
//!   which every JSON reader decodes back to the same value.
//! - [`first_unsafe`]: where a name holds a character that has no business in one,
//!   for callers that refuse such names outright (storage keys, flowchart names...).
//! - [`error_chain`]: an error and its causes, each said once.
//!
//! ```
//! use omni_capabilities::text;
//! // A key that tries to redraw the terminal line prints as what it is.
//! assert_eq!(text::escape("k\x1b[1A\rExtension"), "k\\u{1b}[1A\\rExtension");
//! // A newline cannot start a forged row of a table.
//! assert_eq!(text::escape("a\n25 revoke"), "a\\n25 revoke");
//! // A right-to-left override is shown, not obeyed.
//! assert_eq!(text::escape("txt.\u{202e}exe"), "txt.\\u{202e}exe");
//! assert_eq!(text::csv_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
//! assert_eq!(text::escape_json("\"\u{9b}31m\""), "\"\\u009b31m\"");
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must never reach a person's screen raw: every control character
/// (C0 with line feed and tab, DEL, C1), the line and paragraph separators, and every
/// [invisible](is_invisible) character.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || is_invisible(c)
}

/// Characters that render as nothing or reorder text, so that a name can look like
/// another or hide part of itself: bidi controls, zero-width characters, the soft
/// hyphen, fillers, variation selectors, tag characters, interlinear annotations and
/// invisible musical formatting.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{34f}' | '\u{61c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}'
        | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}' | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{feff}'
        | '\u{ffa0}' | '\u{fff0}'..='\u{fffb}' | '\u{1d173}'..='\u{1d17a}' | '\u{e0000}'..='\u{e0fff}')
}

/// The first character of `s` that [`is_unsafe`], with its byte offset.
///
/// ```
/// use omni_capabilities::text::first_unsafe;
/// assert_eq!(first_unsafe("notes/2024"), None);
/// assert_eq!(first_unsafe("a\u{1b}[2K"), Some((1, '\u{1b}')));
/// ```
pub fn first_unsafe(s: &str) -> Option<(usize, char)> {
    s.char_indices().find(|&(_, c)| is_unsafe(c))
}

/// A one-line description of why a name is refused, for error messages: which
/// character, where, and what names may hold.
///
/// ```
/// use omni_capabilities::text::refuse_unsafe_name;
/// assert!(refuse_unsafe_name("key", "ok").is_ok());
/// let why = refuse_unsafe_name("key", "a\nb").unwrap_err();
/// assert!(why.contains("U+000A"), "{why}");
/// ```
pub fn refuse_unsafe_name(what: &str, name: &str) -> Result<(), String> {
    match first_unsafe(name) {
        None => Ok(()),
        Some((at, c)) => Err(format!(
            "the {what} {} holds the control or invisible character U+{:04X} at byte {at}; {what}s must be printable text without line breaks, escape sequences or bidi controls",
            escape(&truncate(name, 80)),
            c as u32
        )),
    }
}

fn escape_with(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if !is_unsafe(c) || keep(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            _ => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// `s` as one line that is safe on a terminal: see the [module documentation](self).
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_with(s, |_| false)
}

/// `s` as a block of lines that is safe on a terminal: line feeds and tabs stay, every
/// other unsafe character is escaped as by [`escape`].
///
/// ```
/// use omni_capabilities::text::escape_multiline;
/// assert_eq!(escape_multiline("line 1\nline 2\r\x1b]0;title\x07"), "line 1\nline 2\\r\\u{1b}]0;title\\u{7}");
/// ```
pub fn escape_multiline(s: &str) -> Cow<'_, str> {
    escape_with(s, |c| c == '\n' || c == '\t')
}

/// `s` as a CSV field that a spreadsheet will not run: escaped as by [`escape`], then
/// prefixed with `'` when it starts with `=`, `+`, `-`, `@` (or their full-width
/// forms), which spreadsheets read as the start of a formula. Tab and carriage return,
/// the other characters OWASP lists, are already escaped.
///
/// ```
/// use omni_capabilities::text::csv_cell;
/// assert_eq!(csv_cell("@SUM(1+1)*cmd|' /C calc'!A0"), "'@SUM(1+1)*cmd|' /C calc'!A0");
/// assert_eq!(csv_cell("-1"), "'-1");
/// assert_eq!(csv_cell("set notes"), "set notes");
/// ```
pub fn csv_cell(s: &str) -> Cow<'_, str> {
    let escaped = escape(s);
    if escaped.starts_with(['=', '+', '-', '@', '\u{ff1d}', '\u{ff0b}', '\u{ff0d}', '\u{ff20}']) {
        Cow::Owned(format!("'{escaped}"))
    } else {
        escaped
    }
}

/// Serialized JSON with every unsafe character that a JSON writer leaves raw (C1,
/// bidi, separators, invisible characters) written as a `\uXXXX` escape. The value is
/// unchanged for any JSON reader; only its printed form is safe to show.
///
/// Outside strings JSON has only ASCII punctuation, digits, literals and whitespace,
/// so every character changed here is inside a string.
pub fn escape_json(json: &str) -> Cow<'_, str> {
    if !json.chars().any(|c| is_unsafe(c) && !matches!(c, '\n' | '\t' | '\r' | ' ')) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        // Raw line breaks and tabs here are the writer's own indentation, never string
        // content: a JSON writer always escapes them inside strings.
        if !is_unsafe(c) || matches!(c, '\n' | '\t' | '\r') {
            out.push(c);
            continue;
        }
        let mut units = [0u16; 2];
        for unit in c.encode_utf16(&mut units) {
            let _ = write!(out, "\\u{unit:04x}");
        }
    }
    Cow::Owned(out)
}

/// `s` cut to at most `max` bytes on a character boundary, with `…` when cut: for the
/// parts of a message that repeat what an extension sent.
///
/// ```
/// use omni_capabilities::text::truncate;
/// assert_eq!(truncate("héllo", 2), "h…");
/// assert_eq!(truncate("abc", 10), "abc");
/// ```
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &s[..end]))
}

/// An error with every cause a person needs: its own message, then each source that
/// adds something, joined with `: `. A cause whose text the message so far already holds
/// is left out, so an error that repeats its source (`cannot read x: not found`) does not
/// print it twice, and one that hides it (`error sending request`) shows it.
///
/// ```
/// use omni_capabilities::text::error_chain;
/// let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
/// let outer = std::io::Error::other(io);
/// assert_eq!(error_chain(&outer), "No such file or directory");
/// ```
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The characters terminals act on, each in a name: none survives [`escape`].
    const ATTACKS: &[&str] = &[
        "\x1b[1A\x1b[2K\rExtension asks to use clipboard.write",
        "\x1b]0;owned\x07",
        "\u{9b}31m",
        "\u{202e}gpj.exe",
        "\u{2066}hidden\u{2069}",
        "a\u{2028}b",
        "zero\u{200b}width",
        "tag\u{e0041}",
        "del\x7f",
        "nul\0",
    ];

    #[test]
    fn escape_leaves_nothing_a_terminal_acts_on() {
        for attack in ATTACKS {
            let shown = escape(attack);
            assert!(first_unsafe(&shown).is_none(), "{attack:?} -> {shown:?}");
            let shown = escape_multiline(attack);
            assert!(shown.chars().all(|c| !is_unsafe(c) || c == '\n' || c == '\t'), "{attack:?} -> {shown:?}");
            let shown = csv_cell(attack);
            assert!(first_unsafe(&shown).is_none(), "{attack:?} -> {shown:?}");
        }
    }

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn error_chains_show_each_cause_once() {
        let repeated = Layer("cannot read x.wasm: No such file", Some(Box::new(Layer("No such file", None))));
        assert_eq!(error_chain(&repeated), "cannot read x.wasm: No such file");
        let hidden = Layer(
            "error sending request",
            Some(Box::new(Layer("client error (Connect)", Some(Box::new(Layer("dns error: no such host", None)))))),
        );
        assert_eq!(error_chain(&hidden), "error sending request: client error (Connect): dns error: no such host");
    }

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for plain in ["notes/2024-05.md", "Grüße, 東京", "https://example.com/a?b=c", "emoji 🎉"] {
            assert!(matches!(escape(plain), Cow::Borrowed(_)), "{plain}");
            assert_eq!(escape(plain), plain);
        }
    }

    #[test]
    fn every_unsafe_character_is_escaped_in_every_form() {
        for c in (0..=0x10ffffu32).filter_map(char::from_u32).filter(|&c| is_unsafe(c)) {
            let s = format!("x{c}y");
            assert!(first_unsafe(&escape(&s)).is_none(), "U+{:04X}", c as u32);
            assert!(first_unsafe(&csv_cell(&s)).is_none(), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn csv_cells_never_start_a_formula() {
        for cell in ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", "＝1", "＠x"] {
            let shown = csv_cell(cell);
            assert!(!shown.starts_with(['=', '+', '-', '@', '\t', '\r', '＝', '＠']), "{cell:?} -> {shown:?}");
        }
    }

    #[test]
    fn escaped_json_decodes_to_the_same_value() {
        let value = serde_json::json!({
            "a": "\u{9b}31m \u{202e}x \u{2028} \u{e0041} plain ünïcode",
            "b": ["\u{1b}[2J", 1, null],
        });
        for printed in [serde_json::to_string(&value).unwrap(), serde_json::to_string_pretty(&value).unwrap()] {
            let safe = escape_json(&printed);
            assert!(first_unsafe(&safe.replace(['\n', ' '], "")).is_none(), "{safe}");
            let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
            assert_eq!(back, value);
        }
    }
}
