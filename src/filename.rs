//! Distribution filenames: wheels (binary distribution format, PEP 427/425) and sdists.
//!
//! Owns: [`WheelFilename`], [`SdistFilename`], [`DistFilename`], [`BuildTag`],
//! [`FilenameWarning`], [`FilenameError`]. Parsing follows `packaging.utils`
//! (`parse_wheel_filename`, `parse_sdist_filename`, packaging 26.3) with deliberate,
//! documented leniency for names that real published files use although the spec forbids
//! them: such files are accepted and carry a [`FilenameWarning`] naming the rule.
//!
//! Must not: fetch, open or install files (only the name is read), or decide which of
//! several compatible files wins beyond the tag priority (`crate::resolve` does that).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use pep440_rs::Version;
use pep508_rs::PackageName;
use serde::{Serialize, Serializer};

use crate::target::{CompatibleTags, Tag};

/// The most tags one compressed tag set may expand to. Real wheels have at most a handful;
/// the cap keeps a hostile name from expanding to a huge product.
pub const MAX_TAGS_PER_WHEEL: usize = 4096;

const WHEEL_FORMAT: &str = "{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl";

/// Why a filename could not be read as a distribution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilenameError {
    /// Neither `.whl` nor a source archive extension (e.g. `.egg`, `.exe`).
    #[error(
        "{filename}: not a wheel (.whl) or source distribution (.tar.gz, .zip, .tar.bz2, \
         .tar.xz, .tgz, .tar, ...); other distribution kinds (.egg, .exe, .msi) are not \
         supported and can be skipped"
    )]
    UnsupportedExtension {
        /// The filename.
        filename: String,
    },
    /// A wheel name without 5 or 6 dash-separated parts.
    #[error(
        "{filename}: a wheel filename has 5 or 6 dash-separated parts ({WHEEL_FORMAT}), \
         this one has {parts}; a '-' inside the project name or version must be written '_'"
    )]
    WrongNumberOfParts {
        /// The filename.
        filename: String,
        /// How many parts it has.
        parts: usize,
    },
    /// The project name part is not a valid name.
    #[error("{filename}: invalid project name {name:?}: {reason}")]
    InvalidName {
        /// The filename.
        filename: String,
        /// The name part as written.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The version part is not a PEP 440 version.
    #[error("{filename}: invalid version {version:?}: {reason}")]
    InvalidVersion {
        /// The filename.
        filename: String,
        /// The version part as written.
        version: String,
        /// What is wrong.
        reason: String,
    },
    /// The build tag part cannot be read.
    #[error("{filename}: invalid build tag {build:?}: {reason}")]
    InvalidBuildTag {
        /// The filename.
        filename: String,
        /// The build part as written.
        build: String,
        /// What is wrong.
        reason: String,
    },
    /// A compatibility tag part is malformed.
    #[error("{filename}: invalid compatibility tag {tag:?}: {reason}")]
    InvalidTag {
        /// The filename.
        filename: String,
        /// The tag part(s) as written.
        tag: String,
        /// What is wrong.
        reason: String,
    },
    /// The file belongs to another project than the one asked for.
    #[error("{filename}: file of project {found}, expected a file of {expected}")]
    NameMismatch {
        /// The filename.
        filename: String,
        /// The project asked for.
        expected: PackageName,
        /// The project the filename names.
        found: PackageName,
    },
    /// A source archive whose name has no `-VERSION` part.
    #[error(
        "{filename}: a source distribution is named {{name}}-{{version}}{extension} with a \
         PEP 440 version; {reason}"
    )]
    SdistNameVersion {
        /// The filename.
        filename: String,
        /// The archive extension found.
        extension: String,
        /// What is wrong.
        reason: String,
    },
}

/// A spec violation found in a filename and accepted on purpose, because real published
/// files have it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FilenameWarning {
    /// A build tag that does not start with a digit, e.g. `hopper` in
    /// `sageattention-2.2.0-hopper-cp313-cp313-linux_x86_64.whl`.
    BuildTagNotNumeric {
        /// The filename.
        filename: String,
        /// The build part as written.
        build: String,
    },
    /// A project name part that is not escaped (contains a run of `_`), e.g. `foo__bar`.
    NameNotEscaped {
        /// The filename.
        filename: String,
        /// The name part as written.
        name: String,
    },
}

