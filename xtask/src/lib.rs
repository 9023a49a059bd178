//! Omni's project tasks as a library, so the test suites build extensions exactly the
//! way `cargo xtask build-extension` does.

pub mod standin;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use omni_capabilities::Manifest;
use omni_host::config::HostLimits;
use omni_host::sandbox::check_imports;
use omni_host::OmniEngine;

/// The target extensions are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// The workspace root.
pub fn project_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Where extension crates are compiled: a target dir of their own, so building them
/// never waits on the lock of the cargo invocation that runs this code.
pub fn extensions_target_dir() -> PathBuf {
    project_root().join("target").join("extensions")
}

/// Where built extensions (component + manifest) are written.
pub fn output_root() -> PathBuf {
    project_root().join("target").join("omni-extensions")
}

/// A built, checked extension ready for `omni install`.
#[derive(Debug, Clone)]
pub struct BuiltExtension {
    /// The folder holding the component and `manifest.toml`.
    pub dir: PathBuf,
    /// The component file.
    pub component: PathBuf,
    /// The validated manifest.
    pub manifest: Manifest,
    /// Component size in bytes.
    pub size: u64,
    /// Every import of the component.
    pub imports: Vec<String>,
    /// Capabilities the component really imports.
    pub capabilities: Vec<String>,
}

/// Fails with the fix when the wasm target is missing.
pub fn check_target() -> anyhow::Result<()> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(project_root())
        .output()
        .context("cannot run rustc; install Rust with rustup (https://rustup.rs)")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !sysroot.join("lib").join("rustlib").join(TARGET).exists() {
        bail!(
            "the {TARGET} target is not installed for this toolchain; run `rustup target add {TARGET}` and try again"
        );
    }
    Ok(())
}

fn crate_name(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{} has no Cargo.toml; pass the folder of an extension crate", dir.display()))?;
    let value: toml::Table = toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    value
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .with_context(|| format!("{} has no [package] name", path.display()))
}

fn cargo_build(manifest_path: &Path, whole_workspace: bool) -> anyhow::Result<()> {
    check_target()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(manifest_path)
        .env("CARGO_TARGET_DIR", extensions_target_dir())
        // Flags meant for the host build must not leak into the wasm build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if whole_workspace {
        cmd.arg("--workspace");
    }
    let status = cmd.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build for {TARGET} failed (see the compiler output above)");
    }
    Ok(())
}

/// Assembles an already compiled extension crate in `dir` into its output folder and
/// checks its manifest and imports.
pub fn assemble(dir: &Path, engine: &OmniEngine) -> anyhow::Result<BuiltExtension> {
    let manifest_path = dir.join("manifest.toml");
    if !manifest_path.is_file() {
        bail!("{} has no manifest.toml; every extension needs one (see manifests/ for a reference)", dir.display());
    }
    let manifest = Manifest::from_path(&manifest_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let name = crate_name(dir)?;
    let built = extensions_target_dir().join(TARGET).join("release").join(format!("{}.wasm", name.replace('-', "_")));
    let bytes = std::fs::read(&built)
        .with_context(|| format!("{} was not produced; is {name} a cdylib crate?", built.display()))?;
    let component = engine
        .compile(&bytes, &built.display().to_string(), Some(&project_root().join("target").join("omni-cache")))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let report = check_imports(&component, &manifest).map_err(|problems| {
        let list: Vec<String> =
            problems.iter().map(|p| format!("  - {}", p.to_string().replace('\n', "\n    "))).collect();
        anyhow::anyhow!("{}: the component's imports do not match manifest.toml:\n{}", dir.display(), list.join("\n"))
    })?;
    let out = output_root().join(&manifest.extension.id);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let component_path = out.join(&manifest.runtime.entrypoint);
    std::fs::write(&component_path, &bytes).with_context(|| format!("cannot write {}", component_path.display()))?;
    std::fs::copy(&manifest_path, out.join("manifest.toml"))
        .with_context(|| format!("cannot copy {}", manifest_path.display()))?;
    Ok(BuiltExtension {
        dir: out,
        component: component_path,
        size: bytes.len() as u64,
        imports: report.all,
        capabilities: report.capabilities.iter().map(|s| s.to_string()).collect(),
        manifest,
    })
}

/// Builds the extension crate in `dir` for wasm32-wasip2 (release), validates its
/// manifest, checks its imports against its declared permissions and writes the
/// component and manifest side by side.
pub fn build_extension(dir: &Path, engine: &OmniEngine) -> anyhow::Result<BuiltExtension> {
    let manifest_path = dir.join("manifest.toml");
    // Validate first: a bad manifest should not cost a compilation.
    if manifest_path.is_file() {
        Manifest::from_path(&manifest_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    cargo_build(&dir.join("Cargo.toml"), false)?;
    assemble(dir, engine)
}

/// Every sample extension folder, adversarial ones included.
pub fn sample_dirs() -> Vec<PathBuf> {
    let root = project_root().join("sample-extensions");
    let mut dirs = Vec::new();
    for base in [root.clone(), root.join("adversarial")] {
        let Ok(entries) = std::fs::read_dir(&base) else { continue };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.join("Cargo.toml").is_file() && p.join("manifest.toml").is_file() {
                dirs.push(p);
            }
        }
    }
    dirs.sort();
    dirs
}

/// Builds every sample in one cargo invocation and assembles each.
///
/// Adversarial samples are assembled without the import check, because some of them
/// exist precisely to fail it; their folders are returned all the same.
pub fn build_samples(engine: &OmniEngine) -> anyhow::Result<Vec<BuiltExtension>> {
    cargo_build(&project_root().join("sample-extensions").join("Cargo.toml"), true)?;
    let mut built = Vec::new();
    for dir in sample_dirs() {
        match assemble(&dir, engine) {
            Ok(b) => built.push(b),
            Err(_) if dir.parent().is_some_and(|p| p.ends_with("adversarial")) => built.push(assemble_unchecked(&dir)?),
            Err(e) => return Err(e),
        }
    }
    Ok(built)
}

/// Copies a compiled crate's component and manifest without checking its imports.
fn assemble_unchecked(dir: &Path) -> anyhow::Result<BuiltExtension> {
    let manifest = Manifest::from_path(&dir.join("manifest.toml")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let name = crate_name(dir)?;
    let built = extensions_target_dir().join(TARGET).join("release").join(format!("{}.wasm", name.replace('-', "_")));
    let bytes = std::fs::read(&built).with_context(|| format!("{} was not produced", built.display()))?;
    let out = output_root().join(&manifest.extension.id);
    std::fs::create_dir_all(&out)?;
    let component = out.join(&manifest.runtime.entrypoint);
    std::fs::write(&component, &bytes)?;
    std::fs::copy(dir.join("manifest.toml"), out.join("manifest.toml"))?;
    Ok(BuiltExtension {
        dir: out,
        component,
        size: bytes.len() as u64,
        imports: Vec::new(),
        capabilities: Vec::new(),
        manifest,
    })
}

/// An engine with the default host limits, for building and checking.
pub fn default_engine() -> anyhow::Result<OmniEngine> {
    OmniEngine::new(&HostLimits::default()).map_err(|e| anyhow::anyhow!("{e}"))
}
