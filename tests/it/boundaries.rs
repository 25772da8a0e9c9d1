//! The module boundaries the `//!` docs state, checked on the source: for every file under
//! `src/`, the top-level modules it names through `crate::` (comments and doc lines left out)
//! must not include the ones its module may not use. A new edge that breaks a rule fails
//! here with the file and line; an edge listed in [`KNOWN`] is tolerated until its move lands.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// `(module, modules it must not use, why)`.
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "install",
        &["fetch", "index", "resolve", "pack", "http", "build"],
        "install gets wheels from the cache; callers fetch",
    ),
    (
        "pack",
        &["resolve", "fetch", "install", "index", "build"],
        "pack reads trees and writes blobs (and pushes them with the shared client)",
    ),
    (
        "resolve",
        &["fetch", "install", "pack", "diff", "mirror", "build"],
        "resolve decides versions; it does not download, install or compare locks",
    ),
    (
        "lock",
        &[
            "resolve", "index", "fetch", "install", "pack", "http", "diff", "stack", "build",
        ],
        "the lock is data: read, written, queried (its values are `target`'s and `cuda`'s \
         types: platforms, backend, GPU architectures)",
    ),
    (
        "cuda",
        &[
            "lock", "index", "resolve", "fetch", "install", "pack", "http", "build",
        ],
        "cuda reads the host and knows backends; callers read locks",
    ),
    (
        "diff",
        &[
            "resolve", "fetch", "index", "http", "install", "pack", "cuda", "build",
        ],
        "diff reads two locks",
    ),
    (
        "fetch",
        &["resolve", "index", "install", "pack", "build"],
        "fetch downloads locked wheels",
    ),
    (
        "pak",
        &[
            "resolve", "index", "fetch", "http", "install", "pack", "lock", "stack", "build",
        ],
        "pak parses requirement files",
    ),
    (
        "http",
        &[
            "index", "fetch", "resolve", "install", "pack", "lock", "cache", "stack", "build",
        ],
        "http moves bytes for URLs",
    ),
    (
        "cache",
        &[
            "http", "index", "fetch", "resolve", "install", "pack", "build",
        ],
        "cache stores entries",
    ),
    (
        "stack",
        &[
            "resolve", "fetch", "install", "pack", "lock", "http", "build",
        ],
        "stack reads the manifest",
    ),
    (
        "index",
        &["resolve", "fetch", "install", "pack", "lock", "build"],
        "index reads pages and METADATA",
    ),
    (
        "target",
        &[
            "index", "resolve", "fetch", "install", "pack", "lock", "http", "build",
        ],
        "target is tags and markers",
    ),
    (
        "source",
        &[
            "resolve", "fetch", "install", "pack", "lock", "http", "build",
        ],
        "source builds one source into a wheel in the target runtime; the pipeline resolves, \
         fetches and installs its build environment",
    ),
    (
        "wheel",
        &[
            "index", "http", "fetch", "resolve", "install", "pack", "lock", "cache", "stack",
            "build", "source",
        ],
        "wheel parses bytes in memory (zip tails, METADATA) for index, install and source",
    ),
    (
        "mirror",
        &["resolve", "index", "http", "build"],
        "mirror writes files it is given",
    ),
];

/// Edges that break a rule today and are being moved, as `(file, module, why)`. Empty: the
/// last one (fetch's wheel-origin check reading the index definitions) moved to
/// `build::origins`. An entry that no longer matches an edge fails the test, so the list
/// cannot go stale.
const KNOWN: &[(&str, &str, &str)] = &[];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
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

/// The top-level module a file belongs to (`src/install/wheel.rs` → `install`).
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// `(line number, module)` for every `crate::MODULE` outside comments, and for every module
/// named inside `use crate::{a, b::c}` groups.
fn crate_edges(text: &str) -> Vec<(usize, String)> {
    let mut edges = Vec::new();
    let mut in_use_group = false;
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let trimmed = code.trim();
        if in_use_group {
            for part in trimmed.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    edges.push((n + 1, name));
                }
            }
            if trimmed.contains("};") {
                in_use_group = false;
            }
            continue;
        }
        if trimmed.starts_with("use crate::{") && !trimmed.contains("};") {
            in_use_group = true;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                edges.push((n + 1, name));
            } else if let Some(group) = after.strip_prefix('{') {
                let group = group.split('}').next().unwrap_or("");
                for part in group.split(',') {
                    let name: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        edges.push((n + 1, name));
                    }
                }
            }
            rest = after;
        }
    }
    edges
}

#[test]
fn modules_use_only_what_their_docs_allow() {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    let mut broken = Vec::new();
    let mut seen_known = BTreeSet::new();
    for path in &files {
        let relative = path.strip_prefix(&root).unwrap();
        let shown = format!("src/{}", relative.display());
        let module = module_of(relative);
        let text = std::fs::read_to_string(path).unwrap();
        for (line, used) in crate_edges(&text) {
            // Nothing but the binary's entry point and the library root reach the cli.
            if used == "cli" && module != "cli" && module != "main" && module != "lib" {
                broken.push(format!(
                    "{shown}:{line}: `{module}` uses `cli`; only main.rs may"
                ));
            }
            let Some((_, forbidden, why)) = RULES.iter().find(|(m, _, _)| *m == module) else {
                continue;
            };
            if !forbidden.contains(&used.as_str()) {
                continue;
            }
            if KNOWN
                .iter()
                .any(|(file, m, _)| *file == shown && *m == used)
            {
                seen_known.insert((shown.clone(), used.clone()));
                continue;
            }
            broken.push(format!("{shown}:{line}: `{module}` uses `{used}` ({why})"));
        }
    }
    for (file, used, why) in KNOWN {
        if !seen_known.contains(&(file.to_string(), used.to_string())) {
            broken.push(format!(
                "{file} no longer uses `{used}` ({why}): drop it from KNOWN"
            ));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// The checker itself finds edges in code and ignores them in comments.
#[test]
fn the_boundary_check_reads_use_lines() {
    let text = "//! crate::fetch in a doc\nuse crate::{cache::Cache, fetch::X};\nuse crate::index::a; // crate::pack\nuse crate::{\n    lock::Lock,\n    pak,\n};\nlet x = crate::http::get();\n";
    let edges: Vec<String> = crate_edges(text).into_iter().map(|(_, m)| m).collect();
    assert_eq!(edges, ["cache", "fetch", "index", "lock", "pak", "http"]);
}

/// `main.rs` is the only user of `cli` outside it, and the library root lists the stages in
/// pipeline order.
#[test]
fn main_is_the_only_caller_of_the_cli() {
    let main = std::fs::read_to_string(src().join("main.rs")).unwrap();
    assert!(main.contains("cli::main"), "{main}");
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let order: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    let position = |m: &str| order.iter().position(|x| *x == m).unwrap();
    for pair in [
        ["stack", "resolve"],
        ["resolve", "lock"],
        ["lock", "fetch"],
        ["fetch", "install"],
        ["install", "pack"],
        ["pack", "build"],
        ["build", "cli"],
    ] {
        assert!(
            position(pair[0]) < position(pair[1]),
            "lib.rs lists `{}` after `{}`: {order:?}",
            pair[0],
            pair[1]
        );
    }
}
