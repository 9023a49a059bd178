//! `filesystem.read`, `filesystem.write` and `process.spawn` end to end: what a grant
//! allows, what it does not, and the hostile cases of `adversarial/fs-escape`.
//!
//! Every test installs a copy of the probe (or of `files`) whose manifest scopes are
//! rewritten to point into temporary folders, so nothing outside them is ever touched.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use omni_host::audit::EventKind;
use omni_host::caps::fs::{CapStdFs, FsBackend, FsEntry, FsError, FsMetadata, FsRoot, Resolved};
use omni_host::caps::process::{ProcessBackend, RunFuture, SpawnOutput, SpawnRequest};
use omni_host::policy::Decision;
use omni_host::{CallError, LimitExceeded, Omni, OmniBuilder, OmniConfig, OmniError};
use omni_tests::{assert_reason, audit_records, engine, install_from, runtime, sample_with_manifest};
use serde_json::{json, Value};

const PROBE: &str = "dev.omni.adversarial.fs-escape";
const READ: &str = "filesystem.read";
const WRITE: &str = "filesystem.write";
const SPAWN: &str = "process.spawn";

/// Scopes written into the probe's manifest, as TOML inline tables.
struct Scopes {
    read: String,
    write: String,
    spawn: String,
}

impl Scopes {
    /// Read and write on `root`; `env` and `pwd` as programs.
    fn on(root: &Path) -> Scopes {
        let paths = format!("scope = {{ paths = [{:?}] }}", root.display().to_string());
        Scopes {
            read: paths.clone(),
            write: paths,
            spawn: format!("scope = {{ executables = [{:?}, {:?}] }}", program("env"), program("pwd")),
        }
    }
}

/// The absolute path of a standard program on this host.
fn program(name: &str) -> String {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed in /usr/bin or /bin"))
        .display()
        .to_string()
}

/// Rewrites each permission's `scope = ...` line, and optionally the call time limit.
fn rewrite_manifest(text: &str, scopes: &Scopes, cpu_ms: Option<u64>) -> String {
    let mut current = String::new();
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("capability = ") {
            current = rest.trim_matches('"').to_string();
        }
        let replaced = if trimmed.starts_with("scope = ") {
            match current.as_str() {
                READ => scopes.read.clone(),
                WRITE => scopes.write.clone(),
                SPAWN => scopes.spawn.clone(),
                _ => line.to_string(),
            }
        } else if trimmed.starts_with("max_cpu_ms_per_call") && cpu_ms.is_some() {
            format!("max_cpu_ms_per_call = {}", cpu_ms.unwrap_or_default())
        } else {
            line.to_string()
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    out
}

/// A host with a rewritten copy of an extension installed.
struct Fixture {
    omni: Omni,
    id: &'static str,
    rt: tokio::runtime::Runtime,
    /// The granted folder.
    root: tempfile::TempDir,
    /// A folder outside every grant, holding `secret.txt`.
    outside: tempfile::TempDir,
    _data: tempfile::TempDir,
    _ext: tempfile::TempDir,
}

fn fixture_with(
    id: &'static str,
    config: OmniConfig,
    scopes: impl FnOnce(&Path, &Path) -> Scopes,
    grant: &[&str],
    cpu_ms: Option<u64>,
) -> Fixture {
    fixture_built(id, config, scopes, grant, cpu_ms, |b| b)
}

/// [`fixture_with`], with the host builder adjusted (e.g. to replace a backend).
fn fixture_built(
    id: &'static str,
    config: OmniConfig,
    scopes: impl FnOnce(&Path, &Path) -> Scopes,
    grant: &[&str],
    cpu_ms: Option<u64>,
    builder: impl FnOnce(OmniBuilder) -> OmniBuilder,
) -> Fixture {
    let root = tempfile::tempdir().expect("root");
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("secret.txt"), "top secret").expect("secret");
    std::fs::write(root.path().join("a.txt"), "hello").expect("a.txt");
    let scopes = scopes(root.path(), outside.path());
    let ext = sample_with_manifest(id, |manifest| rewrite_manifest(manifest, &scopes, cpu_ms));
    let data = tempfile::tempdir().expect("data dir");
    let omni = builder(Omni::builder(data.path()).engine(engine()).config(config)).open().expect("host opens");
    install_from(&omni, ext.path(), |cap| if grant.contains(&cap) { Decision::Allow } else { Decision::Deny });
    Fixture { omni, id, rt: runtime(), root, outside, _data: data, _ext: ext }
}

/// The probe with read, write and spawn granted on a fresh root.
fn probe() -> Fixture {
    probe_with(OmniConfig::default())
}

fn probe_with(config: OmniConfig) -> Fixture {
    fixture_with(PROBE, config, |root, _| Scopes::on(root), &[READ, WRITE, SPAWN], None)
}

impl Fixture {
    fn path(&self, rel: &str) -> String {
        self.root.path().join(rel).display().to_string()
    }

    fn secret(&self) -> String {
        self.outside.path().join("secret.txt").display().to_string()
    }

    fn try_call(&self, tool: &str, args: Value) -> Result<Value, OmniError> {
        let out = self.rt.block_on(self.omni.call(self.id, tool, &args.to_string()))?;
        Ok(serde_json::from_str(&out.output).expect("the tool returns JSON"))
    }

    fn call(&self, tool: &str, args: Value) -> Value {
        self.try_call(tool, args.clone()).unwrap_or_else(|e| panic!("{tool} {args}: {e}"))
    }

    /// Calls a probe tool that must be refused with error case `kind`; returns the message.
    fn refused(&self, tool: &str, args: Value, kind: &str) -> String {
        let v = self.call(tool, args.clone());
        assert_eq!(v["error"]["kind"], kind, "{tool} {args} should be refused as {kind}: {v}");
        v["error"]["message"].as_str().unwrap_or_default().to_string()
    }

