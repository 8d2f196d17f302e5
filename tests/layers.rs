//! The root crate's modules form layers: no import cycle between its
//! top-level modules (`config`, `source`, `cursor`, ...), nor between the
//! submodules of one module (`source::client`, `source::poller`, ...). A
//! low layer knows nothing of the ones above it (README, Layout).
//!
//! The edges are read from the source text: every `crate::<module>` path
//! (`use crate::{a, b::c}` included) and every `super::` path that climbs
//! into another module, outside comments, string literals and test-only
//! code (`#[cfg(test)]` items and `tests.rs` files, which nothing imports).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// An import: the module that holds it, the one it names, where it is.
#[derive(Debug, Clone)]
struct Edge {
    from: Vec<String>,
    to: Vec<String>,
    at: String,
}

#[test]
fn the_module_graph_has_no_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = edges_under(&src);
    assert!(
        edges
            .iter()
            .any(|e| e.from[0] == "source" && e.to[0] == "cursor"),
        "the scan finds no edge at all; is it reading src/?"
    );

    let mut cycles = Vec::new();
    // Between top-level modules.
    cycles.extend(cycles_of(&edges, |path| {
        path.first().map(|m| vec![m.clone()])
    }));
    // Between the submodules of one module.
    let parents: BTreeSet<String> = edges.iter().map(|e| e.from[0].clone()).collect();
    for parent in parents {
        cycles.extend(cycles_of(&edges, |path| {
            (path.len() >= 2 && path[0] == parent).then(|| path[..2].to_vec())
        }));
    }
    assert!(
        cycles.is_empty(),
        "import cycles between modules (each edge with the first place it is made):\n\n{}",
        cycles.join("\n\n")
    );
}

/// Every import edge in the `.rs` files under `src` (the library: `main.rs`
/// and `lib.rs` are roots, not modules).
fn edges_under(src: &Path) -> Vec<Edge> {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    files.sort();
    let mut edges = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let mut module: Vec<String> = rel
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        if module == ["lib"] || module == ["main"] || module.last().is_some_and(|m| m == "tests") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = without_tests(&code_only(&text));
        for (line, to) in imports(&code, &module) {
            edges.push(Edge {
                from: module.clone(),
                to,
                at: format!("src/{}:{line}", rel.display()),
            });
        }
    }
    edges
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `text` with comments and the contents of string and char literals
/// blanked out (newlines kept, so line numbers stay right).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !is_ident(chars[i - 1]))
        {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.push('"');
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                out.push(blank(chars[j]));
                j += 1;
            }
            out.push('"');
            i = j;
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\''
            && (next == Some('\\') || chars.get(i + 2) == Some(&'\''))
            && next != Some('\'')
        {
            // A char literal ('x', '\n', '\''), not a lifetime.
            out.push('\'');
            i += 1;
            if chars.get(i) == Some(&'\\') {
                i += 2;
            }
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            out.push('\'');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `code` with every `#[cfg(test)]` item blanked out (newlines kept).
fn without_tests(code: &str) -> String {
    let mut out: Vec<char> = code.chars().collect();
    let marker: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + marker.len() <= out.len() {
        if out[i..i + marker.len()] != marker[..] {
            i += 1;
            continue;
        }
        // The item ends at its first `;` outside braces, or where the
        // first brace it opens closes.
        let mut j = i + marker.len();
        let mut depth = 0;
        while j < out.len() {
            match out[j] {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ';' if depth == 0 => break,
                _ => {}
            }
            j += 1;
        }
        let end = (j + 1).min(out.len());
        for c in &mut out[i..end] {
            if *c != '\n' {
                *c = ' ';
            }
        }
        i = j + 1;
    }
    out.into_iter().collect()
}

/// The modules `code` (the module at `module`) names through `crate::` or
/// `super::`, with their line, as paths from the crate root (at most two
/// segments deep: that is all the checks look at).
fn imports(code: &str, module: &[String]) -> Vec<(usize, Vec<String>)> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\n' {
            line += 1;
        }
        let starts_word = i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == ':');
        if !starts_word {
            i += 1;
            continue;
        }
        let (base, after) = if word_at(&chars, i, "crate::") {
            (Vec::new(), i + "crate::".len())
        } else if word_at(&chars, i, "super::") {
            let mut j = i;
            let mut up = 0;
            while word_at(&chars, j, "super::") {
                up += 1;
                j += "super::".len();
            }
            (module[..module.len().saturating_sub(up)].to_vec(), j)
        } else {
            i += 1;
            continue;
        };
        for rest in segments(&chars, after) {
            let mut path = base.clone();
            path.extend(rest);
            path.truncate(2);
            if !path.is_empty() {
                found.push((line, path));
            }
        }
        i = after;
    }
    found
}

