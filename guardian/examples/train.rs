//! Trains the classifier, or prints the leave-one-source-out table, without building
//! the rest of the workspace (the same library calls as `cargo xtask train-guardian`,
//! so both write identical weights).
//!
//! ```text
//! cargo run --release -p omni-guardian --features ml-classifier,train --example train -- [--loso] [--dev DIR] [--out FILE]
//! ```

use std::path::{Path, PathBuf};

use omni_guardian::classifier::Model;
use omni_guardian::train::{self, Corpus, TrainParams};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dev = crate_dir.join("../../shared/datasets/guardian-dev");
    let mut out = crate_dir.join("data/model.bin");
    let mut loso = false;
    let mut params = TrainParams::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--loso" => loso = true,
            "--dev" => dev = PathBuf::from(args.next().ok_or("--dev needs a directory")?),
            "--out" => out = PathBuf::from(args.next().ok_or("--out needs a file")?),
            "--l2" => params.l2 = args.next().ok_or("--l2 needs a number")?.parse()?,
            "--epochs" => params.epochs = args.next().ok_or("--epochs needs a number")?.parse()?,
            "--benign-weight" => {
                params.benign_weight = args.next().ok_or("--benign-weight needs a number")?.parse()?
            }
            other => return Err(format!("unknown argument {other:?}; expected --loso, --dev DIR, --out FILE, --l2 X, --epochs N or --benign-weight X").into()),
        }
    }
    let corpus = Corpus::load(&dev, &[crate_dir.join("data/benign.jsonl")], &params)?;
    if loso {
        let rows = train::leave_one_source_out(&corpus, &params, |s| eprintln!("leaving out {s}..."))?;
        println!("| left-out source | rows | TPR | FPR | ML alone: error at p=0.5 |");
        println!("|---|---|---|---|---|");
        for r in &rows {
            let m = &r.metrics;
            let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
            println!(
                "| {} | {} | {} | {} | {:.1}% |",
                r.source,
                m.rows,
                pct(m.tpr),
                pct(m.fpr),
                r.ml_error * 100.0
            );
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
