//! A `.env` file beside the manifest, as process-compose and foreman read
//! it: `KEY=VALUE` lines (an `export ` prefix, `#` comments, blank lines and
//! single or double quotes around the value are fine). Its variables go to
//! every program, under the program's own `env`.
//!
//! Not dotenvy: tried, and it refuses `KEY = two words` (spaces around `=`
//! and in an unquoted value), which process-compose and foreman accept and
//! which existing `.env` files use, and it expands `$VAR` in values, which
//! would change a password that contains `$`. Forty lines here keep the
//! forms people write and locate every bad line like a manifest error.

use std::path::Path;

use super::error::{Diagnostic, ManifestError};

/// The variables of `dir/.env`, or none when there is no such file.
pub fn load(dir: &Path) -> Result<Vec<(String, String)>, ManifestError> {
    let path = dir.join(".env");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ManifestError::NotFound {
                what: format!("cannot read {}: {e}", path.display()),
            });
        }
    };
    let mut vars = Vec::new();
    let mut diagnostics = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let body = trimmed.strip_prefix("export ").unwrap_or(trimmed);
        let Some((key, value)) = body.split_once('=') else {
            diagnostics.push(
                Diagnostic::new("a .env line must be KEY=VALUE", Some(start..start + line.trim_end().len()))
                    .help("write e.g. DATABASE_URL=data/app.db, or start the line with # to comment it out"),
            );
            continue;
        };
        let key = key.trim();
        if key.is_empty()
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || key.starts_with(|c: char| c.is_ascii_digit())
        {
            diagnostics.push(
                Diagnostic::new(
                    format!("`{key}` is not a variable name"),
                    Some(start..start + line.trim_end().len()),
                )
                .help("use letters, digits and `_`, not starting with a digit"),
            );
            continue;
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.push((key.to_owned(), value.to_owned()));
    }
    if diagnostics.is_empty() {
        Ok(vars)
    } else {
        Err(ManifestError::Invalid {
            path,
            text,
            diagnostics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_usual_forms_and_locates_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "# comment\n\nA=1\nexport B = two words \nC=\"quoted # not a comment\"\nD='single'\n",
        )
        .unwrap();
        let vars = load(dir.path()).unwrap();
        assert_eq!(
            vars,
            [
                ("A", "1"),
                ("B", "two words"),
                ("C", "quoted # not a comment"),
                ("D", "single")
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        std::fs::write(dir.path().join(".env"), "OK=1\nnot a pair\n9X=1\n").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("a .env line must be KEY=VALUE"), "{err}");
        assert!(err.contains(".env:2:1"), "{err}");
        assert!(err.contains("`9X` is not a variable name"), "{err}");
        assert!(load(&dir.path().join("none")).unwrap().is_empty());
    }
}
