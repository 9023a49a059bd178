//! A tool call and an instantiation through Omni, each beside the same work done with
//! bare Wasmtime on the same engine, measured in one run.
//!
//! Needs the built calculator: `cargo xtask bench call` builds it and sets
//! `OMNI_BENCH_CALCULATOR` to its folder.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use omni_host::bindings::ExtensionPre;
use omni_host::config::HostLimits;
use omni_host::{Omni, OmniConfig, OmniEngine};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::Store;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

const ARGS: &str = r#"{"expression":"2*(3+4)-5/2"}"#;

struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

fn bare_store(engine: &wasmtime::Engine) -> Store<Bare> {
    let mut store = Store::new(engine, Bare { wasi: WasiCtx::builder().build(), table: ResourceTable::new() });
    // The engine has epoch interruption on; a bare caller still has to set a deadline.
    store.set_epoch_deadline(u64::MAX / 2);
    store
}

fn calculator_dir() -> PathBuf {
    match std::env::var_os("OMNI_BENCH_CALCULATOR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/omni-extensions/dev.omni.calculator"),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let engine = OmniEngine::new(&HostLimits::default()).expect("engine");
    let dir = calculator_dir();
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = OmniConfig::default();
    // The comparison is policy and limits against none: audit writes are measured by
    // the policy benchmarks.
    config.security.audit_enabled = false;
    let omni = Omni::builder(data.path()).engine(engine.clone()).config(config).open().expect("omni");
    let plan = omni
        .prepare_install(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}\nbuild it first with `cargo xtask bench call`", dir.display()));
    omni.install(&plan, &[]).expect("install");

    let component = Component::new(engine.engine(), &plan.component).expect("compile");
    let mut linker: Linker<Bare> = Linker::new(engine.engine());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
    let pre = ExtensionPre::new(linker.instantiate_pre(&component).expect("pre")).expect("extension pre");

    // Sanity: both paths compute the same answer.
    let omni_out = rt.block_on(omni.call("dev.omni.calculator", "evaluate", ARGS)).expect("omni call");
    let bare_out = rt.block_on(async {
        let mut store = bare_store(engine.engine());
        let ext = pre.instantiate_async(&mut store).await.expect("instantiate");
        ext.omni_extension_tool().call_call(&mut store, "evaluate", ARGS).await.expect("call")
    });
    assert_eq!(Ok(omni_out.output.clone()), bare_out.map_err(|e| format!("{e:?}")));

    let mut group = c.benchmark_group("call");
    group.bench_function("bare_wasmtime", |b| {
        b.to_async(&rt).iter(|| async {
            let mut store = bare_store(engine.engine());
            let ext = pre.instantiate_async(&mut store).await.expect("instantiate");
            ext.omni_extension_tool().call_call(&mut store, "evaluate", ARGS).await.expect("call").expect("ok")
        })
    });
    group.bench_function("omni", |b| {
        b.to_async(&rt).iter(|| async { omni.call("dev.omni.calculator", "evaluate", ARGS).await.expect("call") })
    });
    group.finish();

    let mut group = c.benchmark_group("instantiate");
    group.bench_function("bare_wasmtime", |b| {
        b.to_async(&rt).iter(|| async {
            let mut store = bare_store(engine.engine());
            pre.instantiate_async(&mut store).await.expect("instantiate");
        })
    });
    group.bench_function("omni", |b| {
        b.to_async(&rt).iter(|| async { omni.instantiate("dev.omni.calculator").await.expect("instantiate") })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
