//! Layer 1: signatures kept as data and compiled into one `RegexSet`.
//!
//! The embedded set lives in `data/signatures.toml` and is compiled into the binary;
//! a newer file can be loaded at run time with [`SignatureSet::from_file`] (or the
//! `signatures_file` setting) without rebuilding.

use std::path::Path;

use regex::bytes::{RegexSet, RegexSetBuilder};
use regex_automata::{meta, util::syntax, Anchored, Input};
use serde::{Deserialize, Serialize};

use crate::normalize::{View, GAP};
use crate::GuardianError;

/// The signature file compiled into the crate.
pub const EMBEDDED_SIGNATURES: &str = include_str!("../data/signatures.toml");

/// The signature file format this crate reads (`format = 1` in the file, the default).
pub const SIGNATURE_FORMAT: u32 = 1;

/// How severe a signature match is on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Weak evidence; only counts together with other layers.
    Low,
    /// Moderate evidence; flags text only when other evidence agrees.
    Medium,
    /// Strong evidence; makes the text at least suspicious on its own.
    High,
    /// Unambiguous attack; makes the text malicious on its own.
    Critical,
}

impl Severity {
    /// The risk (0-1) one match of this severity contributes to the signature layer.
    pub fn risk(self) -> f64 {
        match self {
            Severity::Low => 0.15,
            Severity::Medium => 0.4,
            Severity::High => 0.75,
            Severity::Critical => 1.0,
        }
    }

    /// Lower-case name, as written in signature files.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which rendering of the text a signature is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureView {
    /// The normalized text (and its de-obfuscated variant).
    #[default]
    Normalized,
    /// Letter-spaced runs with every separator removed (`i g n o r e` → `ignore`).
    Squeezed,
}

/// One signature: an attack pattern with its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// Stable identifier, e.g. `IO-001`.
    pub id: String,
    /// Attack family, e.g. `instruction-override` or `data-exfiltration`.
    pub category: String,
    /// Severity of a match.
    pub severity: Severity,
    /// One-line human description.
    pub description: String,
    /// `regex` pattern over lower-cased normalized text (byte mode, ASCII classes).
    pub pattern: String,
    /// Which rendering of the text the pattern is matched against.
    #[serde(default)]
    pub view: SignatureView,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    #[serde(default = "default_format")]
    format: u32,
    version: u32,
    #[serde(rename = "signature", default)]
    signatures: Vec<Signature>,
}

fn default_format() -> u32 {
    SIGNATURE_FORMAT
}

/// A match of one signature, located in the original text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawHit {
    pub index: usize,
    pub start: usize,
    pub end: usize,
}

/// Which signatures earlier chunks of a long text have matched in their cores, shared
/// by the chunks scanned in parallel (see `chunks` in the crate root).
///
/// The merge keeps each signature's match from the earliest chunk that has one, so a
/// chunk need not look for a signature an earlier chunk has found: whatever it found
/// would be dropped. Skipping depends on timing; the merged result does not.
#[derive(Debug)]
pub(crate) struct Earlier<'a> {
    /// This chunk's position in the text.
    pub chunk: u32,
    /// This chunk's core, in the offsets of the text it scans: only a match starting
    /// there is its own to report.
    pub core: std::ops::Range<usize>,
    /// For each signature, the first chunk known to match it (`u32::MAX`: none yet).
    pub first: &'a [std::sync::atomic::AtomicU32],
}

impl Earlier<'_> {
    fn has(&self, index: usize) -> bool {
        self.first[index].load(std::sync::atomic::Ordering::Relaxed) < self.chunk
    }

    /// Records a hit of this chunk. A chunk's scans report each signature once, its
    /// first hit (the leftmost of the first view that has one, then nothing more), so
    /// a hit recorded here is the one the chunk reports, and the merge keeps it.
    fn record(&self, hit: &RawHit) {
        if self.core.contains(&hit.start) {
            self.first[hit.index].fetch_min(self.chunk, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A compiled, immutable set of signatures.
///
/// ```
/// let set = omni_guardian::SignatureSet::embedded()?;
/// assert!(set.len() >= 79);
/// # Ok::<(), omni_guardian::GuardianError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SignatureSet {
    version: u32,
    signatures: Vec<Signature>,
    normalized_set: RegexSet,
    squeezed_set: RegexSet,
    squeezed_ids: Vec<usize>,
    /// Each pattern on its own, searched anchored at a prefilter candidate to verify it
    /// in time proportional to the match, not the text (the search reads the whole
    /// view as context, so `\b` and `(?m)^` at the start are judged on the byte before
    /// it), and over the text for the few signatures the sets find.
    patterns: Vec<meta::Regex>,
    /// For a pattern with several long bounded gaps, the same pattern with those
    /// gaps unbounded (see [`relaxed_hir`]), tried first at a candidate: it matches
    /// wherever the pattern does, and its automaton is a few states where the
    /// pattern's counts multiply into tens of thousands.
    relaxed: Vec<Option<meta::Regex>>,
    /// Anchor and gate literals of the normalized-view signatures (see [`anchors`]
    /// and [`gate_literals`]); a signature is verified only where one of its anchors
    /// lets a match start and, when it has gates, one of them lies within reach. The
    /// combined `RegexSet` is exact but its lazy DFA thrashes on a hundred patterns
    /// with bounded gaps, so this prefilter is what keeps a scan in microseconds.
    /// Each hit reports what it means for one signature.
    prefilter: Prefilter<Use>,
    /// Whether each signature has gate literals.
    gated: Vec<bool>,
    /// Punctuation every match of each pattern holds, in order (see
    /// [`required_steps`]).
    required: Vec<Vec<Vec<u8>>>,
    /// How long a match of each pattern can be in normalized text.
    reach: Vec<usize>,
    /// Normalized-view signatures without usable anchors: each searched on its own
    /// when there are few, after a pass of them as one set when there are many.
    unanchored_set: RegexSet,
    unanchored_ids: Vec<usize>,
}

/// Longest signature match: a match must fit in this many bytes (longer ones, which
/// only unbounded repetitions over long whitespace could produce, are not matches).
/// Prefilter hits are verified within a window of this size.
pub(crate) const MAX_MATCH_BYTES: usize = 1024;

/// Up to this many signatures without anchors are searched one by one rather than
/// first as a set (see [`SignatureSet::scan`]).
const UNANCHORED_ALONE: usize = 4;

/// Prefilter literals are cut to this many bytes.
const PREFIX_BYTES: usize = 8;

/// Context searched on each side of a change by [`SignatureSet::scan_view_changes`]:
/// a match touching the change fits, and so does its verification window.
pub(crate) const CONTEXT_BYTES: usize = 2 * MAX_MATCH_BYTES + 2;

/// What a pattern asserts before its first byte, read off its leading assertion.
///
/// Most prefilter hits of a line-start signature fall in the middle of a line (the
/// `>` of an HTML tag, the `#` of a comment), and some hits of a `\b` signature fall
/// inside a longer word. The assertion costs one byte load to check where the
/// anchored search costs a few hundred instructions; a hit that fails it cannot start
/// a match, so dropping it changes no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// No assertion the prefilter can check.
    Any,
    /// `\A`: the start of the text.
    Text,
    /// `(?m)^`: the start of a line.
    Line,
    /// `\b` (ASCII): a word boundary.
    WordBoundary,
}

impl Start {
    /// The assertion every match of `hir` starts with.
    fn of_hir(hir: &regex_syntax::hir::Hir) -> Self {
        use regex_syntax::hir::{HirKind, Look};
        match hir.kind() {
            HirKind::Look(Look::Start) => Start::Text,
            HirKind::Look(Look::StartLF) => Start::Line,
            HirKind::Look(Look::WordAscii) => Start::WordBoundary,
            HirKind::Capture(c) => Self::of_hir(&c.sub),
            HirKind::Concat(items) => items.first().map_or(Start::Any, Self::of_hir),
            HirKind::Alternation(alts) => {
                let first = alts.first().map_or(Start::Any, Self::of_hir);
                if alts.iter().all(|a| Self::of_hir(a) == first) {
                    first
                } else {
                    Start::Any
                }
            }
            _ => Start::Any,
        }
    }

    /// Whether the assertion holds at byte `p` of `hay`.
    fn holds(self, hay: &[u8], p: usize) -> bool {
        // `\w` of a byte-mode pattern without Unicode.
        let word = |i: usize| hay.get(i).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        match self {
            Start::Any => true,
            Start::Text => p == 0,
            Start::Line => p == 0 || hay[p - 1] == b'\n',
            Start::WordBoundary => (p > 0 && word(p - 1)) != word(p),
        }
    }
}

/// A prefilter literal of one signature: every match of the signature holds one of
/// its literals, starting between `back.0` and `back.1` bytes after the match start.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Anchor {
    literal: Vec<u8>,
    back: (usize, usize),
}

/// How far after a match start a literal may be anchored: the head before it must
/// be short and bounded (an identifier before `=`, a label before `:`), so a hit
/// costs a few anchored searches, one per possible start.
const MAX_ANCHOR_BACK: usize = 16;

