//! Reading one crate's module tree: which file holds which module, what each module
//! imports from the others (its `use` trees and inline `crate::`/`super::`/`self::`
//! paths), how many lines of code it has, and where it prints. Test-only code
//! (`#[cfg(test)]` items, `#[test]` functions) is left out of everything.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use syn::{
    Attribute, Item, ItemMod, ItemUse, UseTree, Visibility,
    spanned::Spanned,
    visit::{self, Visit},
};

/// A module's path from its crate root: `[]` is the root, `["raw", "track"]` is
/// `crate::raw::track`.
pub type ModPath = Vec<String>;

/// One module of a crate, as read from its file.
#[derive(Debug, Default)]
pub struct Module {
    pub file: PathBuf,
    /// Paths this module names, resolved to absolute item paths (`crate::a::b::Name` as
    /// `["a", "b", "Name"]`); `facade` marks a `pub use` (a re-export, not a use).
    pub refs: Vec<Ref>,
    /// Lines of code: not blank, not only a comment, not inside test-only items.
    pub code_lines: usize,
    /// Lines that call `println!`, `eprintln!`, `print!` or `eprint!`.
    pub print_lines: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Ref {
    pub path: Vec<String>,
    pub facade: bool,
}

/// Every module of the crate rooted at `root_file`, keyed by module path.
pub fn read_crate(root_file: &Path) -> Result<BTreeMap<ModPath, Module>> {
    let mut out = BTreeMap::new();
    read_module(root_file, Vec::new(), true, &mut out)?;
    Ok(out)
}

fn read_module(
    file: &Path,
    path: ModPath,
    owns_dir: bool,
    out: &mut BTreeMap<ModPath, Module>,
) -> Result<()> {
    let text = fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let ast = syn::parse_file(&text).with_context(|| format!("parse {}", file.display()))?;
    let children: BTreeSet<String> = ast
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Mod(m) if !is_test_only(&m.attrs) => Some(m.ident.to_string()),
            _ => None,
        })
        .collect();
    let mut collector = Collector {
        here: path.clone(),
        children: &children,
        refs: Vec::new(),
        test_lines: Vec::new(),
        print_lines: Vec::new(),
    };
    collector.visit_file(&ast);
    let Collector {
        refs,
        test_lines,
        print_lines,
        ..
    } = collector;
    out.insert(
        path.clone(),
        Module {
            file: file.to_owned(),
            refs,
            code_lines: count_code_lines(&text, &test_lines),
            print_lines,
        },
    );
    let dir = if owns_dir {
        file.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        file.with_extension("")
    };
    for item in &ast.items {
        let Item::Mod(m) = item else { continue };
        if is_test_only(&m.attrs) || m.content.is_some() {
            // Inline modules are read as part of their file.
            continue;
        }
        let child = child_file(&dir, m)
            .with_context(|| format!("{}: module `{}` has no file", file.display(), m.ident))?;
        let owns = child.file_name().is_some_and(|n| n == "mod.rs");
        let mut p = path.clone();
        p.push(m.ident.to_string());
        read_module(&child, p, owns, out)?;
    }
    Ok(())
}

