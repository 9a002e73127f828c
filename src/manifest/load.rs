//! Finding the manifest (`-f`, `$DBLAUNCH_FILE`, or the nearest
//! `dblaunch.toml` up the directory tree) and reading it into the validated
//! model, every error located.

use std::path::{Path, PathBuf};

use super::error::ManifestError;
use super::model::Manifest;
use super::{raw, validate};

/// Finds the manifest: `-f` / `$DBLAUNCH_FILE` if given, else the first
/// `dblaunch.toml` in `start` or any parent directory (like cargo).
pub fn locate(explicit: Option<&Path>, start: &Path) -> Result<PathBuf, ManifestError> {
    if let Some(p) = explicit {
        let p = start.join(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(ManifestError::NotFound {
                what: format!(
                    "the manifest {} does not exist or is not a file",
                    p.display()
                ),
            })
        };
    }
    for dir in start.ancestors() {
        let candidate = dir.join("dblaunch.toml");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(ManifestError::NotFound {
        what: format!(
            "no dblaunch.toml in {} or any parent directory; create one (see dblaunch.toml.example) or name it with -f FILE",
            start.display()
        ),
    })
}

/// Reads and validates the manifest at `path`.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError::NotFound {
        what: format!("cannot read the manifest {}: {e}", path.display()),
    })?;
    parse(path, &text)
}

/// Validates manifest text; `path` names it in messages and anchors its
/// relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
    let (raw, mut diags) = raw::parse(text);
    let manifest = validate::validate(path, raw, &mut diags);
    if diags.is_empty() {
        Ok(manifest)
    } else {
        diags.sort_by_key(|d| d.span.as_ref().map(|s| s.start));
        Err(ManifestError::Invalid {
            path: path.to_path_buf(),
            text: text.to_owned(),
            diagnostics: diags,
        })
    }
}
