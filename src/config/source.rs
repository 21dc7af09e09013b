//! Source files and the diagnostics that point into them.
//!
//! Every configuration error a person sees names a `file:line:column`, so each loaded file keeps
//! its text and a line index, and every later check reports through [`Diagnostic`].

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration file as read from disk, kept so that byte offsets can become line:column.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as the user would recognise it (relative to the working directory when possible).
    pub path: PathBuf,
    /// The text exactly as it is on disk (before `${VAR}` interpolation).
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// Wraps text read from `path`; the line index is built once so lookups stay cheap.
    pub fn new(path: impl Into<PathBuf>, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// The 1-based line and column (in characters) of a byte offset into the original text.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (line + 1, column)
    }

    /// A location in this file for a byte offset.
    pub fn location(&self, offset: usize) -> Location {
        let (line, column) = self.line_col(offset);
        Location {
            path: self.path.clone(),
            line,
            column,
        }
    }
}

/// Where in the configuration something is: what a newcomer needs to open the right line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Location {
    /// A location from a GraphQL parser position in `path`.
    pub fn at(path: &Path, line: usize, column: usize) -> Self {
        Self {
            path: path.to_path_buf(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// One problem found while loading configuration, with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the problem is; `None` only for problems with no file (e.g. a missing directory).
    pub location: Option<Location>,
    /// A sentence saying what is wrong and, where it helps, what would be right.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at a known place.
    pub fn at(location: Location, message: impl Into<String>) -> Self {
        Self {
            location: Some(location),
            message: message.into(),
        }
    }

    /// A diagnostic about a path as a whole (unreadable file, missing directory).
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        Self {
            location: Some(Location::at(path, 1, 1)),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem found in one load, so a user can fix them all in one pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        writeln!(
            f,
            "{count} configuration error{}:",
            if count == 1 { "" } else { "s" }
        )?;
        for diagnostic in &self.0 {
            writeln!(f, "  {diagnostic}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_line_and_column() {
        let file = SourceFile::new("a.toml", "ab\ncdé\nx".to_string());
        assert_eq!(file.line_col(0), (1, 1));
        assert_eq!(file.line_col(3), (2, 1));
        assert_eq!(
            file.line_col(7),
            (2, 4),
            "columns count characters, not bytes"
        );
        assert_eq!(file.line_col(8), (3, 1));
        assert_eq!(file.line_col(999), (3, 2), "offsets past the end clamp");
    }
}