impl fmt::Display for FilenameWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilenameWarning::BuildTagNotNumeric { filename, build } => write!(
                f,
                "{filename}: the binary distribution format spec says the build tag must \
                 start with a digit, but this file has {build:?} there; accepted, and ordered \
                 as build number 0 with suffix {build:?} (after files without a build tag, \
                 before build 1)"
            ),
            FilenameWarning::NameNotEscaped { filename, name } => write!(
                f,
                "{filename}: the binary distribution format spec says the project name must \
                 be escaped (each run of '-', '_', '.' written as one '_'), but this file has \
                 {name:?}; accepted as the normalized name"
            ),
        }
    }
}

impl Serialize for FilenameWarning {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A wheel build tag: leading digits and the rest, ordered like pip and `packaging` order
/// them (`(int, str)`, number first). A wheel without a build tag (`None`) orders before
/// every build tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct BuildTag {
    /// The leading decimal digits (0 for a non-numeric build tag, see
    /// [`FilenameWarning::BuildTagNotNumeric`]).
    pub number: u64,
    /// Whatever follows the digits (the whole tag when it has no leading digits).
    pub suffix: String,
}

/// A parsed wheel filename, e.g. `torch-2.11.0+cu130-cp314-cp314-manylinux_2_28_x86_64.whl`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct WheelFilename {
    /// The normalized project name.
    pub name: PackageName,
    /// The version, local label included.
    pub version: Version,
    /// The optional build tag.
    pub build: Option<BuildTag>,
    /// Python tags, compressed sets expanded (`py2.py3` → `py2`, `py3`), lowercase.
    pub python: Vec<String>,
    /// ABI tags, expanded, lowercase.
    pub abi: Vec<String>,
    /// Platform tags, expanded, lowercase.
    pub platform: Vec<String>,
    /// Spec violations accepted on purpose.
    pub warnings: Vec<FilenameWarning>,
}

impl WheelFilename {
    /// Every tag the wheel declares: the cartesian product of its tag sets.
    pub fn tags(&self) -> impl Iterator<Item = Tag> + '_ {
        self.python.iter().flat_map(move |python| {
            self.abi.iter().flat_map(move |abi| {
                self.platform
                    .iter()
                    .map(move |platform| Tag::new(python, abi, platform))
            })
        })
    }

    /// Best (lowest) priority of any of its tags for the target; None = does not fit.
    pub fn best_priority(&self, tags: &CompatibleTags) -> Option<usize> {
        self.tags().filter_map(|tag| tags.priority(&tag)).min()
    }

    /// Whether the build tag does not start with a digit (`-hopper-`), accepted with a
    /// [`FilenameWarning::BuildTagNotNumeric`].
    pub fn has_non_numeric_build(&self) -> bool {
        self.warnings
            .iter()
            .any(|w| matches!(w, FilenameWarning::BuildTagNotNumeric { .. }))
    }

    /// Orders two files of the same project and version like pip's candidate sort: better
    /// tag priority first, then a file whose build tag breaks the spec last, then the higher
    /// build tag. `Less` means `self` is preferred. Files that do not fit sort last.
    pub fn preference(&self, other: &WheelFilename, tags: &CompatibleTags) -> Ordering {
        let rank = |w: &WheelFilename| w.best_priority(tags).unwrap_or(usize::MAX);
        rank(self)
            .cmp(&rank(other))
            // A build tag that does not start with a digit breaks the spec (pip and uv
            // refuse the file): it orders after every valid file of the same tag, not as
            // build 0 above a file without a build tag.
            .then_with(|| {
                self.has_non_numeric_build()
                    .cmp(&other.has_non_numeric_build())
            })
            .then_with(|| other.build.cmp(&self.build))
    }
}

impl FromStr for WheelFilename {
    type Err = FilenameError;

    fn from_str(filename: &str) -> Result<Self, Self::Err> {
        parse_wheel(filename)
    }
}

/// Why a file name cannot be used as one path component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("file name {shown:?} is refused: {reason}")]
pub struct UnsafeFileName {
    /// The name as written, cut to a readable length.
    pub shown: String,
    pub reason: String,
}

/// A wheel's file name checked to be safe as a single path component: printable ASCII,
/// no `/`, `\`, NUL or leading `.`, at most 255 bytes, and a wheel name that parses.
/// Cache paths and install paths are built only from this type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct SafeFileName(String);

