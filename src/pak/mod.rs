//! pip's requirements-file syntax, as users write it in `pak*.txt` files, turned into
//! requirements and options with file:line:column provenance.
//!
//! Owns: comments, `\` continuations, `${VAR}` expansion, PEP 508 lines, bare URL lines,
//! per-line `--hash`, `-r` includes (relative to the including file, with cycle detection),
//! `-c` constraint files, and the global options (`--pre`, `--only-binary`, `--no-binary`;
//! `--prefer-binary` is accepted as a no-op: a version's wheel is always preferred to its sdist;
//! `-i`, `--extra-index-url` and `-f` are read, and a stack refuses them with
//! [`refuse_index_options`], since its indexes are configured in `indexes/*.toml`). Everything comfypak cannot
//! honour (editables, local paths, `--trusted-host`, build options, unknown options, ...) is
//! refused with the file, line and column and what to do instead.
//!
//! It must not resolve, fetch or talk to an index: it only reads the pak files (and the files
//! they include) from disk.

mod error;
mod lines;
mod requirement;

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use pep508_rs::{PackageName, VersionOrUrl};
use serde::ser::SerializeMap;
use serde::Serialize;

pub use error::{LineError, Location, PakError, PakErrorKind};

use lines::{LogicalLine, Text, Word};

/// One requirement of a pak file, with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct PakLine {
    /// Where the requirement starts.
    pub location: Location,
    /// The logical line as written (continuations joined, comment removed, `${VAR}` not
    /// expanded), for messages.
    pub text: String,
    pub requirement: PakRequirement,
    /// The `--hash=sha256:HEX` options of the line, as `sha256:hex` (hex in lower case).
    pub hashes: Vec<String>,
}

impl Serialize for PakLine {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(6))?;
        map.serialize_entry("file", &self.location.file)?;
        map.serialize_entry("line", &self.location.line)?;
        map.serialize_entry("column", &self.location.column)?;
        map.serialize_entry("text", &self.text)?;
        map.serialize_entry("name", &self.requirement.name().map(|n| n.to_string()))?;
        map.serialize_entry("needs_build", &self.requirement.needs_build())?;
        map.end()
    }
}

/// What a pak line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum PakRequirement {
    /// A PEP 508 requirement (name, extras, specifiers, markers, or `name @ url`).
    Named(pep508_rs::Requirement),
    /// A bare URL/VCS line pip accepts (e.g. `git+https://host/x/y.git@main#egg=name`,
    /// or an sdist/wheel URL with no name). `name` comes from `#egg=` when present, else from a
    /// wheel file name.
    UnnamedUrl {
        url: String,
        name: Option<PackageName>,
    },
}

impl PakRequirement {
    /// The project name, when the line gives one.
    pub fn name(&self) -> Option<&PackageName> {
        match self {
            PakRequirement::Named(r) => Some(&r.name),
            PakRequirement::UnnamedUrl { name, .. } => name.as_ref(),
        }
    }

    /// Why a later stage that installs only wheels cannot honour this (VCS URL, sdist URL,
    /// local directory...), or None for an index requirement / wheel URL.
    pub fn needs_build(&self) -> Option<String> {
        match self {
            PakRequirement::Named(r) => match &r.version_or_url {
                Some(VersionOrUrl::Url(url)) => {
                    requirement::url_needs_build(url.given().unwrap_or(url.as_str()))
                }
                _ => None,
            },
            PakRequirement::UnnamedUrl { url, .. } => requirement::url_needs_build(url),
        }
    }
}

/// A value with the place it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sourced<T> {
    pub value: T,
    pub location: Location,
}

/// The value of `--only-binary` / `--no-binary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum BinarySelector {
    /// `:all:`
    All,
    /// `:none:`
    None,
    /// Comma-separated project names.
    Packages(Vec<PackageName>),
}

/// One `--no-binary` or `--only-binary` value, as written (stack, pak file or command line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum FormatOption {
    NoBinary(BinarySelector),
    OnlyBinary(BinarySelector),
}

