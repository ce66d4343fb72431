//! Issue 26: `docs/architecture.md` lists every module of the tree and
//! nothing that does not exist, and no module imports one that imports it
//! back. Both read the source as text: a module's references are the
//! `crate::` and `super::` paths outside comments and its test module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file below `dir`, relative to it, with `/` separators.
fn rust_files(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel);
            }
        }
    }
    out
}

/// The trees of `docs/architecture.md`: folder (`master/src/`) → the
/// files it lists, each with its description.
fn documented() -> BTreeMap<String, BTreeMap<String, String>> {
    let text = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let (mut in_block, mut folder) = (false, None::<String>);
    for line in text.lines() {
        if line.starts_with("```") {
            in_block = line == "```text";
            folder = None;
            continue;
        }
        if !in_block {
            continue;
        }
        if !line.starts_with(' ') && line.ends_with('/') {
            folder = Some(line.to_string());
            out.entry(line.to_string()).or_default();
        } else if let (Some(f), Some(rest)) = (&folder, line.strip_prefix("  ")) {
            let (file, what) = rest.split_once(' ').unwrap_or((rest, ""));
            out.get_mut(f)
                .unwrap()
                .insert(file.to_string(), what.trim().to_string());
        }
    }
    out
}

const FOLDERS: &[&str] = &[
    "common/src/",
    "shared-fs/src/",
    "report/src/",
    "master/src/",
    "worker/src/",
    "tests/src/",
    "tests/tests/it/",
];

#[test]
fn architecture_md_lists_every_module_and_nothing_else() {
    let docs = documented();
    let mut problems = Vec::new();
    for folder in FOLDERS {
        let Some(listed) = docs.get(*folder) else {
            problems.push(format!("{folder}: no tree in docs/architecture.md"));
            continue;
        };
        let real = rust_files(&root().join(folder));
        for f in real.iter().filter(|f| !listed.contains_key(*f)) {
            problems.push(format!("{folder}{f}: a module the page does not list"));
        }
        for (f, what) in listed {
            if !real.contains(f) {
                problems.push(format!("{folder}{f}: listed, but there is no such file"));
            } else if what.is_empty() {
                problems.push(format!(
                    "{folder}{f}: listed without a word of what it holds"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/architecture.md is out of date:\n{}",
        problems.join("\n")
    );
}

/// A file's module path: `run/mod.rs` → `run`, `lib.rs` → ``.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The module paths a source text refers to through `crate::` and
/// `super::` (with `{a, b::c}` lists), outside comments and its tests.
fn references(text: &str) -> Vec<(bool, Vec<String>)> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = Vec::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (prefix, is_crate) in [("crate::", true), ("super::", false)] {
            let mut rest = line;
            while let Some(i) = rest.find(prefix) {
                let after = &rest[i + prefix.len()..];
                let tails: Vec<&str> = match after.strip_prefix('{') {
                    Some(list) => list.split('}').next().unwrap_or("").split(',').collect(),
                    None => vec![after],
                };
                for t in tails {
                    let path: Vec<String> = t
                        .trim()
                        .split("::")
                        .map(|s| {
                            s.chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                .collect::<String>()
                        })
                        .take_while(|s| {
                            !s.is_empty()
                                && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                        })
                        .collect();
                    if !path.is_empty() {
                        out.push((is_crate, path));
                    }
                }
                rest = after;
            }
        }
    }
    out
}

/// Cycles among the modules of the crate at `src`, each as its members.
fn cycles(src: &Path) -> Vec<Vec<String>> {
    let files: Vec<String> = rust_files(src)
        .into_iter()
        .filter(|f| f != "main.rs")
        .collect();
    let mods: BTreeMap<Vec<String>, String> =
        files.iter().map(|f| (module_of(f), f.clone())).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (m, f) in &mods {
        let text = std::fs::read_to_string(src.join(f)).unwrap();
        let dir_module = f.ends_with("mod.rs") || f == "lib.rs";
        for (is_crate, path) in references(&text) {
            let mut target = if is_crate {
                path
            } else {
                let mut base = m.clone();
                if !dir_module {
                    base.pop();
                }
                base.extend(path);
                base
            };
            while !target.is_empty() && !mods.contains_key(&target) {
                target.pop();
            }
            // A module's own items and its ancestors (which declare it) are not edges.
            if target.is_empty() || m.starts_with(&target) {
                continue;
            }
            edges.entry(m.clone()).or_default().insert(target);
        }
    }
    // Tarjan's strongly connected components.
    struct T<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<Vec<String>, usize>,
        low: BTreeMap<Vec<String>, usize>,
        stack: Vec<Vec<String>>,
        out: Vec<Vec<String>>,
    }
    fn visit(t: &mut T<'_>, v: &Vec<String>) {
        let n = t.index.len();
        t.index.insert(v.clone(), n);
        t.low.insert(v.clone(), n);
        t.stack.push(v.clone());
        for w in t.edges.get(v).cloned().unwrap_or_default() {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let l = t.low[&w].min(t.low[v]);
                t.low.insert(v.clone(), l);
            } else if t.stack.contains(&w) {
                let l = t.index[&w].min(t.low[v]);
                t.low.insert(v.clone(), l);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                let done = &w == v;
                comp.push(w.join("::"));
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for m in mods.keys() {
        if !t.index.contains_key(m) {
            visit(&mut t, m);
        }
    }
    t.out
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mut found = Vec::new();
    for krate in ["common", "shared-fs", "report", "master", "worker"] {
        for c in cycles(&root().join(krate).join("src")) {
            found.push(format!("{krate}: {}", c.join(" <-> ")));
        }
    }
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
}

/// The checker finds a cycle where there is one.
#[test]
fn the_cycle_check_sees_a_cycle() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod c;\n").unwrap();
    std::fs::write(
        src.join("a.rs"),
        "use crate::b::X;\n// crate::c::Y in a comment\n",
    )
    .unwrap();
    std::fs::write(src.join("b.rs"), "use super::{a, c};\n").unwrap();
    std::fs::write(
        src.join("c.rs"),
        "#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n",
    )
    .unwrap();
    assert_eq!(cycles(src), vec![vec!["a".to_string(), "b".to_string()]]);
}