/// The prefilter anchors of a pattern, or `None` when it has no selective ones.
///
/// A pattern is anchored on its prefix literals when it has selective ones. When it
/// has not (it starts with a class, like an identifier `[a-z]\w{0,5}`), its leading
/// items are skipped while their length stays bounded, and the first rest that has
/// selective prefix literals anchors it: a match then starts at most that bounded
/// length before one of them. An alternation is anchored branch by branch.
fn anchors(hir: &regex_syntax::hir::Hir) -> Option<Vec<Anchor>> {
    let mut out = anchors_of(hir)?;
    out.sort_unstable_by(|x, y| (&x.literal, x.back).cmp(&(&y.literal, y.back)));
    out.dedup();
    Some(out)
}

/// A pattern as it meets normalized text, where every run of whitespace is one of the
/// shapes of `GAP`: `\s+` is exactly that there. Read this way, a pattern's literals
/// span whitespace (the six-byte class would otherwise multiply them until the
/// extractor gives up and keeps only a common first word) and its length is bounded
/// wherever its repetitions are.
fn normalized_hir(pattern: &str) -> Option<regex_syntax::hir::Hir> {
    let simplified = pattern.replace("\\s+", GAP).replace("\\s*", &format!("{GAP}?")).replace("\\s", "[ \\n]");
    regex_syntax::ParserBuilder::new().unicode(false).utf8(false).build().parse(&simplified).ok()
}

/// Bounded repetitions longer than this are gaps (see [`relaxed_hir`]).
const LONG_GAP: u32 = 16;

/// Fewest long gaps that make a pattern worth relaxing (see [`relaxed_hir`]).
const RELAXED_GAPS: usize = 2;

/// `pattern` with every repetition of more than [`LONG_GAP`] unbounded, when it has at
/// least [`RELAXED_GAPS`] of them; `None` otherwise.
///
/// A lazy DFA tracks each gap's count, and with several gaps in a row it tracks every
/// combination of counts that could still lead to a match: such a pattern, verified
/// at a few hundred candidates (every `x = "..."` of a web page, say), visits a new
/// state at nearly every byte, and each costs a cache miss or a determinization.
/// Without the counts the automaton is small and stays in cache. Unbounding a
/// repetition only adds matches, so a candidate where the relaxed pattern fails, the
/// usual case, cannot match, and the pattern itself runs only where it passes.
fn relaxed_hir(pattern: &str) -> Option<regex_syntax::hir::Hir> {
    use regex_syntax::hir::{Capture, Hir, HirKind, Repetition};
    fn relax(hir: &Hir, gaps: &mut usize) -> Hir {
        match hir.kind() {
            HirKind::Repetition(r) => {
                let long = r.max.is_some_and(|m| m > LONG_GAP);
                *gaps += usize::from(long);
                Hir::repetition(Repetition {
                    min: r.min,
                    max: if long { None } else { r.max },
                    greedy: r.greedy,
                    sub: Box::new(relax(&r.sub, gaps)),
                })
            }
            HirKind::Capture(c) => {
                Hir::capture(Capture { index: c.index, name: c.name.clone(), sub: Box::new(relax(&c.sub, gaps)) })
            }
            HirKind::Concat(items) => Hir::concat(items.iter().map(|h| relax(h, gaps)).collect()),
            HirKind::Alternation(alts) => Hir::alternation(alts.iter().map(|h| relax(h, gaps)).collect()),
            _ => hir.clone(),
        }
    }
    let hir = regex_syntax::ParserBuilder::new().unicode(false).utf8(false).build().parse(pattern).ok()?;
    let mut gaps = 0;
    let relaxed = relax(&hir, &mut gaps);
    (gaps >= RELAXED_GAPS).then_some(relaxed)
}