impl BinarySelector {
    /// `:all:`, `:none:` or a comma-separated list of names (as pip reads the option's
    /// value); the bad item on error.
    pub fn parse_value(value: &str) -> Result<BinarySelector, String> {
        match value.trim() {
            ":all:" => return Ok(BinarySelector::All),
            ":none:" => return Ok(BinarySelector::None),
            _ => {}
        }
        value
            .split(',')
            .map(|item| {
                let item = item.trim();
                item.parse::<PackageName>().map_err(|_| item.to_string())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(BinarySelector::Packages)
    }
}

/// Global options seen in a pak file and the files it includes, in the order written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PakOptions {
    /// `-i` / `--index-url`; the last one written wins, as in pip.
    pub index_url: Option<Sourced<String>>,
    pub extra_index_urls: Vec<Sourced<String>>,
    /// `-f` / `--find-links`: URLs as written; a local path becomes a `file://` URL of the
    /// directory, resolved relative to the file that names it.
    pub find_links: Vec<Sourced<String>>,
    pub pre: bool,
    pub only_binary: Vec<Sourced<BinarySelector>>,
    pub no_binary: Vec<Sourced<BinarySelector>>,
}

/// A parsed pak file with everything it includes.
#[derive(Debug, Clone, PartialEq)]
pub struct PakFile {
    pub path: PathBuf,
    /// In file order, `-r` includes flattened in place.
    pub requirements: Vec<PakLine>,
    /// From `-c` / `--constraint` files (with their own locations).
    pub constraints: Vec<PakLine>,
    pub options: PakOptions,
    /// Every file read (this one, includes, constraint files), in read order, each once.
    pub files: Vec<PathBuf>,
}

/// Reads and parses the pak file at `path`. `vars` gives the value of `${NAME}`.
pub fn parse_file(path: &Path, vars: &dyn Fn(&str) -> Option<String>) -> Result<PakFile, PakError> {
    let bytes = std::fs::read(path).map_err(|source| PakError::Read {
        path: path.to_path_buf(),
        source: Arc::new(source),
    })?;
    let contents = utf8_text(path, bytes)?;
    parse_str(path, &contents, vars)
}

/// The file's bytes as text, or an error at the line and column of the first byte that is
/// not UTF-8.
fn utf8_text(path: &Path, bytes: Vec<u8>) -> Result<String, PakError> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let bytes = e.as_bytes();
            let valid = e.utf8_error().valid_up_to();
            let before = &bytes[..valid];
            let line_start = before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            let prefix = String::from_utf8_lossy(&before[line_start..]).into_owned();
            let column = prefix.chars().count() + 1;
            let line_end = bytes[valid..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(bytes.len(), |i| valid + i);
            let line_text = String::from_utf8_lossy(&bytes[line_start..line_end]).into_owned();
            Err(PakError::from(LineError {
                location: Location {
                    file: path.to_path_buf(),
                    line,
                    column,
                },
                line_text,
                kind: PakErrorKind::NotUtf8,
                message: format!(
                    "byte 0x{:02x} is not UTF-8 text; pak files are read as UTF-8",
                    bytes[valid]
                ),
                help: "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)".to_string(),
            }))
        }
    }
}

/// Parses `contents` as the pak file at `path` (includes are read relative to `path`).
pub fn parse_str(
    path: &Path,
    contents: &str,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<PakFile, PakError> {
    let mut parser = Parser {
        vars,
        out: PakFile {
            path: path.to_path_buf(),
            requirements: Vec::new(),
            constraints: Vec::new(),
            options: PakOptions::default(),
            files: Vec::new(),
        },
        stack: Vec::new(),
        seen: HashSet::new(),
    };
    parser.file(path, contents, false)?;
    Ok(parser.out)
}

/// Refuses the index options of a stack's pak file (`--index-url`, `--extra-index-url`,
/// `--find-links`, in this file or a file it includes): a stack takes its indexes from
/// `indexes/*.toml` and the pins in `stack.toml`, so that one pinning rule (a pinned
/// package comes from its index only) holds for every package. An option that is read but
/// not honoured would be worse than an error.
pub fn refuse_index_options(file: &PakFile) -> Result<(), PakError> {
    let first = file
        .options
        .index_url
        .iter()
        .map(|v| ("--index-url", v))
        .chain(
            file.options
                .extra_index_urls
                .iter()
                .map(|v| ("--extra-index-url", v)),
        )
        .chain(file.options.find_links.iter().map(|v| ("--find-links", v)))
        .min_by_key(|(_, v)| (v.location.file.clone(), v.location.line, v.location.column));
    let Some((option, value)) = first else {
        return Ok(());
    };
    let line_text = std::fs::read(&value.location.file)
        .ok()
        .and_then(|bytes| {
            String::from_utf8_lossy(&bytes)
                .lines()
                .nth(value.location.line.saturating_sub(1))
                .map(str::to_string)
        })
        .unwrap_or_default();
    let kind = if option == "--find-links" {
        "find-links"
    } else {
        "simple"
    };
    Err(PakError::from(LineError {
        location: value.location.clone(),
        line_text,
        kind: PakErrorKind::IndexOption {
            option: option.to_string(),
        },
        message: format!(
            "`{option}` is not honoured in a stack's pak files: a stack's indexes are declared in its index folder (`index-dir`, one NAME.toml per index) and chosen by `[indexes]` in stack.toml"
        ),
        help: format!(
            "remove this line; declare the index as NAME.toml (name, url = {:?}, kind = \"{kind}\") and list it in `[indexes] default` or pin packages to it in `[indexes.pins]`",
            error::cap(&value.value, 200)
        ),
    }))
}

/// Looks `name` up in the process environment; the usual `vars` for [`parse_file`].
pub fn env_vars(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

struct Parser<'v> {
    vars: &'v dyn Fn(&str) -> Option<String>,
    out: PakFile,
    /// The files being read, outermost first: (identity, path as shown).
    stack: Vec<(PathBuf, PathBuf)>,
    seen: HashSet<PathBuf>,
}

/// The file a line is being read from, for errors.
struct FileCtx<'a> {
    path: &'a Path,
    physical: &'a [&'a str],
}