impl SafeFileName {
    /// Checks `value` (see the type's doc).
    pub fn parse(value: &str) -> Result<Self, UnsafeFileName> {
        let fail = |reason: &str| UnsafeFileName {
            shown: crate::digest::shown(value, 120),
            reason: reason.to_string(),
        };
        if value.is_empty() {
            return Err(fail("it is empty"));
        }
        if value.len() > 255 {
            return Err(fail("it is longer than 255 bytes"));
        }
        if !value.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return Err(fail("only printable ASCII without spaces is accepted"));
        }
        if value.contains(['/', '\\']) {
            return Err(fail("it contains a path separator"));
        }
        if value.starts_with('.') {
            return Err(fail("it starts with `.`"));
        }
        parse_wheel(value).map_err(|e| fail(&e.to_string()))?;
        Ok(SafeFileName(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for SafeFileName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SafeFileName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::path::Path> for SafeFileName {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&self.0)
    }
}

impl fmt::Display for SafeFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SafeFileName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl TryFrom<String> for SafeFileName {
    type Error = UnsafeFileName;
    fn try_from(value: String) -> Result<Self, UnsafeFileName> {
        SafeFileName::parse(&value)
    }
}

impl From<SafeFileName> for String {
    fn from(value: SafeFileName) -> String {
        value.0
    }
}

impl FromStr for SafeFileName {
    type Err = UnsafeFileName;
    fn from_str(value: &str) -> Result<Self, UnsafeFileName> {
        SafeFileName::parse(value)
    }
}

impl PartialEq<str> for SafeFileName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for SafeFileName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for SafeFileName {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<SafeFileName> for String {
    fn eq(&self, other: &SafeFileName) -> bool {
        *self == other.0
    }
}

/// The name and version parts of a wheel filename as written (`Pillow`, `12.0.0`), read
/// without parsing the rest; None when the name is not shaped like a wheel's.
pub fn wheel_name_version(filename: &str) -> Option<(&str, &str)> {
    let stem = filename.strip_suffix(".whl")?;
    let mut parts = stem.split('-');
    let name = parts.next()?;
    let version = parts.next()?;
    matches!(stem.matches('-').count(), 4 | 5).then_some((name, version))
}

/// Whether `filename` may be a wheel that fits `tags`, judged from the name alone and
/// without allocating: false for a file that is not a wheel and for a wheel whose tag sets
/// share no part with the accepted tags; true otherwise, including names too malformed to
/// judge here (the full parse then rejects them). Used to read only the files that can
/// matter from a page listing thousands of wheels for other platforms.
pub fn wheel_may_fit(filename: &str, tags: &CompatibleTags) -> bool {
    let Some(stem) = filename.strip_suffix(".whl") else {
        return false;
    };
    let mut parts = stem.rsplitn(4, '-');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(platform), Some(abi), Some(python), Some(_)) => tags.may_fit(python, abi, platform),
        _ => true,
    }
}

/// The leading package name of a PEP 508 requirement when it ends in `.`, `-` or `_` and
/// more text follows (`name- ==1`): pep508_rs 0.9 panics on such a name instead of
/// returning an error, so callers refuse it before parsing.
pub fn pep508_bad_leading_name(text: &str) -> Option<&str> {
    let text = text.trim_start();
    let len = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        .unwrap_or(text.len());
    (len > 0 && len < text.len() && text[..len].ends_with(['.', '-', '_'])).then(|| &text[..len])
}

/// The byte offset and character of the first non-ASCII character of a PEP 508 requirement.
/// Names, versions, markers (PEP 508's `python_str` characters) and URLs are ASCII, and
/// pep508_rs 0.9 panics on some non-ASCII text (a slice inside a character after a marker's
/// quoted value), so callers refuse it before parsing.
pub fn pep508_first_non_ascii(text: &str) -> Option<(usize, char)> {
    text.char_indices().find(|(_, c)| !c.is_ascii())
}