/// Punctuation every match of `hir` holds, in the order it comes: the `=`, quotes,
/// `=`, quotes and `+` of "a = '...' b = '...' a + b". Each step is one to three bytes
/// (a literal's punctuation byte, or a class like `["']`). A candidate whose reach
/// lacks the steps in order cannot match, which a few `memchr` calls tell far sooner
/// than the search: most assignments in code are not an attack.
fn required_steps(hir: &regex_syntax::hir::Hir) -> Vec<Vec<u8>> {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Literal(lit) => lit.0.iter().filter(|b| b.is_ascii_punctuation()).map(|&b| vec![b]).collect(),
        HirKind::Class(Class::Bytes(class)) => {
            let bytes: Vec<u8> = class.iter().flat_map(|r| r.start()..=r.end()).take(4).collect();
            if bytes.len() <= 3 && bytes.iter().all(u8::is_ascii_punctuation) {
                vec![bytes]
            } else {
                Vec::new()
            }
        }
        HirKind::Capture(c) => required_steps(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => required_steps(&r.sub),
        HirKind::Concat(items) => items.iter().flat_map(required_steps).collect(),
        HirKind::Alternation(alts) => {
            // Only steps every branch takes alike are certain.
            let mut branches = alts.iter().map(required_steps);
            let first = branches.next().unwrap_or_default();
            if branches.all(|b| b == first) {
                first
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

/// Whether `hay` holds one byte of each step, in order.
fn takes_steps(steps: &[Vec<u8>], hay: &[u8]) -> bool {
    let mut at = 0;
    for step in steps {
        let rest = &hay[at..];
        let found = match step[..] {
            [a] => memchr::memchr(a, rest),
            [a, b] => memchr::memchr2(a, b, rest),
            [a, b, c] => memchr::memchr3(a, b, c, rest),
            // `required_steps` makes none other; such a step would test nothing.
            _ => continue,
        };
        match found {
            Some(i) => at += i + 1,
            None => return false,
        }
    }
    true
}

fn anchors_of(hir: &regex_syntax::hir::Hir) -> Option<Vec<Anchor>> {
    use regex_syntax::hir::HirKind;
    let head = || match hir.kind() {
        HirKind::Concat(items) => best_head(items),
        _ => None,
    };
    if let Some(lits) = prefix_literals(hir) {
        // A byte or two of punctuation (the `>` or `(` of an optional list marker)
        // hits everywhere in code and markup: longer literals after a bounded head
        // anchor better.
        let shortest = lits.iter().map(Vec::len).min().unwrap_or(0);
        return match (shortest < 3).then(head).flatten() {
            Some(((longer, _), anchors)) if longer > shortest => Some(anchors),
            _ => Some(anchored(lits, (0, 0))),
        };
    }
    match hir.kind() {
        HirKind::Capture(c) => anchors_of(&c.sub),
        HirKind::Alternation(alts) => {
            let mut out = Vec::new();
            for alt in alts {
                out.extend(anchors_of(alt)?);
            }
            Some(out)
        }
        _ => head().map(|(_, anchors)| anchors),
    }
}

/// How good a set of prefilter literals is: its shortest literal's length (or another
/// measure of the weakest), then fewer literals. Larger is better.
type LiteralScore = (usize, std::cmp::Reverse<usize>);

/// Anchors on `literals`, each `back` bytes after a match start (`(0, 0)`: at it).
fn anchored(literals: Vec<Vec<u8>>, back: (usize, usize)) -> Vec<Anchor> {
    literals.into_iter().map(|literal| Anchor { literal, back }).collect()
}

/// Of the heads of `items` short enough (see [`MAX_ANCHOR_BACK`]), the one whose rest
/// has the longest shortest literal (a lone quote would hit everywhere), then the
/// fewest literals (a rest that starts with whitespace has one per whitespace shape);
/// with its score.
fn best_head(items: &[regex_syntax::hir::Hir]) -> Option<(LiteralScore, Vec<Anchor>)> {
    use regex_syntax::hir::Hir;
    let mut best: Option<(_, Vec<Anchor>)> = None;
    for k in 1..items.len() {
        let head = Hir::concat(items[..k].to_vec());
        let Some(max) = head.properties().maximum_len().filter(|&m| m <= MAX_ANCHOR_BACK) else {
            break;
        };
        let min = head.properties().minimum_len().unwrap_or(0);
        if prefix_literals(&items[k]).is_none() {
            continue;
        }
        if let Some(lits) = prefix_literals(&Hir::concat(items[k..].to_vec())) {
            let shortest = lits.iter().map(Vec::len).min().unwrap_or(0);
            let score = (shortest, std::cmp::Reverse(lits.len()));
            if best.as_ref().is_none_or(|(b, _)| score > *b) {
                best = Some((score, anchored(lits, (min, max))));
            }
        }
    }
    best
}

/// Most literals a gate may have: each is one more prefilter literal.
const MAX_GATE_LITERALS: usize = 256;

/// Literals every match holds past its start, when some are more selective than the
/// anchors: "reveal ... [^.\n]{0,40}? system prompt" is anchored on "reveal", which
/// ordinary text says often; its gate is "system prompt" and the other second halves,
/// which it rarely says within reach.
///
/// A gate is the prefix literals of the rest of the pattern after one of its items
/// (so they start within the match): of those sets, the one whose weakest literal is
/// strongest (see [`strength`]), then the one with fewest literals. A set the
/// `anchors` already hold gates nothing and is not one. An alternation, also one
/// behind a factored-out `\b`, is gated by the union of its branches' gates, when
/// each has one.
fn gate_literals(hir: &regex_syntax::hir::Hir, anchors: &[Anchor]) -> Option<Vec<Vec<u8>>> {
    use regex_syntax::hir::{Hir, HirKind};
    let items = match hir.kind() {
        HirKind::Capture(c) => return gate_literals(&c.sub, anchors),
        HirKind::Alternation(alts) => {
            let mut out = Vec::new();
            for alt in alts {
                out.extend(gate_literals(alt, anchors)?);
            }
            out.sort_unstable();
            out.dedup();
            return (out.len() <= MAX_GATE_LITERALS).then_some(out);
        }
        HirKind::Concat(items) => items,
        _ => return None,
    };
    // An alternation behind a factored-out `\b`.
    let consuming: Vec<&Hir> = items.iter().filter(|h| !matches!(h.kind(), HirKind::Look(_))).collect();
    if let [only] = consuming[..] {
        return gate_literals(only, anchors);
    }
    // Reversed, so that of sets that score alike the first wins (`max_by_key` keeps
    // the last).
    (1..items.len())
        .rev()
        .filter_map(|k| {
            // The rest can only have selective literals when its first item has some;
            // testing that first spares cloning and extracting most rests.
            prefix_literals(&items[k])?;
            let lits = prefix_literals(&Hir::concat(items[k..].to_vec()))?;
            let weakest = lits.iter().map(|l| strength(l)).min().unwrap_or(0);
            let useful = weakest >= 2
                && lits.len() <= MAX_GATE_LITERALS
                && !lits.iter().all(|l| anchors.iter().any(|a| a.literal == *l));
            useful.then_some(((weakest, std::cmp::Reverse(lits.len())), lits))
        })
        .max_by_key(|(score, _)| *score)
        .map(|(_, lits)| lits)
}

/// Words too common to gate anything: a literal that holds only these (and short
/// cut-off pieces) is found within reach of nearly every anchor.
const COMMON_WORDS: &[&[u8]] = &[
    b"a", b"all", b"an", b"and", b"any", b"are", b"as", b"at", b"be", b"by", b"do", b"for", b"i", b"if", b"in", b"is",
    b"it", b"its", b"me", b"my", b"new", b"no", b"not", b"of", b"on", b"or", b"so", b"that", b"the", b"this", b"to",
    b"was", b"we", b"were", b"with", b"you", b"your",
];

/// How selective a literal is, roughly: the length of its longest word that is not
/// one of [`COMMON_WORDS`].
fn strength(literal: &[u8]) -> usize {
    literal
        .split(|b| !b.is_ascii_alphanumeric())
        .filter(|w| !COMMON_WORDS.contains(w))
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0)
}

/// Selective prefix literals of a (whitespace-simplified) pattern.
fn prefix_literals(hir: &regex_syntax::hir::Hir) -> Option<Vec<Vec<u8>>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let mut ex = Extractor::new();
    ex.kind(ExtractKind::Prefix).limit_class(8).limit_repeat(4).limit_literal_len(24).limit_total(5000);
    let mut seq = ex.extract(hir);
    // Short literals keep the prefilter automaton small; the anchored verification
    // does the rest.
    seq.keep_first_bytes(PREFIX_BYTES);
    let lits = seq.literals()?;
    // A short literal is selective only when it holds punctuation (`<`, `![`, `{{`,
    // a line break before `#`): "ai" or "to" would hit every few words.
    let selective = |l: &[u8]| l.len() >= 3 || l.iter().any(|b| !b.is_ascii_alphanumeric() && *b != b' ');
    if lits.is_empty() || !lits.iter().all(|l| selective(l.as_bytes())) {
        return None;
    }
    // A word of five bytes or more is selective on its own: cutting the literal
    // before the whitespace after it merges the five shapes of that whitespace (and
    // the next word's first letters) into one literal.
    let mut out: Vec<Vec<u8>> = lits
        .iter()
        .map(|l| {
            let l = l.as_bytes();
            match l.iter().position(|&b| b == b' ' || b == b'\n') {
                Some(w) if w >= 5 => l[..w].to_vec(),
                _ => l.to_vec(),
            }
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// A position of signature `index` reported by prefilter walk `walk`, packed as
/// `(index * WALKS + walk) << 40 | position`, one integer to push per prefilter hit:
/// a view is far below a terabyte and a set far below 2^20 signatures.
fn pack(index: usize, walk: usize, position: usize) -> u64 {
    (((index * WALKS + walk) as u64) << 40) | position as u64
}

/// The `(index * WALKS + walk, position)` of a [`pack`] value.
fn unpack(c: u64) -> (usize, usize) {
    ((c >> 40) as usize, (c & ((1 << 40) - 1)) as usize)
}

/// Positions grouped by signature, each group ascending (repeats kept), for the
/// signatures that have any.
///
/// Pairs are grouped by signature and, within a signature, by the prefilter walk that
/// reported them, keeping each walk's order: by a counting pass when there are many,
/// by sorting the packed pairs when there are few (a short text would pay more for
/// the counts of every signature than for the sort). A walk reports literals in the
/// order they end, and a start is a literal's length and its anchor's short head
/// before that, so a group is in order but for neighbours a few bytes apart, and an
/// insertion sort puts it in order in about one pass.
struct Buckets {
    positions: Vec<usize>,
    /// `(signature, range of its positions)`, by signature.
    groups: Vec<(usize, std::ops::Range<usize>)>,
}

/// Up to this many pairs are grouped by a sort rather than a counting pass.
const FEW_PAIRS: usize = 128;

impl Buckets {
    /// The [`pack`]ed positions of `signatures` signatures, grouped.
    fn of(pairs: &[u64], signatures: usize) -> Self {
        let mut positions = Vec::with_capacity(pairs.len());
        let mut groups: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
        if pairs.len() <= FEW_PAIRS {
            let mut sorted = pairs.to_vec();
            sorted.sort_unstable();
            for c in sorted {
                let (key, p) = unpack(c);
                let index = key / WALKS;
                match groups.last_mut() {
                    Some((i, range)) if *i == index => range.end += 1,
                    _ => groups.push((index, positions.len()..positions.len() + 1)),
                }
                positions.push(p);
            }
        } else {
            let keys = signatures * WALKS;
            let mut counts = vec![0usize; keys + 1];
            for &c in pairs {
                counts[unpack(c).0 + 1] += 1;
            }
            for k in 0..keys {
                counts[k + 1] += counts[k];
            }
            let mut fill = counts.clone();
            positions.resize(pairs.len(), 0);
            for &c in pairs {
                let (key, p) = unpack(c);
                positions[fill[key]] = p;
                fill[key] += 1;
            }
            for index in 0..signatures {
                let range = counts[index * WALKS]..counts[(index + 1) * WALKS];
                if !range.is_empty() {
                    groups.push((index, range));
                }
            }
        }
        for (_, range) in &groups {
            sort_nearly_sorted(&mut positions[range.clone()]);
        }
        Self { positions, groups }
    }

    /// Each signature that has positions, with its positions, ascending.
    fn iter(&self) -> impl Iterator<Item = (usize, &[usize])> {
        self.groups.iter().map(|(index, range)| (*index, &self.positions[range.clone()]))
    }

    /// The positions of signature `index`, ascending.
    fn of_signature(&self, index: usize) -> &[usize] {
        match self.groups.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(k) => &self.positions[self.groups[k].1.clone()],
            Err(_) => &[],
        }
    }
}

/// Sorts `v`, which is in order but for near neighbours, by insertion; when the moves
/// add up to more than a few per element it sorts the rest the usual way, so that no
/// input costs much more than a sort.
fn sort_nearly_sorted(v: &mut [usize]) {
    let mut budget = 8 * v.len() + 64;
    for i in 1..v.len() {
        let x = v[i];
        let mut j = i;
        while j > 0 && v[j - 1] > x {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = x;
        budget = budget.saturating_sub(i - j);
        if budget == 0 {
            v.sort_unstable();
            return;
        }
    }
}

/// The literal prefilter: an Aho-Corasick automaton over every anchor and gate
/// literal, kept as a DFA table laid out for the walk and walked over several
/// stretches of the text at once.
///
/// A walk is a chain of dependent loads (each state's transitions decide the next),
/// so what it costs is where the transitions it reads live. The table keeps them in
/// the core's first-level cache as far as it can (see [`Table`]): the transitions of a
/// state on the bytes ordinary text is mostly made of (see [`HOT_BYTES`]) sit in one
/// 64-byte line when state ids fit in 16 bits, where a row ordered by byte value
/// spreads a state's letters over two or three; those lines are side by side for all
/// states, where rows of a few hundred bytes would crowd the hot lines into a few of
/// the cache's sets; and the match states come first, so one comparison tells a hit.
/// Walks over different stretches do not depend on each other: interleaved, their
/// loads are in flight together.
#[derive(Debug, Clone)]
struct Prefilter<P> {
    /// Where each byte's transitions are: state `s` goes on byte `b` to
    /// `table[slot[b].line + s].0[slot[b].lane]`.
    slot: Box<[Slot; 256]>,
    table: Table,
    /// States `0..matching` are the match states.
    matching: usize,
    /// The state a walk starts in (the root of the trie).
    start: usize,
    /// The `(length, payload)` of every literal that ends at each match state `s`:
    /// `ends[ends_of[s]..ends_of[s + 1]]`. A hit reads what it means right there.
    ends: Vec<(u32, P)>,
    ends_of: Vec<u32>,
    /// Longest literal: a walk starts this many bytes less one before its stretch, so
    /// it sees every literal that ends there whole.
    max_len: usize,
}

/// Where the transitions on one byte are kept (see [`Prefilter`]).
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The first line of the byte's column of lines, one line per state.
    line: u32,
    /// The byte's entry in a line.
    lane: u8,
}

/// The transition table, by columns of [`LINE`] classes: column `k` is one line per
/// state, and holds the transitions on classes `k * LINE..(k + 1) * LINE`. The first
/// column, the hot bytes' one, is one stretch of memory in which the states a walk
/// is in most (the shallow ones, numbered together) sit side by side. 16-bit state
/// ids when there are few enough states, 32-bit ones otherwise.
#[derive(Debug, Clone)]
enum Table {
    Narrow(Vec<Line<u16>>),
    Wide(Vec<Line<u32>>),
}

/// Entries per line of a row.
const LINE: usize = 32;

/// [`LINE`] entries of a row, aligned so that a narrow line is one cache line.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
struct Line<W>([W; LINE]);

/// A state id as the table stores it.
trait StateWord: Copy + Default {
    /// `state`, which the table's width was chosen to hold.
    fn of(state: usize) -> Self;
    fn state(self) -> usize;
}

impl StateWord for u16 {
    fn of(state: usize) -> Self {
        u16::try_from(state).unwrap_or(u16::MAX)
    }
    #[inline(always)]
    fn state(self) -> usize {
        usize::from(self)
    }
}

impl StateWord for u32 {
    fn of(state: usize) -> Self {
        u32::try_from(state).unwrap_or(u32::MAX)
    }
    #[inline(always)]
    fn state(self) -> usize {
        self as usize
    }
}

/// The bytes normalized text is mostly made of, most frequent first: a row's first
/// line holds them (with one class for every byte no literal has, when some byte is
/// in none).
const HOT_BYTES: &[u8; 31] = b" etaoinsrhldcumfpgwybvkxjqz\n.,-";

/// Most automaton states a prefilter may have (about twenty times what the embedded
/// signatures need); building one takes four bytes per state and class.
const MAX_PREFILTER_STATES: usize = 1 << 19;

/// How many walks run side by side over a long text.
const WALKS: usize = 4;

/// The literals of a signature set would make a prefilter of more than
/// [`MAX_PREFILTER_STATES`] states.
#[derive(Debug)]
struct PrefilterTooLarge;

impl<P: Copy> Prefilter<P> {
    /// The prefilter of `literals`, each with the payload its hits report (an empty
    /// literal is never reported; a literal given twice reports both payloads).
    fn new(literals: &[(Vec<u8>, P)]) -> Result<Self, PrefilterTooLarge> {
        Self::build(literals, false)
    }

    /// Like [`Prefilter::new`], with 32-bit state ids however few states there are.
    fn build(literals: &[(Vec<u8>, P)], wide: bool) -> Result<Self, PrefilterTooLarge> {
        let mut seen = [false; 256];
        for &b in literals.iter().flat_map(|(l, _)| l) {
            seen[usize::from(b)] = true;
        }
        // Classes: the bytes no literal holds (all alike to the automaton), the hot
        // bytes, then the other literal bytes.
        let mut class = [0u8; 256];
        let mut classes = usize::from(seen.iter().any(|s| !s));
        let mut assigned = [false; 256];
        let order = HOT_BYTES.iter().copied().chain(0..=255u8);
        for b in order {
            let b = usize::from(b);
            if seen[b] && !assigned[b] {
                // At most 256 classes: one per byte, or fewer and one for the rest.
                class[b] = u8::try_from(classes).unwrap_or(u8::MAX);
                assigned[b] = true;
                classes += 1;
            }
        }
        let k = classes.max(1);

        // The trie: `goto[s * k + c]` is the child of `s` on class `c`, 0 for none
        // (the root, state 0, is nobody's child).
        let mut goto: Vec<u32> = vec![0; k];
        let mut own: Vec<Vec<(u32, P)>> = vec![Vec::new()];
        let too_many = |_| PrefilterTooLarge;
        for (literal, payload) in literals {
            if literal.is_empty() {
                continue;
            }
            let mut s = 0;
            for &b in literal {
                let at = s * k + usize::from(class[usize::from(b)]);
                if goto[at] == 0 {
                    if own.len() >= MAX_PREFILTER_STATES {
                        return Err(PrefilterTooLarge);
                    }
                    goto[at] = u32::try_from(own.len()).map_err(too_many)?;
                    goto.resize(goto.len() + k, 0);
                    own.push(Vec::new());
                }
                s = goto[at] as usize;
            }
            own[s].push((u32::try_from(literal.len()).map_err(too_many)?, *payload));
        }

        // Breadth first, each state's failure is shallower and already complete:
        // a missing transition is its failure's, and a state's literals are its own
        // and its failure's.
        let n = own.len();
        let mut fail = vec![0usize; n];
        let mut order = Vec::with_capacity(n);
        let mut out: Vec<Vec<(u32, P)>> = vec![Vec::new(); n];
        order.push(0usize);
        let mut head = 0;
        while let Some(&s) = order.get(head) {
            head += 1;
            let mut ends = std::mem::take(&mut own[s]);
            if s != 0 {
                ends.extend_from_slice(&out[fail[s]]);
            }
            out[s] = ends;
            for c in 0..k {
                let child = goto[s * k + c] as usize;
                if child != 0 {
                    fail[child] = if s == 0 { 0 } else { goto[fail[s] * k + c] as usize };
                    order.push(child);
                } else if s != 0 {
                    goto[s * k + c] = goto[fail[s] * k + c];
                }
            }
        }

        // Match states first, each group in breadth-first order (shallow states,
        // the ones a walk is in most, together).
        let (mut by_new, rest): (Vec<usize>, Vec<usize>) = order.iter().partition(|&&s| !out[s].is_empty());
        let matching = by_new.len();
        by_new.extend(rest);
        let mut renamed = vec![0usize; n];
        for (new, &old) in by_new.iter().enumerate() {
            renamed[old] = new;
        }
        let columns = k.div_ceil(LINE);
        let rows = |fill: &mut dyn FnMut(usize, usize)| {
            for (new, &old) in by_new.iter().enumerate() {
                for c in 0..k {
                    fill((c / LINE * n + new) * LINE + c % LINE, renamed[goto[old * k + c] as usize]);
                }
            }
        };
        let table = if wide || n > usize::from(u16::MAX) + 1 {
            Table::Wide(Self::lines(n * columns, rows))
        } else {
            Table::Narrow(Self::lines(n * columns, rows))
        };
        let mut slot = Box::new([Slot::default(); 256]);
        for (b, s) in slot.iter_mut().enumerate() {
            let c = usize::from(class[b]);
            *s = Slot {
                // At most 8 columns of at most `MAX_PREFILTER_STATES` lines.
                line: u32::try_from(c / LINE * n).map_err(too_many)?,
                lane: u8::try_from(c % LINE).unwrap_or(0),
            };
        }
        let mut ends = Vec::new();
        let mut ends_of = vec![0u32];
        for &old in &by_new[..matching] {
            ends.extend_from_slice(&out[old]);
            ends_of.push(u32::try_from(ends.len()).map_err(too_many)?);
        }
        Ok(Self {
            slot,
            table,
            matching,
            start: renamed[0],
            ends,
            ends_of,
            max_len: literals.iter().map(|(l, _)| l.len()).max().unwrap_or(1).max(1),
        })
    }

    /// `count` lines filled by `rows` (which sets entry `i` of the flattened table).
    fn lines<W: StateWord>(count: usize, rows: impl FnOnce(&mut dyn FnMut(usize, usize))) -> Vec<Line<W>> {
        let mut lines = vec![Line([W::default(); LINE]); count];
        rows(&mut |i, state| lines[i / LINE].0[i % LINE] = W::of(state));
        lines
    }

    /// Calls `hit(payload, start, walk)` for every occurrence of every literal that
    /// starts at or after `from` in `hay` (overlapping occurrences included, as an
    /// overlapping Aho-Corasick search reports them). The text is cut into up to
    /// [`WALKS`] stretches, numbered in text order, and each `walk` reports the
    /// occurrences that end in its stretch, in the order they end; the walks' reports
    /// come interleaved.
    fn each_hit(&self, hay: &[u8], from: usize, hit: impl FnMut(P, usize, usize)) {
        match &self.table {
            Table::Narrow(t) => self.walk(t, hay, from, hit),
            Table::Wide(t) => self.walk(t, hay, from, hit),
        }
    }

    fn walk<W: StateWord>(&self, table: &[Line<W>], hay: &[u8], from: usize, mut hit: impl FnMut(P, usize, usize)) {
        let slot = &*self.slot;
        let next = |s: usize, b: u8| {
            let Slot { line, lane } = slot[usize::from(b)];
            table[line as usize + s].0[usize::from(lane) % LINE].state()
        };
        // An occurrence belongs to the walk whose stretch holds its last byte.
        let n = hay.len().saturating_sub(from);
        let walks = if n >= 64 * WALKS { WALKS } else { 1 };
        let bound = |k: usize| from + n * k / walks;
        let mut state = [self.start; WALKS];
        let mut at = [0usize; WALKS];
        let mut own = [0usize; WALKS];
        let mut end = [0usize; WALKS];
        for k in 0..walks {
            own[k] = bound(k);
            at[k] = own[k].saturating_sub(self.max_len - 1).max(from);
            end[k] = bound(k + 1);
        }
        let matching = self.matching;
        let mut report = |s: usize, i: usize, k: usize| {
            if i < own[k] {
                return;
            }
            let ends = &self.ends[self.ends_of[s] as usize..self.ends_of[s + 1] as usize];
            for &(len, payload) in ends {
                if let Some(q) = (i + 1).checked_sub(len as usize).filter(|&q| q >= from) {
                    hit(payload, q, k);
                }
            }
        };
        // Side by side for as long as every walk has bytes left, then each alone. The
        // four states stay in registers, so their loads are all in flight at once.
        if walks == WALKS {
            let common = (0..WALKS).map(|k| end[k] - at[k]).min().unwrap_or(0);
            let stretch = |k: usize| &hay[at[k]..at[k] + common];
            let (h0, h1, h2, h3) = (stretch(0), stretch(1), stretch(2), stretch(3));
            let [mut s0, mut s1, mut s2, mut s3] = state;
            let bytes = h0.iter().zip(h1).zip(h2).zip(h3);
            for (j, (((&b0, &b1), &b2), &b3)) in bytes.enumerate() {
                s0 = next(s0, b0);
                s1 = next(s1, b1);
                s2 = next(s2, b2);
                s3 = next(s3, b3);
                if s0 < matching {
                    report(s0, at[0] + j, 0);
                }
                if s1 < matching {
                    report(s1, at[1] + j, 1);
                }
                if s2 < matching {
                    report(s2, at[2] + j, 2);
                }
                if s3 < matching {
                    report(s3, at[3] + j, 3);
                }
            }
            state = [s0, s1, s2, s3];
            for a in &mut at {
                *a += common;
            }
        }
        for k in 0..walks {
            for (i, &byte) in hay.iter().enumerate().take(end[k]).skip(at[k]) {
                state[k] = next(state[k], byte);
                if state[k] < matching {
                    report(state[k], i, k);
                }
            }
        }
    }
}

/// What a prefilter hit of one literal means for one signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// The literal gates the signature (see [`gate_literals`]).
    Gate(u32),
    /// The literal anchors the signature: a match starts `min..=max` bytes before
    /// it, where `start` (the pattern's leading assertion) holds; a start where it
    /// fails cannot begin a match and is dropped without a search.
    Anchor { index: u32, min: u16, max: u16, start: Start },
}

/// The prefilter's literals as they are collected: each distinct literal once, with
/// the signatures it anchors and the signatures it gates.
#[derive(Default)]
struct LiteralTable {
    literals: Vec<Vec<u8>>,
    anchors: Vec<Vec<(usize, (usize, usize))>>,
    gates: Vec<Vec<usize>>,
    slots: std::collections::HashMap<Vec<u8>, usize>,
}

impl LiteralTable {
    fn slot(&mut self, literal: Vec<u8>) -> usize {
        if let Some(&k) = self.slots.get(&literal) {
            return k;
        }
        self.slots.insert(literal.clone(), self.literals.len());
        self.literals.push(literal);
        self.anchors.push(Vec::new());
        self.gates.push(Vec::new());
        self.literals.len() - 1
    }

    fn anchor(&mut self, literal: Vec<u8>, index: usize, back: (usize, usize)) {
        let k = self.slot(literal);
        if !self.anchors[k].contains(&(index, back)) {
            self.anchors[k].push((index, back));
        }
    }

    /// Every literal with each of its uses: the prefilter's entries.
    fn uses(&self, starts: &[Start]) -> Vec<(Vec<u8>, Use)> {
        // Fewer than 2^24 signatures, anchors at most `MAX_ANCHOR_BACK` bytes back.
        let narrow = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        let mut out = Vec::new();
        for (k, literal) in self.literals.iter().enumerate() {
            let gates = self.gates[k].iter().map(|&index| Use::Gate(narrow(index)));
            let anchors = self.anchors[k].iter().map(|&(index, (min, max))| Use::Anchor {
                index: narrow(index),
                min: u16::try_from(min).unwrap_or(u16::MAX),
                max: u16::try_from(max).unwrap_or(u16::MAX),
                start: starts[index],
            });
            out.extend(gates.chain(anchors).map(|u| (literal.clone(), u)));
        }
        out
    }

    fn gate(&mut self, literal: Vec<u8>, index: usize) {
        let k = self.slot(literal);
        if !self.gates[k].contains(&index) {
            self.gates[k].push(index);
        }
    }
}

impl SignatureSet {
    /// The signature set embedded at compile time.
    pub fn embedded() -> Result<Self, GuardianError> {
        Self::from_toml_str(EMBEDDED_SIGNATURES, "embedded signatures")
    }

    /// Loads a signature file (TOML, same format as `data/signatures.toml`).
    pub fn from_file(path: &Path) -> Result<Self, GuardianError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| GuardianError::SignatureFileRead { path: path.to_path_buf(), source })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and compiles signatures from TOML text; `origin` names the source in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, GuardianError> {
        let file: SignatureFile = toml::from_str(text)
            .map_err(|e| GuardianError::InvalidSignatures { origin: origin.to_string(), problem: e.to_string() })?;
        if file.format != SIGNATURE_FORMAT {
            return Err(GuardianError::InvalidSignatures {
                origin: origin.to_string(),
                problem: format!("format {} is not supported; this build reads format {SIGNATURE_FORMAT}", file.format),
            });
        }
        Self::new(file.version, file.signatures, origin)
    }

    /// Compiles a list of signatures, checking ids are unique and patterns valid.
    pub fn new(version: u32, signatures: Vec<Signature>, origin: &str) -> Result<Self, GuardianError> {
        let invalid = |problem: String| GuardianError::InvalidSignatures { origin: origin.to_string(), problem };
        if signatures.is_empty() {
            return Err(invalid("no [[signature]] entries; add at least one".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &signatures {
            if s.id.trim().is_empty() || s.description.trim().is_empty() || s.category.trim().is_empty() {
                return Err(invalid(format!("signature {:?} needs a non-empty id, category and description", s.id)));
            }
            if !seen.insert(s.id.as_str()) {
                return Err(invalid(format!("signature id {} appears twice; ids must be unique", s.id)));
            }
        }
        let builder = || {
            let mut b = meta::Regex::builder();
            b.syntax(syntax::Config::new().unicode(false).utf8(false)).configure(
                meta::Config::new().utf8_empty(false).nfa_size_limit(Some(8 << 20)).hybrid_cache_capacity(16 << 20),
            );
            b
        };
        let mut patterns = Vec::with_capacity(signatures.len());
        let mut relaxed = Vec::with_capacity(signatures.len());
        for s in &signatures {
            let re = builder()
                .build(&s.pattern)
                .map_err(|e| invalid(format!("signature {} has an invalid pattern: {e}", s.id)))?;
            patterns.push(re);
            relaxed.push(relaxed_hir(&s.pattern).and_then(|hir| builder().build_from_hir(&hir).ok()));
        }
        let build_set = |ids: &[usize]| -> Result<RegexSet, GuardianError> {
            RegexSetBuilder::new(ids.iter().map(|&i| signatures[i].pattern.as_str()))
                .unicode(false)
                .size_limit(64 << 20)
                .dfa_size_limit(64 << 20)
                .build()
                .map_err(|e| invalid(format!("signature set does not compile: {e}")))
        };
        let ids_of = |view: SignatureView| -> Vec<usize> {
            signatures.iter().enumerate().filter(|(_, s)| s.view == view).map(|(i, _)| i).collect()
        };
        let normalized_ids = ids_of(SignatureView::Normalized);
        let squeezed_ids = ids_of(SignatureView::Squeezed);
        let normalized_set = build_set(&normalized_ids)?;
        let squeezed_set = build_set(&squeezed_ids)?;

        let mut table = LiteralTable::default();
        let mut unanchored_ids = Vec::new();
        let mut gated = vec![false; signatures.len()];
        // Each pattern as it meets normalized text: its anchors, gates, required
        // punctuation, reach and leading assertion are all read off this.
        let hirs: Vec<_> = signatures.iter().map(|s| normalized_hir(&s.pattern)).collect();
        for &i in &normalized_ids {
            let hir = hirs[i].as_ref();
            let Some(found) = hir.and_then(anchors) else {
                unanchored_ids.push(i);
                continue;
            };
            let gates = hir.and_then(|h| gate_literals(h, &found));
            for Anchor { literal, back } in found {
                table.anchor(literal, i, back);
            }
            if let Some(gates) = gates {
                gated[i] = true;
                for literal in gates {
                    table.gate(literal, i);
                }
            }
        }
        let starts: Vec<Start> = hirs.iter().map(|h| h.as_ref().map_or(Start::Any, Start::of_hir)).collect();
        let uses = table.uses(&starts);
        let prefilter = Prefilter::new(&uses).map_err(|PrefilterTooLarge| {
            invalid(format!(
                "its prefilter literals need more than {MAX_PREFILTER_STATES} automaton \
                 states; shorten or split the alternations of the largest patterns"
            ))
        })?;
        let unanchored_set = build_set(&unanchored_ids)?;
        let required = hirs.iter().map(|h| h.as_ref().map(required_steps).unwrap_or_default()).collect();
        let reach = hirs
            .iter()
            .map(|h| {
                h.as_ref()
                    .and_then(|h| h.properties().maximum_len())
                    .map_or(MAX_MATCH_BYTES, |m| m.min(MAX_MATCH_BYTES))
            })
            .collect();
        Ok(Self {
            version,
            signatures,
            normalized_set,
            squeezed_set,
            squeezed_ids,
            patterns,
            relaxed,
            prefilter,
            gated,
            required,
            reach,
            unanchored_set,
            unanchored_ids,
        })
    }

    /// Version number declared by the signature file.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Number of signatures.
    pub fn len(&self) -> usize {
        self.signatures.len()
    }

    /// Whether the set is empty (never true for a compiled set).
    pub fn is_empty(&self) -> bool {
        self.signatures.is_empty()
    }

    /// All signatures, in file order.
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// Whether any normalized-view signature matches `bytes` (used as a benchmark floor
    /// and a fast pre-check).
    pub fn is_match_raw(&self, bytes: &[u8]) -> bool {
        self.normalized_set.is_match(bytes)
    }

    /// How many normalized-view signatures match `bytes`, matched as one `RegexSet`
    /// with no normalization. Unlike [`SignatureSet::is_match_raw`] it reads the whole
    /// text, which makes it the floor a scan is measured against.
    pub fn count_matching_raw(&self, bytes: &[u8]) -> usize {
        self.normalized_set.matches(bytes).len()
    }

    /// Matches a view and appends hits located in the view's original text.
    pub(crate) fn scan_view(
        &self,
        view: &View,
        which: SignatureView,
        earlier: Option<&Earlier>,
        out: &mut Vec<RawHit>,
    ) {
        self.scan(view, which, 0..view.bytes.len(), None, earlier, out);
    }

    /// Matches `view` only where it differs from a view already scanned with
    /// [`SignatureSet::scan_view`]: `changes` are the sorted differing ranges, and
    /// outside them `view` repeats the scanned view byte for byte.
    ///
    /// Appends exactly the hits a full `scan_view` of `view` would append after the
    /// other view's: a signature whose match neither overlaps nor touches a change
    /// matched the other view already (same bytes, same neighbours) and is skipped
    /// there, so the signatures still missing can only match across a change, within
    /// [`MAX_MATCH_BYTES`] of it. Each change is searched with [`CONTEXT_BYTES`] of
    /// context either side, which keeps every such match and its verification window
    /// whole, and only matches touching a change are kept, which drops the matches the
    /// cut ends of a context could fake.
    pub(crate) fn scan_view_changes(
        &self,
        view: &View,
        changes: &[(usize, usize)],
        earlier: Option<&Earlier>,
        out: &mut Vec<RawHit>,
    ) {
        let n = view.bytes.len();
        let mut regions: Vec<(usize, usize)> = Vec::new();
        for &(s, e) in changes {
            let s = s.saturating_sub(CONTEXT_BYTES);
            let e = (e + CONTEXT_BYTES).min(n);
            match regions.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => regions.push((s, e)),
            }
        }
        for (s, e) in regions {
            self.scan(view, SignatureView::Normalized, s..e, Some(changes), earlier, out);
        }
    }

    /// Matches `view.bytes[range]` (context outside the range still decides word
    /// boundaries at its start). With `changes`, keeps only matches touching one.
    fn scan(
        &self,
        view: &View,
        which: SignatureView,
        range: std::ops::Range<usize>,
        changes: Option<&[(usize, usize)]>,
        earlier: Option<&Earlier>,
        out: &mut Vec<RawHit>,
    ) {
        let hay = &view.bytes[..range.end];
        let skip = |index: usize| earlier.is_some_and(|e| e.has(index));
        let from = range.start;
        // Whether `[s, e)` overlaps or is adjacent to a change.
        let keep = |s: usize, e: usize| match changes {
            None => true,
            Some(ch) => {
                let k = ch.partition_point(|c| c.1 + 1 < s);
                ch.get(k).is_some_and(|c| c.0 <= e)
            }
        };
        // The signatures of `set` (whose patterns are those of `ids`) that match.
        let matching = |set: &RegexSet, ids: &[usize]| -> Vec<usize> {
            set.matches_at(hay, from).iter().map(|local| ids[local]).collect()
        };
        let searched: Vec<usize> = match which {
            SignatureView::Squeezed => matching(&self.squeezed_set, &self.squeezed_ids),
            SignatureView::Normalized => {
                let mut found: Vec<bool> = (0..self.signatures.len()).map(skip).collect();
                for h in out.iter() {
                    found[h.index] = true;
                }
                let (candidates, gates) = self.candidates(hay, from, &found);
                let hits = self.verify(view, hay, &candidates, &gates, from, keep);
                if let Some(e) = earlier {
                    hits.iter().for_each(|h| e.record(h));
                }
                out.extend(hits);
                // A few are searched on their own: each pattern's engine then looks
                // for its rarest literal (an inner one, say) first, where the set's
                // prefilter stops at every common word one of them starts with.
                if self.unanchored_ids.len() <= UNANCHORED_ALONE {
                    self.unanchored_ids.clone()
                } else {
                    matching(&self.unanchored_set, &self.unanchored_ids)
                }
            }
        };
        for index in searched {
            if skip(index) || out.iter().any(|h| h.index == index) {
                continue;
            }
            let re = &self.patterns[index];
            let mut at = from;
            let mut found = None;
            while let Some(m) = re.search(&Input::new(hay).range(at..)) {
                if m.len() <= MAX_MATCH_BYTES && keep(m.start(), m.end()) {
                    found = Some(m);
                    break;
                }
                at = m.end().max(m.start() + 1);
                if at > hay.len() {
                    break;
                }
            }
            if let Some(m) = found {
                let (start, end) = view.original_span(m.start(), m.end());
                let hit = RawHit { index, start, end };
                if let Some(e) = earlier {
                    e.record(&hit);
                }
                out.push(hit);
            }
        }
    }

    /// Where a match may start: for each prefilter hit at or after `from`, the
    /// starts its anchors allow and its signature's leading assertion accepts,
    /// grouped by signature, and each signature's gate literal positions. Signatures
    /// already `found` are left out.
    fn candidates(&self, hay: &[u8], from: usize, found: &[bool]) -> (Buckets, Buckets) {
        let mut starts: Vec<u64> = Vec::new();
        let mut gates: Vec<u64> = Vec::new();
        self.prefilter.each_hit(hay, from, |u, q, walk| match u {
            Use::Gate(index) => {
                if !found[index as usize] {
                    gates.push(pack(index as usize, walk, q));
                }
            }
            Use::Anchor { index, min, max, start } => {
                if found[index as usize] {
                    return;
                }
                let (min, max) = (usize::from(min), usize::from(max));
                for p in q.saturating_sub(max)..=q.saturating_sub(min) {
                    if start.holds(hay, p) {
                        starts.push(pack(index as usize, walk, p));
                    }
                }
            }
        });
        let n = self.signatures.len();
        (Buckets::of(&starts, n), Buckets::of(&gates, n))
    }

    /// Verifies candidates with anchored searches, which read no further than the
    /// match, and returns each signature's first match that `keep` accepts.
    ///
    /// Candidates come signature by signature, in text order: one pattern's lazy DFA
    /// stays in cache for all its candidates, a start reached by several literals is
    /// searched once, and the first match found is the leftmost.
    fn verify(
        &self,
        view: &View,
        hay: &[u8],
        candidates: &Buckets,
        gates: &Buckets,
        from: usize,
        keep: impl Fn(usize, usize) -> bool,
    ) -> Vec<RawHit> {
        let mut out = Vec::new();
        for (index, starts) in candidates.iter() {
            let g = gates.of_signature(index);
            // The first gate at or after the current start: starts only grow.
            let mut gate = 0;
            let mut last = None;
            for &p in starts {
                if last.replace(p) == Some(p) {
                    continue;
                }
                if let Some(hit) = self.verify_at(view, hay, index, p, g, &mut gate, from, &keep) {
                    out.push(hit);
                    break;
                }
            }
        }
        out
    }

    /// Verifies one candidate of signature `index` at `p` (see [`SignatureSet::verify`]).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn verify_at(
        &self,
        view: &View,
        hay: &[u8],
        index: usize,
        p: usize,
        g: &[usize],
        gate: &mut usize,
        from: usize,
        keep: impl Fn(usize, usize) -> bool,
    ) -> Option<RawHit> {
        let end = (p + self.reach[index]).min(hay.len());
        // A gate literal starts inside the match; gates are collected from `from` on,
        // so a start before it is searched unconditionally.
        if self.gated[index] && p >= from {
            while g.get(*gate).is_some_and(|&q| q < p) {
                *gate += 1;
            }
            if g.get(*gate).is_none_or(|&q| q >= end) {
                return None;
            }
        }
        if !takes_steps(&self.required[index], &hay[p..end]) {
            return None;
        }
        let at = Input::new(hay).span(p..end).anchored(Anchored::Yes);
        if self.relaxed[index].as_ref().is_some_and(|r| !r.is_match(at.clone())) {
            return None;
        }
        let m = self.patterns[index].search(&at)?;
        keep(m.start(), m.end()).then(|| {
            let (start, end) = view.original_span(m.start(), m.end());
            RawHit { index, start, end }
        })
    }

    /// Ids of the normalized-view signatures that match `text` (already normalized),
    /// found the way a scan finds them: prefilter literals, anchored verification and
    /// the set of signatures without literals.
    #[doc(hidden)]
    pub fn matching_ids(&self, text: &str) -> Vec<&str> {
        let view = View::identity(text.as_bytes().to_vec());
        let mut hits = Vec::new();
        self.scan_view(&view, SignatureView::Normalized, None, &mut hits);
        let mut ids: Vec<&str> = hits.iter().map(|h| self.signatures[h.index].id.as_str()).collect();
        ids.sort_unstable();
        ids
    }

    /// [`SignatureSet::matching_ids`] computed the slow, obvious way: each pattern
    /// searched over the whole text on its own. The two must agree.
    #[doc(hidden)]
    pub fn matching_ids_plain(&self, text: &str) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .signatures
            .iter()
            .zip(&self.patterns)
            .filter(|(s, re)| {
                s.view == SignatureView::Normalized && re.find_iter(text.as_bytes()).any(|m| m.len() <= MAX_MATCH_BYTES)
            })
            .map(|(s, _)| s.id.as_str())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Signature ids matched without a literal prefilter (for diagnostics).
    pub fn unanchored(&self) -> impl Iterator<Item = &str> {
        self.unanchored_ids.iter().map(|&i| self.signatures[i].id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{random_bytes, xorshift};

    #[test]
    fn leading_assertions_are_read_and_checked() {
        let of = |p: &str| normalized_hir(p).map_or(Start::Any, |h| Start::of_hir(&h));
        assert_eq!(of(r"(?m)^\s*system:"), Start::Line);
        assert_eq!(of(r"\bignore|\breveal"), Start::WordBoundary);
        assert_eq!(of(r"\Aignore"), Start::Text);
        assert_eq!(of(r"\bignore|reveal"), Start::Any);
        assert_eq!(of(r"(?:<\|im_start\|>)"), Start::Any);
        let hay = b"ab\ncd ef";
        assert!(Start::Line.holds(hay, 0) && Start::Line.holds(hay, 3));
        assert!(!Start::Line.holds(hay, 4));
        assert!(Start::WordBoundary.holds(hay, 5) && Start::WordBoundary.holds(hay, 6));
        assert!(Start::WordBoundary.holds(hay, 8));
        assert!(!Start::WordBoundary.holds(hay, 1) && !Start::WordBoundary.holds(hay, 7));
        assert!(Start::Text.holds(hay, 0) && !Start::Text.holds(hay, 3));
    }

    fn anchors_of_pattern(pattern: &str) -> Option<Vec<Anchor>> {
        anchors(&normalized_hir(pattern)?)
    }

    #[test]
    fn required_punctuation_is_read_off_the_pattern_in_order() {
        let req = |p: &str| normalized_hir(p).map(|h| required_steps(&h)).unwrap_or_default();
        let steps = |s: &[&[u8]]| s.iter().map(|b| b.to_vec()).collect::<Vec<_>>();
        assert_eq!(req(r"\b[a-z]\w{0,5}\s*=\s*x[\s\S]{0,9}\+\s*y"), steps(&[b"=", b"+"]));
        assert_eq!(req(r#"\w=\s*["'][^"']*["']\s*\+"#), steps(&[b"=", b"\"'", b"\"'", b"+"]));
        assert_eq!(req(r"a:b|c:d"), steps(&[b":"]));
        assert_eq!(req(r"a:b|c=d"), steps(&[]));
        assert_eq!(req(r"(?:x:)?y"), steps(&[]));
        assert_eq!(req(r"(?:x:)+y"), steps(&[b":"]));
        // Three bytes at most make a step: a wider class is no test.
        assert_eq!(req(r"[:;,.]x=y"), steps(&[b"="]));

        let r = steps(&[b"=", b"\"'", b"\"'", b"+"]);
        assert!(takes_steps(&r, br#"a = "x" + b"#));
        assert!(takes_steps(&r, br#"=='x'''+"#));
        assert!(!takes_steps(&r, br#"a + "x" = b"#));
        assert!(!takes_steps(&r, br#"a = "x + b"#));
        assert!(!takes_steps(&r, b""));
        assert!(takes_steps(&[], b""));
    }

    #[test]
    fn gates_are_the_most_selective_literals_past_the_anchor() {
        let gates = |p: &str| {
            let h = normalized_hir(p)?;
            gate_literals(&h, &anchors(&h)?)
        };
        let g = gates(r"\b(?:show|print)\b[^.\n]{0,40}?\b(?:system\s+prompt|hidden\s+rules)\b").expect("gated");
        assert!(g.iter().any(|l| l.starts_with(b"system")), "{g:?}");
        assert!(g.iter().any(|l| l.starts_with(b"hidden")), "{g:?}");
        // The longest literals win, wherever they are: here past a word class the
        // first gap rule could not pass.
        let g = gates(r"\b(?:say|print)\s+(?:\w+\s+)?(?:your|the)\s+(?:reply|answer)\s+in\s+base64").expect("gated");
        assert!(g.iter().all(|l| l.windows(3).any(|w| w == b"bas")), "{g:?}");
        // Only the anchors, or only short literals past them: no gate.
        assert!(gates(r"\bignore").is_none());
        assert!(gates(r"\bshow\b[^.\n]{0,40}?\b(?:it|me)\b").is_none());
    }

    #[test]
    fn class_led_patterns_get_anchors_with_a_bounded_head() {
        let a = anchors_of_pattern(r#"\b[a-z]\w{0,5}\s*=\s*["']x"#).expect("anchored");
        // The head takes the whitespace before `=` too: anchoring on the literals
        // after it would need one literal per whitespace shape.
        assert!(a.iter().all(|x| x.back == (1, 9)), "{a:?}");
        assert!(a.iter().any(|x| x.literal == b"=\"x"));
        assert!(a.len() <= 12, "{a:?}");
        // A head longer than `MAX_ANCHOR_BACK` leaves the pattern to the set.
        assert!(anchors_of_pattern(r"[a-z]{1,40}:\s*ignore").is_none());
        let plain = anchors_of_pattern(r"\bignore\s+previous").expect("anchored");
        assert!(plain.iter().all(|x| x.back == (0, 0)));
    }

    #[test]
    fn interleaved_walks_report_what_one_overlapping_search_does() {
        // Hot and cold bytes, a byte no literal has (`z`), a literal inside another,
        // one twice, and an empty one (never reported).
        let literals: Vec<Vec<u8>> = [
            &b"ab"[..],
            b"abc",
            b"bca",
            b"c",
            b"cab\n",
            b"\nab",
            b"aaaa",
            b"b\nb",
            b"abca",
            b"bcab",
            b"x{",
            b"{{a",
            b"ab",
            b"",
        ]
        .iter()
        .map(|l| l.to_vec())
        .collect();
        let plain = aho_corasick::AhoCorasick::new(&literals).expect("builds");
        let entries: Vec<(Vec<u8>, usize)> = literals.iter().cloned().zip(0..).collect();
        for wide in [false, true] {
            let prefilter = Prefilter::build(&entries, wide).expect("builds");
            assert_eq!(matches!(prefilter.table, Table::Wide(_)), wide);
            let mut state: u64 = 0xD1B5_4A32_D192_ED03;
            for round in 0..2000 {
                // Long enough, often, for every walk to have a stretch of its own.
                let hay = random_bytes(&mut state, 1200, b"abc\nx{z");
                let len = hay.len();
                let from = if round % 3 == 0 { 0 } else { (xorshift(&mut state) >> 20) as usize % (len + 1) };
                let mut got = Vec::new();
                let mut last_end = [0usize; WALKS];
                prefilter.each_hit(&hay, from, |literal, q, walk| {
                    // Each walk reports in the order occurrences end.
                    let end = q + literals[literal].len();
                    assert!(end >= last_end[walk], "walk {walk} went back");
                    last_end[walk] = end;
                    got.push((literal, q));
                });
                let input = aho_corasick::Input::new(&hay).range(from..);
                let mut want: Vec<(usize, usize)> = plain
                    .find_overlapping_iter(input)
                    .filter(|m| !m.is_empty())
                    .map(|m| (m.pattern().as_usize(), m.start()))
                    .collect();
                got.sort_unstable();
                want.sort_unstable();
                assert_eq!(got, want, "wide {wide} len {len} from {from}");
            }
        }
    }

    #[test]
    fn the_embedded_prefilter_finds_what_aho_corasick_finds() {
        let set = SignatureSet::embedded().expect("embedded set");
        let mut literals = Vec::new();
        for s in set.signatures() {
            let Some(hir) = normalized_hir(&s.pattern) else {
                continue;
            };
            let Some(found) = anchors(&hir) else {
                continue;
            };
            literals.extend(gate_literals(&hir, &found).unwrap_or_default());
            literals.extend(found.into_iter().map(|a| a.literal));
        }
        literals.sort_unstable();
        literals.dedup();
        let entries: Vec<(Vec<u8>, usize)> = literals.iter().cloned().zip(0..).collect();
        let prefilter = Prefilter::new(&entries).expect("builds");
        assert!(matches!(prefilter.table, Table::Narrow(_)));
        let plain = aho_corasick::AhoCorasick::new(&literals).expect("builds");
        let text = crate::normalized(&crate::tests::varied_document(40_000));
        let hay = text.as_bytes();
        let mut got = Vec::new();
        prefilter.each_hit(hay, 0, |literal, q, _| got.push((literal, q)));
        let mut want: Vec<(usize, usize)> =
            plain.find_overlapping_iter(hay).map(|m| (m.pattern().as_usize(), m.start())).collect();
        got.sort_unstable();
        want.sort_unstable();
        assert!(want.len() > 1000, "{} hits", want.len());
        assert_eq!(got, want);
    }

    #[test]
    fn relaxed_patterns_unbound_long_gaps_and_keep_every_match() {
        assert!(relaxed_hir(r"a[^.]{0,40}b").is_none(), "one gap");
        assert!(relaxed_hir(r"a.{0,16}b.{0,16}c").is_none(), "short gaps");
        let mut builder = meta::Regex::builder();
        builder.syntax(syntax::Config::new().unicode(false).utf8(false));
        let pattern = r"\ba.{0,20}b(?:x|y.{0,30})c";
        let strict = builder.build(pattern).expect("builds");
        let relaxed = builder.build_from_hir(&relaxed_hir(pattern).expect("two long gaps")).expect("builds");
        // Past the bounds only the relaxed pattern matches.
        let far = format!("a{}bxc", "-".repeat(25));
        assert!(!strict.is_match(&far) && relaxed.is_match(&far));
        // Wherever the pattern matches, anchored at a start, the relaxed one does.
        let mut state: u64 = 0x005E_ED0F_6A95;
        let mut matched = 0;
        for _ in 0..3000 {
            let hay = random_bytes(&mut state, 90, b"abcxy -.");
            for p in 0..hay.len() {
                let at = Input::new(&hay).range(p..).anchored(Anchored::Yes);
                if strict.is_match(at.clone()) {
                    matched += 1;
                    assert!(relaxed.is_match(at), "{:?} at {p}", String::from_utf8_lossy(&hay));
                }
            }
        }
        assert!(matched > 100, "{matched} matches tried");
    }

    #[test]
    fn buckets_group_positions_by_signature_in_order() {
        let mut state: u64 = 0x00B0_C4E7_5EED;
        for _ in 0..200 {
            let n = 1 + (xorshift(&mut state) % 12) as usize;
            // Positions in any order, or (as walks report them) each walk's in order
            // but for neighbours a few bytes apart.
            let nearly = xorshift(&mut state).is_multiple_of(2);
            let mut next = [0usize; WALKS];
            // Up to twelve times FEW_PAIRS: both ways of grouping.
            let pairs: Vec<(usize, usize, usize)> = (0..(xorshift(&mut state) % 1536))
                .map(|_| {
                    let r = xorshift(&mut state) as usize;
                    let (index, walk) = (r % n, (r >> 8) % WALKS);
                    let p = if nearly {
                        next[walk] += (r >> 16) % 4;
                        (walk * 10_000 + next[walk]).saturating_sub((r >> 24) % 24)
                    } else {
                        (r >> 16) % 5000
                    };
                    (index, walk, p)
                })
                .collect();
            let packed: Vec<u64> = pairs.iter().map(|&(i, w, p)| pack(i, w, p)).collect();
            let buckets = Buckets::of(&packed, n);
            for index in 0..n {
                let mut want: Vec<usize> = pairs.iter().filter(|&&(i, _, _)| i == index).map(|&(_, _, p)| p).collect();
                want.sort_unstable();
                assert_eq!(buckets.of_signature(index), &want[..]);
            }
            let listed: Vec<usize> = buckets.iter().map(|(i, _)| i).collect();
            let mut present: Vec<usize> = pairs.iter().map(|&(i, _, _)| i).collect();
            present.sort_unstable();
            present.dedup();
            assert_eq!(listed, present);
        }
    }

    #[test]
    fn a_byte_of_punctuation_does_not_anchor_when_words_follow() {
        let a = anchors_of_pattern(r"(?m)^\s*(?:[#>*\[(]{1,3}\s*)?(?:system|assistant)\s*:").expect("anchored");
        assert!(a.iter().all(|x| x.literal.len() >= 3), "{a:?}");
        assert!(a.iter().any(|x| x.literal.starts_with(b"system")), "{a:?}");
        // Punctuation with nothing better after it still anchors.
        let a = anchors_of_pattern(r"<[a-z][^>]{0,200}?style").expect("anchored");
        assert!(a.iter().any(|x| x.literal.starts_with(b"<")), "{a:?}");
    }

    #[test]
    fn unanchored_signatures_are_found_alone_or_as_a_set() {
        let sig = |k: usize, pattern: &str| Signature {
            id: format!("U-{k}"),
            category: "test".into(),
            severity: Severity::High,
            description: "a signature without prefilter literals".into(),
            pattern: pattern.into(),
            view: SignatureView::Normalized,
        };
        let patterns = [
            r"[a-z]{1,40}:\s*ignore",
            r"[a-z]{1,40}=\s*reveal",
            r"[a-z]{1,40};\s*forget",
            r"[a-z]{1,40}#\s*leak",
            r"[a-z]{1,40}!\s*dump",
            r"[a-z]{1,40}\?\s*obey",
        ];
        let texts = [
            "note: ignore it, then key=reveal and x; forget and y# leak z! dump w? obey",
            "nothing to see here: ignored? no, not really",
            "a:ignore",
        ];
        for n in [2, patterns.len()] {
            let list = patterns[..n].iter().enumerate().map(|(k, p)| sig(k, p)).collect();
            let set = SignatureSet::new(1, list, "test").expect("compiles");
            assert_eq!(set.unanchored().count(), n);
            assert_eq!(n > UNANCHORED_ALONE, patterns.len() == n);
            for t in texts {
                assert_eq!(set.matching_ids(t), set.matching_ids_plain(t), "{t}");
            }
            assert_eq!(set.matching_ids(texts[0]).len(), n);
        }
    }

    #[test]
    fn embedded_set_compiles_and_is_large_enough() {
        let set = SignatureSet::embedded().expect("embedded signatures compile");
        assert!(set.len() >= 79, "only {} signatures", set.len());
        let unanchored: Vec<&str> = set.unanchored().collect();
        assert!(unanchored.len() <= 24, "too many signatures without prefix literals: {unanchored:?}");
        let cats: std::collections::BTreeSet<&str> = set.signatures().iter().map(|s| s.category.as_str()).collect();
        for needed in [
            "instruction-override",
            "role-spoofing",
            "jailbreak",
            "prompt-extraction",
            "secret-extraction",
            "data-exfiltration",
            "code-execution",
            "hidden-text",
            "template-injection",
            "encoding-bypass",
            "persistence",
            "tool-abuse",
            "indirect-injection",
        ] {
            assert!(cats.contains(needed), "missing category {needed}");
        }
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let dup = "version = 1\n[[signature]]\nid='A'\ncategory='c'\nseverity='low'\ndescription='d'\npattern='a'\n[[signature]]\nid='A'\ncategory='c'\nseverity='low'\ndescription='d'\npattern='b'\n";
        let err = SignatureSet::from_toml_str(dup, "t").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("appears twice"), "{err}");
        let bad = "version = 1\n[[signature]]\nid='B'\ncategory='c'\nseverity='low'\ndescription='d'\npattern='('\n";
        let err = SignatureSet::from_toml_str(bad, "t").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("signature B has an invalid pattern"), "{err}");
        let fmt = "format = 9\nversion = 1\n";
        let err = SignatureSet::from_toml_str(fmt, "t").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("format 9 is not supported"), "{err}");
    }
}