    /// Asserts a deny record of `capability` whose reason contains `needle`.
    fn assert_denied(&self, capability: &str, needle: &str) {
        let denials = audit_records(&self.omni, self.id, capability, Some(Decision::Deny), None);
        assert_reason(&denials, capability, &[needle]);
    }

    /// The host still serves an ordinary, allowed call.
    fn assert_serves(&self) {
        let v = self.call("read", json!({ "path": self.path("a.txt") }));
        assert_eq!(v["ok"], "hello", "an ordinary read must still work: {v}");
    }

    fn assert_secret_untouched(&self) {
        assert_eq!(std::fs::read_to_string(self.secret()).expect("secret"), "top secret");
        let names: Vec<_> =
            std::fs::read_dir(self.outside.path()).expect("outside").map(|e| e.expect("e").file_name()).collect();
        assert_eq!(names.len(), 1, "nothing may be created outside the root: {names:?}");
    }
}

#[cfg(unix)]
fn symlink(target: impl AsRef<Path>, link: impl AsRef<Path>) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

// ---------------------------------------------------------------------------------------
// filesystem.read
// ---------------------------------------------------------------------------------------

#[test]
fn fs_read_allowed_in_scope() {
    let f = probe();
    std::fs::create_dir(f.root.path().join("sub")).expect("sub");
    std::fs::write(f.root.path().join("sub/b.txt"), "bee").expect("b");
    assert_eq!(f.call("read", json!({ "path": f.path("a.txt") }))["ok"], "hello");
    assert_eq!(f.call("read", json!({ "path": f.path("sub/../sub/./b.txt") }))["ok"], "bee");
    assert_eq!(f.call("list", json!({ "path": f.path("") }))["ok"], json!(["a.txt", "sub"]));
    assert_eq!(f.call("metadata", json!({ "path": f.path("sub/b.txt") }))["ok"]["size"], 3);
    let missing = f.refused("read", json!({ "path": f.path("nope.txt") }), "io");
    assert!(missing.contains("does not exist"), "{missing}");
}

#[test]
fn fs_read_out_of_scope_is_refused_and_audited() {
    let f = probe();
    let message = f.refused("read", json!({ "path": f.secret() }), "out-of-scope");
    assert!(message.contains("outside the allowed paths"), "{message}");
    f.assert_denied(READ, "outside the allowed paths");
    f.assert_serves();
}

#[test]
fn fs_read_ungranted_is_permission_denied() {
    let f = fixture_with(PROBE, OmniConfig::default(), |root, _| Scopes::on(root), &[WRITE], None);
    let message = f.refused("read", json!({ "path": f.path("a.txt") }), "permission-denied");
    assert!(message.contains(READ), "{message}");
    // The refusal at install is the audited deny decision.
    let grants = audit_records(&f.omni, PROBE, READ, None, Some(EventKind::Grant));
    assert!(grants.iter().any(|r| r.decision == Some(Decision::Deny)), "{grants:#?}");
    // A revoked grant is refused at call time too.
    let g = probe();
    g.omni.policy().revoke(PROBE, Some(READ)).expect("revoke");
    g.refused("read", json!({ "path": g.path("a.txt") }), "permission-denied");
    assert_eq!(g.call("write", json!({ "path": g.path("w.txt"), "content": "still" }))["ok"], Value::Null);
    assert_eq!(std::fs::read_to_string(g.root.path().join("w.txt")).expect("w"), "still");
}

#[test]
fn fs_scope_extensions_and_max_size_are_enforced() {
    let scopes = |root: &Path, _: &Path| {
        let s =
            format!("scope = {{ paths = [{:?}], extensions = [\"txt\"], max_size = 10 }}", root.display().to_string());
        Scopes { read: s.clone(), write: s, spawn: "scope = { executables = [\"/usr/bin/env\"] }".into() }
    };
    let f = fixture_with(PROBE, OmniConfig::default(), scopes, &[READ, WRITE], None);
    std::fs::write(f.root.path().join("n.md"), "md").expect("md");
    std::fs::write(f.root.path().join("big.txt"), "0123456789ABC").expect("big");
    assert!(f.refused("read", json!({ "path": f.path("n.md") }), "out-of-scope").contains(".md"));
    assert!(f.refused("read", json!({ "path": f.path("big.txt") }), "out-of-scope").contains("larger"));
    assert!(f
        .refused("write", json!({ "path": f.path("w.txt"), "content": "01234567890" }), "out-of-scope")
        .contains("larger"));
    assert!(!f.root.path().join("w.txt").exists());
    f.refused("append", json!({ "path": f.path("a.txt"), "content": "123456" }), "out-of-scope");
    assert_eq!(std::fs::read_to_string(f.root.path().join("a.txt")).expect("a"), "hello");
    f.assert_denied(READ, "not in scope");
    f.assert_denied(WRITE, "larger than");
    f.assert_serves();
}

#[test]
fn fs_relative_paths_live_in_the_extension_data_folder() {
    let files = tempfile::tempdir().expect("extension files");
    let mut config = OmniConfig::default();
    config.filesystem.extension_files = Some(files.path().to_path_buf());
    let relative = |_: &Path, _: &Path| Scopes {
        read: "scope = { paths = [\"notes\"] }".into(),
        write: "scope = { paths = [\"notes\"] }".into(),
        spawn: "scope = { executables = [\"/usr/bin/env\"] }".into(),
    };
    let f = fixture_with(PROBE, config, relative, &[READ, WRITE], None);
    assert_eq!(f.call("write", json!({ "path": "notes/today.txt", "content": "relative" }))["ok"], Value::Null);
    let stored = files.path().join(PROBE).join("notes/today.txt");
    assert_eq!(std::fs::read_to_string(&stored).expect("stored in the data folder"), "relative");
    assert_eq!(f.call("read", json!({ "path": stored.display().to_string() }))["ok"], "relative");
    // Another folder of the data folder, and a climb out of it, are outside the scope.
    f.refused("write", json!({ "path": "other/x.txt", "content": "x" }), "out-of-scope");
    f.refused("read", json!({ "path": "notes/../../../secret.txt" }), "out-of-scope");
    f.assert_denied(WRITE, "outside the allowed paths");
    // Without a configured data folder, relative paths mean nothing.
    let g = fixture_with(PROBE, OmniConfig::default(), relative, &[READ, WRITE], None);
    let message = g.refused("read", json!({ "path": "notes/today.txt" }), "invalid-input");
    assert!(message.contains("extension_files"), "{message}");
}

