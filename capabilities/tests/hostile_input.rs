//! Generated hostile input: the parsers never panic, and whatever they accept
//! is normalized (ASCII hosts, canonical text that parses back to itself).

use omni_capabilities::{ArgPattern, DomainPattern, FsPath, Manifest, MessagingKind, RateLimit, RecipientPattern};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let i = usize::try_from(self.next() % items.len() as u64).unwrap_or(0);
        items[i]
    }

    fn string(&mut self, pieces: &[&str], max: u64) -> String {
        let n = self.next() % max;
        (0..n).map(|_| self.pick(pieces)).collect()
    }
}

const PIECES: &[&str] = &[
    "a",
    "Z",
    "0",
    "9",
    "-",
    "_",
    ".",
    "..",
    "*",
    "*.",
    "@",
    ":",
    "/",
    "//",
    "\\",
    "?",
    "#",
    "%",
    "%2e",
    "~",
    "+",
    "[",
    "]",
    " ",
    "\t",
    "\n",
    "\u{0}",
    "\u{200B}",
    "\u{202E}",
    "\u{FEFF}",
    "\u{E0041}",
    "\u{0430}",
    "\u{0435}",
    "ä",
    "ß",
    "\u{3002}",
    "\u{FF0E}",
    "xn--",
    "http://",
    "https://",
    "ws://",
    "wss://",
    "ftp://",
    "example",
    "com",
    "localhost",
    "127.0.0.1",
    "[::1]",
    "$",
    "(",
    ")",
    "{",
    "}",
    "|",
    "^",
    "'",
    "\"",
    "=",
    "\u{1F600}",
    "é",
];

#[test]
fn domain_patterns() {
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let s = g.string(PIECES, 12);
        if let Ok(p) = DomainPattern::parse(&s) {
            accepted += 1;
            assert!(p.host().is_ascii(), "{s:?} -> {p}");
            assert!(!p.host().is_empty() && !p.host().contains(['*', '@', '/', ':', ' ']), "{s:?} -> {p}");
            if p.is_wildcard() {
                assert!(p.host().contains('.'), "{s:?} -> {p}");
                assert!(!p.matches_host(p.host()), "{s:?}: a wildcard never covers its apex");
            } else {
                assert!(p.matches_host(p.host()));
            }
            let again = DomainPattern::parse(&p.to_string());
            assert_eq!(again.as_ref(), Ok(&p), "{s:?} -> {p}");
        }
    }
    assert!(accepted > 0, "the generator never produced a valid domain");
}

#[test]
fn paths_recipients_arguments_rates() {
    let mut g = Gen(0xD1B5_4A32_D192_ED03);
    for _ in 0..20_000 {
        let s = g.string(PIECES, 10);
        if let Ok(p) = FsPath::parse(&s) {
            let text = p.to_string();
            assert!(
                !std::path::Path::new(&text).components().any(|c| c == std::path::Component::ParentDir),
                "{s:?} -> {p}"
            );
            assert_eq!(FsPath::parse(&p.to_string()).as_ref(), Ok(&p), "{s:?} -> {p}");
        }
        for kind in [MessagingKind::Email, MessagingKind::Sms, MessagingKind::Chat] {
            if let Ok(r) = RecipientPattern::parse(kind, &s) {
                let text = r.to_string();
                assert!(text != "*" && !text.chars().any(char::is_whitespace), "{s:?} -> {text}");
            }
        }
        let _ = ArgPattern::parse(&s).map(|p| p.matches(&s));
        if let Ok(r) = s.parse::<RateLimit>() {
            assert!(r.count >= 1);
            assert_eq!(r.to_string().parse::<RateLimit>(), Ok(r));
        }
    }
}

#[test]
fn manifests_never_panic() {
    let lines: &[&str] = &[
        "[extension]\n",
        "[runtime]\n",
        "[[permissions]]\n",
        "[[tools]]\n",
        "[permissions.scope]\n",
        "id = \"dev.omni.x\"\n",
        "id = \"d\u{0435}v.omni.x\"\n",
        "name = \"N\"\n",
        "version = \"1.0.0\"\n",
        "version = 1\n",
        "author = \"A\"\n",
        "description = \"D\"\n",
        "capability = \"network.http\"\n",
        "capability = \"filesystem.read\"\n",
        "capability = \"process.spawn\"\n",
        "reason = \"r\"\n",
        "scope = { domains = [\"*.com\", \"a.example.com\"] }\n",
        "scope = { paths = [\"~/x\", \"/\"] }\n",
        "scope = { executables = [\"/bin/sh\"], allowed_args = [\"/(/\"] }\n",
        "domains = [\"x.example.com\"]\n",
        "name = \"t\"\n",
        "parameters = { type = \"object\" }\n",
        "parameters = '{\"type\": \"object\", \"properties\": 1}'\n",
        "max_memory_mb = 0\n",
        "entrypoint = \"../x.wasm\"\n",
        "required = \"no\"\n",
        "x = [[[[[[1]]]]]]\n",
        "garbage = \n",
        "\"quoted key\" = 1\n",
        "categories = [\"a\", \"a\"]\n",
    ];
    let mut g = Gen(0x2545_F491_4F6C_DD1D);
    let mut accepted = 0;
    for _ in 0..3_000 {
        let text = g.string(lines, 16);
        match Manifest::from_toml_str(&text, "fuzz.toml") {
            Ok(m) => {
                accepted += 1;
                let back = Manifest::from_toml_str(&m.to_toml_string(), "again");
                assert_eq!(back.as_ref(), Ok(&m), "{text}");
            }
            Err(e) => {
                assert!(!e.problems.is_empty(), "{text}");
                assert_eq!(e.to_string().lines().count(), e.problems.len() + 1);
            }
        }
    }
    // Most combinations are invalid; the point is that none panics.
    assert!(accepted < 3_000);
}

