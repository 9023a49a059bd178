//! `cargo xtask <task>`: Omni's project tasks.
//!
//! * `build-extension <DIR>`: build an extension crate into a checked component.
//! * `demo`: build the samples, install them into a fresh data dir and run a few calls.
//! * `bench [call|policy|guardian|all]`: run the criterion benchmarks, print a table.
//! * `guardian-eval`, `train-guardian [--loso]`: the Guardian's evaluation and training.

mod guardian;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use xtask::{build_extension, build_samples, default_engine, project_root, standin::StandIn};

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  build-extension <DIR>         build an extension crate for wasm32-wasip2, validate its
                                manifest, check its imports, write component + manifest
  demo                          build the samples, install them into a fresh data dir,
                                run calls (one of them refused) and show the audit
  bench [call|policy|guardian|all]
                                run the criterion benchmarks and print a markdown table
  guardian-eval                 evaluate the Guardian on the dev sets
  train-guardian [--loso]       train the Guardian's classifier (--loso: leave one source out)";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build-extension") => cmd_build_extension(&args[1..]),
        Some("demo") => demo(),
        Some("bench") => bench(args.get(1).map(String::as_str).unwrap_or("all")),
        Some("guardian-eval") => guardian::eval(&args[1..]),
        Some("train-guardian") => guardian::train(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => {
            eprintln!("unknown task `{other}`\n\n{USAGE}");
            std::process::exit(2);
        }
        None => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn cmd_build_extension(args: &[String]) -> anyhow::Result<()> {
    let [dir] = args else {
        bail!("usage: cargo xtask build-extension <DIR>  (the folder with the crate's Cargo.toml and manifest.toml)");
    };
    let dir = PathBuf::from(dir);
    let dir = if dir.is_absolute() { dir } else { std::env::current_dir()?.join(dir) };
    let engine = default_engine()?;
    let built = build_extension(&dir, &engine)?;
    println!("built {} {}", built.manifest.extension.id, built.manifest.extension.version);
    println!("  output:       {}", built.dir.display());
    println!("  component:    {} ({} KiB)", built.component.display(), built.size.div_ceil(1024));
    let declared: Vec<&str> = built.manifest.permissions.iter().map(|p| p.capability.as_str()).collect();
    println!("  declared:     {}", if declared.is_empty() { "no capabilities".into() } else { declared.join(", ") });
    println!(
        "  capabilities: {}",
        if built.capabilities.is_empty() { "none imported".into() } else { built.capabilities.join(", ") }
    );
    println!("  imports:");
    for i in &built.imports {
        println!("    {i}");
    }
    println!("install it with: omni install {}", built.dir.display());
    Ok(())
}

/// Runs `omni` with the demo's data dir, printing the command and what it printed.
struct DemoCli {
    omni: PathBuf,
    data_dir: PathBuf,
    /// What `~` means for the demo's commands: a folder of its own, outside the data dir
    /// (which Omni always blocks).
    home: PathBuf,
    surprises: Vec<String>,
}

impl DemoCli {
    fn run(&mut self, what: &str, args: &[&str], expect: i32) -> anyhow::Result<String> {
        println!("\n# {what}");
        let shown: Vec<String> = args
            .iter()
            .map(|a| if a.contains(' ') || a.contains('{') { format!("'{a}'") } else { a.to_string() })
            .collect();
        println!("$ omni {}", shown.join(" "));
        let out = Command::new(&self.omni)
            // `~` in the files sample's scope means this demo folder, not the real home.
            .env("HOME", &self.home)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", self.omni.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{stdout}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        let code = out.status.code().unwrap_or(-1);
        if code != expect {
            self.surprises.push(format!("`omni {}` exited {code}, expected {expect}", args.join(" ")));
        }
        println!("(exit code {code})");
        Ok(stdout)
    }
}

fn demo() -> anyhow::Result<()> {
    let root = project_root();
    println!("building the sample extensions for wasm32-wasip2 ...");
    let engine = default_engine()?;
    let built = build_samples(&engine)?;
    for b in &built {
        println!("  {:<40} {:>6} KiB  {}", b.manifest.extension.id, b.size.div_ceil(1024), b.dir.display());
    }
    println!("building the omni command ...");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo).args(["build", "--quiet", "-p", "omni-cli"]).current_dir(&root).status()?;
    if !status.success() {
        bail!("building the omni command failed");
    }
    let omni = root.join("target").join("debug").join(format!("omni{}", std::env::consts::EXE_SUFFIX));
    let data_dir = root.join("target").join("omni-demo");
    if data_dir.exists() {
        std::fs::remove_dir_all(&data_dir).with_context(|| format!("cannot clear {}", data_dir.display()))?;
    }
    let home = root.join("target").join("omni-demo-home");
    if home.exists() {
        std::fs::remove_dir_all(&home).with_context(|| format!("cannot clear {}", home.display()))?;
    }
    std::fs::create_dir_all(&data_dir)?;
    std::fs::create_dir_all(home.join("OmniFiles"))?;
    let standin = StandIn::start().context("cannot start the Open-Meteo stand-in on 127.0.0.1")?;
    std::fs::write(
        data_dir.join("omni.toml"),
        format!(
            "# The demo runs offline: Open-Meteo and example.com are answered by a stand-in\n\
             # on loopback. The scope checks still run on the real names.\n\
             [network.resolve]\n\"api.open-meteo.com\" = \"{0}\"\n\"example.com\" = \"{0}\"\n",
            standin.base_url()
        ),
    )?;
    println!("data dir: {}", data_dir.display());
    let ext = |id: &str| -> anyhow::Result<String> {
        built
            .iter()
            .find(|b| b.manifest.extension.id == id)
            .map(|b| b.dir.display().to_string())
            .with_context(|| format!("sample {id} was not built"))
    };
    let mut cli = DemoCli { omni, data_dir, home, surprises: Vec::new() };
    cli.run(
        "install the calculator: it asks for no capabilities",
        &["install", &ext("dev.omni.calculator")?, "--yes"],
        0,
    )?;
    cli.run("a call", &["call", "dev.omni.calculator", "evaluate", r#"{"expression": "2*(3+4)"}"#], 0)?;
    cli.run(
        "bad input gets a clear error",
        &["call", "dev.omni.calculator", "evaluate", r#"{"expression": "2*(3+"}"#],
        1,
    )?;
    cli.run("install notes, granting storage.persistent", &["install", &ext("dev.omni.notes")?, "--yes"], 0)?;
    cli.run(
        "add a note",
        &["call", "dev.omni.notes", "add", r#"{"title": "groceries", "body": "milk, eggs, coffee"}"#],
        0,
    )?;
    cli.run("search notes", &["call", "dev.omni.notes", "search", r#"{"query": "coffee"}"#], 0)?;
    cli.run(
        "install weather, granting network.http to api.open-meteo.com",
        &["install", &ext("dev.omni.weather")?, "--yes"],
        0,
    )?;
    cli.run(
        "current weather in Berlin",
        &["call", "dev.omni.weather", "get_weather", r#"{"latitude": 52.52, "longitude": 13.41}"#],
        0,
    )?;
    cli.run(
        "install web-reader, granting network.http and browser.scrape to example.com and *.wikipedia.org",
        &["install", &ext("dev.omni.web-reader")?, "--yes"],
        0,
    )?;
    cli.run(
        "read a page: the host fetches it and drops its script and style",
        &["call", "dev.omni.web-reader", "fetch_text", r#"{"url": "https://example.com/"}"#],
        0,
    )?;
    cli.run(
        "the cloud metadata address is outside the grant: refused before anything is sent (exit code 3)",
        &["call", "dev.omni.web-reader", "fetch_text", r#"{"url": "http://169.254.169.254/latest/meta-data/"}"#],
        3,
    )?;
    cli.run(
        "install files, granting ~/OmniFiles (here: the demo's own home folder)",
        &["install", &ext("dev.omni.files")?, "--yes"],
        0,
    )?;
    cli.run(
        "write a file: a temp file, then an atomic rename",
        &["call", "dev.omni.files", "write", r#"{"path": "~/OmniFiles/todo.txt", "content": "buy coffee"}"#],
        0,
    )?;
    cli.run("list the folder", &["call", "dev.omni.files", "list", r#"{"path": "~/OmniFiles"}"#], 0)?;
    cli.run(
        "a path that climbs out of the folder to ~/.ssh is refused and audited (exit code 3)",
        &["call", "dev.omni.files", "read", r#"{"path": "~/OmniFiles/../.ssh/id_ed25519"}"#],
        3,
    )?;
    cli.run(
        "an extension that calls a capability it never declared is refused at install",
        &["install", &ext("dev.omni.adversarial.undeclared-import")?, "--yes"],
        1,
    )?;
    cli.run("revoke weather's network access", &["grants", "revoke", "dev.omni.weather", "network.http"], 0)?;
    cli.run(
        "the same call is now refused (exit code 3)",
        &["call", "dev.omni.weather", "get_weather", r#"{"latitude": 52.52, "longitude": 13.41}"#],
        3,
    )?;
    cli.run("what is installed", &["list"], 0)?;
    cli.run("the audit log", &["audit"], 0)?;
    cli.run("the audit log's hash chain", &["audit", "verify"], 0)?;
    println!("\nthe stand-in answered {} request(s)", standin.requests());
    if cli.surprises.is_empty() {
        println!("demo finished: every step did what it should");
        Ok(())
    } else {
        bail!("the demo did not go as expected:\n  {}", cli.surprises.join("\n  "))
    }
}

fn bench(which: &str) -> anyhow::Result<()> {
    let root = project_root();
    let benches: &[(&str, &str)] = match which {
        "call" => &[("omni-host", "call")],
        "policy" => &[("omni-host", "policy")],
        "guardian" => &[("omni-guardian", "scan")],
        "all" => &[("omni-host", "call"), ("omni-host", "policy"), ("omni-guardian", "scan")],
        other => bail!("unknown benchmark set `{other}`; use call, policy, guardian or all"),
    };
    let mut calculator = None;
    if benches.iter().any(|(_, b)| *b == "call") {
        let engine = default_engine()?;
        let built = build_samples(&engine)?;
        let calc = built
            .iter()
            .find(|b| b.manifest.extension.id == "dev.omni.calculator")
            .context("the calculator sample was not built")?;
        calculator = Some(calc.dir.clone());
    }
    let criterion_dir = root.join("target").join("criterion");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (package, bench) in benches {
        println!("running {package} bench `{bench}` ...");
        let mut cmd = Command::new(&cargo);
        cmd.args(["bench", "-p", package, "--bench", bench]).current_dir(&root);
        if let Some(dir) = &calculator {
            cmd.env("OMNI_BENCH_CALCULATOR", dir);
        }
        if *package == "omni-guardian" {
            cmd.args(["--features", "ml-classifier"]);
        }
        let status = cmd.status()?;
        if !status.success() {
            bail!("cargo bench -p {package} --bench {bench} failed");
        }
    }
    print_criterion_table(&criterion_dir)
}

/// One measured benchmark: its id and median and mean time per iteration, in ns.
struct Measured {
    id: String,
    median_ns: f64,
    mean_ns: f64,
}

fn read_estimates(dir: &Path, out: &mut Vec<Measured>, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let p = entry.path();
        if !p.is_dir() || p.file_name().is_some_and(|n| n == "report") {
            continue;
        }
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let id = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        let estimates = p.join("new").join("estimates.json");
        if let Ok(text) = std::fs::read_to_string(&estimates) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                let get = |k: &str| v[k]["point_estimate"].as_f64().unwrap_or(f64::NAN);
                out.push(Measured { id, median_ns: get("median"), mean_ns: get("mean") });
            }
        } else {
            read_estimates(&p, out, &id);
        }
    }
}

fn human(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{:.2} ms", ns / 1_000_000.0)
    }
}

fn print_criterion_table(dir: &Path) -> anyhow::Result<()> {
    let mut measured = Vec::new();
    read_estimates(dir, &mut measured, "");
    if measured.is_empty() {
        bail!("no criterion results under {}", dir.display());
    }
    // Each group's first entry named `bare...` or `baseline...` is its floor.
    println!("\n| benchmark | median | mean | vs floor |");
    println!("|---|---:|---:|---:|");
    let group = |id: &str| id.split('/').next().unwrap_or("").to_string();
    for m in &measured {
        let floor = measured.iter().filter(|f| group(&f.id) == group(&m.id)).find(|f| {
            let leaf = f.id.rsplit('/').next().unwrap_or("");
            leaf.starts_with("bare") || leaf.starts_with("baseline")
        });
        let ratio = match floor {
            Some(f) if f.id != m.id => format!("{:.2}x", m.median_ns / f.median_ns),
            Some(_) => "floor".into(),
            None => "-".into(),
        };
        println!("| {} | {} | {} | {} |", m.id, human(m.median_ns), human(m.mean_ns), ratio);
    }
    Ok(())
}
