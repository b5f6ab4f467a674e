//! The server's modules import each other without a circle (ARCHITECTURE.md,
//! "Who knows what"): the router imports handlers, handlers import the
//! shared `app`, `error`, `gate`, and nothing imports back up. Read from the
//! source (`crate::module` paths outside test modules), so a new circle
//! fails here with the modules that form it.

use std::collections::{BTreeMap, BTreeSet};

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut modules = BTreeSet::new();
    let mut sources = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("server/src") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path
                .file_stem()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            let mut src = std::fs::read_to_string(&path).expect("a source file");
            // Tests may reach anywhere.
            if let Some(i) = src.find("#[cfg(test)]\nmod ") {
                src.truncate(i);
            }
            modules.insert(name.clone());
            sources.insert(name, src);
        }
    }
    let mut g = BTreeMap::new();
    for (name, src) in &sources {
        let deps: BTreeSet<String> = src
            .match_indices("crate::")
            .map(|(i, _)| {
                src[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .filter(|d| d != name && modules.contains(d))
            .collect();
        g.insert(name.clone(), deps);
    }
    g
}

/// Modules that reach each other (Tarjan's strongly connected components).
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    fn reach(g: &BTreeMap<String, BTreeSet<String>>, from: &str, seen: &mut BTreeSet<String>) {
        for d in &g[from] {
            if seen.insert(d.clone()) {
                reach(g, d, seen);
            }
        }
    }
    let reachable: BTreeMap<&String, BTreeSet<String>> = g
        .keys()
        .map(|m| {
            let mut seen = BTreeSet::new();
            reach(g, m, &mut seen);
            (m, seen)
        })
        .collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for m in g.keys() {
        let circle: BTreeSet<String> = g
            .keys()
            .filter(|o| *o == m || (reachable[m].contains(*o) && reachable[*o].contains(m)))
            .cloned()
            .collect();
        if circle.len() > 1 && !out.contains(&circle) {
            out.push(circle);
        }
    }
    out
}

#[test]
fn no_module_imports_back_up() {
    let g = graph();
    assert!(
        g.contains_key("http") && g["http"].contains("conferences"),
        "the graph was read"
    );
    let found = circles(&g);
    assert!(
        found.is_empty(),
        "import circles among server's modules: {found:?}"
    );
}

#[test]
fn the_check_finds_a_circle() {
    let mut g = graph();
    g.get_mut("app").expect("app").insert("http".into());
    assert!(!circles(&g).is_empty());
}
