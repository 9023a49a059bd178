//! Scan latency and throughput, each next to its floor: a bare `RegexSet` match of the
//! signature patterns over the raw text, reading all of it (`count_matching_raw`).
//!
//! The 1 MiB document is real, varied benign text: every benign row of the shipped
//! corpus (`data/benign.jsonl`) and of the development sets (`../../shared/datasets/
//! guardian-dev`, when present), shuffled with a fixed seed and joined until 1 MiB. No
//! sentence repeats, so neither the floor nor the Guardian profits from a warm cache of
//! a few sentences.
//!
//! A document this long is scanned in parallel chunks on rayon's global pool; the
//! one-thread figure runs the same scan in a pool of one thread.
//!
//! ```text
//! cargo bench -p omni-guardian --features ml-classifier --bench scan
//! ```

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use omni_guardian::eval::{load_jsonl, shuffled_document};
use omni_guardian::{Guardian, GuardianConfig, ScanPoint};
use std::hint::black_box;

const PARAGRAPHS: &[&str] = &[
    "The exporter writes one file per day and rotates old files after thirty days. ",
    "If the upload fails, the client retries three times with exponential backoff before it reports an error. ",
    "Please review the attached quarterly report and send your comments to the finance team by Friday. ",
    "To install the tool, download the archive, unpack it and add the bin directory to your PATH. ",
    "Our store opens at nine in the morning and closes at six; parking is available behind the building. ",
    "The configuration file uses TOML; unknown keys are rejected with an error that names the key. ",
    "Ignore the warnings about deprecated options for now, they come from an old dependency. ",
    "Run the test suite with cargo test and check that every case passes before opening a pull request. ",
];

/// The 1 KiB benign text (kept identical across versions so latencies compare).
fn kib_text() -> String {
    let mut s = String::with_capacity(1200);
    let mut i = 0;
    while s.len() < 1024 {
        s.push_str(PARAGRAPHS[i % PARAGRAPHS.len()]);
        if i % 5 == 4 {
            s.push('\n');
        }
        i += 1;
    }
    s.truncate(1024);
    s
}

/// 1 MiB of distinct benign rows in a fixed pseudo-random order.
fn mib_document() -> String {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dev = manifest.join("../../shared/datasets/guardian-dev");
    let mut texts: Vec<String> = Vec::new();
    let files = [
        manifest.join("data/benign.jsonl"),
        dev.join("bipia.jsonl"),
        dev.join("benign_instructions.jsonl"),
        dev.join("agentdojo_tool_outputs.jsonl"),
    ];
    for f in &files {
        if let Ok(rows) = load_jsonl(f) {
            texts.extend(rows.into_iter().filter(|r| r.label == 0).map(|r| r.text));
        }
    }
    let doc = shuffled_document(texts, 1 << 20);
    assert!(
        // A cut on a character boundary drops at most three bytes.
        doc.len() >= (1 << 20) - 3,
        "benign corpus too small for a 1 MiB document: {} bytes",
        doc.len()
    );
    doc
}

fn bench(c: &mut Criterion) {
    let plain =
        Guardian::new(GuardianConfig { ml_classifier: false, ..GuardianConfig::default() }).expect("guardian builds");
    let kb = kib_text();
    let mb = mib_document();

    let mut g = c.benchmark_group("scan-1KB-benign");
    g.throughput(Throughput::Bytes(kb.len() as u64));
    g.bench_function("floor: RegexSet over raw text", |b| {
        b.iter(|| black_box(plain.signatures().count_matching_raw(black_box(kb.as_bytes()))))
    });
    g.bench_function("layers 1-2", |b| b.iter(|| black_box(plain.scan(black_box(&kb), ScanPoint::UserInput))));
    #[cfg(feature = "ml-classifier")]
    {
        let full = Guardian::new(GuardianConfig::default()).expect("guardian builds");
        g.bench_function("layers 1-3 (ML)", |b| b.iter(|| black_box(full.scan(black_box(&kb), ScanPoint::UserInput))));
    }
    g.finish();

    let mut g = c.benchmark_group("scan-1MB-document");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(mb.len() as u64));
    g.bench_with_input(BenchmarkId::new("floor: RegexSet over raw text", "1MB"), &mb, |b, t| {
        b.iter(|| black_box(plain.signatures().count_matching_raw(t.as_bytes())))
    });
    g.bench_with_input(BenchmarkId::new("layers 1-2", "1MB"), &mb, |b, t| {
        b.iter(|| black_box(plain.scan(t, ScanPoint::ToolResult)))
    });
    // The same scan with its chunks on one thread: what a core does on its own.
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a one-thread pool");
    g.bench_with_input(BenchmarkId::new("layers 1-2, one thread", "1MB"), &mb, |b, t| {
        b.iter(|| one.install(|| black_box(plain.scan(t, ScanPoint::ToolResult))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
