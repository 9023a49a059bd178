//! Trains the classifier, or prints the leave-one-source-out table, without building
//! the rest of the workspace (the same library calls as `cargo xtask train-guardian`,
//! so both write identical weights).
//!
//! ```text
//! cargo run --release -p omni-guardian --features ml-classifier,train --example train -- \\
//!     [--loso | --show SOURCE | --eval [--no-ml]] [--dev DIR] [--out FILE] [--l2 X] [--epochs N]
//! ```

use std::path::{Path, PathBuf};

use omni_guardian::classifier::Model;
use omni_guardian::train::{self, shipped_corpora, Corpus, TrainParams};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dev = crate_dir.join("../../shared/datasets/guardian-dev");
    let mut out = crate_dir.join("data/model.bin");
    let mut loso = false;
    let mut show: Option<String> = None;
    let mut eval_mode = false;
    let mut no_ml = false;
    let mut params = TrainParams::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--loso" => loso = true,
            // The dev-set table of `cargo xtask guardian-eval`, with the embedded model.
            "--eval" => eval_mode = true,
            "--no-ml" => no_ml = true,
            // Lists the rows of one source that a model trained without it gets wrong.
            "--show" => show = Some(args.next().ok_or("--show needs a source name")?),
            "--dev" => dev = PathBuf::from(args.next().ok_or("--dev needs a directory")?),
            "--out" => out = PathBuf::from(args.next().ok_or("--out needs a file")?),
            "--l2" => params.l2 = args.next().ok_or("--l2 needs a number")?.parse()?,
            "--epochs" => params.epochs = args.next().ok_or("--epochs needs a number")?.parse()?,
            "--bipia-per-attack" => {
                params.bipia_per_attack = args.next().ok_or("--bipia-per-attack needs a number")?.parse()?
            }
            "--benign-weight" => {
                params.benign_weight = args.next().ok_or("--benign-weight needs a number")?.parse()?
            }
            other => return Err(format!("unknown argument {other:?}; expected --loso, --show SOURCE, --eval, --no-ml, --dev DIR, --out FILE, --l2 X, --epochs N or --benign-weight X").into()),
        }
    }
    if eval_mode {
        return dev_table(&dev, no_ml, &params);
    }
    let corpus = Corpus::load(&dev, &shipped_corpora(&crate_dir.join("data")), &params)?;
    if let Some(name) = show {
        let source = corpus.sources.iter().find(|s| s.name == name).ok_or("no such source")?;
        let model = train::train_model(&corpus.training_rows_named(Some(&source.group)), &params);
        let guardian = omni_guardian::Guardian::with_model(omni_guardian::GuardianConfig::default(), Some(model))?;
        for r in &source.eval {
            let v = guardian.scan(&r.text, omni_guardian::ScanPoint::UserInput);
            if (v.kind != omni_guardian::VerdictKind::Clean) != (r.label == 1) {
                let ids: Vec<&str> = v.matches.iter().map(|m| m.id.as_str()).collect();
                println!(
                    "{} p={:.2} h={:.2} {:?} {:?}",
                    v.score,
                    v.ml_probability.unwrap_or(0.0),
                    v.layers.heuristics.unwrap_or(100.0),
                    ids,
                    r.text.chars().take(160).collect::<String>()
                );
            }
        }
        return Ok(());
    }
    if loso {
        let rows = train::leave_one_source_out(&corpus, &params, |s| eprintln!("leaving out {s}..."))?;
        println!("| left-out source | rows | TPR | FPR | ML alone: error at p=0.5 |");
        println!("|---|---|---|---|---|");
        for r in &rows {
            let m = &r.metrics;
            let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
            println!("| {} | {} | {} | {} | {:.1}% |", r.source, m.rows, pct(m.tpr), pct(m.fpr), r.ml_error * 100.0);
        }
        return Ok(());
    }
    let rows = corpus.training_rows_named(None);
    let model = train::train_model(&rows, &params);
    let bytes = model.to_bytes();
    Model::from_bytes(&bytes)?;
    std::fs::write(&out, &bytes)?;
    println!("trained on {} rows; wrote {} ({} bytes)", rows.len(), out.display(), bytes.len());
    Ok(())
}

fn dev_table(dev: &Path, no_ml: bool, params: &TrainParams) -> Result<(), Box<dyn std::error::Error>> {
    use omni_guardian::{eval, Guardian, GuardianConfig};
    let guardian = Guardian::new(GuardianConfig { ml_classifier: !no_ml, ..GuardianConfig::default() })?;
    let corpus = Corpus::load(dev, &[], params)?;
    let named = omni_guardian::train::dev_set_metrics(&guardian, &corpus, dev)?;
    print!("{}", eval::markdown_table(&named));
    Ok(())
}
