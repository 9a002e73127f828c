//! The manifest parser never panics or hangs: whatever the text, it returns
//! a model or errors that each carry a location inside the text. Three
//! generators: random text over TOML's alphabet, manifest-shaped documents
//! with wrong types and names, and mutations of dblaunch.toml.example.
//!
//! More cases: `PROPTEST_CASES=100000 cargo test --release --test cli fuzz`.

use std::path::Path;

use dblaunch::manifest::{self, ManifestError};
use proptest::prelude::*;

fn check(text: &str) -> Result<(), TestCaseError> {
    let dir = std::env::temp_dir();
    let path = dir.join("fuzz-dblaunch.toml");
    match manifest::parse(&path, text) {
        Ok(m) => {
            // A model is consistent: every `after` names a program.
            for p in &m.programs {
                for &a in &p.after {
                    prop_assert!(a < m.programs.len());
                }
            }
        }
        Err(ManifestError::Invalid { diagnostics, .. }) => {
            prop_assert!(!diagnostics.is_empty());
            for d in &diagnostics {
                if let Some(span) = &d.span {
                    prop_assert!(span.start <= text.len(), "span {span:?} past the end");
                }
            }
        }
        Err(e @ ManifestError::NotFound { .. }) => prop_assert!(false, "parse reported {e}"),
    }
    // Rendering the errors (lines, columns, carets) must not panic either.
    if let Err(e) = manifest::parse(Path::new("x.toml"), text) {
        let _ = e.to_string();
    }
    Ok(())
}

const KEYS: &[&str] = &[
    "command",
    "cwd",
    "env",
    "reads",
    "writes",
    "after",
    "stop_signal",
    "wait",
    "stop_timeout",
    "colour",
];
const NAMES: &[&str] = &[
    "a",
    "b",
    "ingest",
    "report",
    "letters",
    "data/x.db",
    "./y.db",
    "..",
    "",
    "é",
];

fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "\"[a-z0-9./ ]{0,12}\"".prop_map(|s| s),
        Just("5".to_owned()),
        Just("true".to_owned()),
        Just("1979-05-27".to_owned()),
        Just("\"10s\"".to_owned()),
        Just("\"SIGINT\"".to_owned()),
        prop::sample::select(NAMES).prop_map(|n| format!("\"{n}\"")),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..3).prop_map(|v| {
                let kv: Vec<String> = v.into_iter().map(|(k, x)| format!("{k} = {x}")).collect();
                format!("{{ {} }}", kv.join(", "))
            }),
        ]
    })
}

fn document() -> impl Strategy<Value = String> {
    let section = prop_oneof![
        Just("[settings]".to_owned()),
        Just("[databases]".to_owned()),
        Just("[groups]".to_owned()),
        prop::sample::select(NAMES).prop_map(|n| format!("[programs.\"{n}\"]")),
        Just("[setings]".to_owned()),
    ];
    let key = prop_oneof![prop::sample::select(KEYS), prop::sample::select(NAMES)];
    let entry = (key, value()).prop_map(|(k, v)| format!("\"{k}\" = {v}"));
    prop::collection::vec((section, prop::collection::vec(entry, 0..5)), 0..6).prop_map(|secs| {
        secs.into_iter()
            .map(|(s, es)| format!("{s}\n{}\n", es.join("\n")))
            .collect::<String>()
    })
}

fn mutated_example() -> impl Strategy<Value = String> {
    let example = include_str!("../../dblaunch.toml.example");
    prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            0usize..40,
            "[\\[\\]\"=a-z,.{}\n #-]{0,8}",
        ),
        1..6,
    )
    .prop_map(move |edits| {
        let mut t = example.as_bytes().to_vec();
        for (at, cut, insert) in edits {
            let i = at.index(t.len() + 1);
            let end = (i + cut).min(t.len());
            t.splice(i..end, insert.bytes());
        }
        String::from_utf8_lossy(&t).into_owned()
    })
}

proptest! {
    // 400 cases each in CI; PROPTEST_CASES for more. Failures print the
    // minimal input; there is nothing to persist between runs.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(400),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_text_never_panics(text in "[\\[\\]a-z0-9_=\" .,\n{}#'-]{0,300}") {
        check(&text)?;
    }

    #[test]
    fn manifest_shaped_documents_never_panic(text in document()) {
        check(&text)?;
    }

    #[test]
    fn mutations_of_the_example_never_panic(text in mutated_example()) {
        check(&text)?;
    }
}

#[test]
fn the_example_itself_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("dblaunch.toml.example")).unwrap();
    let m =
        manifest::parse(&root.join("dblaunch.toml.example"), &text).expect("the example validates");
    assert_eq!(m.programs.len(), 4);
}
