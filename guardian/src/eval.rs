//! Evaluation over labelled JSON Lines files: detection rate, false positives, latency.
//!
//! Used by `omni guardian eval` and `cargo xtask guardian-eval`. Rows are objects with
//! `text` (string) and `label` (1 = attack, 0 = benign); other fields are kept as
//! metadata when they are strings.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::{Guardian, GuardianError, ScanPoint, VerdictKind};

/// One labelled example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// Optional identifier.
    #[serde(default)]
    pub id: Option<String>,
    /// The text to scan.
    pub text: String,
    /// 1 = attack, 0 = benign.
    pub label: u8,
    /// Optional `kind` metadata (e.g. BIPIA's `text_attack`, `email_context`).
    #[serde(default)]
    pub kind: Option<String>,
    /// Optional `split` metadata (`train` / `test`).
    #[serde(default)]
    pub split: Option<String>,
    /// Optional `source` metadata.
    #[serde(default)]
    pub source: Option<String>,
}

/// Reads a JSON Lines file; every bad line is reported with its number.
pub fn load_jsonl(path: &Path) -> Result<Vec<Row>, GuardianError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| GuardianError::DatasetRead { path: path.to_path_buf(), source })?;
    parse_jsonl(&text, path)
}

/// Parses JSON Lines text; `path` is only used in error messages.
pub fn parse_jsonl(text: &str, path: &Path) -> Result<Vec<Row>, GuardianError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |problem: String| GuardianError::DatasetRow { path: path.to_path_buf(), line: i + 1, problem };
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| err(format!("not JSON ({e})")))?;
        let text = v.get("text").and_then(|t| t.as_str()).ok_or_else(|| err("missing string field `text`".into()))?;
        let label = match v.get("label").and_then(|l| l.as_u64()) {
            Some(0) => 0,
            Some(1) => 1,
            _ => return Err(err("`label` must be 0 or 1".into())),
        };
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        rows.push(Row {
            id: s("id"),
            text: text.to_string(),
            label,
            kind: s("kind"),
            split: s("split"),
            source: s("source"),
        });
    }
    Ok(rows)
}

/// What the Guardian said about one row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The row's label.
    pub label: u8,
    /// The Guardian's score (0-100).
    pub score: u8,
    /// Whether the verdict was not clean.
    pub flagged: bool,
    /// Scan time in microseconds.
    pub micros: f64,
}

/// Scans every row at `point`; `progress` is called after each row with the count done.
pub fn run(guardian: &Guardian, rows: &[Row], point: ScanPoint, mut progress: impl FnMut(usize)) -> Vec<Outcome> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let t = Instant::now();
            let v = guardian.scan(&r.text, point);
            let micros = t.elapsed().as_secs_f64() * 1e6;
            progress(i + 1);
            Outcome { label: r.label, score: v.score, flagged: v.kind != VerdictKind::Clean, micros }
        })
        .collect()
}

/// Detection metrics for a set of outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Metrics {
    /// Rows.
    pub rows: usize,
    /// Attack rows.
    pub attacks: usize,
    /// Benign rows.
    pub benign: usize,
    /// Attacks flagged.
    pub true_positives: usize,
    /// Benign rows flagged.
    pub false_positives: usize,
    /// Share of attacks flagged (`None` without attacks).
    pub tpr: Option<f64>,
    /// Share of benign rows flagged (`None` without benign rows).
    pub fpr: Option<f64>,
    /// Share of flagged rows that are attacks.
    pub precision: Option<f64>,
    /// Harmonic mean of precision and TPR.
    pub f1: Option<f64>,
    /// Best TPR of any score threshold whose FPR is at most 1% (needs both classes).
    pub tpr_at_1pct_fpr: Option<f64>,
    /// Best TPR of any score threshold whose FPR is at most 5% (needs both classes).
    pub tpr_at_5pct_fpr: Option<f64>,
    /// Median scan time (microseconds).
    pub p50_micros: f64,
    /// 99th percentile scan time (microseconds).
    pub p99_micros: f64,
}

