//! `cargo xtask layout`: the structural rules of shared/STYLE.md, checked on every crate
//! of ours, so `cargo xtask test` fails when one is broken:
//! - no import circle between modules (a module imports from another through `use`
//!   or an inline `crate::`/`super::`/`self::` path; a parent's `pub use child::X`
//!   re-export is a facade and does not count as the parent using the child), and none
//!   between the folders under one parent (each folder taken with everything in it);
//! - no file over [`MAX_CODE_LINES`] lines of code, test modules aside;
//! - library code does not print: only binaries (and the modules listed in
//!   [`PRINT_ALLOWED`], with the reason) write to stdout or stderr directly.
//!
//! Function length is clippy's `too_many_lines` (clippy.toml), not checked here.
mod modules;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::Path,
};

use anyhow::{Result, bail};

use crate::sh;
use modules::{ModPath, Module};

/// The crates whose modules are checked (folders under the workspace root).
const CRATES: &[&str] = &[
    "analyzer-common",
    "analyzer-ebpf",
    "analyzer-user",
    "events",
    "loadgen",
    "tests",
    "wire",
    "xtask",
];

/// Crates that are tools for developers, where printing is the job.
const PRINTING_CRATES: &[&str] = &["tests", "xtask"];

/// Library modules that may print, each with its reason: `(crate folder, module path)`.
const PRINT_ALLOWED: &[(&str, &str, &str)] = &[
    (
        "loadgen",
        "app",
        "the command front end main calls: it prints the reports and warnings the user asked for",
    ),
    (
        "loadgen",
        "progress",
        "the live progress line on stderr is the run's UI, not a log",
    ),
];

/// Lines of code a source file may hold, test modules aside (STYLE.md: split by
/// responsibility long before 800).
pub const MAX_CODE_LINES: usize = 600;

/// Runs every check over the workspace; fails listing every finding.
pub fn run() -> Result<()> {
    let findings = check(&sh::workspace_root())?;
    if findings.is_empty() {
        eprintln!(
            "layout: no import circles, no file over {MAX_CODE_LINES} lines of code, no library prints"
        );
        return Ok(());
    }
    for f in &findings {
        eprintln!("layout: {f}");
    }
    bail!("{} layout finding(s), listed above", findings.len())
}

/// Every finding of the checks, as one line each.
pub fn check(root: &Path) -> Result<Vec<String>> {
    let mut findings = Vec::new();
    for krate in CRATES {
        for (target, file) in [("lib", "src/lib.rs"), ("bin", "src/main.rs")] {
            let root_file = root.join(krate).join(file);
            if !root_file.is_file() {
                continue;
            }
            let mods = modules::read_crate(&root_file)?;
            let name = format!("{krate} ({target})");
            findings.extend(circles(&name, &mods));
            findings.extend(long_files(root, &mods));
            if target == "lib" && !PRINTING_CRATES.contains(krate) {
                findings.extend(prints(root, krate, &mods));
            }
        }
    }
    findings.sort();
    findings.dedup();
    Ok(findings)
}

fn show(p: &[String]) -> String {
    if p.is_empty() {
        "crate".into()
    } else {
        p.join("::")
    }
}

/// Module-to-module edges with the names that make each one.
type Edges = BTreeMap<(ModPath, ModPath), BTreeSet<String>>;

fn edges(mods: &BTreeMap<ModPath, Module>) -> Edges {
    let mut out = Edges::new();
    for (here, m) in mods {
        for r in &m.refs {
            // The deepest module the path names.
            let Some(len) = (0..=r.path.len())
                .rev()
                .find(|n| mods.contains_key(&r.path[..*n]))
            else {
                continue;
            };
            let target = r.path[..len].to_vec();
            if &target == here || (r.facade && target.starts_with(here)) {
                continue;
            }
            let name = r.path.get(len).cloned().unwrap_or_else(|| "*".into());
            out.entry((here.clone(), target)).or_default().insert(name);
        }
    }
    out
}