impl FileCtx<'_> {
    fn error(
        &self,
        at: lines::Pos,
        kind: PakErrorKind,
        message: String,
        help: impl Into<String>,
    ) -> PakError {
        let line = self
            .physical
            .get(at.line.saturating_sub(1))
            .copied()
            .unwrap_or("");
        // Messages quote parts of the line: keep only what an error shows, so a huge line is
        // not copied into every message (the line itself is shown as a window).
        PakError::from(LineError {
            location: self.location(at),
            line_text: line.to_string(),
            kind,
            message: error::cap(&message, error::MAX_SHOWN_TEXT),
            help: error::cap(&help.into(), error::MAX_SHOWN_TEXT),
        })
    }

    fn location(&self, at: lines::Pos) -> Location {
        Location {
            file: self.path.to_path_buf(),
            line: at.line,
            column: at.column,
        }
    }
}

/// Options pip accepts in requirements files, and what comfypak does with each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Requirement,
    Constraint,
    IndexUrl,
    ExtraIndexUrl,
    FindLinks,
    Pre,
    PreferBinary,
    OnlyBinary,
    NoBinary,
    Hash,
    Editable,
    /// Known to pip, refused here, with the help to show.
    Refused(&'static str),
    /// Build options pip passes to a build backend.
    Build,
}

impl Opt {
    fn lookup(name: &str) -> Option<Opt> {
        Some(match name {
            "-r" | "--requirement" => Opt::Requirement,
            "-c" | "--constraint" => Opt::Constraint,
            "-i" | "--index-url" => Opt::IndexUrl,
            "--extra-index-url" => Opt::ExtraIndexUrl,
            "-f" | "--find-links" => Opt::FindLinks,
            "--pre" => Opt::Pre,
            "--prefer-binary" => Opt::PreferBinary,
            "--only-binary" => Opt::OnlyBinary,
            "--no-binary" => Opt::NoBinary,
            "--hash" => Opt::Hash,
            "-e" | "--editable" => Opt::Editable,
            "--trusted-host" => Opt::Refused(
                "comfypak verifies TLS for every index: serve the index over https with a valid certificate, or use a file:// find-links directory",
            ),
            "--use-feature" => Opt::Refused(
                "pip feature flags change pip's behaviour, not comfypak's: remove this line",
            ),
            "--no-index" => Opt::Refused(
                "indexes come from stack.toml and indexes/*.toml: pin the packages to a find-links index there instead",
            ),
            "--require-hashes" => Opt::Refused(
                "comfypak always records and checks sha256 hashes in pylock.toml: remove this line",
            ),
            "--global-option" | "--config-settings" | "-C" | "--install-option"
            | "--build-option" => Opt::Build,
            _ => return None,
        })
    }

    fn takes_value(self) -> bool {
        !matches!(self, Opt::Pre | Opt::PreferBinary)
    }
}