/// Computes [`Metrics`].
pub fn metrics(outcomes: &[Outcome]) -> Metrics {
    let attacks = outcomes.iter().filter(|o| o.label == 1).count();
    let benign = outcomes.len() - attacks;
    let tp = outcomes.iter().filter(|o| o.label == 1 && o.flagged).count();
    let fp = outcomes.iter().filter(|o| o.label == 0 && o.flagged).count();
    let ratio = |a: usize, b: usize| {
        if b == 0 {
            None
        } else {
            Some(a as f64 / b as f64)
        }
    };
    let tpr = ratio(tp, attacks);
    let fpr = ratio(fp, benign);
    let precision = ratio(tp, tp + fp);
    let f1 = match (precision, tpr) {
        (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
        (Some(_), Some(_)) => Some(0.0),
        _ => None,
    };
    let tpr_at = |max_fpr: f64| -> Option<f64> {
        if attacks == 0 || benign == 0 {
            return None;
        }
        // Flag when score < t; try every threshold.
        (0..=101u16)
            .filter_map(|t| {
                let f = outcomes.iter().filter(|o| o.label == 0 && u16::from(o.score) < t).count();
                (f as f64 / benign as f64 <= max_fpr).then(|| {
                    outcomes.iter().filter(|o| o.label == 1 && u16::from(o.score) < t).count() as f64 / attacks as f64
                })
            })
            .fold(None, |best: Option<f64>, x| Some(best.map_or(x, |b| b.max(x))))
    };
    let mut lat: Vec<f64> = outcomes.iter().map(|o| o.micros).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() - 1) as f64 * q).round() as usize]
        }
    };
    Metrics {
        rows: outcomes.len(),
        attacks,
        benign,
        true_positives: tp,
        false_positives: fp,
        tpr,
        fpr,
        precision,
        f1,
        tpr_at_1pct_fpr: tpr_at(0.01),
        tpr_at_5pct_fpr: tpr_at(0.05),
        p50_micros: pct(0.5),
        p99_micros: pct(0.99),
    }
}

/// Where an injected instruction is placed in a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Before the context.
    Start,
    /// At a line or word break near the middle.
    Middle,
    /// After the context.
    End,
}

/// Inserts `attack` into `context` at `pos`.
pub fn insert(context: &str, attack: &str, pos: Position) -> String {
    match pos {
        Position::Start => format!("{attack}\n{context}"),
        Position::End => format!("{context}\n{attack}"),
        Position::Middle => {
            let mid = context.floor_char_boundary(context.len() / 2);
            let cut = context[..mid].rfind(['\n', ' ']).map_or(mid, |i| i + 1);
            format!("{}\n{attack}\n{}", &context[..cut], &context[cut..])
        }
    }
}

/// One long document from distinct texts: sorted, deduplicated, shuffled in a fixed
/// pseudo-random order (the same document on every run), joined with blank lines
/// until it reaches `max_bytes`, and cut there on a character boundary. Shorter when
/// the texts run out. No text repeats, so a long-document test or benchmark does not
/// profit from a warm cache of a few sentences.
///
/// ```
/// let doc = omni_guardian::eval::shuffled_document(vec!["b".into(), "a".into(), "a".into()], 100);
/// assert!(doc == "a\n\nb\n\n" || doc == "b\n\na\n\n");
/// ```
pub fn shuffled_document(mut texts: Vec<String>, max_bytes: usize) -> String {
    texts.sort();
    texts.dedup();
    // Fisher-Yates with a fixed 64-bit LCG.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..texts.len()).rev() {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let j = ((state >> 33) as usize) % (i + 1);
        texts.swap(i, j);
    }
    let mut doc = String::with_capacity(max_bytes + 4096);
    for t in &texts {
        if doc.len() >= max_bytes {
            break;
        }
        doc.push_str(t);
        doc.push_str("\n\n");
    }
    doc.truncate(doc.floor_char_boundary(max_bytes));
    doc
}

