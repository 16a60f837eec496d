//! A user's own instructions to test (`mulli eval --instructions FILE`): phrasings the project
//! never saw, in any language, as TOML or JSON.
//!
//! ```toml
//! [[instruction]]
//! task = "open_drawer"
//! instruction = "pull the drawer out"
//! ```
//!
//! or JSON: `[{"task": "open_drawer", "instruction": "서랍 좀 열어"}]`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::EvalError;

/// Longest instruction accepted, in bytes (policies pad or cut text far below this; a longer
/// one is almost certainly a wrong file).
const MAX_BYTES: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomInstruction {
    /// A task id of the suite, e.g. `open_drawer`.
    pub task: String,
    /// The instruction given to the policy.
    pub instruction: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    instruction: Vec<CustomInstruction>,
}

/// Reads and checks an instructions file (`.toml` or `.json`).
pub fn load_instructions(path: &Path) -> Result<Vec<CustomInstruction>, EvalError> {
    let err = |message: String| EvalError::Instructions {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    let list = match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => {
            toml::from_str::<TomlFile>(&text)
                .map_err(|e| {
                    err(format!(
                        "not a valid instructions TOML (expected [[instruction]] tables with \
                         task and instruction): {e}"
                    ))
                })?
                .instruction
        }
        Some("json") => serde_json::from_str::<Vec<CustomInstruction>>(&text).map_err(|e| {
            err(format!(
                "not a valid instructions JSON (expected a list of {{\"task\", \"instruction\"}} \
                 objects): {e}"
            ))
        })?,
        _ => {
            return Err(err(
                "unknown format: the file name must end in .toml or .json".into(),
            ));
        }
    };
    parse_checked(list).map_err(err)
}

fn parse_checked(list: Vec<CustomInstruction>) -> Result<Vec<CustomInstruction>, String> {
    if list.is_empty() {
        return Err("it lists no instructions".into());
    }
    for (i, ci) in list.iter().enumerate() {
        let trimmed = ci.instruction.trim();
        if trimmed.is_empty() {
            return Err(format!(
                "entry {} (task {}) has an empty instruction",
                i + 1,
                ci.task
            ));
        }
        if ci.instruction.len() > MAX_BYTES {
            return Err(format!(
                "entry {} (task {}): the instruction is {} bytes, more than {MAX_BYTES}",
                i + 1,
                ci.task,
                ci.instruction.len()
            ));
        }
        if ci.task.trim().is_empty() {
            return Err(format!("entry {} has an empty task", i + 1));
        }
        if let Some(j) = list[..i].iter().position(|o| o == ci) {
            return Err(format!(
                "entries {} and {} are the same ({}: '{}')",
                j + 1,
                i + 1,
                ci.task,
                ci.instruction
            ));
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_toml_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let t = write(
            dir.path(),
            "a.toml",
            "[[instruction]]\ntask = \"open_drawer\"\ninstruction = \"pull the drawer out\"\n\
             [[instruction]]\ntask = \"open_drawer\"\ninstruction = \"서랍 좀 열어\"\n",
        );
        let l = load_instructions(&t).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].instruction, "서랍 좀 열어");
        let j = write(
            dir.path(),
            "a.json",
            r#"[{"task": "close_fridge", "instruction": "shut the fridge"}]"#,
        );
        assert_eq!(load_instructions(&j).unwrap()[0].task, "close_fridge");
    }

    #[test]
    fn bad_files_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("a.yaml", "x", "must end in .toml or .json"),
            ("b.toml", "[[instruction]]\ntask = \"t\"\n", "instruction"),
            ("c.toml", "instruction = []\n", "no instructions"),
            (
                "d.json",
                r#"[{"task": "t", "instruction": "  "}]"#,
                "entry 1 (task t) has an empty instruction",
            ),
            (
                "e.json",
                r#"[{"task": "t", "instruction": "a", "lang": "en"}]"#,
                "unknown field",
            ),
            (
                "f.json",
                r#"[{"task": "t", "instruction": "a"}, {"task": "t", "instruction": "a"}]"#,
                "entries 1 and 2 are the same",
            ),
            ("g.json", "{", "not a valid instructions JSON"),
        ];
        for (name, text, want) in cases {
            let p = write(dir.path(), name, text);
            let e = load_instructions(&p).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains(name), "{name}: {e}");
        }
        let e = load_instructions(&dir.path().join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
