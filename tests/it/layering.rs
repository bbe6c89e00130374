//! The structure rules, checked on every test run: the module graph of
//! `src/` is one-way (every module uses only modules below it in
//! [`LAYERS`], so there is no cycle), and no Rust file of the package
//! (`src/`, `tests/`, `examples/`, `benches/`) is over 500 lines. The graph
//! is read from the `crate::module` paths in the code (comments aside: a
//! doc link may point anywhere).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The crate's top-level modules, bottom first. A module may use only the
/// modules before it. `docs/ARCHITECTURE.md` draws the same order.
const LAYERS: &[&str] = &[
    // Leaves: no netloom imports, or only leaves before them.
    "sys",
    "error",
    "ext",
    "id",
    "stats",
    "timer",
    // The pipeline, bottom up.
    "buf",
    "codec",
    "config",
    "transport",
    "conn",
    "runtime",
    "dispatch",
    "reactor",
    "server",
    "builder",
    // Built on the layers above; nothing uses them.
    "client",
    "ws",
    "cluster",
    "metrics",
    "bench_internals",
];

const MAX_LINES: usize = 500;

/// The directories whose `.rs` files (at any depth) must stay within
/// [`MAX_LINES`]: all of the package's Rust code.
const LINE_CHECKED: &[&str] = &["src", "tests", "examples", "benches"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for lib.rs, the root).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).expect("under src/");
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.strip_suffix(".rs") {
        Some("lib") => None,
        Some(m) => Some(m.to_string()),
        None => Some(first),
    }
}

/// Every `crate::name` a file's code (not its comments) mentions.
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
        // `use crate::{a, b::c}` groups.
        if let Some(group) = code.split("crate::{").nth(1) {
            for part in group.split([',', '}']) {
                let name = part.trim().split("::").next().unwrap_or("");
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    found.insert(name.to_string());
                }
            }
        }
    }
    found
}

#[test]
fn modules_only_use_modules_below_them() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut violations = Vec::new();
    let mut modules = BTreeSet::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        let Some(own) = rank(&module) else {
            violations.push(format!(
                "{}: module `{module}` is not in LAYERS",
                file.display()
            ));
            continue;
        };
        modules.insert(module.clone());
        let text = fs::read_to_string(file).expect("read a source file");
        for used in uses(&text) {
            if used == module {
                continue;
            }
            match rank(&used) {
                Some(r) if r < own => {}
                Some(_) => violations.push(format!(
                    "{}: `{module}` uses `{used}`, which is not below it",
                    file.display()
                )),
                None => violations.push(format!(
                    "{}: uses `crate::{used}`, not a module in LAYERS",
                    file.display()
                )),
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering broken:\n{}",
        violations.join("\n")
    );
    // The check looked at every layer that exists (a renamed module would
    // otherwise pass unchecked).
    for layer in LAYERS {
        assert!(
            modules.contains(*layer)
                || *layer == "bench_internals"
                || *layer == "ws"
                || *layer == "metrics",
            "LAYERS names `{layer}`, which has no file in src/"
        );
    }
}

#[test]
fn no_source_file_is_over_500_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in LINE_CHECKED {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = fs::read_to_string(f).expect("read").lines().count();
            let name = f.strip_prefix(root).unwrap_or(f).display();
            (n > MAX_LINES).then(|| format!("  {name} ({n} lines)"))
        })
        .collect();
    assert!(
        long.is_empty(),
        "{} file(s) over {MAX_LINES} lines; split them into submodules:\n{}",
        long.len(),
        long.join("\n")
    );
}

#[test]
fn the_checker_sees_uses_and_ignores_comments() {
    let found = uses(
        "use crate::buf::Payload;\nuse crate::{codec::Message, error};\n// crate::reactor\nlet x = crate::ext::Extensions::new(); // crate::server\n",
    );
    let want: BTreeSet<String> = ["buf", "codec", "error", "ext"].map(String::from).into();
    assert_eq!(found, want);
}
