//! ARCHITECTURE.md's dependency rules, checked against the code: every `crate::<module>` a module's
//! code names must be allowed by the table under "## Dependencies", and no two sibling modules inside a
//! module may name each other (directly or around a circle). Test code (`#[cfg(test)]` and below) is
//! left out: a test may borrow any stage's helpers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module -> the modules it may use, as ARCHITECTURE.md's table says.
fn allowed() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string("ARCHITECTURE.md").unwrap();
    let section = text
        .split("## Dependencies")
        .nth(1)
        .expect("ARCHITECTURE.md has a Dependencies section");
    let mut table = BTreeMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, module, uses, ..] = cells.as_slice() else {
            continue;
        };
        let Some(module) = module.strip_prefix('`').and_then(|m| m.strip_suffix('`')) else {
            continue;
        };
        let uses = uses
            .split(',')
            .map(|u| u.trim().trim_matches('`').to_owned())
            .filter(|u| !u.is_empty() && u != "—")
            .collect();
        table.insert(module.to_owned(), uses);
    }
    table
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/` (`["derive", "plan"]`), without `mod`.
fn module_of(path: &Path) -> Vec<String> {
    let rel = path.strip_prefix("src").unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code before the first `#[cfg(test)]`, without comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names that follow `prefix` (`crate::`, `super::`), including each name inside `{...}`.
fn named_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(inner.split(',').map(|n| ident(n.trim())));
        } else {
            out.push(ident(rest));
        }
    }
    out.retain(|n| !n.is_empty());
    out
}

fn files() -> Vec<(Vec<String>, String)> {
    let mut paths = Vec::new();
    rust_files(Path::new("src"), &mut paths);
    paths.sort();
    paths
        .iter()
        .map(|p| (module_of(p), code(p)))
        .filter(|(m, _)| !matches!(m.first().map(String::as_str), Some("lib" | "main" | "bin")))
        .collect()
}

#[test]
fn every_module_uses_only_what_architecture_md_allows() {
    let allowed = allowed();
    let mut modules = BTreeSet::new();
    let mut forbidden = Vec::new();
    for (module, code) in files() {
        let top = &module[0];
        modules.insert(top.clone());
        let Some(may) = allowed.get(top) else {
            forbidden.push(format!(
                "{top}: not in ARCHITECTURE.md's Dependencies table"
            ));
            continue;
        };
        for used in named_after(&code, "crate::") {
            if used != *top && !may.contains(&used) {
                forbidden.push(format!("{}: uses crate::{used}", module.join("/")));
            }
        }
    }
    let listed: BTreeSet<String> = allowed.keys().cloned().collect();
    assert_eq!(
        listed, modules,
        "the table lists exactly the crate's modules"
    );
    forbidden.sort();
    forbidden.dedup();
    assert!(
        forbidden.is_empty(),
        "forbidden dependencies:\n{}",
        forbidden.join("\n")
    );
}

#[test]
fn the_allowed_dependencies_have_no_circle() {
    let allowed = allowed();
    // Depth-first: a module on the current path seen again is a circle.
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if let Some(at) = path.iter().position(|p| *p == m) {
            panic!("circle: {} -> {m}", path[at..].join(" -> "));
        }
        if !done.insert(m) {
            return;
        }
        path.push(m);
        for next in graph.get(m).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for m in allowed.keys() {
        visit(m, &allowed, &mut Vec::new(), &mut done);
    }
}

#[test]
fn sibling_modules_do_not_name_each_other_around_a_circle() {
    let files = files();
    let known: BTreeSet<Vec<String>> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in &files {
        if module.len() < 2 {
            continue;
        }
        let me = format!("{}/{}", module[0], module[1]);
        let mut names = named_after(code, "super::");
        names.extend(named_after(code, &format!("crate::{}::", module[0])));
        for name in names {
            let sibling = vec![module[0].clone(), name.clone()];
            let target = format!("{}/{name}", module[0]);
            if known.contains(&sibling) && target != me {
                graph.entry(me.clone()).or_default().insert(target);
            }
        }
    }
    for (from, tos) in &graph {
        for to in tos {
            let mut seen = BTreeSet::new();
            let mut stack = vec![to.clone()];
            while let Some(next) = stack.pop() {
                assert!(next != *from, "circle between {from} and {to}");
                if seen.insert(next.clone()) {
                    stack.extend(graph.get(&next).into_iter().flatten().cloned());
                }
            }
        }
    }
}