impl Parser<'_> {
    fn file(&mut self, path: &Path, contents: &str, constraint: bool) -> Result<(), PakError> {
        let identity = identity(path);
        if self.seen.insert(identity.clone()) {
            self.out.files.push(path.to_path_buf());
        }
        self.stack.push((identity, path.to_path_buf()));
        let physical = lines::physical_lines(contents);
        let ctx = FileCtx {
            path,
            physical: &physical,
        };
        for logical in lines::logical_lines(&physical) {
            self.line(&ctx, &logical, constraint)?;
        }
        self.stack.pop();
        Ok(())
    }

    fn line(
        &mut self,
        ctx: &FileCtx<'_>,
        logical: &LogicalLine,
        constraint: bool,
    ) -> Result<(), PakError> {
        let written = &logical.text;
        let text = lines::expand_vars(written, self.vars).map_err(|(name, offset)| {
            ctx.error(
                written.pos_at(offset),
                PakErrorKind::UnsetVariable { name: name.clone() },
                format!("environment variable `{name}` is not set"),
                format!("set {name} in the environment of comfypak, or write the value in place of `${{{name}}}`"),
            )
        })?;
        let split = lines::options_start(&text.text);
        let words = lines::split_words(&text.text[split..], split).map_err(|quote| {
            ctx.error(
                text.pos_at(quote),
                PakErrorKind::UnterminatedQuote,
                "unterminated quote".into(),
                "close the quote, or remove it",
            )
        })?;
        let requirement_text = text.text[..split].trim_end();
        if requirement_text.is_empty() {
            self.options_line(ctx, &text, &words)
        } else {
            self.requirement_line(ctx, written, &text, requirement_text, &words, constraint)
        }
    }

    fn requirement_line(
        &mut self,
        ctx: &FileCtx<'_>,
        written: &Text,
        text: &Text,
        requirement_text: &str,
        words: &[Word],
        constraint: bool,
    ) -> Result<(), PakError> {
        let requirement = requirement::parse_requirement_in(requirement_text, ctx.path.parent())
            .map_err(|e| ctx.error(text.pos_at(e.offset), e.kind, e.message, e.help))?;
        if constraint {
            check_constraint(ctx, text, requirement_text, &requirement)?;
        }
        let mut hashes = Vec::new();
        let mut i = 0;
        while i < words.len() {
            let word = &words[i];
            let (name, attached) = split_option(&word.value);
            let at = text.pos_at(word.offset);
            match Opt::lookup(name) {
                Some(Opt::Hash) => {
                    let (value, value_offset) = match attached {
                        Some(v) => (v.to_string(), word.offset + name.len() + 1),
                        None => {
                            let next = words.get(i + 1).filter(|w| !w.value.starts_with('-'));
                            let Some(next) = next else {
                                return Err(missing_value(ctx, at, name));
                            };
                            i += 1;
                            (next.value.clone(), next.offset)
                        }
                    };
                    hashes.push(check_hash(ctx, text.pos_at(value_offset), &value)?);
                }
                Some(Opt::Build) => return Err(build_option(ctx, at, name)),
                Some(_) | None if is_option_word(name) => {
                    return Err(ctx.error(
                        at,
                        PakErrorKind::OptionAfterRequirement {
                            option: name.to_string(),
                        },
                        format!("`{name}` after a requirement: only `--hash` may follow a requirement on its line"),
                        format!("move `{name}` to a line of its own"),
                    ))
                }
                _ => {
                    return Err(ctx.error(
                        at,
                        PakErrorKind::OptionAfterRequirement {
                            option: word.value.clone(),
                        },
                        format!("unexpected `{}` after the options of a requirement", word.value),
                        "write one requirement per line, with only `--hash=sha256:...` options after it",
                    ))
                }
            }
            i += 1;
        }
        let start = written.pos_at(0);
        let line = PakLine {
            location: ctx.location(start),
            text: written.text.clone(),
            requirement,
            hashes,
        };
        if constraint {
            self.out.constraints.push(line);
        } else {
            self.out.requirements.push(line);
        }
        Ok(())
    }

    fn options_line(
        &mut self,
        ctx: &FileCtx<'_>,
        text: &Text,
        words: &[Word],
    ) -> Result<(), PakError> {
        let mut i = 0;
        while i < words.len() {
            let word = &words[i];
            let at = text.pos_at(word.offset);
            if !is_option_word(&word.value) {
                // A second value after an option (`--pre numpy`, `-r a.txt b.txt`).
                let previous = i
                    .checked_sub(1)
                    .and_then(|p| words[..=p].iter().rev().find(|w| is_option_word(&w.value)))
                    .map(|w| parse_option_word(&w.value).0.to_string())
                    .unwrap_or_else(|| word.value.clone());
                return Err(ctx.error(
                    at,
                    PakErrorKind::UnexpectedValue { option: previous },
                    format!("unexpected `{}` among options", word.value),
                    "give each option one value, and write requirements on lines of their own",
                ));
            }
            let (name, opt, attached) = parse_option_word(&word.value);
            let Some(opt) = opt else {
                return Err(ctx.error(
                    at,
                    PakErrorKind::UnknownOption {
                        option: name.to_string(),
                    },
                    format!("unknown option `{name}`"),
                    "pak files accept -r, -c, -i/--index-url, --extra-index-url, -f/--find-links, --pre, --prefer-binary, --only-binary, --no-binary, and --hash after a requirement",
                ));
            };
            let value: Option<(String, lines::Pos)> = if !opt.takes_value() {
                if attached.is_some() {
                    return Err(ctx.error(
                        at,
                        PakErrorKind::UnexpectedValue {
                            option: name.to_string(),
                        },
                        format!("`{name}` takes no value"),
                        format!("write `{name}` alone"),
                    ));
                }
                None
            } else if let Some((v, v_offset)) = attached {
                Some((v.to_string(), text.pos_at(word.offset + v_offset)))
            } else {
                match words.get(i + 1).filter(|w| !w.value.starts_with('-')) {
                    Some(next) => {
                        i += 1;
                        Some((next.value.clone(), text.pos_at(next.offset)))
                    }
                    None if matches!(opt, Opt::Editable | Opt::Refused(_) | Opt::Build) => None,
                    None => return Err(missing_value(ctx, at, name)),
                }
            };
            if let Some((v, _)) = &value {
                if v.is_empty() {
                    return Err(missing_value(ctx, at, name));
                }
            }
            self.option(ctx, at, name, opt, value)?;
            i += 1;
        }
        Ok(())
    }

    fn option(
        &mut self,
        ctx: &FileCtx<'_>,
        at: lines::Pos,
        name: &str,
        opt: Opt,
        value: Option<(String, lines::Pos)>,
    ) -> Result<(), PakError> {
        let (value, value_at) = match (opt, value) {
            (Opt::Pre, _) => {
                self.out.options.pre = true;
                return Ok(());
            }
            // Accepted and ignored: comfypak only ever installs wheels.
            (Opt::PreferBinary, _) => return Ok(()),
            (Opt::Editable, _) => {
                return Err(ctx.error(
                    at,
                    PakErrorKind::Editable,
                    format!("`{name}` (an editable install) is not supported"),
                    "comfypak installs prebuilt wheels into image layers: build a wheel of the project and require it by name from a find-links directory",
                ))
            }
            (Opt::Refused(help), _) => {
                return Err(ctx.error(
                    at,
                    PakErrorKind::UnsupportedOption {
                        option: name.to_string(),
                    },
                    format!("`{name}` is not supported in pak files"),
                    help,
                ))
            }
            (Opt::Build, _) => return Err(build_option(ctx, at, name)),
            (Opt::Hash, _) => {
                return Err(ctx.error(
                    at,
                    PakErrorKind::HashWithoutRequirement,
                    format!("`{name}` on a line without a requirement"),
                    "put `--hash=sha256:...` on the line of the requirement it checks (continue the line with `\\`)",
                ))
            }
            (_, Some(v)) => v,
            (_, None) => return Err(missing_value(ctx, at, name)),
        };
        let location = ctx.location(value_at);
        match opt {
            Opt::Requirement | Opt::Constraint => {
                self.include(ctx, value_at, &value, opt == Opt::Constraint)?
            }
            Opt::IndexUrl => {
                check_index_url(ctx, value_at, name, &value)?;
                self.out.options.index_url = Some(Sourced { value, location });
            }
            Opt::ExtraIndexUrl => {
                check_index_url(ctx, value_at, name, &value)?;
                self.out
                    .options
                    .extra_index_urls
                    .push(Sourced { value, location });
            }
            Opt::FindLinks => {
                let value = find_links_url(ctx, value_at, &value)?;
                self.out
                    .options
                    .find_links
                    .push(Sourced { value, location });
            }
            Opt::OnlyBinary | Opt::NoBinary => {
                let selector = binary_selector(ctx, value_at, name, &value)?;
                let sourced = Sourced {
                    value: selector,
                    location,
                };
                if opt == Opt::OnlyBinary {
                    self.out.options.only_binary.push(sourced);
                } else {
                    self.out.options.no_binary.push(sourced);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn include(
        &mut self,
        ctx: &FileCtx<'_>,
        at: lines::Pos,
        value: &str,
        constraint: bool,
    ) -> Result<(), PakError> {
        let what = if constraint {
            "constraint file"
        } else {
            "requirements file"
        };
        if pep508_rs::split_scheme(value).is_some_and(|(scheme, _)| scheme.len() > 1) {
            return Err(ctx.error(
                at,
                PakErrorKind::UnsupportedUrl,
                format!("a {what} given by URL (`{}`)", requirement::redact(value)),
                "comfypak reads pak files from disk only: download the file next to this one and name it by a relative path",
            ));
        }
        let parent = ctx.path.parent().unwrap_or(Path::new(""));
        let path = normalize(&parent.join(value));
        let key = identity(&path);
        if let Some(start) = self.stack.iter().position(|(k, _)| *k == key) {
            let mut chain: Vec<PathBuf> =
                self.stack[start..].iter().map(|(_, p)| p.clone()).collect();
            chain.push(path.clone());
            let shown: Vec<String> = chain.iter().map(|p| p.display().to_string()).collect();
            return Err(ctx.error(
                at,
                PakErrorKind::IncludeCycle { chain },
                format!("include cycle: {}", shown.join(" -> ")),
                format!(
                    "remove the include of `{value}` here, or the one that leads back to this file"
                ),
            ));
        }
        let contents = std::fs::read(&path).map_err(|e| {
            let help = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{what}s are read relative to the file that names them ({}); fix the path or create the file",
                    if parent.as_os_str().is_empty() { Path::new(".") } else { parent }.display()
                )
            } else {
                "check that the file is readable".to_string()
            };
            ctx.error(
                at,
                PakErrorKind::IncludeNotFound { path: path.clone() },
                format!("cannot read {what} `{}`: {e}", path.display()),
                help,
            )
        })?;
        let contents = utf8_text(&path, contents)?;
        self.file(&path, &contents, constraint)
    }
}

/// Splits `--name=value` into the name and the value.
fn split_option(word: &str) -> (&str, Option<&str>) {
    match word.split_once('=') {
        Some((name, value)) if word.starts_with("--") => (name, Some(value)),
        _ => (word, None),
    }
}

fn is_option_word(word: &str) -> bool {
    word.starts_with('-') && word.len() > 1
}

/// An option word: its name, what it is, and an attached value with its byte offset in the
/// word (`--index-url=URL`, `-iURL`).
fn parse_option_word(word: &str) -> (&str, Option<Opt>, Option<(&str, usize)>) {
    if word.starts_with("--") {
        let (name, value) = split_option(word);
        let value = value.map(|v| (v, name.len() + 1));
        return (name, Opt::lookup(name), value);
    }
    // A short option, maybe with its value attached (`-rother.txt`, as optparse allows).
    let split = word
        .char_indices()
        .nth(2)
        .map(|(i, _)| i)
        .unwrap_or(word.len());
    let (name, rest) = word.split_at(split);
    let opt = Opt::lookup(name);
    if rest.is_empty() {
        (name, opt, None)
    } else if opt.is_some_and(Opt::takes_value) {
        (name, opt, Some((rest, split)))
    } else {
        (word, Opt::lookup(word), None)
    }
}

fn missing_value(ctx: &FileCtx<'_>, at: lines::Pos, name: &str) -> PakError {
    let example = match Opt::lookup(name) {
        Some(Opt::Requirement) => "-r other.txt",
        Some(Opt::Constraint) => "-c constraints.txt",
        Some(Opt::IndexUrl) => "--index-url https://index.example/simple",
        Some(Opt::ExtraIndexUrl) => "--extra-index-url https://index.example/simple",
        Some(Opt::FindLinks) => "--find-links file:///srv/wheels",
        Some(Opt::OnlyBinary) => "--only-binary :all:",
        Some(Opt::NoBinary) => "--no-binary :none:",
        Some(Opt::Hash) => "--hash=sha256:<64 hex digits>",
        _ => name,
    };
    ctx.error(
        at,
        PakErrorKind::MissingValue {
            option: name.to_string(),
        },
        format!("`{name}` needs a value"),
        format!("write it with its value, e.g. `{example}`"),
    )
}

fn build_option(ctx: &FileCtx<'_>, at: lines::Pos, name: &str) -> PakError {
    ctx.error(
        at,
        PakErrorKind::UnsupportedOption {
            option: name.to_string(),
        },
        format!("`{name}` passes options to a package build, and comfypak never builds"),
        "remove the option; if the package needs a custom build, build the wheel beforehand and serve it from a find-links directory",
    )
}

/// Checks a `--hash` value and returns it as `sha256:hex`.
fn check_hash(ctx: &FileCtx<'_>, at: lines::Pos, value: &str) -> Result<String, PakError> {
    let help = "write `--hash=sha256:` followed by the 64 hex digits of the file's SHA-256 digest (e.g. from `sha256sum`)";
    let Some((algorithm, digest)) = value.split_once(':') else {
        return Err(ctx.error(
            at,
            PakErrorKind::BadHash,
            format!("`{value}` is not of the form `algorithm:digest`"),
            help,
        ));
    };
    if algorithm != "sha256" {
        return Err(ctx.error(
            at,
            PakErrorKind::BadHash,
            format!("hash algorithm `{algorithm}` is not supported; comfypak checks sha256 only"),
            help,
        ));
    }
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ctx.error(
            at,
            PakErrorKind::BadHash,
            format!(
                "`{digest}` is not a sha256 digest ({} characters; 64 hex digits expected)",
                digest.chars().count()
            ),
            help,
        ));
    }
    Ok(format!("sha256:{}", digest.to_ascii_lowercase()))
}

