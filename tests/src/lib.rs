//! The harness Omni's suites share: one engine per test process, the sample extensions
//! built once per test run, and hosts on throwaway data dirs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use omni_host::audit::{AuditFilter, AuditRecord, EventKind};
use omni_host::policy::{Decision, GrantDuration};
use omni_host::{Omni, OmniConfig, OmniEngine, PermissionDecision};

pub use xtask::standin::StandIn;

/// The engine every test in this process shares (it owns the instance pool).
pub fn engine() -> OmniEngine {
    static ENGINE: OnceLock<OmniEngine> = OnceLock::new();
    ENGINE.get_or_init(|| xtask::default_engine().expect("the WebAssembly engine starts")).clone()
}

/// Built sample folders by extension id, built once per test process.
///
/// Cargo makes a second build in another test process a quick no-op.
pub fn samples() -> &'static HashMap<String, PathBuf> {
    static SAMPLES: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let built =
            xtask::build_samples(&engine()).unwrap_or_else(|e| panic!("building the sample extensions failed: {e:#}"));
        built.into_iter().map(|b| (b.manifest.extension.id.clone(), b.dir)).collect()
    })
}

/// The built folder of sample `id` (e.g. `dev.omni.calculator`).
pub fn sample(id: &str) -> PathBuf {
    samples().get(id).cloned().unwrap_or_else(|| panic!("no sample extension with id {id}"))
}

/// A host on a fresh data dir. Keep the `TempDir` alive as long as the host.
pub fn host(config: OmniConfig) -> (tempfile::TempDir, Omni) {
    let dir = tempfile::tempdir().expect("temp dir");
    let omni = Omni::builder(dir.path()).engine(engine()).config(config).open().expect("host opens");
    (dir, omni)
}

/// Installs sample `id`, granting every capability it declares, Always.
pub fn install_granting_all(omni: &Omni, id: &str) {
    install_from(omni, &sample(id), |_| Decision::Allow);
}

/// Installs the extension in `source` (a built folder), deciding each declared
/// capability with `decide` (by capability key), Always.
pub fn install_from(omni: &Omni, source: &Path, decide: impl Fn(&str) -> Decision) {
    let plan = omni.prepare_install(source).unwrap_or_else(|e| panic!("prepare {}: {e}", source.display()));
    let decisions: Vec<PermissionDecision> = plan
        .manifest
        .permissions
        .iter()
        .map(|p| PermissionDecision {
            capability: p.capability.clone(),
            decision: decide(&p.capability),
            duration: GrantDuration::Always,
        })
        .collect();
    omni.install(&plan, &decisions).unwrap_or_else(|e| panic!("install {}: {e}", source.display()));
}

/// A copy of sample `id`'s built folder whose manifest is `edit(manifest)`: the same
/// component under another scope. Keep the `TempDir` alive while it is installed.
pub fn sample_with_manifest(id: &str, edit: impl FnOnce(&str) -> String) -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(sample(id)).expect("the built sample") {
        let path = entry.expect("entry").path();
        if let (true, Some(name)) = (path.is_file(), path.file_name()) {
            std::fs::copy(&path, copy.path().join(name)).expect("copy");
        }
    }
    let manifest = copy.path().join("manifest.toml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(&manifest, edit(&text)).expect("rewrite the manifest");
    copy
}

/// A multi-threaded runtime for a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("tokio runtime")
}

/// A config that maps `api.open-meteo.com` to the stand-in.
pub fn config_with_standin(standin: &StandIn) -> OmniConfig {
    let mut config = OmniConfig::default();
    config.network.resolve.insert("api.open-meteo.com".into(), standin.base_url());
    config
}

/// The audit records of `capability` for `extension`, narrowed to one decision and
/// one event kind when given.
pub fn audit_records(
    omni: &Omni,
    extension: &str,
    capability: &str,
    decision: Option<Decision>,
    kind: Option<EventKind>,
) -> Vec<AuditRecord> {
    omni.audit()
        .query(&AuditFilter {
            extension: Some(extension.into()),
            capability: Some(capability.into()),
            decision,
            kind,
            ..AuditFilter::default()
        })
        .expect("audit query")
}

/// Asserts that one of `records` (of `capability`) has a reason holding every word of
/// `reason_has`; on failure it lists the reasons there are.
pub fn assert_reason(records: &[AuditRecord], capability: &str, reason_has: &[&str]) {
    assert!(
        records.iter().any(|r| reason_has.iter().all(|w| r.reason.contains(w))),
        "no audit record of {capability} with {reason_has:?}; reasons: {:?}",
        records.iter().map(|r| (&r.target, &r.reason)).collect::<Vec<_>>()
    );
}
