//! The reference manifests in `manifests/` parse, round-trip, and agree with
//! `manifests/manifest.schema.json`, and the schema agrees with the catalog.

use omni_capabilities::{catalog, Manifest, Scope};
use std::path::{Path, PathBuf};

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("manifests")
}

fn reference_files() -> Vec<PathBuf> {
    let dir = manifests_dir();
    let mut files = vec![dir.join("reference.toml")];
    let mut examples: Vec<PathBuf> = std::fs::read_dir(dir.join("examples"))
        .unwrap_or_else(|e| panic!("examples folder: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    examples.sort();
    files.extend(examples);
    files
}

fn schema() -> serde_json::Value {
    let text =
        std::fs::read_to_string(manifests_dir().join("manifest.schema.json")).unwrap_or_else(|e| panic!("schema: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("schema JSON: {e}"))
}

fn as_json(text: &str) -> serde_json::Value {
    let value: toml::Value = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
    serde_json::to_value(value).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_reference_manifest_is_valid_and_round_trips() {
    let files = reference_files();
    assert!(files.len() >= 8, "{files:?}");
    for path in files {
        let m = Manifest::from_path(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!m.tools.is_empty(), "{}", path.display());
        let back = Manifest::from_toml_str(&m.to_toml_string(), "written").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, m, "{}", path.display());
    }
}

#[test]
fn examples_cover_every_capability_and_scope_type() {
    let mut caps = Vec::new();
    let mut kinds = Vec::new();
    for path in reference_files() {
        let m = Manifest::from_path(&path).unwrap_or_else(|e| panic!("{e}"));
        for p in &m.permissions {
            caps.push(p.capability.clone());
            let kind = serde_json::to_value(&p.scope).ok().and_then(|v| v["type"].as_str().map(str::to_owned));
            kinds.extend(kind);
            if p.scope != Scope::None {
                // Every non-empty scope shows something in the review table.
                assert!(p.scope.to_string().contains(": "), "{}", p.scope);
            }
        }
    }
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds.len(), 14, "{kinds:?}");
    let scoped: Vec<_> = catalog().iter().filter(|c| c.has_scope()).map(|c| c.key).collect();
    for key in scoped {
        assert!(caps.iter().any(|c| c == key), "no example uses {key}");
    }
}

#[test]
fn schema_accepts_every_reference_manifest() {
    let validator = jsonschema::validator_for(&schema()).unwrap_or_else(|e| panic!("schema: {e}"));
    for path in reference_files() {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let errors: Vec<String> =
            validator.iter_errors(&as_json(&text)).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
}

#[test]
fn schema_refuses_what_the_parser_refuses() {
    let validator = jsonschema::validator_for(&schema()).unwrap_or_else(|e| panic!("schema: {e}"));
    let base = std::fs::read_to_string(manifests_dir().join("reference.toml")).unwrap_or_else(|e| panic!("{e}"));
    for (from, to) in [
        ("id = \"dev.omni.weather\"", "id = \"Dev.omni.weather\""),
        ("id = \"dev.omni.weather\"", "id = \"weather\""),
        ("version = \"0.3.1\"", "version = \"0.3\""),
        ("entrypoint = \"weather.wasm\"", "entrypoint = \"../weather.wasm\""),
        ("max_memory_mb = 64", "max_memory_mb = 0"),
        ("capability = \"network.http\"", "capability = \"network.ftp\""),
        ("methods = [\"GET\"]", "methods = [\"get\"]"),
        ("methods = [\"GET\"]", "verbs = [\"GET\"]"),
        ("name = \"get_weather\"", "name = \"GetWeather\""),
        ("max_bytes = \"1MiB\"", "max_bytes = \"1 parsec\""),
        ("[extension]", "homepage = \"x\"\n[extension]"),
    ] {
        assert!(base.contains(from), "{from}");
        let text = base.replacen(from, to, 1);
        assert!(Manifest::from_toml_str(&text, "m").is_err(), "parser accepted {to}");
        assert!(!validator.is_valid(&as_json(&text)), "schema accepted {to}");
    }
    // A scope field of another capability.
    let text = base.replacen("max_bytes = \"1MiB\"", "domains = [\"x.example.com\"]", 1);
    assert!(Manifest::from_toml_str(&text, "m").is_err());
    assert!(!validator.is_valid(&as_json(&text)));
}

#[test]
fn schema_lists_the_catalog() {
    let schema = schema();
    let keys: Vec<&str> = schema["$defs"]["permission"]["properties"]["capability"]["enum"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let catalog_keys: Vec<&str> = catalog().iter().map(|c| c.key).collect();
    assert_eq!(keys, catalog_keys);
    let rules = schema["$defs"]["permission"]["allOf"].as_array().cloned().unwrap_or_default();
    assert_eq!(rules.len(), catalog().len());
    for (rule, cap) in rules.iter().zip(catalog()) {
        assert_eq!(rule["if"]["properties"]["capability"]["const"], cap.key);
        let reference = rule["then"]["properties"]["scope"]["$ref"].as_str().unwrap_or_default();
        let name = reference.trim_start_matches("#/$defs/");
        let def = &schema["$defs"][name];
        let mut fields: Vec<&str> =
            def["properties"].as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        let mut expected = cap.scope_fields.to_vec();
        fields.sort_unstable();
        expected.sort_unstable();
        assert_eq!(fields, expected, "{}", cap.key);
    }
}
