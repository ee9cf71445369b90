//! Output as lxc prints it: boxed, compact and CSV tables in natural order, JSON, and
//! YAML the way Go's yaml writes it.

use std::io::Write;

use serde_json::Value;

use super::args::Format;
use super::{CliError, Result};

/// YAML as lxc prints it (Go's yaml: empty strings as `""`).
pub(super) fn yaml<T: serde::Serialize>(v: &T) -> Result<String> {
    let text = serde_yaml_ng::to_string(v).map_err(|e| CliError(e.to_string()))?;
    // serde's single-quoted scalars become Go's double-quoted ones (only those with no
    // quote or backslash inside, which read the same either way).
    let requote = |l: &str| -> Option<String> {
        let body = l.strip_suffix('\'')?;
        let at = body.rfind('\'')?;
        let (head, inner) = (&body[..at], &body[at + 1..]);
        let plain = !inner.contains(['\'', '"', '\\']);
        let key = head.ends_with(": ") || head.trim_start() == "- ";
        (plain && key).then(|| format!("{head}\"{inner}\"\n"))
    };
    // YAML 1.1 booleans (what Go's yaml reads as true/false) are strings here: quoted.
    let bool11 = |l: &str| -> Option<String> {
        let at = l.rfind(": ").map(|i| i + 2).or_else(|| {
            let t = l.trim_start();
            t.starts_with("- ").then(|| l.len() - t.len() + 2)
        })?;
        let v = &l[at..];
        // (`true`/`false` strings come out quoted already; unquoted they are booleans.)
        const WORDS: [&str; 6] = ["y", "n", "yes", "no", "on", "off"];
        WORDS
            .contains(&v.to_ascii_lowercase().as_str())
            .then(|| format!("{}\"{v}\"\n", &l[..at]))
    };
    Ok(text
        .lines()
        .map(|l| {
            requote(l)
                .or_else(|| bool11(l))
                .unwrap_or_else(|| format!("{l}\n"))
        })
        .collect())
}

/// Write `s` to `out`.
pub(super) fn write_out(out: &mut dyn Write, s: &str) -> Result<()> {
    out.write_all(s.as_bytes())
        .map_err(|e| CliError(e.to_string()))
}

/// `rows` under `header` in `format` (JSON and YAML print `objects` instead), sorted
/// naturally by their first cell.
pub(super) fn table(
    format: Format,
    header: &[&str],
    rows: Vec<Vec<String>>,
    objects: &Value,
) -> Result<String> {
    let mut rows = rows;
    rows.sort_by(|a, b| natural(&a[0], &b[0]));
    Ok(match format {
        Format::Json => format!("{}\n", objects),
        Format::Yaml => yaml(objects)?,
        Format::Csv => rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|c| {
                        if c.contains([',', '"', '\n']) {
                            format!("\"{}\"", c.replace('"', "\"\""))
                        } else {
                            c.clone()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
                    + "\n"
            })
            .collect(),
        Format::Table | Format::Compact => {
            let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
            for r in &rows {
                for (i, c) in r.iter().enumerate() {
                    w[i] = w[i].max(c.chars().count());
                }
            }
            let line = |cells: &[String]| -> String {
                let inner: Vec<String> = cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!(" {c:<width$} ", width = w[i]))
                    .collect();
                if matches!(format, Format::Compact) {
                    // lxc's compact: two spaces before each cell and after the last.
                    let cells: String = cells
                        .iter()
                        .enumerate()
                        .map(|(i, c)| format!("  {c:<width$}", width = w[i]))
                        .collect();
                    format!("{cells}  \n")
                } else {
                    format!("|{}|\n", inner.join("|"))
                }
            };
            let border = format!(
                "+{}+\n",
                w.iter()
                    .map(|n| "-".repeat(n + 2))
                    .collect::<Vec<_>>()
                    .join("+")
            );
            // Headers centred, as lxc prints them (the left half of odd padding smaller).
            let head: Vec<String> = header
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let pad = w[i] - h.chars().count();
                    format!("{}{h}{}", " ".repeat(pad / 2), " ".repeat(pad - pad / 2))
                })
                .collect();
            let mut s = String::new();
            if matches!(format, Format::Table) {
                s.push_str(&border);
            }
            s.push_str(&line(&head));
            if matches!(format, Format::Table) {
                s.push_str(&border);
            }
            for r in &rows {
                s.push_str(&line(r));
                if matches!(format, Format::Table) {
                    s.push_str(&border);
                }
            }
            s
        }
    })
}

/// Natural order: digit runs compare as numbers (`10.0.0.9` before `10.0.0.10`).
fn natural(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let b = s.as_bytes();
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[i - 1].is_ascii_digit() {
                out.push((b[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let o = match (x, y) {
            ((true, p), (true, q)) => p
                .trim_start_matches('0')
                .len()
                .cmp(&q.trim_start_matches('0').len())
                .then_with(|| p.trim_start_matches('0').cmp(q.trim_start_matches('0'))),
            ((_, p), (_, q)) => p.cmp(q),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    ca.len().cmp(&cb.len())
}

/// What `get` prints of an object: a config key's value (a property's with `-p`) and a
/// newline; nothing for a missing key (as lxc).
pub(super) fn got(object: &Value, key: &str, property: bool) -> String {
    let v = if property {
        object.get(key)
    } else {
        object.get("config").and_then(|m| m.get(key))
    };
    match v.cloned() {
        Some(Value::String(s)) => format!("{s}\n"),
        Some(Value::Null) | None => String::new(),
        Some(other) => format!("{other}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_and_tables() {
        let mut v = vec!["10.0.0.10", "10.0.0.9", "2001:db8::1", "10.0.0.100"];
        v.sort_by(|a, b| natural(a, b));
        assert_eq!(v, ["10.0.0.9", "10.0.0.10", "10.0.0.100", "2001:db8::1"]);
        let t = table(
            Format::Table,
            &["A", "B"],
            vec![vec!["x".into(), "1".into()]],
            &Value::Null,
        )
        .unwrap();
        assert_eq!(t, "+---+---+\n| A | B |\n+---+---+\n| x | 1 |\n+---+---+\n");
        let t = table(
            Format::Csv,
            &["A", "B"],
            vec![vec!["x,y".into(), "1".into()]],
            &Value::Null,
        )
        .unwrap();
        assert_eq!(t, "\"x,y\",1\n");
    }
}
