//! House rules that the compiler does not check: the top-level modules of `src/` import one
//! way (each only from layers below it, so no cycle can form), and the README's metrics
//! table matches the metrics the code declares.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every top-level module of `src/` with its layer. A module may import only modules of a
/// lower layer; `ARCHITECTURE.md` explains each room.
const LAYERS: &[(&str, u8)] = &[
    ("config", 0),
    ("telemetry", 1),
    ("domain", 2),
    ("worker", 2),
    ("models", 3),
    ("wallet", 3),
    ("store", 4),
    ("chain", 5),
    ("webhook", 5),
    ("supervision", 5),
    ("devnet", 5),
    ("custody", 5),
    ("ops", 5),
    ("api", 6),
    ("app", 7),
    ("cli", 8),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for `lib.rs` and `main.rs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// The top-level modules named by `crate::` paths in `text`, with their line numbers.
/// Comments are skipped; `use crate::{a, b::c}` groups count each member.
fn crate_references(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let code = match code.find(" //") {
            Some(i) => &code[..i],
            None => code,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let preceded_by_dollar = i > 0 && rest.as_bytes()[i - 1] == b'$';
            rest = &rest[i + "crate::".len()..];
            if preceded_by_dollar {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                for name in group_members(group) {
                    out.push((name, n + 1));
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push((name, n + 1));
            }
        }
    }
    // Groups may span lines: `use crate::{\n    a,\n    b,\n};`.
    let mut search = text;
    while let Some(i) = search.find("use crate::{") {
        let after = &search[i + "use crate::{".len()..];
        let line = text[..text.len() - search.len() + i].lines().count().max(1);
        if after.lines().next().is_some_and(|l| !l.contains('}')) {
            for name in group_members(after) {
                out.push((name, line));
            }
        }
        search = after;
    }
    out
}

/// The first identifier of each member of a `{...}` group, up to its closing brace.
fn group_members(group: &str) -> Vec<String> {
    let mut members = Vec::new();
    let mut depth = 0usize;
    let mut at_start = true;
    let mut current = String::new();
    for c in group.chars() {
        match c {
            '{' => {
                depth += 1;
                at_start = false;
            }
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                if !current.is_empty() {
                    members.push(std::mem::take(&mut current));
                }
                at_start = true;
            }
            c if at_start && (c.is_alphanumeric() || c == '_') => current.push(c),
            c if at_start && c.is_whitespace() && current.is_empty() => {}
            _ => at_start = false,
        }
    }
    if !current.is_empty() {
        members.push(current);
    }
    members
}

/// `importer -> imported -> first place seen`.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn import_graph() -> Graph {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
    let mut graph = Graph::new();
    for file in &files {
        let Some(from) = module_of(&src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).expect("readable source");
        for (to, line) in crate_references(&text) {
            if to != from && modules.contains(&to) {
                let place = format!(
                    "{}:{line}",
                    file.strip_prefix(root()).unwrap_or(file).display()
                );
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_insert(place);
            }
        }
    }
    for m in modules {
        graph.entry(m).or_default();
    }
    graph
}

/// A cycle through the graph, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|m| m.keys()) {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

fn layer_violations(graph: &Graph) -> Vec<String> {
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut problems = Vec::new();
    for (from, imports) in graph {
        let Some(&lf) = layer.get(from.as_str()) else {
            problems.push(format!(
                "src/{from} is not in the layer table (tests/architecture.rs) nor ARCHITECTURE.md"
            ));
            continue;
        };
        for (to, place) in imports {
            let lt = layer.get(to.as_str()).copied().unwrap_or(u8::MAX);
            if lt >= lf {
                problems.push(format!(
                    "{from} (layer {lf}) must not import {to} (layer {lt}): {place}"
                ));
            }
        }
    }
    problems
}

#[test]
fn top_level_modules_import_one_way() {
    let graph = import_graph();
    if let Some(cycle) = find_cycle(&graph) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|w| format!("{} -> {} ({})", w[0], w[1], graph[&w[0]][&w[1]]))
            .collect();
        panic!("import cycle among src/ modules:\n  {}", steps.join("\n  "));
    }
    let problems = layer_violations(&graph);
    assert!(
        problems.is_empty(),
        "imports against the layering:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_check_sees_a_back_import_and_a_cycle() {
    // `use crate::app::Metrics;` written in the store: a back-import and a cycle.
    let mut graph = Graph::new();
    graph
        .entry("store".into())
        .or_default()
        .insert("app".into(), "src/store/x.rs:1".into());
    graph
        .entry("app".into())
        .or_default()
        .insert("store".into(), "src/app/mod.rs:1".into());
    assert!(find_cycle(&graph).is_some());
    assert_eq!(layer_violations(&graph).len(), 1);
    assert_eq!(
        crate_references("use crate::{config::Settings, store::{self, Store}};\n// crate::app\n"),
        vec![("config".to_string(), 1), ("store".to_string(), 1)]
    );
    assert_eq!(
        crate_references("use crate::{\n    api,\n    chain::X,\n};\nlet x = crate::webhook::f();"),
        vec![
            ("webhook".to_string(), 5),
            ("api".to_string(), 1),
            ("chain".to_string(), 1)
        ]
    );
}

/// The README's metrics table: `| name | type | labels | help |` rows between markers.
fn readme_metrics() -> Vec<(String, String, String, String)> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let start = readme
        .find("<!-- metrics:begin -->")
        .expect("README has a <!-- metrics:begin --> marker");
    let end = readme
        .find("<!-- metrics:end -->")
        .expect("README has a <!-- metrics:end --> marker");
    readme[start..end]
        .lines()
        .filter(|l| l.starts_with("| `ctrip_"))
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect();
            assert_eq!(cells.len(), 4, "a metrics row has four cells: {l}");
            (
                cells[0].trim_matches('`').to_string(),
                cells[1].clone(),
                cells[2].clone(),
                cells[3].clone(),
            )
        })
        .collect()
}

