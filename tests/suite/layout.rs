//! The layout's one rule: sources never import sinks and sinks never import sources; what both
//! need lives in `src/transport/`. Read from the source files themselves, so a new `use` that
//! breaks the rule fails here with the file and line.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// Every line of the `.rs` files under `src/<from>` that names the module `to`.
fn imports(from: &str, to: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let needles = [format!("crate::{to}"), format!("super::super::{to}")];
    let mut found = Vec::new();
    for file in rust_files(&root.join(from)) {
        let text = std::fs::read_to_string(&file).expect("read");
        for (i, line) in text.lines().enumerate() {
            if needles.iter().any(|n| line.contains(n.as_str())) {
                found.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn sources_and_sinks_meet_only_in_transport() {
    let sources_to_sinks = imports("sources", "sinks");
    assert!(
        sources_to_sinks.is_empty(),
        "sources import sinks (move what both need to src/transport/):\n{}",
        sources_to_sinks.join("\n")
    );
    let sinks_to_sources = imports("sinks", "sources");
    assert!(
        sinks_to_sources.is_empty(),
        "sinks import sources (move what both need to src/transport/):\n{}",
        sinks_to_sources.join("\n")
    );
    let transport_to_components = [
        imports("transport", "sources"),
        imports("transport", "sinks"),
    ]
    .concat();
    assert!(
        transport_to_components.is_empty(),
        "transport imports a component:\n{}",
        transport_to_components.join("\n")
    );
}

/// Lines of `path` before its `#[cfg(test)]` module: the code a reader has to hold in mind.
fn code_lines(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).expect("read");
    text.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .count()
}

/// No file of non-test code over about 600 lines: a file that grows past it is split along its
/// seams (as the journal's writer and store, and the OPC UA source, were). A file waiting for its
/// split would be named in `WAITING` with its ceiling, so that it cannot grow meanwhile.
#[test]
fn no_source_file_outgrows_its_reader() {
    const LIMIT: usize = 640;
    const WAITING: &[(&str, usize)] = &[];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut over = Vec::new();
    for file in rust_files(&root) {
        let rel = file
            .strip_prefix(&root)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        let limit = WAITING
            .iter()
            .find(|(name, _)| *name == rel)
            .map_or(LIMIT, |(_, ceiling)| *ceiling);
        let n = code_lines(&file);
        if n > limit {
            over.push(format!("src/{rel}: {n} lines of code (limit {limit})"));
        }
    }
    assert!(
        over.is_empty(),
        "split these along their seams:\n{}",
        over.join("\n")
    );
}
