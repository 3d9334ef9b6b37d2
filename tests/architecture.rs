//! The crate's floor plan: the modules of `src/` import one another without a cycle.
//!
//! Each `.rs` file under `src/` is a module (`src/a/mod.rs` and `src/a.rs` are `a`, `src/lib.rs`
//! is the root). Its imports are the paths it names starting with `crate::`, `super::` or
//! `self::` (grouped `use` trees included), and, in the root, paths starting with one of its own
//! child modules. A path is resolved to the longest module prefix it names, following `pub use`
//! re-exports (so `crate::Tensor` counts as an import of `tensor`). Comments are ignored. A
//! module's uses of its own ancestors do not count (a child is part of its parent's interface);
//! every other edge does. The test fails on any cycle and names its modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).expect("under src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text without comments and string literals (a `"crate::x"` in a message is not an import).
fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if bytes[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < bytes.len() {
                if bytes[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if bytes[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if bytes[i] == b'"' && (i == 0 || bytes[i - 1] != b'\'') {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

/// Splits code into identifier, `::`, `{`, `}`, `,` and other single-character tokens.
fn tokens(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
            i += 1;
        }
    }
    out
}

/// A path named in the code, and the name it is bound to when it is a `use` leaf (`as` renames
/// included).
struct Named {
    path: Vec<String>,
    alias: Option<String>,
}

/// The paths named from `tokens[i]` on, where `tokens[i]` is the first segment: a simple path
/// `a::b::c`, or a `use` tree `a::{b, c::{self, d as e}}` expanded into its leaves.
fn paths_at(tokens: &[String], i: usize) -> Vec<Named> {
    fn leaf(tokens: &[String], i: usize, mut path: Vec<String>, out: &mut Vec<Named>) -> usize {
        let (alias, next) = if tokens.get(i).map(String::as_str) == Some("as") {
            (tokens.get(i + 1).cloned(), i + 2)
        } else {
            (None, i)
        };
        if path.last().is_some_and(|s| s == "self") {
            path.pop();
        }
        let alias = alias.or_else(|| path.last().cloned());
        out.push(Named { path, alias });
        next
    }
    fn tree(tokens: &[String], mut i: usize, prefix: Vec<String>, out: &mut Vec<Named>) -> usize {
        let mut path = prefix;
        loop {
            match tokens.get(i).map(String::as_str) {
                Some("{") => {
                    i += 1;
                    loop {
                        match tokens.get(i).map(String::as_str) {
                            Some("}") => return i + 1,
                            Some(",") => i += 1,
                            None => return i,
                            _ => i = tree(tokens, i, path.clone(), out),
                        }
                    }
                }
                Some(seg) if seg.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                    path.push(seg.to_string());
                    i += 1;
                    if tokens.get(i).map(String::as_str) == Some("::") {
                        i += 1;
                        continue;
                    }
                    return leaf(tokens, i, path, out);
                }
                _ => return leaf(tokens, i, path, out),
            }
        }
    }
    let mut out = Vec::new();
    tree(tokens, i, Vec::new(), &mut out);
    out
}

struct Crate {
    modules: BTreeSet<Module>,
    /// Per module: its `pub use` re-exports, name → the full path it stands for.
    reexports: BTreeMap<Module, BTreeMap<String, Vec<String>>>,
    /// Per module: the paths it names (already made absolute from the root).
    uses: BTreeMap<Module, Vec<Vec<String>>>,
}

/// Makes a path that starts with `crate`/`super`/`self` (or, in the root, a child module)
/// absolute; `None` for paths into other crates.
fn absolute(m: &Module, path: &[String], modules: &BTreeSet<Module>) -> Option<Vec<String>> {
    let (head, rest) = path.split_first()?;
    let mut base: Vec<String> = match head.as_str() {
        "crate" => Vec::new(),
        "self" => m.clone(),
        "super" => m[..m.len().checked_sub(1)?].to_vec(),
        _ => {
            // A relative path to a child module of this module (common in the root).
            let mut child = m.clone();
            child.push(head.clone());
            if modules.contains(&child) {
                let mut p = child;
                p.extend(rest.iter().cloned());
                return Some(p);
            }
            return None;
        }
    };
    let mut rest = rest;
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

fn load(src: &Path) -> Crate {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(src, f)).collect();
    let mut reexports = BTreeMap::new();
    let mut uses = BTreeMap::new();
    for f in &files {
        let m = module_of(src, f);
        let toks = tokens(&code_only(&std::fs::read_to_string(f).expect("readable")));
        let mut named = Vec::new();
        let mut exported = BTreeMap::new();
        // Names a `use` binds in this file, to follow paths such as `reference::x::f` written
        // after `use crate::reference;`.
        let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in 0..toks.len() {
            let after_use = i > 0 && toks[i - 1] == "use";
            let starts_path = matches!(toks[i].as_str(), "crate" | "super" | "self")
                || (after_use && toks.get(i + 1).is_some_and(|t| t == "::"));
            // `a::b` continuing a longer path is part of the path that started before it.
            if !starts_path || (i > 0 && toks[i - 1] == "::") {
                continue;
            }
            let is_pub_use = i >= 2 && after_use && toks[i - 2] == "pub";
            for p in paths_at(&toks, i) {
                if let Some(abs) = absolute(&m, &p.path, &modules) {
                    if after_use {
                        if let Some(alias) = &p.alias {
                            aliases.insert(alias.clone(), abs.clone());
                            if is_pub_use {
                                exported.insert(alias.clone(), abs.clone());
                            }
                        }
                    }
                    named.push(abs);
                }
            }
        }
        for i in 0..toks.len() {
            let Some(target) = aliases.get(&toks[i]) else {
                continue;
            };
            if toks.get(i + 1).is_some_and(|t| t == "::") && (i == 0 || toks[i - 1] != "::") {
                for p in paths_at(&toks, i) {
                    let mut abs = target.clone();
                    abs.extend(p.path.into_iter().skip(1));
                    named.push(abs);
                }
            }
        }
        reexports.insert(m.clone(), exported);
        uses.insert(m, named);
    }
    Crate {
        modules,
        reexports,
        uses,
    }
}

impl Crate {
    /// The module an absolute path lands in, following re-exports (at most 8 hops).
    fn resolve(&self, path: &[String], hops: u32) -> Option<Module> {
        for len in (0..=path.len()).rev() {
            let prefix = path[..len].to_vec();
            if !self.modules.contains(&prefix) {
                continue;
            }
            if let Some(next) = path.get(len) {
                if let Some(target) = self.reexports.get(&prefix).and_then(|r| r.get(next)) {
                    if hops < 8 && target.as_slice() != path {
                        let mut t = target.clone();
                        t.extend(path[len + 1..].iter().cloned());
                        return self.resolve(&t, hops + 1);
                    }
                }
            }
            return Some(prefix);
        }
        None
    }

    fn edges(&self) -> BTreeMap<Module, BTreeSet<Module>> {
        let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
        for (m, paths) in &self.uses {
            for p in paths {
                let Some(t) = self.resolve(p, 0) else {
                    continue;
                };
                // The root re-exports everything; a child may use its ancestors freely.
                if t.is_empty() || t == *m || m.starts_with(&t) {
                    continue;
                }
                edges.entry(m.clone()).or_default().insert(t);
            }
        }
        edges
    }
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        on: BTreeSet<Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit(s: &mut State<'_>, v: &Module) {
        let i = s.index.len();
        s.index.insert(v.clone(), i);
        s.low.insert(v.clone(), i);
        s.stack.push(v.clone());
        s.on.insert(v.clone());
        for w in s.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().expect("on the stack");
                s.on.remove(&w);
                let done = w == *v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    let nodes: BTreeSet<Module> = edges
        .iter()
        .flat_map(|(a, bs)| std::iter::once(a.clone()).chain(bs.iter().cloned()))
        .collect();
    for v in &nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

#[test]
fn src_modules_import_each_other_without_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let krate = load(&src);
    let edges = krate.edges();
    let found = cycles(&edges);
    let report: Vec<String> = found
        .iter()
        .map(|c| {
            let names: Vec<String> = c.iter().map(name).collect();
            let inside: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    edges[a]
                        .iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("{} -> {}", name(a), name(b)))
                })
                .collect();
            format!("{{{}}}: {}", names.join(", "), inside.join("; "))
        })
        .collect();
    assert!(
        found.is_empty(),
        "{} import cycle(s) among src/ modules:\n{}",
        found.len(),
        report.join("\n")
    );
    let count: usize = edges.values().map(BTreeSet::len).sum();
    eprintln!(
        "architecture: {} modules, {count} import edges, no cycle",
        krate.modules.len()
    );
}

/// The checker itself finds a planted cycle, through a grouped `use` and a re-export.
#[test]
fn the_cycle_check_finds_a_planted_cycle() {
    let dir = std::env::temp_dir().join(format!("ultramem-arch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::write(dir.join("lib.rs"), "mod a; mod b; pub use b::Thing;\n").unwrap();
    std::fs::write(
        dir.join("a/mod.rs"),
        "// use crate::b; in a comment is not an import\nuse crate::{Thing, c::X};\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.rs"),
        "pub struct Thing;\nfn f() { let _ = crate::a::g(); }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("c.rs"),
        "pub struct X; const S: &str = \"crate::a\";\n",
    )
    .unwrap();
    let krate = load(&dir);
    let found = cycles(&krate.edges());
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        found,
        vec![vec![vec!["a".to_string()], vec!["b".to_string()]]],
        "a -> b (through the root's re-export of Thing) and b -> a"
    );
}
