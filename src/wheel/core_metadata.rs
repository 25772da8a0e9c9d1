//! Core metadata (`METADATA`, `PKG-INFO`, PEP 658 `.metadata` files): the email-header format
//! parsed into the fields the resolver needs (name, version, Requires-Python, Requires-Dist,
//! Provides-Extra).
//!
//! Pure parsing of bytes already in memory. It must not fetch anything, evaluate markers, or
//! decide whether a requirement applies (that is `resolve`).

use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::Requirement;

use super::normalize_name;

/// The resolver-relevant part of a distribution's core metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreMetadata {
    /// `Metadata-Version` as written (empty when the header is missing).
    pub metadata_version: String,
    /// `Name` as written (not normalized).
    pub name: String,
    pub version: Version,
    pub requires_python: Option<VersionSpecifiers>,
    /// Every `Requires-Dist`, in file order, markers included (`extra == "..."` too).
    pub requires_dist: Vec<Requirement>,
    /// `Provides-Extra` names, PEP 685-normalized, in file order, without duplicates.
    pub provides_extra: Vec<String>,
}

/// One header of an email-style header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name as written (compare with `eq_ignore_ascii_case`).
    pub name: String,
    /// The value, unfolded (continuation lines joined with one space) and trimmed.
    pub value: String,
    /// 1-based line number where the header starts.
    pub line: usize,
}

/// Why a METADATA file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("METADATA has no `{field}` header; the file is not valid core metadata")]
    MissingField { field: &'static str },
    #[error("METADATA line {line}: `Version: {value}` is not a valid PEP 440 version: {message}")]
    InvalidVersion {
        line: usize,
        value: String,
        message: String,
    },
    #[error(
        "METADATA line {line}: `Requires-Python: {value}` is not a valid PEP 440 specifier set: {message}"
    )]
    InvalidRequiresPython {
        line: usize,
        value: String,
        message: String,
    },
    #[error(
        "METADATA line {line}: the requirement `Requires-Dist: {value}` could not be parsed: {message}"
    )]
    InvalidRequiresDist {
        line: usize,
        value: String,
        message: String,
    },
}

/// Split an email-style header block into headers.
///
/// Bytes that are not UTF-8 are replaced (lossy), CRLF and LF line ends are both accepted,
/// lines starting with a space or tab continue the previous header, and the block ends at the
/// first empty line (what follows is the description body). A line that is neither a header
/// nor a continuation also ends the block, as in Python's `email` parser.
pub fn parse_headers(bytes: &[u8]) -> Vec<Header> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut headers: Vec<Header> = Vec::new();
    for (index, raw_line) in text.split('\n').enumerate() {
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            match headers.last_mut() {
                Some(previous) => {
                    let continuation = line.trim();
                    if !continuation.is_empty() {
                        if !previous.value.is_empty() {
                            previous.value.push(' ');
                        }
                        previous.value.push_str(continuation);
                    }
                    continue;
                }
                // Leading whitespace before any header: not a header block.
                None => break,
            }
        }
        let Some((name, value)) = line.split_once(':') else {
            break;
        };
        let name = name.trim_end();
        if name.is_empty() || name.contains([' ', '\t']) {
            break;
        }
        headers.push(Header {
            name: name.to_string(),
            value: value.trim().to_string(),
            line: index + 1,
        });
    }
    headers
}

impl CoreMetadata {
    /// Parse METADATA bytes. Header names are case-insensitive; for single-valued fields the
    /// first occurrence wins.
    pub fn parse(bytes: &[u8]) -> Result<Self, MetadataError> {
        let headers = parse_headers(bytes);
        let first = |field: &str| headers.iter().find(|h| h.name.eq_ignore_ascii_case(field));
        let all = |field: &'static str| {
            headers
                .iter()
                .filter(move |h| h.name.eq_ignore_ascii_case(field))
        };

        let metadata_version = first("Metadata-Version")
            .map(|h| h.value.clone())
            .unwrap_or_default();
        let name = first("Name")
            .map(|h| h.value.clone())
            .filter(|n| !n.is_empty())
            .ok_or(MetadataError::MissingField { field: "Name" })?;
        let version_header = first("Version")
            .filter(|h| !h.value.is_empty())
            .ok_or(MetadataError::MissingField { field: "Version" })?;
        let version = Version::from_str(&version_header.value).map_err(|e| {
            MetadataError::InvalidVersion {
                line: version_header.line,
                value: version_header.value.clone(),
                message: e.to_string(),
            }
        })?;
        let requires_python = match first("Requires-Python").filter(|h| !h.value.is_empty()) {
            None => None,
            Some(h) => Some(VersionSpecifiers::from_str(&h.value).map_err(|e| {
                MetadataError::InvalidRequiresPython {
                    line: h.line,
                    value: h.value.clone(),
                    message: e.to_string(),
                }
            })?),
        };
        let mut requires_dist = Vec::new();
        for h in all("Requires-Dist").filter(|h| !h.value.is_empty()) {
            if let Some((at, c)) = crate::filename::pep508_first_non_ascii(&h.value) {
                return Err(MetadataError::InvalidRequiresDist {
                    line: h.line,
                    value: h.value.clone(),
                    message: format!(
                        "non-ASCII character {c:?} at byte {at}: PEP 508 requirements are ASCII"
                    ),
                });
            }
            if let Some(name) = crate::filename::pep508_bad_leading_name(&h.value) {
                return Err(MetadataError::InvalidRequiresDist {
                    line: h.line,
                    value: h.value.clone(),
                    message: format!("the package name `{name}` must end with a letter or digit"),
                });
            }
            let requirement = Requirement::from_str(&h.value).map_err(|e| {
                MetadataError::InvalidRequiresDist {
                    line: h.line,
                    value: h.value.clone(),
                    message: format!("{} (at character {})", e.message, e.start + 1),
                }
            })?;
            requires_dist.push(requirement);
        }
        let mut provides_extra: Vec<String> = Vec::new();
        for h in all("Provides-Extra") {
            let extra = normalize_name(&h.value);
            if !extra.is_empty() && !provides_extra.contains(&extra) {
                provides_extra.push(extra);
            }
        }
        Ok(CoreMetadata {
            metadata_version,
            name,
            version,
            requires_python,
            requires_dist,
            provides_extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_fold_and_stop_at_blank_line() {
        let headers = parse_headers(
            b"Name: a\r\nSummary: one\r\n  two\r\n\tthree\r\n\r\nRequires-Dist: not-a-header\r\n",
        );
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[1].value, "one two three");
        assert_eq!(headers[1].line, 2);
    }

    #[test]
    fn non_header_line_ends_block() {
        let headers = parse_headers(b"Name: a\nthis is body text\nVersion: 1\n");
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let headers = parse_headers(b"Name: a\nAuthor: J\xe9r\xf4me\nVersion: 1\n");
        assert_eq!(headers.len(), 3);
        assert!(headers[1].value.contains('\u{fffd}'));
    }
}