/// `allowed_args = ["/--version)|(.*/"]` once became `^(?:--version)|(.*)$`, which
/// allows every argument, so `/usr/bin/env sh -c ...` ran under a scope that looked
/// like "--version only". The body does not parse on its own and is refused, naming why.
#[test]
fn argument_regex_cannot_close_its_anchoring_group() {
    for attack in ["/--version)|(.*/", "/x)|(?:.*/", "/a)|.*|(b/", "/)(/"] {
        let error = match ArgPattern::parse(attack) {
            Ok(p) => panic!("{attack} was accepted; matches `sh`: {}", p.matches("sh")),
            Err(e) => e,
        };
        assert!(error.contains("not a valid regular expression") && error.contains("group"), "{attack}: {error}");
    }
    let manifest = r#"
[extension]
id = "dev.example.version-check"
name = "Version check"
version = "1.0.0"
description = "Prints the version of env."
author = "Example"

[[permissions]]
capability = "process.spawn"
reason = "runs env --version"
scope = { executables = ["/usr/bin/env"], allowed_args = ["/--version)|(.*/"] }
"#;
    let error = match Manifest::from_toml_str(manifest, "manifest.toml") {
        Ok(m) => {
            let scope = m.permissions[0]
                .scope
                .as_process()
                .map(|p| p.check_command(std::path::Path::new("/usr/bin/env"), &["sh", "-c", "id; echo PWNED > FILE"]));
            panic!("the manifest was accepted; `env sh -c ...` checks as {scope:?}");
        }
        Err(e) => e.to_string(),
    };
    assert!(error.contains("allowed_args[0]"), "{error}");
    let narrow = manifest.replace("/--version)|(.*/", "/--version/");
    let m = Manifest::from_toml_str(&narrow, "manifest.toml").unwrap_or_else(|e| panic!("{e}"));
    let p = m.permissions[0].scope.as_process().unwrap_or_else(|| panic!("a process scope"));
    let env = std::path::Path::new("/usr/bin/env");
    assert!(p.check_command(env, &["--version"]).is_ok());
    assert!(p.check_command(env, &["sh", "-c", "id"]).is_err());
}

/// Whatever a generated regex body is, the pattern matches whole arguments only: a
/// string it matches never matches again with anything before or after it.
#[test]
fn argument_regexes_match_whole_arguments_only() {
    const BODY: &[&str] = &[
        "a", "b", "ab", "|", "|", "(", ")", "(?:", "*", "+", "?", "{1,2}", "^", "$", "(?m)", "(?s)", "(?U)", "\\b",
        "\\B", "\\A", "\\z", "(?m:$)", "(?m:^)", "[ab]", "[a-b]*",
    ];
    let mut g = Gen(0x5C0F_E5A7_7E12_0B01);
    let (mut accepted, mut matched) = (0, 0);
    for _ in 0..20_000 {
        let body = g.string(BODY, 8);
        let Ok(p) = ArgPattern::parse(&format!("/{body}/")) else { continue };
        accepted += 1;
        assert!(p.is_regex() && p.to_string().ends_with("(regex, whole argument)"), "{p}");
        for _ in 0..20 {
            let s = g.string(&["a", "b"], 6);
            if !p.matches(&s) {
                continue;
            }
            matched += 1;
            for extra in ["Z", "\n", " ", "\u{2028}"] {
                for wider in [format!("{extra}{s}"), format!("{s}{extra}"), format!("{s}{extra}{s}")] {
                    assert!(!p.matches(&wider), "/{body}/ matches {s:?} and also {wider:?}");
                }
            }
        }
    }
    assert!(accepted > 2_000 && matched > 2_000, "{accepted} patterns accepted, {matched} matches tried");
}