fn check_index_url(
    ctx: &FileCtx<'_>,
    at: lines::Pos,
    name: &str,
    value: &str,
) -> Result<(), PakError> {
    let ok = url::Url::parse(value)
        .map(|u| matches!(u.scheme(), "http" | "https" | "file"))
        .unwrap_or(false);
    if ok {
        return Ok(());
    }
    Err(ctx.error(
        at,
        PakErrorKind::InvalidOptionValue {
            option: name.to_string(),
        },
        format!("`{}` is not an http(s) or file URL", requirement::redact(value)),
        format!("write a full URL, e.g. `{name} https://index.example/simple` or `{name} file:///srv/simple`"),
    ))
}

/// A find-links value as a URL: URLs stay; a path becomes the `file://` URL of the directory,
/// relative to the file that names it.
fn find_links_url(ctx: &FileCtx<'_>, at: lines::Pos, value: &str) -> Result<String, PakError> {
    if pep508_rs::split_scheme(value).is_some_and(|(scheme, _)| scheme.len() > 1) {
        let ok = url::Url::parse(value)
            .map(|u| matches!(u.scheme(), "http" | "https" | "file"))
            .unwrap_or(false);
        if ok {
            return Ok(value.to_string());
        }
        return Err(ctx.error(
            at,
            PakErrorKind::InvalidOptionValue {
                option: "--find-links".into(),
            },
            format!("`{}` is not an http(s) or file URL", requirement::redact(value)),
            "write an `https://` URL of a page of links, or a directory (`file:///srv/wheels` or a path relative to this file)",
        ));
    }
    let parent = ctx.path.parent().unwrap_or(Path::new(""));
    let dir = normalize(&parent.join(value));
    let absolute = std::path::absolute(&dir).unwrap_or(dir.clone());
    if !absolute.is_dir() {
        return Err(ctx.error(
            at,
            PakErrorKind::InvalidOptionValue {
                option: "--find-links".into(),
            },
            format!("find-links directory `{}` does not exist", dir.display()),
            "paths are relative to the file that names them: fix the path, create the directory, or write a URL",
        ));
    }
    url::Url::from_directory_path(&absolute)
        .map(|u| u.to_string())
        .map_err(|()| {
            ctx.error(
                at,
                PakErrorKind::InvalidOptionValue {
                    option: "--find-links".into(),
                },
                format!(
                    "`{}` cannot be written as a file:// URL",
                    absolute.display()
                ),
                "write the directory as a `file:///` URL",
            )
        })
}