/// Whether a name as written (`Pillow`, `zope.interface`, `typing_extensions`) normalizes
/// to `normalized` (lowercase, runs of `-`, `_`, `.` as one `-`), without allocating.
pub fn name_matches(written: &str, normalized: &PackageName) -> bool {
    let mut expected = normalized.as_ref().bytes();
    let mut bytes = written.bytes().peekable();
    while let Some(b) = bytes.next() {
        let b = if matches!(b, b'-' | b'_' | b'.') {
            while bytes
                .peek()
                .is_some_and(|n| matches!(n, b'-' | b'_' | b'.'))
            {
                bytes.next();
            }
            b'-'
        } else {
            b.to_ascii_lowercase()
        };
        if expected.next() != Some(b) {
            return false;
        }
    }
    expected.next().is_none()
}

fn parse_wheel(filename: &str) -> Result<WheelFilename, FilenameError> {
    let Some(stem) = filename.strip_suffix(".whl") else {
        return Err(FilenameError::UnsupportedExtension {
            filename: filename.to_string(),
        });
    };
    let parts: Vec<&str> = stem.split('-').collect();
    let (name_part, version_part, build_part, tag_parts) = match parts.as_slice() {
        [name, version, python, abi, platform] => {
            (*name, *version, None, [*python, *abi, *platform])
        }
        [name, version, build, python, abi, platform] => {
            (*name, *version, Some(*build), [*python, *abi, *platform])
        }
        _ => {
            return Err(FilenameError::WrongNumberOfParts {
                filename: filename.to_string(),
                parts: parts.len(),
            })
        }
    };
    let mut warnings = Vec::new();

    let invalid_name = |reason: String| FilenameError::InvalidName {
        filename: filename.to_string(),
        name: name_part.to_string(),
        reason,
    };
    if name_part.is_empty() {
        return Err(invalid_name("the name is empty".to_string()));
    }
    if !name_part
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        return Err(invalid_name(
            "an escaped wheel name has only ASCII letters, digits, '_' and '.'".to_string(),
        ));
    }
    let name = PackageName::from_str(name_part).map_err(|e| invalid_name(e.to_string()))?;
    if name_part.contains("__") {
        warnings.push(FilenameWarning::NameNotEscaped {
            filename: filename.to_string(),
            name: name_part.to_string(),
        });
    }

    let version = parse_version(filename, version_part)?;

    let build = match build_part {
        None => None,
        Some(build) => Some(parse_build(filename, build, &mut warnings)?),
    };

    let [python, abi, platform] = tag_parts;
    let python = parse_tag_set(filename, python, true)?;
    let abi = parse_tag_set(filename, abi, false)?;
    let platform = parse_tag_set(filename, platform, false)?;
    let count = python.len() * abi.len() * platform.len();
    if count > MAX_TAGS_PER_WHEEL {
        return Err(FilenameError::InvalidTag {
            filename: filename.to_string(),
            tag: tag_parts.join("-"),
            reason: format!(
                "the compressed tag sets expand to {count} tags, more than the \
                 {MAX_TAGS_PER_WHEEL} comfypak accepts"
            ),
        });
    }

    Ok(WheelFilename {
        name,
        version,
        build,
        python,
        abi,
        platform,
        warnings,
    })
}

fn parse_version(filename: &str, text: &str) -> Result<Version, FilenameError> {
    Version::from_str(text).map_err(|e| {
        let mut reason = e.to_string();
        if text.contains('%') {
            reason.push_str(" (the name looks percent-encoded: decode the URL path first)");
        }
        FilenameError::InvalidVersion {
            filename: filename.to_string(),
            version: text.to_string(),
            reason,
        }
    })
}

fn parse_build(
    filename: &str,
    build: &str,
    warnings: &mut Vec<FilenameWarning>,
) -> Result<BuildTag, FilenameError> {
    let invalid = |reason: &str| FilenameError::InvalidBuildTag {
        filename: filename.to_string(),
        build: build.to_string(),
        reason: reason.to_string(),
    };
    if build.is_empty() {
        return Err(invalid("the build tag is empty"));
    }
    let digits_end = build
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(build.len());
    if digits_end == 0 {
        warnings.push(FilenameWarning::BuildTagNotNumeric {
            filename: filename.to_string(),
            build: build.to_string(),
        });
        return Ok(BuildTag {
            number: 0,
            suffix: build.to_string(),
        });
    }
    let number = build[..digits_end]
        .parse::<u64>()
        .map_err(|_| invalid("the build number does not fit in 64 bits"))?;
    Ok(BuildTag {
        number,
        suffix: build[digits_end..].to_string(),
    })
}