/// Builds indirect-injection positives from a BIPIA-style file: each attack row
/// (`kind` ending in `_attack`) is inserted into `per_attack` contexts of the matching
/// type (code attacks into code contexts, text attacks into e-mail and table
/// contexts) at the start, middle and end. Deterministic. With `split`, only rows of
/// that split are used.
pub fn bipia_insertions(rows: &[Row], per_attack: usize, split: Option<&str>) -> Vec<Row> {
    let in_split = |r: &&Row| split.is_none_or(|s| r.split.as_deref() == Some(s));
    let kind = |r: &Row| r.kind.clone().unwrap_or_default();
    let contexts_code: Vec<&Row> =
        rows.iter().filter(in_split).filter(|r| r.label == 0 && kind(r).starts_with("code")).collect();
    let contexts_text: Vec<&Row> =
        rows.iter().filter(in_split).filter(|r| r.label == 0 && !kind(r).starts_with("code")).collect();
    let mut out = Vec::new();
    for (i, a) in rows.iter().filter(in_split).filter(|r| r.label == 1).enumerate() {
        let pool = if kind(a).starts_with("code") { &contexts_code } else { &contexts_text };
        if pool.is_empty() {
            continue;
        }
        for k in 0..per_attack {
            let ctx = pool[(i * 7919 + k * 104_729) % pool.len()];
            let pos = [Position::Start, Position::Middle, Position::End][(i + k) % 3];
            out.push(Row {
                id: Some(format!("{}@{}#{k}", a.id.clone().unwrap_or_default(), ctx.id.clone().unwrap_or_default())),
                text: insert(&ctx.text, &a.text, pos),
                label: 1,
                kind: Some(format!("inserted_{}", kind(a))),
                split: a.split.clone(),
                source: Some("bipia-inserted".into()),
            });
        }
    }
    out
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0))
}

/// Renders named metrics as a markdown table.
pub fn markdown_table(named: &[(String, Metrics)]) -> String {
    let mut s = String::from(
        "| set | rows | attacks | benign | TPR | FPR | precision | F1 | TPR@1%FPR | TPR@5%FPR | p50 µs | p99 µs |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (name, m) in named {
        s.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} |\n",
            m.rows,
            m.attacks,
            m.benign,
            pct(m.tpr),
            pct(m.fpr),
            pct(m.precision),
            m.f1.map_or("-".into(), |v| format!("{v:.3}")),
            pct(m.tpr_at_1pct_fpr),
            pct(m.tpr_at_5pct_fpr),
            m.p50_micros,
            m.p99_micros
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(label: u8, score: u8) -> Outcome {
        Outcome { label, score, flagged: score < 80, micros: f64::from(score) }
    }

    #[test]
    fn metrics_count_correctly() {
        let m = metrics(&[o(1, 10), o(1, 90), o(0, 95), o(0, 60)]);
        assert_eq!((m.true_positives, m.false_positives), (1, 1));
        assert_eq!(m.tpr, Some(0.5));
        assert_eq!(m.fpr, Some(0.5));
        assert_eq!(m.precision, Some(0.5));
        // A threshold of 11 flags the attack at 10 and no benign row.
        assert_eq!(m.tpr_at_1pct_fpr, Some(0.5));
    }

    #[test]
    fn rows_parse_and_errors_name_the_line() {
        let rows = parse_jsonl(
            "{\"text\":\"a\",\"label\":1}\n\n{\"text\":\"b\",\"label\":0,\"kind\":\"x\"}\n",
            Path::new("f"),
        )
        .expect("valid rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].kind.as_deref(), Some("x"));
        let e = parse_jsonl("{\"text\":\"a\",\"label\":1}\n{\"text\":\"a\",\"label\":3}\n", Path::new("f"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("f:2:"), "{e}");
    }

    #[test]
    fn insertion_positions() {
        assert_eq!(insert("aa bb", "X", Position::Start), "X\naa bb");
        assert_eq!(insert("aa bb", "X", Position::End), "aa bb\nX");
        assert_eq!(insert("aa bb", "X", Position::Middle), "aa\nX\n bb");
        assert_eq!(insert("one two three four", "X", Position::Middle), "one two \nX\nthree four");
    }
}