// ---------------------------------------------------------------------------------------
// filesystem.write
// ---------------------------------------------------------------------------------------

#[test]
fn fs_write_allowed_in_scope() {
    let f = probe();
    assert_eq!(f.call("write", json!({ "path": f.path("new.txt"), "content": "one" }))["ok"], Value::Null);
    assert_eq!(f.call("append", json!({ "path": f.path("new.txt"), "content": "+two" }))["ok"], Value::Null);
    assert_eq!(std::fs::read_to_string(f.root.path().join("new.txt")).expect("new"), "one+two");
    assert_eq!(f.call("rename", json!({ "from": f.path("new.txt"), "to": f.path("moved.txt") }))["ok"], Value::Null);
    assert!(f.root.path().join("moved.txt").is_file() && !f.root.path().join("new.txt").exists());
    assert_eq!(f.call("remove", json!({ "path": f.path("moved.txt") }))["ok"], Value::Null);
    assert!(!f.root.path().join("moved.txt").exists());
    // The granted folder itself is never removed.
    f.refused("remove", json!({ "path": f.path(""), "recursive": true }), "invalid-input");
    assert!(f.root.path().join("a.txt").is_file());
}

#[test]
fn fs_write_out_of_scope_is_refused_and_audited() {
    let f = probe();
    let target = f.outside.path().join("dropped.txt").display().to_string();
    f.refused("write", json!({ "path": target, "content": "x" }), "out-of-scope");
    f.refused("rename", json!({ "from": f.path("a.txt"), "to": target }), "out-of-scope");
    f.refused("remove", json!({ "path": f.secret() }), "out-of-scope");
    f.assert_secret_untouched();
    assert!(f.root.path().join("a.txt").is_file(), "a refused rename must not move the source");
    f.assert_denied(WRITE, "outside the allowed paths");
    f.assert_serves();
}

#[test]
fn fs_write_ungranted_is_permission_denied() {
    let f = fixture_with(PROBE, OmniConfig::default(), |root, _| Scopes::on(root), &[READ], None);
    let message = f.refused("write", json!({ "path": f.path("w.txt"), "content": "x" }), "permission-denied");
    assert!(message.contains(WRITE), "{message}");
    assert!(!f.root.path().join("w.txt").exists());
    f.assert_serves();
}

#[test]
fn fs_write_is_atomic_and_leaves_no_temporary_files() {
    let f = probe();
    let file = f.root.path().join("big.txt");
    let old = "A".repeat(300_000);
    let new = "B".repeat(500_000);
    std::fs::write(&file, &old).expect("old");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (file, stop, old, new) = (file.clone(), stop.clone(), old.clone(), new.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) || reads == 0 {
                let seen = std::fs::read_to_string(&file).expect("the file always exists");
                assert!(seen == old || seen == new, "a reader saw a partial file of {} bytes", seen.len());
                reads += 1;
            }
            reads
        })
    };
    for i in 0..12 {
        let content = if i % 2 == 0 { &new } else { &old };
        assert_eq!(
            f.call("write", json!({ "path": file.display().to_string(), "content": content }))["ok"],
            Value::Null
        );
    }
    stop.store(true, Ordering::SeqCst);
    assert!(reader.join().expect("the reader saw only whole files") > 0);
    assert_eq!(std::fs::read_to_string(&file).expect("final"), old);
    let names: Vec<String> = std::fs::read_dir(f.root.path())
        .expect("root")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".omni-")), "temporary files left behind: {names:?}");
    // A write that fails (its folder is missing) leaves nothing behind either.
    f.refused("write", json!({ "path": f.path("missing/x.txt"), "content": "x" }), "io");
    assert_eq!(std::fs::read_dir(f.root.path()).expect("root").count(), names.len());
}

#[test]
fn fs_write_global_read_only_and_read_only_scope() {
    let mut config = OmniConfig::default();
    config.security.read_only = true;
    let f = probe_with(config);
    let message = f.refused("write", json!({ "path": f.path("w.txt"), "content": "x" }), "permission-denied");
    assert!(message.contains("read_only"), "{message}");
    f.assert_denied(WRITE, "read_only");
    assert!(!f.root.path().join("w.txt").exists());
    f.assert_serves();
    // A read-only grant is filesystem.read alone: writes are not linked.
    let g = fixture_with(PROBE, OmniConfig::default(), |root, _| Scopes::on(root), &[READ], None);
    g.refused("remove", json!({ "path": g.path("a.txt") }), "permission-denied");
    g.assert_serves();
}