/// The table as the declarations give it.
fn declared_rows() -> Vec<(String, String, String, String)> {
    ctrip::app::Metrics::declared()
        .iter()
        .map(|d| {
            let labels = if d.labels.is_empty() {
                "none".to_string()
            } else {
                d.labels
                    .iter()
                    .map(|l| format!("`{l}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            (
                d.name.to_string(),
                d.kind.to_string(),
                labels,
                d.help.to_string(),
            )
        })
        .collect()
}

#[test]
fn the_readme_metrics_table_matches_the_declarations() {
    let declared = declared_rows();
    let documented = readme_metrics();
    if declared != documented {
        let table: Vec<String> = declared
            .iter()
            .map(|(n, k, l, h)| format!("| `{n}` | {k} | {l} | {h} |"))
            .collect();
        panic!(
            "README.md's metrics table differs from the declarations; it should read:\n\n{}\n",
            table.join("\n")
        );
    }
}

#[test]
fn every_alert_has_a_runbook_section() {
    let rules = ["alerts.yml", "slo.yml"]
        .iter()
        .map(|f| std::fs::read_to_string(root().join("config/prometheus").join(f)).expect(f))
        .collect::<Vec<_>>()
        .join("\n");
    let runbook = std::fs::read_to_string(root().join("docs/runbook.md")).expect("runbook");
    let mut alerts = 0;
    let mut current: Option<String> = None;
    for line in rules.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("- alert: ") {
            if let Some(previous) = current.take() {
                panic!("alert {previous} has no runbook_url annotation");
            }
            current = Some(name.trim().to_string());
            alerts += 1;
        } else if let Some(url) = line.strip_prefix("runbook_url: ") {
            let name = current.take().expect("runbook_url after an alert");
            assert_eq!(
                url.trim_matches('"'),
                format!("docs/runbook.md#{}", name.to_lowercase()),
                "{name}"
            );
            assert!(
                runbook.contains(&format!("\n## {name}\n")),
                "docs/runbook.md has no section for {name}"
            );
        }
    }
    assert!(
        current.is_none(),
        "the last alert has no runbook_url annotation"
    );
    assert!(alerts > 0);
}
