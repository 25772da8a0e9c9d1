//! Errors of the pak parser: where (file, line, column), what is wrong, and what to do.
//!
//! Owns the rendering of a pak error (message, the offending line with a caret, a help line).
//! It must not decide what is an error; the parser does.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

/// A place in a pak file: 1-based line and column (columns count characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based physical line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// What is wrong on a pak line. Tests match on this; the message and help say it in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PakErrorKind {
    /// `-e` / `--editable`: an editable install of a local checkout.
    Editable,
    /// A bare local path (`./pkg`, `/abs/pkg`, `pkg.whl`) or a `file:` URL of a directory.
    LocalPath,
    /// A pip option comfypak knows but cannot honour (`--trusted-host`, `--use-feature`, ...).
    UnsupportedOption { option: String },
    /// An option pip's requirements files do not have.
    UnknownOption { option: String },
    /// An option other than `--hash` after a requirement on the same line.
    OptionAfterRequirement { option: String },
    /// An option that needs a value was given none.
    MissingValue { option: String },
    /// A flag option was given a value (`--pre=yes`).
    UnexpectedValue { option: String },
    /// An option value of the wrong shape (`--only-binary` names, index URLs, find-links).
    InvalidOptionValue { option: String },
    /// `--hash` with another algorithm than sha256, or a digest that is not 64 hex digits.
    BadHash,
    /// `--hash` on a line without a requirement.
    HashWithoutRequirement,
    /// A quote opened in the options of a line and never closed.
    UnterminatedQuote,
    /// Not a valid package name (also a bad `#egg=` name).
    InvalidName,
    /// A malformed `[extra, ...]` list.
    InvalidExtras,
    /// A malformed PEP 440 version specifier.
    InvalidSpecifier,
    /// A malformed PEP 508 environment marker.
    InvalidMarker,
    /// A URL that does not parse, or text after a bare URL.
    InvalidUrl,
    /// A URL scheme comfypak cannot fetch, or a requirement file given by URL.
    UnsupportedUrl,
    /// A `-r` / `-c` file that does not exist or cannot be read.
    IncludeNotFound { path: PathBuf },
    /// A `-r` / `-c` chain that comes back to a file being read; the chain ends with the repeat.
    IncludeCycle { chain: Vec<PathBuf> },
    /// `${NAME}` with no value for NAME.
    UnsetVariable { name: String },
    /// A constraint with extras, a URL, or no name.
    InvalidConstraint,
    /// The file is not UTF-8 text; the location is the first bad byte.
    NotUtf8,
    /// An option comfypak parses but does not honour in a stack (`--index-url`,
    /// `--extra-index-url`, `--find-links`): indexes are configured elsewhere.
    IndexOption { option: String },
}

/// The most characters of a pak line an error shows (around the column it points at).
pub const MAX_SHOWN_LINE: usize = 160;
/// The most characters of a message or help text an error shows.
pub const MAX_SHOWN_TEXT: usize = 400;

/// `text` cut to `max` characters, with `…` when cut.
pub fn cap(text: &str, max: usize) -> String {
    crate::digest::shown(text, max)
}

/// The part of `line` an error shows: at most [`MAX_SHOWN_LINE`] characters around
/// `column` (1-based, in characters), tabs shown as spaces; and the caret's column in it.
pub fn line_window(line: &str, column: usize) -> (String, usize) {
    let chars: Vec<char> = line
        .chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .collect();
    if chars.len() <= MAX_SHOWN_LINE {
        return (chars.into_iter().collect(), column);
    }
    let at = column.saturating_sub(1).min(chars.len());
    let start = at.saturating_sub(MAX_SHOWN_LINE / 2);
    let end = (start + MAX_SHOWN_LINE).min(chars.len());
    let mut shown = String::new();
    let mut caret = at - start + 1;
    if start > 0 {
        shown.push('…');
        caret += 1;
    }
    shown.extend(&chars[start..end]);
    if end < chars.len() {
        shown.push('…');
    }
    (shown, caret)
}

/// An error at a place in a pak file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub location: Location,
    /// The physical line the location is on, as written.
    pub line_text: String,
    pub kind: PakErrorKind,
    /// What is wrong, in one line.
    pub message: String,
    /// What to do about it, in one line.
    pub help: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let number = self.location.line.to_string();
        let gutter = " ".repeat(number.len());
        // Tabs would move the caret; they are shown as one space so the caret lines up. A
        // long line is shown as a window around the column, so an error stays readable
        // (and small) whatever the input. The help is not part of the message: the
        // renderer prints it last (`help()`).
        let (shown, caret) = line_window(&self.line_text, self.location.column);
        writeln!(
            f,
            "{}: {}",
            self.location,
            cap(&self.message, MAX_SHOWN_TEXT)
        )?;
        writeln!(f, "{gutter} |")?;
        writeln!(f, "{number} | {shown}")?;
        write!(f, "{gutter} | {}^", " ".repeat(caret.saturating_sub(1)))
    }
}

/// Why a pak file could not be parsed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PakError {
    /// The file given to [`super::parse_file`] could not be read.
    #[error("cannot read pak file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A problem on a line of a pak file (or of a file it includes).
    #[error("{0}")]
    Line(Box<LineError>),
}

impl PakError {
    /// The place of the problem, when it is on a line.
    pub fn location(&self) -> Option<&Location> {
        match self {
            PakError::Line(e) => Some(&e.location),
            PakError::Read { .. } => None,
        }
    }

    /// What kind of problem it is on a line.
    pub fn kind(&self) -> Option<&PakErrorKind> {
        match self {
            PakError::Line(e) => Some(&e.kind),
            PakError::Read { .. } => None,
        }
    }

    /// What the user can do about it.
    pub fn help(&self) -> Option<&str> {
        match self {
            PakError::Line(e) => Some(&e.help),
            PakError::Read { .. } => Some(
                "check the path; pak files are read relative to the current directory or the \
                 stack directory",
            ),
        }
    }

    /// The line error itself, when it is one.
    pub fn line_error(&self) -> Option<&LineError> {
        match self {
            PakError::Line(e) => Some(e),
            PakError::Read { .. } => None,
        }
    }
}

impl From<LineError> for PakError {
    fn from(e: LineError) -> Self {
        PakError::Line(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_shown_as_a_window_with_the_caret_in_it() {
        let line = format!("{}X{}", "a".repeat(10_000), "b".repeat(10_000));
        let (shown, caret) = line_window(&line, 10_001);
        assert!(shown.chars().count() <= MAX_SHOWN_LINE + 2);
        assert_eq!(shown.chars().nth(caret - 1), Some('X'));
        assert_eq!(line_window("a\tb", 3), ("a b".to_string(), 3));
    }

    #[test]
    fn renders_message_line_caret_and_help() {
        let e = LineError {
            location: Location {
                file: PathBuf::from("pak/deps.txt"),
                line: 12,
                column: 8,
            },
            line_text: "numpy >=1.0,<".into(),
            kind: PakErrorKind::InvalidSpecifier,
            message: "invalid version specifier `>=1.0,<`".into(),
            help: "write a complete specifier such as `numpy>=1.0,<2`".into(),
        };
        let text = PakError::from(e).to_string();
        assert_eq!(
            text,
            "pak/deps.txt:12:8: invalid version specifier `>=1.0,<`\n   |\n12 | numpy >=1.0,<\n   |        ^"
        );
    }
}
