use std::fs;

use super::*;

/// A scratch workspace holding one crate (`events`, one of [`CRATES`]) with `files`.
fn workspace(name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let root = std::env::temp_dir().join(format!("xtask-layout-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    for (path, text) in files {
        let p = root.join("events/src").join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    root
}

#[test]
fn sibling_circle_is_named_with_the_names_that_tie_it() {
    let root = workspace(
        "siblings",
        &[
            ("lib.rs", "mod engine;\nmod h1;\n"),
            ("engine.rs", "use crate::h1::run;\npub struct Ctx;\n"),
            ("h1.rs", "use crate::engine::Ctx;\npub fn run() {}\n"),
        ],
    );
    let f = check(&root).unwrap();
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].contains("circle between modules engine -> h1 (run); h1 -> engine (Ctx)"),
        "{f:?}"
    );
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn facade_reexport_is_not_a_use_but_super_is() {
    let ok = workspace(
        "facade",
        &[
            ("lib.rs", "pub mod frame;\n"),
            (
                "frame.rs",
                "mod decoder;\npub use decoder::Decoder;\npub struct Frame;\n",
            ),
            (
                "frame/decoder.rs",
                "use super::Frame;\npub struct Decoder(Frame);\n",
            ),
        ],
    );
    assert_eq!(check(&ok).unwrap(), Vec::<String>::new());
    fs::remove_dir_all(ok).unwrap();
    // The parent calling into the child while the child uses the parent is a circle.
    let bad = workspace(
        "parent-child",
        &[
            ("lib.rs", "pub mod frame;\n"),
            (
                "frame.rs",
                "mod decoder;\npub struct Frame;\nfn f() { decoder::decode(); }\n",
            ),
            (
                "frame/decoder.rs",
                "pub fn decode() -> super::Frame { super::Frame }\n",
            ),
        ],
    );
    let f = check(&bad).unwrap();
    assert!(
        f.iter()
            .any(|l| l.contains("frame -> frame::decoder (decode)")),
        "{f:?}"
    );
    fs::remove_dir_all(bad).unwrap();
}

#[test]
fn folders_that_import_each_other_are_a_circle() {
    let root = workspace(
        "folders",
        &[
            ("lib.rs", "mod report;\nmod stats;\n"),
            ("report.rs", "mod text;\n"),
            (
                "report/text.rs",
                "use crate::stats::series::Series;\npub struct Text;\n",
            ),
            ("stats.rs", "pub mod series;\nmod summary;\n"),
            ("stats/series.rs", "pub struct Series;\n"),
            ("stats/summary.rs", "use crate::report::text::Text;\n"),
        ],
    );
    let f = check(&root).unwrap();
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].contains("circle between folders"), "{f:?}");
    assert!(
        f[0].contains("report::text -> stats::series (Series)"),
        "{f:?}"
    );
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn test_modules_do_not_count() {
    let root = workspace(
        "tests",
        &[
            ("lib.rs", "mod a;\nmod b;\n"),
            (
                "a.rs",
                "pub fn f() {}\n#[cfg(test)]\nmod tests { use crate::b::g; }\n",
            ),
            (
                "b.rs",
                "pub fn g() { crate::a::f(); }\n#[test]\nfn t() { println!(\"x\"); }\n",
            ),
        ],
    );
    assert_eq!(check(&root).unwrap(), Vec::<String>::new());
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn long_files_and_library_prints_are_found() {
    let long: String = (0..=MAX_CODE_LINES)
        .map(|i| format!("const C{i}: u8 = 0;\n"))
        .collect();
    let comments: String = (0..2 * MAX_CODE_LINES).map(|_| "// why\n\n").collect();
    let root = workspace(
        "long",
        &[
            ("lib.rs", "mod long;\nmod quiet;\nmod loud;\n"),
            ("long.rs", &long),
            ("quiet.rs", &comments),
            ("loud.rs", "pub fn f() {\n    eprintln!(\"hi\");\n}\n"),
        ],
    );
    let f = check(&root).unwrap();
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(
        f.iter().any(|l| l.contains("long.rs: 601 lines of code")),
        "{f:?}"
    );
    assert!(
        f.iter()
            .any(|l| l.contains("loud.rs: library code prints (lines 2)")),
        "{f:?}"
    );
    fs::remove_dir_all(root).unwrap();
}
