//! Speed of the work done on every install (manifest parsing) and on every
//! host call (scope checks), plus the update comparison.

use criterion::{criterion_group, criterion_main, Criterion};
use omni_capabilities::{lookup, FsRoots, Manifest, Scope};
use std::hint::black_box;
use std::path::{Path, PathBuf};

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("manifests")
}

fn scope(cap: &str, text: &str) -> Scope {
    let info = lookup(cap).unwrap_or_else(|| panic!("unknown capability {cap}"));
    let value: toml::Value = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
    Scope::parse(info, Some(&value), "scope").unwrap_or_else(|e| panic!("{e:?}"))
}

fn bench(c: &mut Criterion) {
    let reference = std::fs::read_to_string(manifests_dir().join("reference.toml"))
        .unwrap_or_else(|e| panic!("reference manifest: {e}"));
    c.bench_function("manifest/parse_reference", |b| {
        b.iter(|| Manifest::from_toml_str(black_box(&reference), "reference.toml"))
    });
    let manifest = Manifest::from_toml_str(&reference, "reference.toml").unwrap_or_else(|e| panic!("{e}"));
    c.bench_function("manifest/to_toml_string", |b| b.iter(|| black_box(&manifest).to_toml_string()));
    let Some(tool) = manifest.tool("get_weather") else { panic!("tool") };
    let args = serde_json::json!({"latitude": 52.52, "longitude": 13.41});
    c.bench_function("tool/validate_arguments", |b| b.iter(|| tool.validate_arguments(black_box(&args))));

    let net = scope(
        "network.http",
        "domains = ['api.example.com', '*.cdn.example.net', 'http://legacy.example.org', 'a.example.org', 'b.example.org', 'c.example.org']\nmethods = ['GET', 'POST']",
    );
    let Some(net) = net.as_network() else { panic!("network scope") };
    let allowed = url::Url::parse("https://img.cdn.example.net/a/b.png?size=2").unwrap_or_else(|e| panic!("{e}"));
    let refused = url::Url::parse("https://cdn.example.net.evil.com/").unwrap_or_else(|e| panic!("{e}"));
    c.bench_function("scope/network_check_allowed", |b| b.iter(|| net.check(black_box(&allowed), Some("GET"))));
    c.bench_function("scope/network_check_refused", |b| b.iter(|| net.check(black_box(&refused), Some("GET"))));

    let fs = scope(
        "filesystem.read",
        "paths = ['~/Notes', '/srv/shared/notes', '/data', 'cache']\nextensions = ['md', 'txt']",
    );
    let Some(fs) = fs.as_fs() else { panic!("fs scope") };
    let roots = FsRoots { home: Some(Path::new("/home/ada")), data: Some(Path::new("/var/lib/omni/ext")) };
    let file = Path::new("/home/ada/Notes/2026/11/journal.md");
    c.bench_function("scope/fs_check_path", |b| b.iter(|| fs.check_path_in(black_box(file), &roots)));

    let wide = scope("network.http", "domains = ['*.example.com', '*.example.org']\nmethods = ['GET', 'POST']");
    let narrow = scope("network.http", "domains = ['api.example.com', 'a.b.example.org']\nmethods = ['GET']");
    c.bench_function("scope/is_within", |b| b.iter(|| black_box(&narrow).is_within(black_box(&wide))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