fn binary_selector(
    ctx: &FileCtx<'_>,
    at: lines::Pos,
    name: &str,
    value: &str,
) -> Result<BinarySelector, PakError> {
    match value {
        ":all:" => return Ok(BinarySelector::All),
        ":none:" => return Ok(BinarySelector::None),
        _ => {}
    }
    let mut names = Vec::new();
    let mut column = at.column;
    for item in value.split(',') {
        let here = lines::Pos {
            line: at.line,
            column,
        };
        column += item.chars().count() + 1;
        match item.parse::<PackageName>() {
            Ok(n) if item != ":all:" && item != ":none:" => names.push(n),
            _ => {
                return Err(ctx.error(
                    here,
                    PakErrorKind::InvalidOptionValue {
                        option: name.to_string(),
                    },
                    format!("`{item}` is not a package name, `:all:` or `:none:` in `{name}`"),
                    format!("write `{name} :all:`, `{name} :none:`, or comma-separated names such as `{name} numpy,scipy`"),
                ))
            }
        }
    }
    Ok(BinarySelector::Packages(names))
}

fn check_constraint(
    ctx: &FileCtx<'_>,
    text: &Text,
    requirement_text: &str,
    requirement: &PakRequirement,
) -> Result<(), PakError> {
    let help =
        "a constraint is a name with version specifiers and markers only, e.g. `torch==2.11.0`";
    match requirement {
        PakRequirement::UnnamedUrl { .. } => Err(ctx.error(
            text.pos_at(0),
            PakErrorKind::InvalidConstraint,
            "a constraint must name a package; this is a bare URL".into(),
            help,
        )),
        PakRequirement::Named(r) if !r.extras.is_empty() => Err(ctx.error(
            text.pos_at(requirement_text.find('[').unwrap_or(0)),
            PakErrorKind::InvalidConstraint,
            format!("a constraint cannot have extras (`{}`)", r.name),
            help,
        )),
        PakRequirement::Named(r) if matches!(r.version_or_url, Some(VersionOrUrl::Url(_))) => {
            Err(ctx.error(
                text.pos_at(requirement_text.find('@').unwrap_or(0)),
                PakErrorKind::InvalidConstraint,
                format!("a constraint cannot be a URL (`{}`)", r.name),
                help,
            ))
        }
        PakRequirement::Named(_) => Ok(()),
    }
}