/// Expands one compressed tag set (`manylinux_2_27_x86_64.manylinux_2_28_x86_64`) into its
/// members, lowercased, in the order written, duplicates dropped.
fn parse_tag_set(
    filename: &str,
    text: &str,
    interpreter: bool,
) -> Result<Vec<String>, FilenameError> {
    let invalid = |reason: String| FilenameError::InvalidTag {
        filename: filename.to_string(),
        tag: text.to_string(),
        reason,
    };
    let mut out: Vec<String> = Vec::new();
    for member in text.split('.') {
        if member.is_empty() {
            return Err(invalid(
                "an empty member (a tag set is members joined by single '.')".to_string(),
            ));
        }
        if !member
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(invalid(format!(
                "{member:?} has characters other than ASCII letters, digits and '_'"
            )));
        }
        if interpreter && member.as_bytes()[0].is_ascii_digit() {
            return Err(invalid(format!(
                "interpreter tag {member:?} must start with a letter, e.g. cp314, py3"
            )));
        }
        let member = member.to_ascii_lowercase();
        if !out.contains(&member) {
            out.push(member);
        }
    }
    Ok(out)
}

/// Source archive extensions pip accepts for a source distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SdistExtension {
    /// `.tar.gz`
    TarGz,
    /// `.tgz`
    Tgz,
    /// `.tar`
    Tar,
    /// `.zip`
    Zip,
    /// `.tar.bz2`
    TarBz2,
    /// `.tbz`
    Tbz,
    /// `.tar.xz`
    TarXz,
    /// `.txz`
    Txz,
    /// `.tlz`
    Tlz,
    /// `.tar.lz`
    TarLz,
    /// `.tar.lzma`
    TarLzma,
}

impl SdistExtension {
    /// All extensions, longest first where one ends another (`.tar.gz` before `.tar`).
    pub const ALL: [SdistExtension; 11] = [
        SdistExtension::TarGz,
        SdistExtension::TarBz2,
        SdistExtension::TarXz,
        SdistExtension::TarLzma,
        SdistExtension::TarLz,
        SdistExtension::Tar,
        SdistExtension::Tgz,
        SdistExtension::Zip,
        SdistExtension::Tbz,
        SdistExtension::Txz,
        SdistExtension::Tlz,
    ];

    /// The extension with its leading dot, lowercase.
    pub fn as_str(&self) -> &'static str {
        match self {
            SdistExtension::TarGz => ".tar.gz",
            SdistExtension::Tgz => ".tgz",
            SdistExtension::Tar => ".tar",
            SdistExtension::Zip => ".zip",
            SdistExtension::TarBz2 => ".tar.bz2",
            SdistExtension::Tbz => ".tbz",
            SdistExtension::TarXz => ".tar.xz",
            SdistExtension::Txz => ".txz",
            SdistExtension::Tlz => ".tlz",
            SdistExtension::TarLz => ".tar.lz",
            SdistExtension::TarLzma => ".tar.lzma",
        }
    }

    /// True for the two extensions the source distribution format spec names
    /// (`.tar.gz`, and `.zip` which `packaging` also accepts).
    pub fn is_standard(&self) -> bool {
        matches!(self, SdistExtension::TarGz | SdistExtension::Zip)
    }

    /// The extension `filename` ends with (case-insensitive, as pip compares), and the stem.
    fn split(filename: &str) -> Option<(&str, SdistExtension)> {
        let lower = filename.to_ascii_lowercase();
        SdistExtension::ALL.into_iter().find_map(|ext| {
            lower
                .ends_with(ext.as_str())
                .then(|| (&filename[..filename.len() - ext.as_str().len()], ext))
        })
    }
}

