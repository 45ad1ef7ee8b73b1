//! The crate's layout (issue 15): the top-level modules depend on each other without a cycle,
//! and so do the modules inside each folder; no module reaches back to the crate root. The
//! layout map in `lib.rs` names every top-level module.
//!
//! Read from the source: every `crate::…`, `super::…` and `self::…` path outside comments is an
//! edge from the module of its file to the deepest module it names.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files of the binary, not the library.
const BINARY: &[&str] = &["main.rs", "remote.rs"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `sinks/google/auth.rs` is `["sinks", "google", "auth"]`; `lib.rs` is `[]`. Files included with
/// `#[path]` (`*_tests.rs`) belong to the module beside them.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    let stem = stem.strip_suffix("_tests").unwrap_or(stem);
    if stem != "lib" && stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths that start with `crate`, `super` or `self`, groups (`crate::{a, b::c}`) expanded.
fn paths(text: &str) -> Vec<(usize, Vec<String>)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start_ok = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let head = ["crate::", "super::", "self::"]
            .into_iter()
            .find(|h| bytes[i..].starts_with(h.as_bytes()));
        match head {
            Some(h) if start_ok && (i < 2 || &bytes[i - 2..i] != b"::") => {
                let first = h.trim_end_matches("::").to_string();
                let (found, end) = path_at(text, i + h.len(), vec![first]);
                out.extend(found.into_iter().map(|p| (i, p)));
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

/// Reads segments from `at` after `prefix`, expanding a `{…}` group.
fn path_at(text: &str, mut at: usize, mut prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let bytes = text.as_bytes();
    loop {
        if bytes.get(at) == Some(&b'{') {
            let mut depth = 0;
            let mut end = at;
            for (k, b) in bytes[at..].iter().enumerate() {
                match b {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = at + k;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let inner = &text[at + 1..end];
            let mut found = Vec::new();
            let mut depth = 0;
            let mut item_start = 0;
            for (k, b) in inner.bytes().enumerate().chain([(inner.len(), b',')]) {
                match b {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    b',' if depth == 0 => {
                        let sub = inner[item_start..k].trim().to_string();
                        let (mut f, _) = path_at(&sub, 0, prefix.clone());
                        found.append(&mut f);
                        item_start = k + 1;
                    }
                    _ => {}
                }
            }
            return (found, end + 1);
        }
        let seg_end = at
            + text[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(text.len() - at);
        let segment = &text[at..seg_end];
        if segment.is_empty() {
            return (vec![prefix], seg_end);
        }
        prefix.push(segment.to_string());
        if text[seg_end..].starts_with("::") {
            at = seg_end + 2;
        } else {
            return (vec![prefix], seg_end);
        }
    }
}

struct Crate {
    modules: BTreeSet<Vec<String>>,
    /// module -> modules it names
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    /// (module, the root item it names)
    root_uses: Vec<(Vec<String>, String)>,
}

fn read_crate() -> Crate {
    let root = src();
    let mut all = Vec::new();
    files(&root, &mut all);
    let mut sources = Vec::new();
    for path in all {
        let relative = path.strip_prefix(&root).unwrap().to_path_buf();
        if BINARY.iter().any(|b| relative == Path::new(b)) {
            continue;
        }
        let text = strip_comments(&std::fs::read_to_string(&path).unwrap());
        sources.push((module_of(&relative), relative, text));
    }
    let modules: BTreeSet<Vec<String>> = sources.iter().map(|(m, _, _)| m.clone()).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut root_uses = Vec::new();
    for (module, relative, text) in &sources {
        // `super` in a `*_tests.rs` file (included with `#[path]`) or after `mod tests {` is
        // the module under test; anywhere else it is the file's parent module.
        let test_at = text.find("mod tests {").unwrap_or(usize::MAX);
        let is_test_file = relative.to_string_lossy().ends_with("_tests.rs");
        for (at, path) in paths(text) {
            let mut resolved: Vec<String> = Vec::new();
            let mut segments = path.into_iter();
            match segments.next().as_deref() {
                Some("crate") => {}
                Some("self") => resolved = module.clone(),
                Some("super") => {
                    resolved = module.clone();
                    if !is_test_file && at < test_at {
                        resolved.pop();
                    }
                }
                _ => unreachable!(),
            }
            let mut rest: Vec<String> = segments.collect();
            while rest.first().is_some_and(|s| s == "super") {
                resolved.pop();
                rest.remove(0);
            }
            // The deepest module the path names.
            let mut target = resolved.clone();
            for seg in rest.iter() {
                let mut next = target.clone();
                next.push(seg.clone());
                if modules.contains(&next) {
                    target = next;
                } else {
                    break;
                }
            }
            if target.is_empty() {
                if let Some(item) = rest.first() {
                    if !module.is_empty() {
                        root_uses.push((module.clone(), item.clone()));
                    }
                }
                continue;
            }
            if &target != module {
                edges
                    .entry(module.clone())
                    .or_default()
                    .insert(target.clone());
            }
        }
    }
    Crate {
        modules,
        edges,
        root_uses,
    }
}

/// A cycle in `graph`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut found = stack[from..].to_vec();
                    found.push(next.clone());
                    return Some(found);
                }
                Some(_) => {}
                None => {
                    if let Some(found) = visit(next, graph, state, stack) {
                        return Some(found);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node.as_str()) {
            if let Some(found) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(found);
            }
        }
    }
    None
}

/// The graph among the children of `parent` (`[]` for the top level): an edge between two
/// children when anything inside one names anything inside the other.
fn children_graph(c: &Crate, parent: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let child = |m: &Vec<String>| -> Option<String> {
        (m.len() > parent.len() && m.starts_with(parent)).then(|| m[parent.len()].clone())
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in &c.edges {
        let Some(a) = child(from) else { continue };
        for to in tos {
            if let Some(b) = child(to) {
                if a != b {
                    graph.entry(a.clone()).or_default().insert(b);
                }
            }
        }
    }
    graph
}

#[test]
fn the_source_parser_reads_groups_and_relative_paths() {
    let found = paths("use crate::{a::{b, c::D}, e};\nlet x = super::f::G; self::h();");
    let found: Vec<String> = found.iter().map(|(_, p)| p.join("::")).collect();
    assert_eq!(
        found,
        [
            "crate::a::b",
            "crate::a::c::D",
            "crate::e",
            "super::f::G",
            "self::h"
        ]
    );
    assert_eq!(
        module_of(Path::new("sinks/google/auth.rs")),
        ["sinks", "google", "auth"]
    );
    assert_eq!(
        module_of(Path::new("render/phonebook_tests.rs")),
        ["render", "phonebook"]
    );
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(cycle(&graph).is_some(), "a cycle is found");
    graph.remove("b");
    assert!(cycle(&graph).is_none());
}

#[test]
fn the_top_level_modules_have_no_cycle() {
    let c = read_crate();
    assert!(c.modules.len() > 20, "the source was read: {:?}", c.modules);
    let graph = children_graph(&c, &[]);
    assert!(graph.contains_key("sinks"), "edges were found: {graph:?}");
    if let Some(found) = cycle(&graph) {
        panic!(
            "top-level modules depend on each other in a cycle: {}\nall edges: {graph:#?}",
            found.join(" -> ")
        );
    }
}

#[test]
fn the_modules_inside_each_folder_have_no_cycle() {
    let c = read_crate();
    let parents: BTreeSet<Vec<String>> = c
        .modules
        .iter()
        .filter(|m| !m.is_empty())
        .map(|m| m[..m.len() - 1].to_vec())
        .filter(|p| !p.is_empty())
        .collect();
    assert!(parents.contains(&vec!["sinks".to_string()]));
    let mut cycles = Vec::new();
    for parent in &parents {
        if let Some(found) = cycle(&children_graph(&c, parent)) {
            cycles.push(format!("in {}: {}", parent.join("::"), found.join(" -> ")));
        }
    }
    assert!(cycles.is_empty(), "module cycles: {cycles:#?}");
}

#[test]
fn no_module_reaches_back_to_the_crate_root() {
    let c = read_crate();
    let uses: Vec<String> = c
        .root_uses
        .iter()
        .map(|(m, item)| format!("{} uses crate::{item}", m.join("::")))
        .collect();
    assert!(uses.is_empty(), "{uses:#?}");
}

#[test]
fn the_layout_map_in_lib_rs_names_every_top_level_module() {
    let c = read_crate();
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let map: String = lib
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let top: BTreeSet<&String> = c.modules.iter().filter_map(|m| m.first()).collect();
    let missing: Vec<&&String> = top
        .iter()
        .filter(|m| !map.contains(&format!("[`{m}`]")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in lib.rs's layout map: {missing:?}"
    );
}

#[test]
fn only_the_store_talks_to_sqlite() {
    let root = src();
    let mut all = Vec::new();
    files(&root, &mut all);
    let outside: Vec<String> = all
        .iter()
        .filter(|p| {
            let relative = p.strip_prefix(&root).unwrap();
            !(relative.starts_with("store") || relative == Path::new("store.rs"))
        })
        .filter(|p| strip_comments(&std::fs::read_to_string(p).unwrap()).contains("rusqlite"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(all.len() > 20);
    assert!(
        outside.is_empty(),
        "rusqlite used outside the store: {outside:?}"
    );
}
