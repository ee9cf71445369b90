//! The dependency rule of `src/lib.rs`, enforced: every `crate::…` (and, in binaries,
//! `ovnlb::…`) path under `src/` names a module its own module may depend on. Test code
//! (`#[cfg(test)]` to the end of a file) and comments are not counted.

use std::collections::BTreeMap;
use std::path::Path;

/// Module → the modules it may use (besides itself).
fn rule() -> BTreeMap<&'static str, &'static [&'static str]> {
    const LEAF: &[&str] = &[];
    BTreeMap::from([
        ("fasthash", LEAF),
        ("feed", LEAF),
        ("tls", &["fasthash"][..]),
        ("metrics", &["fasthash"][..]),
        ("progress", &["fasthash"][..]),
        ("ovsdb", &["feed", "fasthash", "tls"][..]),
        ("nb", &["ovsdb", "feed", "fasthash"][..]),
        ("lb", &["nb", "fasthash"][..]),
        ("store", &["lb", "ovsdb", "feed", "fasthash"][..]),
        (
            "reconcile",
            &[
                "ovsdb", "nb", "lb", "store", "progress", "metrics", "feed", "fasthash",
            ][..],
        ),
        (
            "api",
            &[
                "lb", "store", "progress", "metrics", "feed", "fasthash", "tls",
            ][..],
        ),
        ("cli", &["lb", "tls", "fasthash"][..]),
        (
            "daemon",
            &[
                "api",
                "cli",
                "ovsdb",
                "nb",
                "lb",
                "store",
                "reconcile",
                "progress",
                "metrics",
                "feed",
                "fasthash",
                "tls",
            ][..],
        ),
        ("bin", &["daemon", "cli"][..]),
    ])
}

fn module_of(rel: &Path) -> String {
    let mut parts = rel.iter().map(|p| p.to_string_lossy().into_owned());
    let first = parts.next().unwrap_or_default();
    first.trim_end_matches(".rs").to_owned()
}

/// The modules a line's paths name: `crate::x…`, `crate::{x…, y…}`, and `ovnlb::x…`.
fn targets(line: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, files);
        } else if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
    }
}

#[test]
fn every_crate_path_follows_the_dependency_rule() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rule = rule();
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let module = module_of(rel);
        if module == "lib" {
            continue;
        }
        let allowed = rule
            .get(module.as_str())
            .unwrap_or_else(|| panic!("{}: module {module} is not in the rule", rel.display()));
        let prefix = if module == "bin" {
            "ovnlb::"
        } else {
            "crate::"
        };
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break;
            }
            let code = line.split("//").next().unwrap_or("");
            for t in targets(code, prefix) {
                if t == module || allowed.contains(&t.as_str()) || !rule.contains_key(t.as_str()) {
                    continue;
                }
                bad.push(format!("src/{}:{}: {module} -> {t}", rel.display(), n + 1));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "arrows outside the dependency rule of src/lib.rs:\n{}",
        bad.join("\n")
    );
}