/// Circles between modules, then between the folders (subtrees) under each parent.
fn circles(krate: &str, mods: &BTreeMap<ModPath, Module>) -> Vec<String> {
    let edges = edges(mods);
    let mut out = Vec::new();
    let nodes: Vec<ModPath> = mods.keys().cloned().collect();
    for scc in sccs(&nodes, &edges) {
        out.push(format!(
            "{krate}: import circle between modules {}",
            describe(&scc, &edges, |p| p.clone())
        ));
    }
    for parent in mods.keys() {
        let kids: Vec<ModPath> = mods
            .keys()
            .filter(|k| k.len() == parent.len() + 1 && k.starts_with(parent))
            .cloned()
            .collect();
        let folder = |p: &ModPath| -> Option<ModPath> {
            (p.len() > parent.len() && p.starts_with(parent)).then(|| p[..=parent.len()].to_vec())
        };
        let mut up = Edges::new();
        for ((a, b), names) in &edges {
            if let (Some(fa), Some(fb)) = (folder(a), folder(b))
                && fa != fb
            {
                up.entry((fa, fb))
                    .or_default()
                    .extend(names.iter().cloned());
            }
        }
        for scc in sccs(&kids, &up) {
            // A circle of plain files is already reported above.
            if scc
                .iter()
                .any(|k| mods.keys().any(|m| m.len() > k.len() && m.starts_with(k)))
            {
                out.push(format!(
                    "{krate}: import circle between folders {}",
                    describe(&scc, &edges, |p| folder(p).unwrap_or_default())
                ));
            }
        }
    }
    out
}

/// `a -> b (Name, Other); b -> a (Thing)` for the edges inside one circle, where
/// `group` maps a module to the circle's node it belongs to.
fn describe(scc: &[ModPath], edges: &Edges, group: impl Fn(&ModPath) -> ModPath) -> String {
    let inside: BTreeSet<&ModPath> = scc.iter().collect();
    let mut parts = Vec::new();
    for ((a, b), names) in edges {
        let (ga, gb) = (group(a), group(b));
        if ga != gb && inside.contains(&ga) && inside.contains(&gb) {
            let mut s = format!("{} -> {} (", show(a), show(b));
            let list: Vec<&str> = names.iter().map(String::as_str).collect();
            let _ = write!(s, "{})", list.join(", "));
            parts.push(s);
        }
    }
    parts.join("; ")
}

/// Strongly connected components of more than one node (Tarjan's algorithm).
fn sccs(nodes: &[ModPath], edges: &Edges) -> Vec<Vec<ModPath>> {
    let index_of: BTreeMap<&ModPath, usize> =
        nodes.iter().enumerate().map(|(i, n)| (n, i)).collect();
    let mut adj = vec![Vec::new(); nodes.len()];
    for (a, b) in edges.keys() {
        if let (Some(&i), Some(&j)) = (index_of.get(a), index_of.get(b)) {
            adj[i].push(j);
        }
    }
    let mut t = Tarjan {
        adj: &adj,
        index: vec![None; nodes.len()],
        low: vec![0; nodes.len()],
        on_stack: vec![false; nodes.len()],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..nodes.len() {
        if t.index[v].is_none() {
            t.visit(v);
        }
    }
    t.out
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let mut v: Vec<ModPath> = c.into_iter().map(|i| nodes[i].clone()).collect();
            v.sort();
            v
        })
        .collect()
}

struct Tarjan<'a> {
    adj: &'a [Vec<usize>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    out: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    // Module graphs are a few hundred nodes deep at most: recursion is fine.
    fn visit(&mut self, v: usize) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for &w in &self.adj[v] {
            match self.index[w] {
                None => {
                    self.visit(w);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            self.out.push(comp);
        }
    }
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

fn long_files(root: &Path, mods: &BTreeMap<ModPath, Module>) -> Vec<String> {
    mods.values()
        .filter(|m| m.code_lines > MAX_CODE_LINES)
        .map(|m| {
            format!(
                "{}: {} lines of code (test modules aside), over {MAX_CODE_LINES}",
                rel(root, &m.file),
                m.code_lines
            )
        })
        .collect()
}

fn prints(root: &Path, krate: &str, mods: &BTreeMap<ModPath, Module>) -> Vec<String> {
    mods.iter()
        .filter(|(p, m)| {
            !m.print_lines.is_empty()
                && !PRINT_ALLOWED
                    .iter()
                    .any(|(c, path, _)| c == &krate && *path == show(p))
        })
        .map(|(_, m)| {
            let lines: Vec<String> = m.print_lines.iter().map(usize::to_string).collect();
            format!(
                "{}: library code prints (lines {}): log through tracing, or return it to the binary",
                rel(root, &m.file),
                lines.join(", ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