fn child_file(dir: &Path, m: &ItemMod) -> Option<PathBuf> {
    let name = m.ident.to_string();
    [
        dir.join(format!("{name}.rs")),
        dir.join(&name).join("mod.rs"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// `#[cfg(test)]` or `#[test]`: code that only the test build sees.
fn is_test_only(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("test")
            || (a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test"))
    })
}

/// Lines that are not blank, not only a comment, and outside `test_lines` (inclusive
/// 1-based ranges).
fn count_code_lines(text: &str, test_lines: &[(usize, usize)]) -> usize {
    text.lines()
        .enumerate()
        .filter(|(i, l)| {
            let n = i + 1;
            let t = l.trim();
            !t.is_empty()
                && !t.starts_with("//")
                && !test_lines.iter().any(|(a, b)| (*a..=*b).contains(&n))
        })
        .count()
}

struct Collector<'a> {
    here: ModPath,
    children: &'a BTreeSet<String>,
    refs: Vec<Ref>,
    test_lines: Vec<(usize, usize)>,
    print_lines: Vec<usize>,
}

impl Collector<'_> {
    /// Resolves a path as written in this module to an absolute one, when it names
    /// something of this crate; `None` for other crates and std.
    fn absolute(&self, segs: &[String]) -> Option<Vec<String>> {
        let first = segs.first()?;
        let mut base = match first.as_str() {
            "crate" => Vec::new(),
            "self" => self.here.clone(),
            "super" => {
                let mut b = self.here.clone();
                let mut rest = segs;
                while rest.first().is_some_and(|s| s == "super") {
                    b.pop();
                    rest = &rest[1..];
                }
                b.extend(rest.iter().cloned());
                return Some(b);
            }
            name if self.children.contains(name) => {
                let mut b = self.here.clone();
                b.push(name.to_owned());
                b
            }
            _ => return None,
        };
        base.extend(segs[1..].iter().cloned());
        Some(base)
    }

    fn add(&mut self, segs: &[String], facade: bool) {
        if let Some(path) = self.absolute(segs) {
            self.refs.push(Ref { path, facade });
        }
    }

    fn skip_test(&mut self, attrs: &[Attribute], span: proc_macro2::Span) -> bool {
        if is_test_only(attrs) {
            self.test_lines.push((span.start().line, span.end().line));
            return true;
        }
        false
    }
}

/// Every leaf path of a use tree (`a::{b, c::d}` gives `a::b` and `a::c::d`; a glob
/// gives its prefix).
fn use_paths(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_paths(&p.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(n) => {
            let mut v = prefix.clone();
            if n.ident != "self" {
                v.push(n.ident.to_string());
            }
            out.push(v);
        }
        UseTree::Rename(r) => {
            let mut v = prefix.clone();
            if r.ident != "self" {
                v.push(r.ident.to_string());
            }
            out.push(v);
        }
        UseTree::Glob(_) => out.push(prefix.clone()),
        UseTree::Group(g) => {
            for t in &g.items {
                use_paths(t, prefix, out);
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item(&mut self, item: &'ast Item) {
        let attrs: &[Attribute] = match item {
            Item::Const(i) => &i.attrs,
            Item::Enum(i) => &i.attrs,
            Item::Fn(i) => &i.attrs,
            Item::Impl(i) => &i.attrs,
            Item::Macro(i) => &i.attrs,
            Item::Mod(i) => &i.attrs,
            Item::Static(i) => &i.attrs,
            Item::Struct(i) => &i.attrs,
            Item::Trait(i) => &i.attrs,
            Item::Type(i) => &i.attrs,
            Item::Use(i) => &i.attrs,
            _ => &[],
        };
        if self.skip_test(attrs, item.span()) {
            return;
        }
        visit::visit_item(self, item);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !self.skip_test(&f.attrs, f.span()) {
            visit::visit_impl_item_fn(self, f);
        }
    }

    fn visit_item_use(&mut self, u: &'ast ItemUse) {
        let facade = !matches!(u.vis, Visibility::Inherited);
        let mut paths = Vec::new();
        use_paths(&u.tree, &mut Vec::new(), &mut paths);
        for p in paths {
            self.add(&p, facade);
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if segs.len() > 1 {
            self.add(&segs, false);
        }
        visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        let name = m.path.segments.last().map(|s| s.ident.to_string());
        if matches!(
            name.as_deref(),
            Some("println" | "eprintln" | "print" | "eprint")
        ) {
            self.print_lines.push(m.span().start().line);
        }
        // Paths inside macro arguments (`format!("{}", crate::x::y())`) are tokens, not
        // syntax: read the ones that parse as expressions.
        if let Ok(args) = m.parse_body_with(
            syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated,
        ) {
            for e in &args {
                self.visit_expr(e);
            }
        }
        visit::visit_macro(self, m);
    }
}
