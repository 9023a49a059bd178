//! Permission engine benchmarks.
//!
//! - `policy/cached_decision`: one `authorize` against an in-memory grant, audit disabled.
//! - `policy/durable_decision/{1,8,64}`: audited decisions (each durable before it returns)
//!   with 1, 8 and 64 concurrent callers; throughput is decisions per second. After each
//!   group the number of commits (fsyncs) per decision is printed to stderr.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use omni_capabilities::{Permission, Scope};
use omni_host::audit::AuditLog;
use omni_host::policy::{AccessRequest, Decision, DenyPrompter, GrantDuration, PolicyEngine, SecurityConfig};

const EXT: &str = "com.example.bench";
const CAP: &str = "clipboard.write";
const MIN_PER_CALLER: u64 = 200;

fn engine(dir: &tempfile::TempDir, audit_enabled: bool) -> PolicyEngine {
    let db = Arc::new(redb::Database::create(dir.path().join("bench.redb")).expect("create database"));
    let audit = AuditLog::open(Arc::clone(&db)).expect("open audit log");
    let config = SecurityConfig { audit_enabled, ..SecurityConfig::default() };
    let engine = PolicyEngine::open(db, audit, config, Arc::new(DenyPrompter)).expect("open engine");
    let permission =
        Permission { capability: CAP.into(), scope: Scope::None, reason: "benchmark".into(), required: true };
    engine.record_decision(EXT, &permission, Decision::Allow, GrantDuration::Always).expect("grant");
    engine
}

fn in_scope(_: &Scope) -> Result<(), String> {
    Ok(())
}

fn request() -> AccessRequest<'static> {
    AccessRequest {
        session: "bench",
        extension: EXT,
        capability: CAP,
        target: "write 12 bytes",
        check_scope: &in_scope,
    }
}

fn cached_decision(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(&dir, false);
    let req = request();
    c.bench_function("policy/cached_decision", |b| {
        b.iter(|| std::hint::black_box(engine.authorize(std::hint::black_box(&req))).is_ok())
    });
}

fn durable_decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy/durable_decision");
    group.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));
    for callers in [1usize, 8, 64] {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine(&dir, true);
        let before = engine.audit().stats();
        group.bench_with_input(BenchmarkId::from_parameter(callers), &callers, |b, &callers| {
            b.iter_custom(|iters| {
                // Every caller makes at least MIN_PER_CALLER decisions, so thread start-up
                // and the ramp at both ends do not dominate small samples; the time is
                // scaled back to `iters` decisions.
                let per_caller = iters.div_ceil(callers as u64).max(MIN_PER_CALLER);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..callers {
                        s.spawn(|| {
                            let req = request();
                            for _ in 0..per_caller {
                                let allowed = engine.authorize(&req).expect("allowed");
                                std::hint::black_box(allowed);
                            }
                        });
                    }
                });
                start.elapsed().mul_f64(iters as f64 / (per_caller * callers as u64) as f64)
            })
        });
        let after = engine.audit().stats();
        let (commits, records) = (after.commits - before.commits, after.records - before.records);
        eprintln!(
            "policy/durable_decision/{callers}: {records} decisions in {commits} commits = {:.4} fsyncs per decision",
            commits as f64 / records.max(1) as f64
        );
    }
    group.finish();
}

criterion_group!(benches, cached_decision, durable_decisions);
criterion_main!(benches);
