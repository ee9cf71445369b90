//! Text to edit: from stdin when it is not a terminal, else through `$VISUAL` /
//! `$EDITOR`.

use std::io::{IsTerminal, Read};

use serde_json::{json, Value};

use super::{err, CliError, Result};

/// Text from stdin (not a terminal) or from $EDITOR over `current`.
pub(super) fn edited(current: &str) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError(e.to_string()))?;
        return Ok(s);
    }
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let dir = std::env::temp_dir().join(format!("ovnlb-edit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| CliError(e.to_string()))?;
    let file = dir.join("object.yaml");
    std::fs::write(&file, current).map_err(|e| CliError(e.to_string()))?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&file)
        .status()
        .map_err(|e| CliError(format!("running {editor}: {e}")))?;
    let text = std::fs::read_to_string(&file).map_err(|e| CliError(e.to_string()));
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        return err(format!("{editor} exited with {status}"));
    }
    text
}

/// The YAML piped on stdin as a map (`{}` from a terminal or empty input): what `create`
/// starts from.
pub(super) fn stdin_yaml() -> Result<Value> {
    if std::io::stdin().is_terminal() {
        return Ok(json!({}));
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| CliError(e.to_string()))?;
    if s.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_yaml_ng::from_str(&s).map_err(|e| CliError(format!("yaml: {e}")))
}
