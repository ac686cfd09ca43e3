//! Finds the workspace xtask works on, at run time: the checkout it is run in, not the one it
//! was compiled in (with a shared `CARGO_TARGET_DIR`, one binary serves several checkouts).

use std::fs;
use std::path::{Path, PathBuf};

/// The nearest directory at or above `start` whose `Cargo.toml` has a `[workspace]` table:
/// the root cargo itself would pick for a command run in `start`.
pub(crate) fn find_root(start: &Path) -> Result<PathBuf, String> {
    for dir in start.ancestors() {
        let manifest = dir.join("Cargo.toml");
        let Ok(text) = fs::read_to_string(&manifest) else { continue };
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            format!("{}: {}", manifest.display(), e.to_string().trim())
        })?;
        if table.get("workspace").is_some_and(toml::Value::is_table) {
            return Ok(dir.to_path_buf());
        }
    }
    Err(format!(
        "no Cargo.toml with a [workspace] table in {} or above it: run `cargo xtask` inside the \
         Aurelis Cache checkout",
        start.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_nearest_workspace_above() {
        let dir = std::env::temp_dir().join(format!("xtask-root-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let root = dir.join("checkout");
        let member = root.join("crates/member/src");
        fs::create_dir_all(&member).unwrap();
        fs::write(root.join("Cargo.toml"), "[workspace]\nmembers = [\"crates/member\"]\n").unwrap();
        // A member's manifest mentions `workspace` but has no [workspace] table.
        fs::write(
            root.join("crates/member/Cargo.toml"),
            "[package]\nname = \"member\"\nversion.workspace = true\n",
        )
        .unwrap();
        assert_eq!(find_root(&member).unwrap(), root);
        assert_eq!(find_root(&root.join("crates/member")).unwrap(), root);
        assert_eq!(find_root(&root).unwrap(), root);

        // A nested workspace (such as fuzz/) is its own root.
        let nested = root.join("fuzz");
        fs::create_dir_all(&nested).unwrap();
        fs::write(nested.join("Cargo.toml"), "[package]\nname = \"f\"\n[workspace]\n").unwrap();
        assert_eq!(find_root(&nested).unwrap(), nested);

        // Outside any workspace: an error that says where it looked.
        let outside = dir.join("elsewhere");
        fs::create_dir_all(&outside).unwrap();
        if find_root(&dir).is_err() {
            let error = find_root(&outside).unwrap_err();
            assert!(error.contains("elsewhere"), "{error}");
        }
        // A broken manifest on the way up is an error naming it.
        fs::write(root.join("crates/member/Cargo.toml"), "[package\n").unwrap();
        let error = find_root(&member).unwrap_err();
        assert!(error.contains("member/Cargo.toml"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn finds_this_repository_from_the_xtask_directory() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = find_root(here).unwrap();
        assert!(root.join("xtask/Cargo.toml").is_file());
        assert!(root.join("benches/ratios.toml").is_file());
    }
}
