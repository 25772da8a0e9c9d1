//! Validated digests: [`Sha256Hex`] is exactly 64 lowercase hex digits, so it can name a
//! cache folder or lock file safely (no `/`, no `..`, ASCII only).
//!
//! Owns the check and the typed value. Parsed where a lock, page or stack is read; paths
//! are built only from the typed value. Must not hash files (callers do) or do I/O.

use std::fmt;

/// Why a string is not a sha256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{shown:?} is not a sha256 digest (64 lowercase hex digits): {reason}")]
pub struct DigestError {
    /// The value as written, cut to a readable length.
    pub shown: String,
    pub reason: String,
}

/// A sha256 digest as 64 lowercase hex digits.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Hex(String);

/// A value cut to `max` characters for an error message, with an ellipsis when cut.
pub fn shown(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_string(),
    }
}

impl Sha256Hex {
    /// Exactly 64 lowercase hex digits; anything else is refused.
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let fail = |reason: String| DigestError {
            shown: shown(value, 80),
            reason,
        };
        if value.len() != 64 {
            return Err(fail(format!("it has {} bytes", value.len())));
        }
        if let Some((at, c)) = value
            .char_indices()
            .find(|(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
        {
            return Err(fail(format!("character {c:?} at {}", at + 1)));
        }
        Ok(Sha256Hex(value.to_string()))
    }

    /// Like [`Sha256Hex::parse`], but upper-case hex digits are accepted and lowered (index
    /// pages may publish either case).
    pub fn parse_any_case(value: &str) -> Result<Self, DigestError> {
        if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Sha256Hex(value.to_ascii_lowercase()));
        }
        Self::parse(value)
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest;
        Sha256Hex(hex::encode(sha2::Sha256::digest(bytes)))
    }

    /// From a finished hasher.
    pub fn from_hasher(hasher: sha2::Sha256) -> Self {
        use sha2::Digest;
        Sha256Hex(hex::encode(hasher.finalize()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Sha256Hex {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Sha256Hex {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::path::Path> for Sha256Hex {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&self.0)
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Sha256Hex {
    type Error = DigestError;
    fn try_from(value: String) -> Result<Self, DigestError> {
        Sha256Hex::parse(&value)
    }
}

impl From<Sha256Hex> for String {
    fn from(value: Sha256Hex) -> String {
        value.0
    }
}

impl std::str::FromStr for Sha256Hex {
    type Err = DigestError;
    fn from_str(value: &str) -> Result<Self, DigestError> {
        Sha256Hex::parse(value)
    }
}

impl PartialEq<str> for Sha256Hex {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Sha256Hex {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for Sha256Hex {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<Sha256Hex> for String {
    fn eq(&self, other: &Sha256Hex) -> bool {
        *self == other.0
    }
}

impl PartialEq<Sha256Hex> for &str {
    fn eq(&self, other: &Sha256Hex) -> bool {
        *self == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_64_lowercase_hex_digits() {
        let good = "ab".repeat(32);
        assert_eq!(Sha256Hex::parse(&good).unwrap().as_str(), good);
        for bad in [
            "../../x/".to_string() + &"a".repeat(56),
            "AB".repeat(32),
            "a".repeat(63),
            "é".repeat(32),
            "a".repeat(62) + "é",
            String::new(),
        ] {
            let err = Sha256Hex::parse(&bad).unwrap_err();
            assert!(err.to_string().contains("not a sha256 digest"), "{bad:?}");
        }
        assert_eq!(
            Sha256Hex::parse_any_case(&"AB".repeat(32))
                .unwrap()
                .as_str(),
            "ab".repeat(32)
        );
        assert!(Sha256Hex::parse_any_case(&"é".repeat(32)).is_err());
    }

    #[test]
    fn shown_cuts_on_characters() {
        assert_eq!(shown("ééé", 2), "éé…");
        assert_eq!(shown("abc", 3), "abc");
    }
}
