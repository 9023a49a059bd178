//! The catalog's interfaces are exactly the capability interfaces defined in
//! the workspace's `wit/deps/caps` package (plus the shared `types`).

use omni_capabilities::{capability_for_import, catalog};
use std::path::Path;

#[test]
fn catalog_matches_the_wit_package() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("wit").join("deps").join("caps");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        panic!("cannot read {}", dir.display());
    };
    let mut defined = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "wit") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for line in text.lines() {
            if let Some(rest) = line.trim_start().strip_prefix("interface ") {
                let name = rest.trim_end_matches(|c: char| c == '{' || c.is_whitespace());
                defined.push(format!("omni:caps/{name}"));
            }
        }
    }
    defined.sort();
    let mut expected: Vec<String> = catalog().iter().map(|c| c.interface.to_owned()).collect();
    expected.push("omni:caps/types".to_owned());
    expected.sort();
    assert_eq!(defined, expected);
    for iface in &defined {
        let cap = capability_for_import(&format!("{iface}@0.1.0"));
        assert_eq!(cap.is_none(), iface == "omni:caps/types", "{iface}");
    }
}