impl fmt::Display for SdistExtension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SdistExtension {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A parsed source distribution filename, e.g. `insightface-0.7.3.tar.gz`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SdistFilename {
    /// The normalized project name.
    pub name: PackageName,
    /// The version.
    pub version: Version,
    /// The archive extension.
    pub extension: SdistExtension,
}

impl SdistFilename {
    /// Parses `name-version.ext`. The name may contain dashes: with `package_hint` the
    /// name is the prefix that normalizes to the hint; without it, the version is the
    /// shortest dash-separated suffix that is a valid PEP 440 version.
    pub fn parse(
        filename: &str,
        package_hint: Option<&PackageName>,
    ) -> Result<Self, FilenameError> {
        let Some((stem, extension)) = SdistExtension::split(filename) else {
            return Err(FilenameError::UnsupportedExtension {
                filename: filename.to_string(),
            });
        };
        let error = |reason: String| FilenameError::SdistNameVersion {
            filename: filename.to_string(),
            extension: extension.to_string(),
            reason,
        };
        let dashes: Vec<usize> = stem.match_indices('-').map(|(i, _)| i).collect();
        if dashes.is_empty() {
            return Err(error(
                "there is no '-' between name and version".to_string(),
            ));
        }

        if let Some(hint) = package_hint {
            for &dash in &dashes {
                let (name_part, version_part) = (&stem[..dash], &stem[dash + 1..]);
                if PackageName::from_str(name_part).ok().as_ref() != Some(hint) {
                    continue;
                }
                let version = parse_version(filename, version_part)?;
                return Ok(SdistFilename {
                    name: hint.clone(),
                    version,
                    extension,
                });
            }
            // Say what the file names instead, when it can be read without the hint.
            return match Self::parse(filename, None) {
                Ok(other) => Err(FilenameError::NameMismatch {
                    filename: filename.to_string(),
                    expected: hint.clone(),
                    found: other.name,
                }),
                Err(_) => Err(error(format!(
                    "no prefix of the name part is the project {hint}"
                ))),
            };
        }

        for &dash in dashes.iter().rev() {
            let (name_part, version_part) = (&stem[..dash], &stem[dash + 1..]);
            let Ok(version) = Version::from_str(version_part) else {
                continue;
            };
            let name = PackageName::from_str(name_part)
                .map_err(|e| error(format!("invalid project name {name_part:?}: {e}")))?;
            return Ok(SdistFilename {
                name,
                version,
                extension,
            });
        }
        let last = &stem[dashes[dashes.len() - 1] + 1..];
        Err(error(format!(
            "no part after a '-' is a valid version (the last is {last:?})"
        )))
    }
}

impl FromStr for SdistFilename {
    type Err = FilenameError;

    fn from_str(filename: &str) -> Result<Self, Self::Err> {
        SdistFilename::parse(filename, None)
    }
}

/// A wheel or a source distribution filename.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DistFilename {
    /// A `.whl`.
    Wheel(WheelFilename),
    /// A source archive.
    Sdist(SdistFilename),
}

impl DistFilename {
    /// Parses a distribution filename. With `package_hint`, the file must belong to that
    /// project ([`FilenameError::NameMismatch`] otherwise), and an sdist name with dashes
    /// is split at the hint.
    pub fn parse(
        filename: &str,
        package_hint: Option<&PackageName>,
    ) -> Result<Self, FilenameError> {
        if filename.ends_with(".whl") {
            let wheel = parse_wheel(filename)?;
            if let Some(hint) = package_hint {
                if &wheel.name != hint {
                    return Err(FilenameError::NameMismatch {
                        filename: filename.to_string(),
                        expected: hint.clone(),
                        found: wheel.name,
                    });
                }
            }
            return Ok(DistFilename::Wheel(wheel));
        }
        SdistFilename::parse(filename, package_hint).map(DistFilename::Sdist)
    }

    /// The normalized project name.
    pub fn name(&self) -> &PackageName {
        match self {
            DistFilename::Wheel(w) => &w.name,
            DistFilename::Sdist(s) => &s.name,
        }
    }

    /// The version.
    pub fn version(&self) -> &Version {
        match self {
            DistFilename::Wheel(w) => &w.version,
            DistFilename::Sdist(s) => &s.version,
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn build_tags_order_numerically_then_by_suffix() {
        let b = |n, s: &str| {
            Some(BuildTag {
                number: n,
                suffix: s.to_string(),
            })
        };
        assert!(None < b(0, "hopper"));
        assert!(b(0, "hopper") < b(1, ""));
        assert!(b(2, "") < b(10, ""));
        assert!(b(1, "") < b(1, "a"));
    }

    #[test]
    fn tag_sets_are_lowercased_and_deduplicated() {
        let set = parse_tag_set("f.whl", "PY3.py3.py2", true).unwrap();
        assert_eq!(set, vec!["py3", "py2"]);
    }
}
