//! Manifest errors, rendered like a compiler's: message, `--> file:line:col`,
//! the source line and a caret under the culprit, and what to do.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// One problem in the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    /// Byte range in the manifest text.
    pub span: Option<Range<usize>>,
    /// What to do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, span: Option<Range<usize>>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            span,
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{what}")]
    NotFound { what: String },

    #[error("{}", Rendered { path, text, diagnostics })]
    Invalid {
        path: PathBuf,
        text: String,
        diagnostics: Vec<Diagnostic>,
    },
}

struct Rendered<'a> {
    path: &'a PathBuf,
    text: &'a str,
    diagnostics: &'a [Diagnostic],
}

/// 1-based line and column (in characters) of byte `offset`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..offset].chars().count() + 1;
    (line, col)
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                write!(f, "\nerror: ")?;
            }
            write!(f, "{}", d.message)?;
            match &d.span {
                Some(span) => {
                    let (line, col) = line_col(self.text, span.start);
                    let line_start = self.text[..span.start.min(self.text.len())]
                        .rfind('\n')
                        .map_or(0, |i| i + 1);
                    let line_text = self.text[line_start..].lines().next().unwrap_or("");
                    let width = line.to_string().len();
                    let pad = " ".repeat(width);
                    // Carets under the span, clipped to its first line.
                    let span_chars = self.text
                        [span.start.min(self.text.len())..span.end.min(self.text.len())]
                        .lines()
                        .next()
                        .map_or(1, |s| s.chars().count().max(1));
                    write!(
                        f,
                        "\n{pad}--> {}:{line}:{col}\n{pad} |\n{line} | {line_text}\n{pad} | {}{}",
                        self.path.display(),
                        " ".repeat(col - 1),
                        "^".repeat(span_chars)
                    )?;
                }
                None => write!(f, "\n  --> {}", self.path.display())?,
            }
            if let Some(help) = &d.help {
                write!(f, "\n  = help: {help}")?;
            }
        }
        if self.diagnostics.len() > 1 {
            write!(
                f,
                "\n{} errors in {}; nothing was started",
                self.diagnostics.len(),
                self.path.display()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let t = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        let x = t.find('"').unwrap();
        assert_eq!(line_col(t, x), (2, 6));
    }
}