fn word_at(chars: &[char], i: usize, word: &str) -> bool {
    word.chars()
        .enumerate()
        .all(|(k, c)| chars.get(i + k) == Some(&c))
}

/// The paths after `crate::` at `i`: `a::b`, or each branch of `{a::b, c}`
/// (two segments at most).
fn segments(chars: &[char], i: usize) -> Vec<Vec<String>> {
    let ident = |mut j: usize| {
        while chars.get(j).is_some_and(|c| c.is_whitespace()) {
            j += 1;
        }
        let start = j;
        while chars.get(j).is_some_and(|c| is_ident(*c)) {
            j += 1;
        }
        (chars[start..j].iter().collect::<String>(), j)
    };
    let path = |j: usize| {
        let (first, j) = ident(j);
        let mut path = vec![first];
        if word_at(chars, j, "::") {
            let (second, _) = ident(j + 2);
            if !second.is_empty() {
                path.push(second);
            }
        }
        path.retain(|s| !s.is_empty() && s != "self");
        path
    };
    if chars.get(i) != Some(&'{') {
        return vec![path(i)];
    }
    let mut branches = Vec::new();
    let mut depth = 0;
    let mut j = i;
    while j < chars.len() {
        match chars[j] {
            '{' => {
                depth += 1;
                if depth == 1 {
                    branches.push(path(j + 1));
                }
            }
            ',' if depth == 1 => branches.push(path(j + 1)),
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
        j += 1;
    }
    branches
}

/// The cycles of the graph whose nodes are `node(path)` (edges whose ends
/// map to no node, or to the same one, are left out), each printed with
/// the place of every edge.
fn cycles_of(edges: &[Edge], node: impl Fn(&[String]) -> Option<Vec<String>>) -> Vec<String> {
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for e in edges {
        let (Some(from), Some(to)) = (node(&e.from), node(&e.to)) else {
            continue;
        };
        if from != to {
            graph
                .entry(from.join("::"))
                .or_default()
                .entry(to.join("::"))
                .or_insert_with(|| e.at.clone());
        }
    }
    // Depth-first search; every edge back onto the stack closes a cycle.
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    let nodes: Vec<String> = graph.keys().cloned().collect();
    for start in nodes {
        let mut stack = Vec::new();
        visit(&graph, &start, &mut stack, &mut done, &mut cycles);
    }
    cycles
}

fn visit(
    graph: &BTreeMap<String, BTreeMap<String, String>>,
    at: &str,
    stack: &mut Vec<String>,
    done: &mut BTreeSet<String>,
    cycles: &mut Vec<String>,
) {
    if done.contains(at) {
        return;
    }
    if let Some(k) = stack.iter().position(|n| n == at) {
        let ring: Vec<&String> = stack[k..].iter().chain([&stack[k]]).collect();
        let lines: Vec<String> = ring
            .windows(2)
            .map(|w| {
                format!(
                    "  {} -> {}  ({})",
                    w[0],
                    w[1],
                    graph[w[0].as_str()][w[1].as_str()]
                )
            })
            .collect();
        cycles.push(lines.join("\n"));
        return;
    }
    stack.push(at.to_string());
    for next in graph.get(at).into_iter().flat_map(|n| n.keys()) {
        visit(graph, next, stack, done, cycles);
    }
    stack.pop();
    done.insert(at.to_string());
}
