//! `cargo xtask train-guardian` and `cargo xtask guardian-eval`.
//!
//! Data: the dev sets in `<project root>/../shared/datasets/guardian-dev/` (override
//! with `--dev DIR`) plus the corpora shipped in `guardian/data/`: `benign.jsonl` and
//! `agent_actions.jsonl`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use omni_guardian::classifier::Model;
use omni_guardian::eval;
use omni_guardian::train::{self, Corpus, TrainParams};
use omni_guardian::{Guardian, GuardianConfig};

fn project_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn default_dev_dir(root: &Path) -> PathBuf {
    root.parent().unwrap_or(root).join("shared").join("datasets").join("guardian-dev")
}

struct Args {
    loso: bool,
    json: bool,
    no_ml: bool,
    dev: PathBuf,
    out: PathBuf,
    epochs: Option<usize>,
}

fn parse(args: &[String]) -> Result<Args> {
    let root = project_root();
    let mut a = Args {
        loso: false,
        json: false,
        no_ml: false,
        dev: default_dev_dir(&root),
        out: root.join("guardian").join("data").join("model.bin"),
        epochs: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--loso" => a.loso = true,
            "--json" => a.json = true,
            "--no-ml" => a.no_ml = true,
            "--dev" => a.dev = it.next().context("--dev needs a directory")?.into(),
            "--out" => a.out = it.next().context("--out needs a file")?.into(),
            "--epochs" => {
                a.epochs =
                    Some(it.next().context("--epochs needs a number")?.parse().context("--epochs needs a number")?)
            }
            other => bail!(
                "unknown argument {other:?}; expected --loso, --json, --no-ml, --dev DIR, --out FILE or --epochs N"
            ),
        }
    }
    if !a.dev.is_dir() {
        bail!("dev-set directory {} does not exist; pass --dev DIR", a.dev.display());
    }
    Ok(a)
}

/// The corpora the Guardian ships next to the development sets.
fn shipped_corpus() -> Vec<PathBuf> {
    train::shipped_corpora(&project_root().join("guardian").join("data"))
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.1}%", v * 100.0))
}

/// `cargo xtask train-guardian [--loso] [--dev DIR] [--out FILE] [--epochs N]`.
pub fn train(args: &[String]) -> Result<()> {
    let a = parse(args)?;
    let mut params = TrainParams::default();
    if let Some(e) = a.epochs {
        params.epochs = e;
    }
    let corpus = Corpus::load(&a.dev, &shipped_corpus(), &params)?;
    for s in &corpus.sources {
        let attacks = s.train.iter().filter(|r| r.label == 1).count();
        eprintln!("{:<40} {:>6} training rows ({attacks} attacks)", s.name, s.train.len());
    }
    if a.loso {
        let started = Instant::now();
        let rows = train::leave_one_source_out(&corpus, &params, |s| eprintln!("leaving out {s}..."))?;
        println!("\nLeave-one-source-out (train on all other sources, evaluate the full Guardian on the one left out; balanced):\n");
        println!("| left-out source | rows | attacks | benign | TPR | FPR | ML alone: error at p=0.5 |");
        println!("|---|---|---|---|---|---|---|");
        for r in &rows {
            let m = &r.metrics;
            println!(
                "| {} | {} | {} | {} | {} | {} | {:.1}% |",
                r.source,
                m.rows,
                m.attacks,
                m.benign,
                pct(m.tpr),
                pct(m.fpr),
                r.ml_error * 100.0
            );
        }
        eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
        return Ok(());
    }
    let started = Instant::now();
    let rows = corpus.training_rows_named(None);
    let model = train::train_model(&rows, &params);
    let bytes = model.to_bytes();
    std::fs::write(&a.out, &bytes).with_context(|| format!("cannot write {}", a.out.display()))?;
    let check = Model::from_bytes(&bytes)?;
    let train_err = rows
        .iter()
        .filter(|(_, r)| !r.kind.as_deref().is_some_and(|k| k.ends_with("_attack")))
        .filter(|(_, r)| (check.probability(&omni_guardian::normalized(&r.text)) >= 0.5) != (r.label == 1))
        .count();
    println!(
        "trained on {} rows in {:.1} s; Platt a={:.3} b={:.3} (segments a={:.3} b={:.3}); training error {:.2}%; wrote {} ({} bytes)",
        rows.len(),
        started.elapsed().as_secs_f64(),
        check.platt_a,
        check.platt_b,
        check.segment_platt_a,
        check.segment_platt_b,
        train_err as f64 * 100.0 / rows.len().max(1) as f64,
        a.out.display(),
        bytes.len()
    );
    Ok(())
}

/// `cargo xtask guardian-eval [--dev DIR] [--json] [--no-ml]`: the acceptance table.
pub fn eval(args: &[String]) -> Result<()> {
    let a = parse(args)?;
    let guardian = Guardian::new(GuardianConfig { ml_classifier: !a.no_ml, ..GuardianConfig::default() })?;
    let params = TrainParams::default();
    let corpus = Corpus::load(&a.dev, &[], &params)?;
    let named = train::dev_set_metrics(&guardian, &corpus, &a.dev)?;
    if a.json {
        let obj: serde_json::Map<String, serde_json::Value> =
            named.iter().map(|(n, m)| (n.clone(), serde_json::to_value(m).unwrap_or_default())).collect();
        println!("{}", serde_json::to_string_pretty(&obj)?);
    } else {
        println!(
            "Guardian on the dev sets (balanced, ML {}; flagged = not clean):\n",
            if guardian.ml_enabled() { "on" } else { "off" }
        );
        print!("{}", eval::markdown_table(&named));
    }
    Ok(())
}