/// A path with `.` and `name/..` removed, lexically (symlinks are not followed).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                let last = out.components().next_back();
                if matches!(last, Some(Component::Normal(_))) {
                    out.pop();
                } else if !matches!(last, Some(Component::RootDir | Component::Prefix(_))) {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// What makes two paths the same file, for cycle detection and the `files` list.
fn identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path).map(|p| normalize(&p)))
        .unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(contents: &str) -> Result<PakFile, PakError> {
        parse_str(Path::new("pak/t.txt"), contents, &|_| None)
    }

    #[test]
    fn normalizes_paths_lexically() {
        assert_eq!(
            normalize(Path::new("a/./b/../c.txt")),
            PathBuf::from("a/c.txt")
        );
        assert_eq!(
            normalize(Path::new("../x/../../y")),
            PathBuf::from("../../y")
        );
        assert_eq!(normalize(Path::new("/../y")), PathBuf::from("/y"));
    }

    #[test]
    fn option_words() {
        assert_eq!(
            parse_option_word("-rother.txt"),
            ("-r", Some(Opt::Requirement), Some(("other.txt", 2)))
        );
        assert_eq!(
            parse_option_word("--index-url=https://i.example/simple"),
            (
                "--index-url",
                Some(Opt::IndexUrl),
                Some(("https://i.example/simple", 12))
            )
        );
        assert_eq!(parse_option_word("--pre"), ("--pre", Some(Opt::Pre), None));
        assert_eq!(parse_option_word("-Z"), ("-Z", None, None));
    }

    #[test]
    fn requirement_location_is_its_first_character() {
        let f = parse("\n   numpy>=2 # x\n").unwrap();
        let l = &f.requirements[0];
        assert_eq!((l.location.line, l.location.column), (2, 4));
        assert_eq!(l.text, "numpy>=2");
        assert_eq!(l.location.to_string(), "pak/t.txt:2:4");
    }

    #[test]
    fn hashes_are_collected_and_lower_cased() {
        let hex = "AB".repeat(32);
        let f = parse(&format!(
            "x==1 --hash=sha256:{hex} --hash sha256:{}\n",
            "0".repeat(64)
        ))
        .unwrap();
        assert_eq!(
            f.requirements[0].hashes,
            vec![
                format!("sha256:{}", "ab".repeat(32)),
                format!("sha256:{}", "0".repeat(64))
            ]
        );
    }

    #[test]
    fn binary_selector_column_points_at_the_bad_name() {
        let e = parse("--only-binary numpy,-bad\n").unwrap_err();
        assert_eq!(e.location().map(|l| l.column), Some(21));
    }

    #[test]
    fn serializes_a_line_for_json() {
        let f = parse("git+https://git.example/o/r.git@main#egg=r\n").unwrap();
        let v = serde_json::to_value(&f.requirements[0]).unwrap();
        assert_eq!(v["file"], "pak/t.txt");
        assert_eq!(v["line"], 1);
        assert_eq!(v["column"], 1);
        assert_eq!(v["name"], "r");
        assert!(v["needs_build"].as_str().unwrap().contains("git"));
    }
}
