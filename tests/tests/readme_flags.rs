//! README.md's flag reference is clap's: each block between `<!-- flags: TOOL -->` and
//! `<!-- /flags: TOOL -->` must equal [`testbed::flagdoc::render`] of that tool's clap
//! description, so a flag added, renamed or re-documented in code fails here until the
//! README says the same. `FAULTLINE_BLESS=1` rewrites the blocks in place (only between
//! the markers) instead of failing.
use std::path::{Path, PathBuf};

use clap::CommandFactory;

const REGENERATE: &str = "FAULTLINE_BLESS=1 cargo test -p faultline-tests --test readme_flags";

fn readme_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("README.md")
}

/// The tools whose flags README documents, with their clap descriptions.
fn tools() -> Vec<(&'static str, clap::Command)> {
    vec![
        ("loadgen", loadgen::cli::Cli::command()),
        ("analyzer", analyzer::cli::Cli::command()),
    ]
}

/// What README holds between a tool's markers: a blank line, the rendering, a blank line.
fn block(rendered: &str) -> String {
    format!("\n\n{rendered}\n")
}

/// The byte range between the end of `<!-- flags: TOOL -->` and the start of
/// `<!-- /flags: TOOL -->`; panics, saying what is wrong, unless each occurs once and in
/// that order.
fn block_range(readme: &str, tool: &str) -> std::ops::Range<usize> {
    let start_marker = format!("<!-- flags: {tool} -->");
    let end_marker = format!("<!-- /flags: {tool} -->");
    for marker in [&start_marker, &end_marker] {
        let n = readme.matches(marker.as_str()).count();
        assert_eq!(
            n, 1,
            "README.md must hold `{marker}` exactly once (found {n}): the flag reference \
             of {tool} goes between `{start_marker}` and `{end_marker}`, each on its own line"
        );
    }
    let start = readme.find(&start_marker).unwrap() + start_marker.len();
    let end = readme.find(&end_marker).unwrap();
    assert!(
        start <= end,
        "README.md: `{end_marker}` comes before `{start_marker}`"
    );
    start..end
}

/// The first line where `want` and `got` differ, for the failure message.
fn first_difference(want: &str, got: &str) -> String {
    let (mut want_lines, mut got_lines) = (want.lines(), got.lines());
    for n in 1.. {
        match (want_lines.next(), got_lines.next()) {
            (Some(w), Some(g)) if w == g => {}
            (None, None) => break,
            (w, g) => {
                return format!(
                    "first difference at line {n} of the block:\n  clap:   {}\n  README: {}",
                    w.unwrap_or("(end of block)"),
                    g.unwrap_or("(end of block)")
                );
            }
        }
    }
    "the blocks differ only in trailing whitespace".to_owned()
}

#[test]
fn readme_flag_reference_is_what_clap_says() {
    let path = readme_path();
    let mut readme =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let bless = std::env::var_os("FAULTLINE_BLESS").is_some_and(|v| !v.is_empty() && v != "0");
    let mut stale = Vec::new();
    let mut rewritten = false;
    for (tool, command) in tools() {
        let want = block(&testbed::flagdoc::render(&command));
        let range = block_range(&readme, tool);
        if readme[range.clone()] == want {
            continue;
        }
        if bless {
            readme.replace_range(range, &want);
            rewritten = true;
        } else {
            stale.push(format!(
                "`{tool}`: {}",
                first_difference(&want, &readme[range])
            ));
        }
    }
    if rewritten {
        std::fs::write(&path, &readme).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    assert!(
        stale.is_empty(),
        "README.md's flag reference differs from the clap description of the tools:\n\n{}\n\n\
         The reference is generated: change the flag's help in the code, then regenerate \
         the README blocks with\n\n    {REGENERATE}\n",
        stale.join("\n\n")
    );
}

/// The comparison is not vacuous: renaming or adding a flag in loadgen's description
/// makes the rendering differ from README's block.
#[test]
fn a_renamed_or_added_flag_no_longer_matches_the_readme() {
    let readme = std::fs::read_to_string(readme_path()).unwrap();
    let current = &readme[block_range(&readme, "loadgen")];
    let renamed = loadgen::cli::Cli::command()
        .mut_subcommand("attack", |a| a.mut_arg("rate", |r| r.long("arrival-rate")));
    let added = loadgen::cli::Cli::command().mut_subcommand("attack", |a| {
        a.arg(clap::Arg::new("brand-new").long("brand-new").help("New."))
    });
    for (what, command) in [("renamed --rate", renamed), ("added --brand-new", added)] {
        let want = block(&testbed::flagdoc::render(&command));
        assert_ne!(want, current, "{what}: the README block should be stale");
        assert!(
            first_difference(&want, current).contains("first difference at line"),
            "{what}"
        );
    }
}
