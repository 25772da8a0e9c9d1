//! The wheel `RECORD` file: CSV rows of `path,algorithm=urlsafe-b64-digest,size`.
//!
//! Owns parsing (quoted CSV fields, CRLF line ends), hash encoding and rendering installed
//! RECORDs. Pure: no file access.

use base64::Engine;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// One row of a RECORD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRow {
    pub path: String,
    /// `(algorithm, urlsafe base64 digest without padding)`.
    pub hash: Option<(String, String)>,
    pub size: Option<u64>,
}

/// Urlsafe base64 without padding, the RECORD digest encoding.
pub fn b64(digest: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// RECORD's sha256 value of `bytes`.
pub fn sha256_b64(bytes: &[u8]) -> String {
    b64(&Sha256::digest(bytes))
}

/// A running digest for one of the algorithms RECORD may name (sha256, sha384, sha512).
pub enum RecordHasher {
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl RecordHasher {
    /// `None` for algorithms the spec does not allow (md5, sha1) or that are unknown.
    pub fn new(algorithm: &str) -> Option<Self> {
        match algorithm {
            "sha256" => Some(RecordHasher::Sha256(Sha256::new())),
            "sha384" => Some(RecordHasher::Sha384(Sha384::new())),
            "sha512" => Some(RecordHasher::Sha512(Sha512::new())),
            _ => None,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            RecordHasher::Sha256(h) => h.update(bytes),
            RecordHasher::Sha384(h) => h.update(bytes),
            RecordHasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The urlsafe base64 digest.
    pub fn finish(self) -> String {
        match self {
            RecordHasher::Sha256(h) => b64(&h.finalize()),
            RecordHasher::Sha384(h) => b64(&h.finalize()),
            RecordHasher::Sha512(h) => b64(&h.finalize()),
        }
    }
}

/// Parses RECORD text; errors give the 1-based line and what is wrong.
pub fn parse_record(text: &str) -> Result<Vec<RecordRow>, (usize, String)> {
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let fields = split_csv(line).map_err(|m| (line_no, m))?;
        if fields.len() != 3 {
            return Err((
                line_no,
                format!("expected 3 fields (path,hash,size), found {}", fields.len()),
            ));
        }
        let path = fields[0].clone();
        if path.is_empty() {
            return Err((line_no, "empty path".to_string()));
        }
        let hash = if fields[1].is_empty() {
            None
        } else {
            let Some((algorithm, digest)) = fields[1].split_once('=') else {
                return Err((
                    line_no,
                    format!("hash `{}` is not ALGORITHM=DIGEST", fields[1]),
                ));
            };
            Some((algorithm.to_ascii_lowercase(), digest.to_string()))
        };
        let size = if fields[2].is_empty() {
            None
        } else {
            Some(
                fields[2]
                    .parse::<u64>()
                    .map_err(|_| (line_no, format!("size `{}` is not a number", fields[2])))?,
            )
        };
        rows.push(RecordRow { path, hash, size });
    }
    Ok(rows)
}

/// Splits one CSV line (RFC 4180 quoting, as Python's `csv` writes it).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quotes = false;
    let mut quoted_field = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' && field.is_empty() && !quoted_field {
            in_quotes = true;
            quoted_field = true;
        } else if c == ',' {
            fields.push(std::mem::take(&mut field));
            quoted_field = false;
        } else {
            field.push(c);
        }
    }
    if in_quotes {
        return Err("unterminated quoted field".to_string());
    }
    fields.push(field);
    Ok(fields)
}

/// One CSV field, quoted when it holds a comma, quote or line break.
pub fn csv_field(text: &str) -> String {
    let mut out = String::new();
    push_csv_field(&mut out, text);
    out
}

/// Appends [`csv_field`] of `text` to `out`.
fn push_csv_field(out: &mut String, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

/// Renders installed rows `(path, sha256 b64 or None, size or None)`, sorted by path.
pub fn render_record(rows: &mut [(String, Option<String>, Option<u64>)]) -> String {
    let mut borrowed: Vec<RecordRowRef<'_>> = rows
        .iter()
        .map(|(path, hash, size)| {
            (
                std::borrow::Cow::Borrowed(path.as_str()),
                hash.as_deref(),
                *size,
            )
        })
        .collect();
    let out = render_record_rows(&mut borrowed);
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// An installed RECORD row that borrows what it can: path, sha256 (urlsafe base64), size.
pub type RecordRowRef<'a> = (std::borrow::Cow<'a, str>, Option<&'a str>, Option<u64>);

/// [`render_record`] of borrowed rows, sorted by path in place.
pub fn render_record_rows(rows: &mut [RecordRowRef<'_>]) -> String {
    use std::fmt::Write;
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::with_capacity(rows.iter().map(|r| r.0.len() + 60).sum());
    for (path, hash, size) in rows.iter() {
        push_csv_field(&mut out, path);
        out.push(',');
        if let Some(hash) = hash {
            out.push_str("sha256=");
            out.push_str(hash);
        }
        out.push(',');
        if let Some(size) = size {
            // Writing into a String cannot fail.
            let _ = write!(out, "{size}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_and_plain_rows() {
        let rows = parse_record(
            "a/b.py,sha256=AAAA,12\r\n\"a,b.py\",sha256=BBBB,3\n\"x\"\"y\",,\nRECORD,,\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].path, "a/b.py");
        assert_eq!(rows[0].hash, Some(("sha256".into(), "AAAA".into())));
        assert_eq!(rows[0].size, Some(12));
        assert_eq!(rows[1].path, "a,b.py");
        assert_eq!(rows[2].path, "x\"y");
        assert_eq!(rows[3].hash, None);
        assert_eq!(rows[3].size, None);
    }

    #[test]
    fn rejects_bad_rows() {
        assert_eq!(parse_record("a,b\n").unwrap_err().0, 1);
        assert!(parse_record("x,,\na,sha256=x,big\n")
            .unwrap_err()
            .1
            .contains("big"));
        assert!(parse_record("\"a,b,c\n").is_err());
    }

    #[test]
    fn renders_sorted_and_quoted() {
        let mut rows = vec![
            ("z".to_string(), None, None),
            ("a,b".to_string(), Some("H".to_string()), Some(1)),
        ];
        assert_eq!(render_record(&mut rows), "\"a,b\",sha256=H,1\nz,,\n");
    }

    #[test]
    fn hashers_agree_with_known_digest() {
        let mut h = RecordHasher::new("sha256").unwrap();
        h.update(b"abc");
        assert_eq!(h.finish(), sha256_b64(b"abc"));
        assert!(RecordHasher::new("md5").is_none());
    }
}