#[test]
fn files_sample_reads_writes_and_lists_its_folder() {
    let scopes = |root: &Path, _: &Path| {
        let s = format!("scope = {{ paths = [{:?}], max_size = \"4MiB\" }}", root.display().to_string());
        Scopes { read: s.clone(), write: s, spawn: String::new() }
    };
    let f = fixture_with("dev.omni.files", OmniConfig::default(), scopes, &[READ, WRITE], None);
    let written = f.call("write", json!({ "path": f.path("notes/../todo.md"), "content": "- ship it" }));
    assert_eq!(written["bytes"], 9);
    assert_eq!(f.call("read", json!({ "path": f.path("todo.md") }))["content"], "- ship it");
    let listed = f.call("list", json!({ "path": f.path("") }));
    assert_eq!(
        listed,
        json!([{ "name": "a.txt", "kind": "file", "size": 5 }, { "name": "todo.md", "kind": "file", "size": 9 }])
    );
    match f.try_call("read", json!({ "path": f.secret() })) {
        Err(OmniError::Call(CallError::Tool { message, denials })) => {
            assert!(message.contains("out of scope"), "{message}");
            assert!(!denials.is_empty());
        }
        other => panic!("reading outside the folder must fail: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Hostile filesystem cases
// ---------------------------------------------------------------------------------------

#[test]
fn hostile_fs_dotdot_traversal() {
    let f = probe();
    let name = f.outside.path().file_name().expect("name").to_string_lossy().into_owned();
    for path in [
        format!("{}/../{name}/secret.txt", f.root.path().display()),
        format!("{}/../../../../../../{}", f.root.path().display(), f.secret().trim_start_matches('/')),
        format!("{}/./../{name}/./secret.txt", f.root.path().display()),
    ] {
        f.refused("read", json!({ "path": path }), "out-of-scope");
        f.refused("write", json!({ "path": path, "content": "pwned" }), "out-of-scope");
    }
    f.assert_secret_untouched();
    f.assert_denied(READ, "outside the allowed paths");
    f.assert_denied(WRITE, "outside the allowed paths");
    f.assert_serves();
}

#[test]
fn hostile_fs_encoded_traversal() {
    let f = probe();
    let name = f.outside.path().file_name().expect("name").to_string_lossy().into_owned();
    let root = f.root.path().display().to_string();
    for encoded in [
        format!("{root}/%2e%2e/{name}/secret.txt"),
        format!("{root}/..%2f{name}%2fsecret.txt"),
        format!("{root}/%2E%2E%2F{name}/secret.txt"),
        format!("{root}/%252e%252e/{name}/secret.txt"),
        format!("{root}/%c0%ae%c0%ae/{name}/secret.txt"),
        format!("{root}/..\\{name}\\secret.txt"),
    ] {
        f.refused("read", json!({ "path": encoded }), "out-of-scope");
    }
    f.assert_denied(READ, "percent-encoded");
    f.assert_denied(READ, "backslash");
    // Look-alike dots are ordinary names: they stay inside the root and find nothing.
    f.refused("read", json!({ "path": format!("{root}/\u{ff0e}\u{ff0e}/{name}/secret.txt") }), "io");
    f.assert_serves();
}

#[test]
fn hostile_fs_absolute_path_outside() {
    let f = probe();
    for path in [f.secret(), "/etc/passwd".to_string(), "/proc/self/environ".to_string()] {
        f.refused("read", json!({ "path": path }), "out-of-scope");
    }
    f.refused("list", json!({ "path": "/" }), "out-of-scope");
    f.assert_denied(READ, "outside the allowed paths");
    f.assert_serves();
}

#[cfg(unix)]
#[test]
fn hostile_fs_symlink_escape() {
    let f = probe();
    symlink(f.secret(), f.root.path().join("innocent.txt"));
    symlink("../../../../../../../../etc/passwd", f.root.path().join("relative.txt"));
    for link in ["innocent.txt", "relative.txt"] {
        let message = f.refused("read", json!({ "path": f.path(link) }), "out-of-scope");
        assert!(message.contains("symbolic link") || message.contains("above the granted folder"), "{message}");
        f.refused("write", json!({ "path": f.path(link), "content": "pwned" }), "out-of-scope");
        f.refused("append", json!({ "path": f.path(link), "content": "pwned" }), "out-of-scope");
    }
    f.assert_secret_untouched();
    f.assert_denied(READ, "symbolic link");
    f.assert_denied(WRITE, "symbolic link");
    // A link that stays inside the root is followed.
    symlink("a.txt", f.root.path().join("alias.txt"));
    assert_eq!(f.call("read", json!({ "path": f.path("alias.txt") }))["ok"], "hello");
    f.assert_serves();
}

#[cfg(unix)]
#[test]
fn hostile_fs_symlinked_parent_directory() {
    let f = probe();
    symlink(f.outside.path(), f.root.path().join("door"));
    f.refused("read", json!({ "path": f.path("door/secret.txt") }), "out-of-scope");
    f.refused("list", json!({ "path": f.path("door") }), "out-of-scope");
    f.refused("write", json!({ "path": f.path("door/planted.txt"), "content": "x" }), "out-of-scope");
    f.refused("rename", json!({ "from": f.path("a.txt"), "to": f.path("door/a.txt") }), "out-of-scope");
    f.refused("remove", json!({ "path": f.path("door/secret.txt") }), "out-of-scope");
    f.assert_secret_untouched();
    f.assert_denied(READ, "symbolic link");
    f.assert_denied(WRITE, "symbolic link");
    f.assert_serves();
}

#[test]
fn hostile_fs_blocked_path_under_an_allowed_root() {
    let root = tempfile::tempdir().expect("root");
    let private = root.path().join("sub/private");
    std::fs::create_dir_all(&private).expect("private");
    std::fs::write(private.join("key.pem"), "KEY").expect("key");
    let mut config = OmniConfig::default();
    config.security.blocked_paths = vec![private.display().to_string()];
    let r = root.path().to_path_buf();
    let f = fixture_with(PROBE, config, move |_, _| Scopes::on(&r), &[READ, WRITE, SPAWN], None);
    std::fs::write(root.path().join("a.txt"), "hello").expect("a");
    let key = private.join("key.pem").display().to_string();
    let message = f.refused("read", json!({ "path": key }), "permission-denied");
    assert!(message.contains("blocked path"), "{message}");
    f.refused("write", json!({ "path": key, "content": "x" }), "permission-denied");
    f.refused("list", json!({ "path": private.display().to_string() }), "permission-denied");
    f.assert_denied(READ, "blocked path");
    f.assert_denied(WRITE, "blocked path");
    // Listing the parent hides it; removing or moving the parent is refused.
    let listed = f.call("list", json!({ "path": root.path().join("sub").display().to_string() }));
    assert_eq!(listed["ok"], json!([]), "{listed}");
    let sub = root.path().join("sub").display().to_string();
    f.refused("remove", json!({ "path": sub, "recursive": true }), "out-of-scope");
    f.refused(
        "rename",
        json!({ "from": sub, "to": root.path().join("elsewhere").display().to_string() }),
        "out-of-scope",
    );
    f.assert_denied(WRITE, "holds the blocked path");
    assert_eq!(std::fs::read_to_string(private.join("key.pem")).expect("key"), "KEY");
    let v = f.call("read", json!({ "path": root.path().join("a.txt").display().to_string() }));
    assert_eq!(v["ok"], "hello");
}

#[cfg(unix)]
#[test]
fn hostile_fs_device_files() {
    let f = probe();
    symlink("/dev/zero", f.root.path().join("zero.txt"));
    symlink("/dev/random", f.root.path().join("random.txt"));
    for link in ["zero.txt", "random.txt"] {
        f.refused("read", json!({ "path": f.path(link) }), "out-of-scope");
    }
    f.assert_denied(READ, "symbolic link");
    // A pipe inside the root is refused without blocking.
    let status = std::process::Command::new("mkfifo").arg(f.root.path().join("pipe.txt")).status().expect("mkfifo");
    assert!(status.success());
    let message = f.refused("read", json!({ "path": f.path("pipe.txt") }), "out-of-scope");
    assert!(message.contains("device, pipe or socket"), "{message}");
    f.refused("write", json!({ "path": f.path("pipe.txt"), "content": "x" }), "out-of-scope");
    f.assert_denied(READ, "device, pipe or socket");
    f.assert_denied(WRITE, "device, pipe or socket");
    f.assert_serves();
    // Granting /dev itself still reads no device.
    let dev = fixture_with(PROBE, OmniConfig::default(), |_, _| Scopes::on(Path::new("/dev")), &[READ], None);
    for device in ["/dev/zero", "/dev/random", "/dev/null"] {
        dev.refused("read", json!({ "path": device }), "out-of-scope");
    }
    dev.assert_denied(READ, "device, pipe or socket");
}

// ---------------------------------------------------------------------------------------
// process.spawn
// ---------------------------------------------------------------------------------------

#[test]
fn process_allowed_runs_with_an_empty_environment() {
    let f = probe();
    let v = f.call("spawn", json!({ "program": program("env") }));
    assert_eq!(v["ok"]["exit_code"], 0, "{v}");
    assert_eq!(v["ok"]["stdout"], "", "the child's environment must be empty: {v}");
    let v = f.call("spawn", json!({ "program": "env", "env": { "LANG": "C.UTF-8", "TZ": "UTC" } }));
    assert_eq!(v["ok"]["stdout"], "LANG=C.UTF-8\nTZ=UTC\n", "{v}");
    let v = f.call("spawn", json!({ "program": program("pwd"), "cwd": f.path("") }));
    let printed = v["ok"]["stdout"].as_str().unwrap_or_default().trim().to_string();
    let real_root = std::fs::canonicalize(f.root.path()).expect("canonical");
    assert_eq!(Path::new(&printed), real_root, "{v}");
    let v = f.call("spawn", json!({ "program": "/usr/bin/env", "args": ["-i"], "stdin": "ignored" }));
    assert_eq!(v["ok"]["exit_code"], 0, "{v}");
}

#[test]
fn process_out_of_scope_program_is_refused_and_audited() {
    let f = probe();
    let message = f.refused("spawn", json!({ "program": program("ls"), "args": ["/"] }), "out-of-scope");
    assert!(message.contains("not in scope"), "{message}");
    f.assert_denied(SPAWN, "not in scope");
    assert_eq!(f.call("spawn", json!({ "program": program("env") }))["ok"]["exit_code"], 0);
}

#[test]
fn process_ungranted_is_permission_denied() {
    let f = fixture_with(PROBE, OmniConfig::default(), |root, _| Scopes::on(root), &[READ, WRITE], None);
    let message = f.refused("spawn", json!({ "program": program("env") }), "permission-denied");
    assert!(message.contains(SPAWN), "{message}");
    f.assert_serves();
}

#[test]
fn process_timeout_kills_the_program() {
    let scopes = |root: &Path, _: &Path| Scopes {
        spawn: format!("scope = {{ executables = [{:?}] }}", program("sleep")),
        ..Scopes::on(root)
    };
    let f = fixture_with(PROBE, OmniConfig::default(), scopes, &[READ, WRITE, SPAWN], None);
    let v = f.call("spawn", json!({ "program": program("sleep"), "args": ["30"], "timeout_ms": 200 }));
    assert_eq!(v["ok"]["timed_out"], true, "{v}");
    assert_eq!(v["ok"]["exit_code"], Value::Null, "{v}");
}

/// Live processes with `marker` as one of their arguments.
#[cfg(target_os = "linux")]
fn processes_with_arg(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
                .filter(|pid| {
                    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
                        .unwrap_or(false);
                    alive
                        && std::fs::read(format!("/proc/{pid}/cmdline"))
                            .map(|c| c.split(|b| *b == 0).any(|a| a == marker.as_bytes()))
                            .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(target_os = "linux")]
#[test]
fn process_is_killed_when_the_call_time_limit_fires() {
    let sleep = program("sleep");
    let s = sleep.clone();
    let scopes = move |root: &Path, _: &Path| Scopes {
        spawn: format!("scope = {{ executables = [{s:?}] }}"),
        ..Scopes::on(root)
    };
    let f = fixture_with(PROBE, OmniConfig::default(), scopes, &[READ, WRITE, SPAWN], Some(1000));
    // A duration no other process on the machine uses, to find this child in /proc.
    let marker = format!("{}.{}", 40 + std::process::id() % 50, std::process::id());
    let err = f.try_call("spawn", json!({ "program": sleep, "args": [marker], "timeout_ms": 60000 })).unwrap_err();
    assert!(matches!(err, OmniError::Call(CallError::Limit(LimitExceeded::Time { .. }))), "{err}");
    // The kill is sent when the call is dropped; give the kernel a moment to reap.
    let mut left = processes_with_arg(&marker);
    for _ in 0..200 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        left = processes_with_arg(&marker);
    }
    assert!(left.is_empty(), "the program outlived its call: {left:?}");
    f.assert_serves();
}

// ---------------------------------------------------------------------------------------
// Hostile process cases
// ---------------------------------------------------------------------------------------

const METACHARACTERS: &[&str] =
    &["; rm -rf /", "$(id)", "`id`", "a | cat /etc/passwd", "true && id", "x\nid", "${HOME}", "> /tmp/x"];

#[test]
fn hostile_process_shell_metacharacters_are_passed_literally() {
    let printf = program("printf");
    let p = printf.clone();
    let scopes = move |root: &Path, _: &Path| Scopes {
        spawn: format!("scope = {{ executables = [{p:?}] }}"),
        ..Scopes::on(root)
    };
    let f = fixture_with(PROBE, OmniConfig::default(), scopes, &[READ, WRITE, SPAWN], None);
    let mut args = vec!["%s\\n--\\n".to_string()];
    args.extend(METACHARACTERS.iter().map(|s| s.to_string()));
    let v = f.call("spawn", json!({ "program": printf, "args": args }));
    assert_eq!(v["ok"]["exit_code"], 0, "{v}");
    let printed = v["ok"]["stdout"].as_str().unwrap_or_default().to_string();
    let want: String = METACHARACTERS.iter().map(|m| format!("{m}\n--\n")).collect();
    assert_eq!(printed, want, "every argument must reach the program unchanged");
    assert!(!Path::new("/tmp/x").exists() || std::fs::read_to_string("/tmp/x").map(|s| s.is_empty()).unwrap_or(true));
}

#[test]
fn hostile_process_shell_metacharacters_refused_by_scope() {
    let printf = program("printf");
    let p = printf.clone();
    let scopes = move |root: &Path, _: &Path| Scopes {
        spawn: format!("scope = {{ executables = [{p:?}], denied_args = [\"/.*[;&|`$<>\\\\n].*/\"] }}"),
        ..Scopes::on(root)
    };
    let f = fixture_with(PROBE, OmniConfig::default(), scopes, &[READ, WRITE, SPAWN], None);
    for meta in METACHARACTERS {
        let message = f.refused("spawn", json!({ "program": printf, "args": ["%s", meta] }), "out-of-scope");
        assert!(message.contains("denied by"), "{meta:?}: {message}");
    }
    f.assert_denied(SPAWN, "denied by");
    let v = f.call("spawn", json!({ "program": printf, "args": ["%s", "plain"] }));
    assert_eq!(v["ok"]["stdout"], "plain", "{v}");
}

#[cfg(unix)]
#[test]
fn hostile_process_executable_not_on_the_allow_list() {
    use std::os::unix::fs::PermissionsExt;
    // A folder first in the search path, holding a program named like an allowed one.
    let evil = tempfile::tempdir().expect("evil");
    let planted = evil.path().join("env");
    std::fs::write(&planted, "#!/bin/sh\necho planted\n").expect("plant");
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut config = OmniConfig::default();
    config.process.search_path = vec![evil.path().to_path_buf(), PathBuf::from("/usr/bin"), PathBuf::from("/bin")];
    let f = fixture_with(PROBE, config, |root, _| Scopes::on(root), &[READ, WRITE, SPAWN], None);
    std::fs::copy(program("env"), f.root.path().join("x")).expect("copy");
    std::fs::set_permissions(f.root.path().join("x"), std::fs::Permissions::from_mode(0o755)).expect("chmod");

    for (program_name, args) in [
        ("/bin/sh".to_string(), vec!["-c", "id"]),
        (program("sh"), vec!["-c", "id"]),
        ("sh".to_string(), vec!["-c", "id"]),
        ("env".to_string(), vec![]),
        (planted.display().to_string(), vec![]),
        (f.path("x"), vec![]),
    ] {
        let message = f.refused("spawn", json!({ "program": program_name, "args": args }), "out-of-scope");
        assert!(message.contains("not in scope"), "{program_name}: {message}");
    }
    for relative in ["./x", "x/../env", "/usr/bin/../bin/env", "/usr/./bin/env"] {
        let message = f.refused("spawn", json!({ "program": relative, "cwd": f.path("") }), "out-of-scope");
        assert!(message.contains("relative") || message.contains("normalized"), "{relative}: {message}");
    }
    // PATH from the guest is neither used for the lookup nor passed on.
    let message = f.refused(
        "spawn",
        json!({ "program": program("env"), "env": { "PATH": evil.path().display().to_string() } }),
        "out-of-scope",
    );
    assert!(message.contains("PATH"), "{message}");
    f.refused("spawn", json!({ "program": program("env"), "env": { "LD_PRELOAD": f.path("x") } }), "out-of-scope");
    f.assert_denied(SPAWN, "not in scope");
    f.assert_denied(SPAWN, "relative path");
    f.assert_denied(SPAWN, "environment variable");
    let v = f.call("spawn", json!({ "program": program("env") }));
    assert_eq!(v["ok"]["exit_code"], 0, "the allowed program still runs: {v}");
}

#[cfg(unix)]
#[test]
fn hostile_process_cwd_outside_the_granted_path() {
    let f = probe();
    symlink(f.outside.path(), f.root.path().join("door"));
    let name = f.outside.path().file_name().expect("name").to_string_lossy().into_owned();
    let pwd = program("pwd");
    f.refused("spawn", json!({ "program": pwd, "cwd": f.outside.path().display().to_string() }), "out-of-scope");
    f.refused(
        "spawn",
        json!({ "program": pwd, "cwd": format!("{}/../{name}", f.root.path().display()) }),
        "out-of-scope",
    );
    f.refused("spawn", json!({ "program": pwd, "cwd": "/" }), "out-of-scope");
    f.refused("spawn", json!({ "program": pwd, "cwd": f.path("door") }), "out-of-scope");
    f.assert_denied(SPAWN, "working folder");
    f.assert_denied(READ, "symbolic link");
    let v = f.call("spawn", json!({ "program": pwd, "cwd": f.path("") }));
    assert_eq!(v["ok"]["exit_code"], 0, "{v}");
}

// ---------------------------------------------------------------------------------------
// Replaced backends
// ---------------------------------------------------------------------------------------

/// The default file system, recording every operation the host asks of it.
#[derive(Default)]
struct RecordingFs {
    ops: std::sync::Mutex<Vec<String>>,
}

impl RecordingFs {
    fn note(&self, op: &str, rel: &Path) {
        self.ops.lock().expect("lock").push(format!("{op} {}", rel.display()));
    }
    fn ops(&self) -> Vec<String> {
        self.ops.lock().expect("lock").clone()
    }
}

impl FsBackend for RecordingFs {
    fn resolve(&self, root: &FsRoot, rel: &Path, follow_last: bool) -> Result<Resolved, FsError> {
        self.note("resolve", rel);
        CapStdFs.resolve(root, rel, follow_last)
    }
    fn read(&self, root: &FsRoot, rel: &Path, offset: u64, len: u64) -> Result<Vec<u8>, FsError> {
        self.note("read", rel);
        CapStdFs.read(root, rel, offset, len)
    }
    fn list(&self, root: &FsRoot, rel: &Path, limit: u32) -> Result<Vec<FsEntry>, FsError> {
        self.note("list", rel);
        CapStdFs.list(root, rel, limit)
    }
    fn metadata(&self, root: &FsRoot, rel: &Path) -> Result<FsMetadata, FsError> {
        self.note("metadata", rel);
        CapStdFs.metadata(root, rel)
    }
    fn write(&self, root: &FsRoot, rel: &Path, data: &[u8]) -> Result<(), FsError> {
        self.note("write", rel);
        CapStdFs.write(root, rel, data)
    }
    fn append(&self, root: &FsRoot, rel: &Path, data: &[u8], max_size: Option<u64>) -> Result<(), FsError> {
        self.note("append", rel);
        CapStdFs.append(root, rel, data, max_size)
    }
    fn create_dir(&self, root: &FsRoot, rel: &Path, recursive: bool) -> Result<(), FsError> {
        self.note("create_dir", rel);
        CapStdFs.create_dir(root, rel, recursive)
    }
    fn remove(&self, root: &FsRoot, rel: &Path, recursive: bool) -> Result<(), FsError> {
        self.note("remove", rel);
        CapStdFs.remove(root, rel, recursive)
    }
    fn rename(&self, from_root: &FsRoot, from: &Path, to_root: &FsRoot, to: &Path) -> Result<(), FsError> {
        self.note("rename", from);
        CapStdFs.rename(from_root, from, to_root, to)
    }
}

#[cfg(unix)]
#[test]
fn refused_paths_never_reach_the_backend_operation() {
    let recording = Arc::new(RecordingFs::default());
    let backend = recording.clone();
    let f = fixture_built(
        PROBE,
        OmniConfig::default(),
        |root, _| Scopes::on(root),
        &[READ, WRITE],
        None,
        move |b| b.fs_backend(backend),
    );
    symlink(f.secret(), f.root.path().join("link.txt"));
    std::fs::create_dir(f.root.path().join("private")).expect("private");
    f.refused("read", json!({ "path": f.secret() }), "out-of-scope");
    f.refused("read", json!({ "path": f.path("link.txt") }), "out-of-scope");
    f.refused("write", json!({ "path": f.path("link.txt"), "content": "x" }), "out-of-scope");
    f.refused("read", json!({ "path": f.path("%2e%2e/x") }), "out-of-scope");
    let ops = recording.ops();
    assert!(ops.iter().all(|op| op.starts_with("resolve ")), "only resolution may run for refused paths: {ops:?}");
    assert!(!ops.iter().any(|op| op.contains("secret")), "an out-of-scope path is never even resolved: {ops:?}");
    f.assert_serves();
    assert!(recording.ops().contains(&"read a.txt".to_string()), "the replaced backend serves the allowed read");
}

/// A program runner that records each request and holds it until a permit is given.
struct GatedRunner {
    seen: std::sync::Mutex<Vec<SpawnRequest>>,
    gate: tokio::sync::Semaphore,
}

impl ProcessBackend for GatedRunner {
    fn run(&self, request: SpawnRequest) -> RunFuture<'_> {
        self.seen.lock().expect("lock").push(request);
        Box::pin(async move {
            if let Ok(permit) = self.gate.acquire().await {
                permit.forget();
            }
            Ok(SpawnOutput { exit_code: Some(0), stdout: b"fake".to_vec(), stderr: Vec::new(), timed_out: false })
        })
    }
}

#[test]
fn replaced_process_backend_gets_checked_requests_and_max_concurrent_holds() {
    let runner = Arc::new(GatedRunner { seen: Default::default(), gate: tokio::sync::Semaphore::new(0) });
    let backend = runner.clone();
    let scopes = |root: &Path, _: &Path| Scopes {
        spawn: format!("scope = {{ executables = [{:?}], max_concurrent = 1 }}", program("env")),
        ..Scopes::on(root)
    };
    let f = Arc::new(fixture_built(PROBE, OmniConfig::default(), scopes, &[READ, WRITE, SPAWN], None, move |b| {
        b.process_backend(backend)
    }));
    let first = {
        let f = f.clone();
        std::thread::spawn(move || f.call("spawn", json!({ "program": "env", "args": ["-0"], "env": { "LANG": "C" } })))
    };
    for _ in 0..1000 {
        if !runner.seen.lock().expect("lock").is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let request = runner.seen.lock().expect("lock").first().cloned().expect("the first call reached the runner");
    assert_eq!(request.program, std::fs::canonicalize(program("env")).expect("real path"));
    assert_eq!(request.args, ["-0"]);
    assert_eq!(request.env, [("LANG".to_string(), "C".to_string())], "exactly the guest's allowed variables");
    assert!(request.working_dir.is_dir(), "a fresh working folder exists while the program runs");
    // One program is running: a second one is refused for now.
    let message = f.refused("spawn", json!({ "program": "env" }), "rate-limited");
    assert!(message.contains("max_concurrent"), "{message}");
    runner.gate.add_permits(1);
    let out = first.join().expect("first call");
    assert_eq!(out["ok"]["stdout"], "fake", "{out}");
    assert!(!request.working_dir.exists(), "the temporary working folder is removed after the run");
    runner.gate.add_permits(1);
    assert_eq!(f.call("spawn", json!({ "program": "env" }))["ok"]["exit_code"], 0);
    assert_eq!(runner.seen.lock().expect("lock").len(), 2, "the refused call never reached the runner");
}

/// Under a write scope `extensions = ["md"]`, removing `project/main.py` is refused, but
/// removing the folder `project` recursively once deleted `main.py`, and renaming the
/// folder moved it: folder operations touched files the filter never checked.
#[test]
fn hostile_fs_folder_operations_pass_no_file_the_extensions_filter_refuses() {
    let scopes = |root: &Path, _: &Path| {
        let read = format!("scope = {{ paths = [{:?}] }}", root.display().to_string());
        let write = format!("scope = {{ paths = [{:?}], extensions = [\"md\"] }}", root.display().to_string());
        Scopes { read, write, spawn: "scope = { executables = [\"/usr/bin/env\"] }".into() }
    };
    let f = fixture_with(PROBE, OmniConfig::default(), scopes, &[READ, WRITE], None);
    let project = f.root.path().join("project");
    std::fs::create_dir(&project).expect("project");
    std::fs::write(project.join("main.py"), "print('keep me')").expect("main.py");
    std::fs::write(project.join("notes.md"), "notes").expect("notes.md");
    f.refused("remove", json!({ "path": f.path("project/main.py") }), "out-of-scope");
    let message = f.refused("remove", json!({ "path": f.path("project"), "recursive": true }), "out-of-scope");
    assert!(message.contains("not empty") && message.contains("one by one"), "{message}");
    let message = f.refused("rename", json!({ "from": f.path("project"), "to": f.path("moved") }), "out-of-scope");
    assert!(message.contains("is a folder") && message.contains("one by one"), "{message}");
    assert_eq!(std::fs::read_to_string(project.join("main.py")).expect("main.py survives"), "print('keep me')");
    assert!(project.join("notes.md").exists() && !f.root.path().join("moved").exists());
    f.assert_denied(WRITE, "one by one");
    // What the filter allows still works: its files one by one, then the empty folder.
    assert_eq!(f.call("remove", json!({ "path": f.path("project/notes.md") }))["ok"], Value::Null);
    std::fs::remove_file(project.join("main.py")).expect("the person removes main.py");
    let v = f.call("remove", json!({ "path": f.path("project"), "recursive": true }));
    assert_eq!(v["ok"], Value::Null, "{v}");
    assert!(!project.exists());
}

/// A link that steps into a missing folder and back out with `..`
/// (`x -> nothere/../y`, `y -> sub/private`) left `y` unfollowed, so a new file
/// `x/planted.pem` was checked as `y/planted.pem` (not blocked, and not there yet for the
/// engine to follow) and written into the blocked `sub/private`.
#[cfg(unix)]
#[test]
fn hostile_fs_link_climbing_out_of_a_missing_folder_reaches_no_blocked_path() {
    let root = tempfile::tempdir().expect("root");
    let private = root.path().join("sub/private");
    std::fs::create_dir_all(&private).expect("private");
    std::fs::write(private.join("key.pem"), "KEY").expect("key");
    symlink("sub/private", root.path().join("y"));
    symlink("nothere/../y", root.path().join("x"));
    let mut config = OmniConfig::default();
    config.security.blocked_paths = vec![private.display().to_string()];
    let r = root.path().to_path_buf();
    let f = fixture_with(PROBE, config, move |_, _| Scopes::on(&r), &[READ, WRITE], None);
    let planted = root.path().join("x/planted.pem").display().to_string();
    let v = f.call("write", json!({ "path": planted, "content": "planted" }));
    assert!(!private.join("planted.pem").exists(), "written into the blocked folder through x: {v}");
    assert_eq!(v["error"]["kind"], "out-of-scope", "{v}");
    let key = root.path().join("x/key.pem").display().to_string();
    let v = f.call("read", json!({ "path": key }));
    assert_eq!(v["error"]["kind"], "out-of-scope", "{v}");
    f.assert_denied(WRITE, "climbs back out");
    f.assert_denied(READ, "climbs back out");
    assert_eq!(std::fs::read_to_string(private.join("key.pem")).expect("key"), "KEY");
}

/// `LANG`, `LC_*` and `TZ` are allowed variables, and glibc loads their values as locale
/// and zone files: a value that is a path (`LC_ALL=/tmp/x`, `TZ=:/tmp/zone`) made a
/// granted program load a file of the extension's choosing.
#[test]
fn hostile_process_locale_and_zone_values_that_are_paths() {
    let f = probe();
    let evil = f.root.path().join("evil");
    std::fs::create_dir(&evil).expect("evil");
    let evil = evil.display().to_string();
    for (name, value) in [
        ("LANG", evil.clone()),
        ("LC_ALL", format!("../../..{evil}")),
        ("LANGUAGE", format!("en:{evil}")),
        ("TZ", evil.clone()),
        ("TZ", format!(":{evil}")),
        ("TZ", "../../../../tmp/zone".to_string()),
    ] {
        let v = f.call("spawn", json!({ "program": program("env"), "env": { name: value } }));
        assert_eq!(v["error"]["kind"], "out-of-scope", "{name}={value} reached the program: {v}");
    }
    f.assert_denied(SPAWN, "file path");
    let v = f.call("spawn", json!({ "program": "env", "env": { "LANG": "en_US.UTF-8", "TZ": "Europe/Berlin" } }));
    assert_eq!(v["ok"]["stdout"], "LANG=en_US.UTF-8\nTZ=Europe/Berlin\n", "{v}");
}
