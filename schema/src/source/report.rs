//! How the compiler reports problems: every [`Diagnostic`] names file, line
//! and column; the sub-compilers report through a [`Report`] callback with
//! the source span, and [`Locator`] turns spans into lines once per file.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use toml::Spanned;

/// Reports a problem at a source span.
pub(crate) type Report<'a> = &'a mut dyn FnMut(Range<usize>, String);

/// One problem in a policy source, located by file, line and column (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// All problems found in one policy source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            d.fmt(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Turns byte offsets of one policy text into diagnostics. Line starts are
/// found once: positions become line numbers by binary search, so a policy
/// with many thousands of apps compiles in linear time.
pub(crate) struct Locator<'t> {
    file: &'t str,
    text: &'t str,
    line_starts: Vec<usize>,
}

impl<'t> Locator<'t> {
    pub(crate) fn new(file: &'t str, text: &'t str) -> Locator<'t> {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Locator {
            file,
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of byte `offset`.
    pub(crate) fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|s| *s <= offset);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |t| t.chars().count());
        (line, column + 1)
    }

    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.line_column(offset).0
    }

    pub(crate) fn diagnostic(&self, span: Range<usize>, message: String) -> Diagnostic {
        let (line, column) = self.line_column(span.start);
        Diagnostic {
            file: self.file.to_string(),
            line,
            column,
            message,
        }
    }
}

/// Checks a policy table's `name` (`what` is the table, e.g.
/// `access_policy`): not empty, not used before in `seen`. Returns it
/// trimmed.
pub(crate) fn check_name(
    name: &Spanned<String>,
    what: &str,
    seen: &mut HashMap<String, ()>,
    report: Report<'_>,
) -> String {
    let text = name.get_ref().trim().to_string();
    if text.is_empty() {
        report(name.span(), format!("{what} name is empty"));
    } else if seen.insert(text.clone(), ()).is_some() {
        report(name.span(), format!("duplicate {what} {text:?}"));
    }
    text
}
