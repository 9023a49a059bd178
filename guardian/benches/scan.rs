//! Scan latency and throughput, each next to its floor: a bare `RegexSet` match of the
//! signature patterns over the raw text.
//!
//! ```text
//! cargo bench -p omni-guardian --features ml-classifier --bench scan
//! ```

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
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

fn text_of(len: usize) -> String {
    let mut s = String::with_capacity(len + 128);
    let mut i = 0;
    while s.len() < len {
        s.push_str(PARAGRAPHS[i % PARAGRAPHS.len()]);
        if i % 5 == 4 {
            s.push('\n');
        }
        i += 1;
    }
    s.truncate(len);
    s
}

fn bench(c: &mut Criterion) {
    let plain = Guardian::new(GuardianConfig {
        ml_classifier: false,
        ..GuardianConfig::default()
    })
    .expect("guardian builds");
    let kb = text_of(1024);
    let mb = text_of(1 << 20);

    let mut g = c.benchmark_group("scan-1KB-benign");
    g.throughput(Throughput::Bytes(kb.len() as u64));
    g.bench_function("floor: RegexSet over raw text", |b| {
        b.iter(|| black_box(plain.signatures().is_match_raw(black_box(kb.as_bytes()))))
    });
    g.bench_function("layers 1-2", |b| {
        b.iter(|| black_box(plain.scan(black_box(&kb), ScanPoint::UserInput)))
    });
    #[cfg(feature = "ml-classifier")]
    {
        let full = Guardian::new(GuardianConfig::default()).expect("guardian builds");
        g.bench_function("layers 1-3 (ML)", |b| {
            b.iter(|| black_box(full.scan(black_box(&kb), ScanPoint::UserInput)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("scan-1MB-document");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(mb.len() as u64));
    g.bench_with_input(
        BenchmarkId::new("floor: RegexSet over raw text", "1MB"),
        &mb,
        |b, t| b.iter(|| black_box(plain.signatures().is_match_raw(t.as_bytes()))),
    );
    g.bench_with_input(BenchmarkId::new("layers 1-2", "1MB"), &mb, |b, t| {
        b.iter(|| black_box(plain.scan(t, ScanPoint::ToolResult)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
