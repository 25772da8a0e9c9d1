//! Index definitions: the `indexes/NAME.toml` files that say where packages come from.
//!
//! Owns reading those files, validating their URLs and kinds, and applying URL overrides
//! (a stack's `[indexes.urls]`, the command line's `--index NAME=URL`). It must not talk to
//! the network: fetching pages is the client's job.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

/// How an index is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IndexKind {
    /// A simple repository API (PEP 503 HTML or PEP 691 JSON), over HTTP(S) or as a tree on disk.
    Simple,
    /// One HTML page of file links, read as pip reads `--find-links`.
    FindLinks,
    /// A local folder of wheel files (`file://` URL).
    Dir,
}

impl fmt::Display for IndexKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IndexKind::Simple => "simple",
            IndexKind::FindLinks => "find-links",
            IndexKind::Dir => "dir",
        })
    }
}

/// One index, as its definition file (and any override) describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexDef {
    pub name: String,
    pub url: Url,
    pub kind: IndexKind,
    /// The definition file it was read from.
    pub source: PathBuf,
    /// Where the URL came from when it is not the definition file's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_overridden_by: Option<String>,
    /// Other origins the index's pages link files on (`files = [...]` in the definition),
    /// besides the index URL's own. A lock used as it is fetches only from these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub file_origins: Vec<Url>,
}

impl IndexDef {
    /// Whether `url` (a wheel URL of a lock) is one this index serves: same origin as the
    /// index URL or one of its `files` origins; for a `file://` index, a path in the folder
    /// above the index URL (where a simple tree keeps `simple/` and `files/`).
    pub fn serves(&self, url: &Url) -> bool {
        if url.scheme() == "file" {
            if self.url.scheme() != "file" {
                return false;
            }
            let Ok(root) = self.url.join("..") else {
                return false;
            };
            return url.path().starts_with(root.path());
        }
        let origin = url.origin();
        origin == self.url.origin() || self.file_origins.iter().any(|o| o.origin() == origin)
    }
}

impl IndexDef {
    /// Whether pages and wheels come over plain http from another machine: allowed because
    /// the definition says `http://`, but worth a warning (anything on the way can change
    /// them, and the lock's hashes come from those pages). Loopback is not warned about.
    pub fn is_plain_http(&self) -> bool {
        self.url.scheme() == "http" && !is_loopback_url(&self.url)
    }

    /// The warning for [`IndexDef::is_plain_http`], or `None`.
    pub fn plain_http_warning(&self) -> Option<String> {
        self.is_plain_http().then(|| {
            format!(
                "index `{}` is plain http ({}): its pages, hashes and wheels can be changed on \
                 the way; use https if the server has it",
                self.name, self.url
            )
        })
    }
}

/// Whether the URL's host is this machine (127.0.0.0/8, ::1, localhost).
pub fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// All index definitions of a stack, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct IndexDefs {
    defs: BTreeMap<String, IndexDef>,
}

/// Why the index definitions could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IndexDefError {
    #[error("cannot read index definitions in {}: {source}", dir.display())]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: index name `{name}` does not match the file name; rename the file to `{name}.toml` or fix `name`", path.display())]
    NameMismatch { path: PathBuf, name: String },
    #[error("{}: invalid url `{url}`: {reason}", path.display())]
    BadUrl {
        path: PathBuf,
        url: String,
        reason: String,
    },
    #[error("{origin}: unknown index `{name}`; known indexes: {known}")]
    Unknown {
        origin: String,
        name: String,
        known: String,
    },
    #[error("{origin}: `{text}` is not NAME=URL")]
    BadOverride { origin: String, text: String },
}

impl IndexDefError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            IndexDefError::ReadDir { .. } => {
                Some("create the folder with one NAME.toml per index (name, url, kind)".to_string())
            }
            IndexDefError::BadOverride { .. } => Some(
                "write it as e.g. `--index pytorch-cu130=file:///srv/mirror/simple/`".to_string(),
            ),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIndexDef {
    name: String,
    url: String,
    kind: IndexKind,
    #[serde(default)]
    files: Vec<String>,
}

impl IndexDefs {
    /// Reads every `*.toml` in `dir`, in name order.
    pub fn load_dir(dir: &Path) -> Result<Self, IndexDefError> {
        let entries = std::fs::read_dir(dir).map_err(|source| IndexDefError::ReadDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| IndexDefError::ReadDir {
                dir: dir.to_path_buf(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "toml") {
                paths.push(path);
            }
        }
        paths.sort();
        let mut defs = BTreeMap::new();
        for path in paths {
            let def = Self::load_file(&path)?;
            defs.insert(def.name.clone(), def);
        }
        Ok(IndexDefs { defs })
    }

    fn load_file(path: &Path) -> Result<IndexDef, IndexDefError> {
        let text = std::fs::read_to_string(path).map_err(|source| IndexDefError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawIndexDef = toml::from_str(&text).map_err(|e| IndexDefError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if raw.name != stem {
            return Err(IndexDefError::NameMismatch {
                path: path.to_path_buf(),
                name: raw.name,
            });
        }
        let url = parse_index_url(&raw.url, raw.kind).map_err(|reason| IndexDefError::BadUrl {
            path: path.to_path_buf(),
            url: raw.url.clone(),
            reason,
        })?;
        let mut file_origins = Vec::new();
        for text in &raw.files {
            let parsed = Url::parse(text)
                .ok()
                .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
                .ok_or_else(|| IndexDefError::BadUrl {
                    path: path.to_path_buf(),
                    url: text.clone(),
                    reason: "`files` lists http(s) origins such as \"https://files.example/\""
                        .to_string(),
                })?;
            file_origins.push(parsed);
        }
        Ok(IndexDef {
            name: raw.name,
            url,
            kind: raw.kind,
            source: path.to_path_buf(),
            url_overridden_by: None,
            file_origins,
        })
    }

    /// Adds or replaces one definition (tests and programmatic stacks).
    pub fn insert(&mut self, def: IndexDef) {
        self.defs.insert(def.name.clone(), def);
    }

    pub fn get(&self, name: &str) -> Option<&IndexDef> {
        self.defs.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &IndexDef> {
        self.defs.values()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.defs.keys().map(String::as_str)
    }

    /// One warning per plain-http index that is not on this machine.
    pub fn plain_http_warnings(&self) -> Vec<String> {
        self.iter()
            .filter_map(IndexDef::plain_http_warning)
            .collect()
    }

    /// Fails with the list of known names when `name` is not defined.
    pub fn require(&self, name: &str, origin: &str) -> Result<&IndexDef, IndexDefError> {
        self.defs.get(name).ok_or_else(|| IndexDefError::Unknown {
            origin: origin.to_string(),
            name: name.to_string(),
            known: self.names().collect::<Vec<_>>().join(", "),
        })
    }

    /// Points index `name` at another URL (a mirror, an air-gapped copy, a fixture server).
    /// A `file://` URL to a folder keeps the kind: a PEP 503 tree stays `simple`.
    pub fn override_url(
        &mut self,
        name: &str,
        url: &str,
        origin: &str,
    ) -> Result<(), IndexDefError> {
        let known = self.names().collect::<Vec<_>>().join(", ");
        let kind = self.defs.get(name).map(|def| def.kind);
        let parsed = kind.map(|kind| parse_index_url(url, kind));
        // Pointing an index at the very URL another definition has (the torch family at the
        // public index, where its Linux wheels are the CUDA builds) serves what that index
        // serves, files hosts included.
        let shared_origins = match &parsed {
            Some(Ok(parsed)) => self
                .defs
                .values()
                .find(|other| other.name != name && other.url == *parsed)
                .map(|other| other.file_origins.clone()),
            _ => None,
        };
        let def = self
            .defs
            .get_mut(name)
            .ok_or_else(|| IndexDefError::Unknown {
                origin: origin.to_string(),
                name: name.to_string(),
                known,
            })?;
        def.url = parse_index_url(url, def.kind).map_err(|reason| IndexDefError::BadUrl {
            path: PathBuf::from(origin),
            url: url.to_string(),
            reason,
        })?;
        def.url_overridden_by = Some(origin.to_string());
        // The definition's file origins belong to its own URL, not to a mirror's; the
        // mirror's are those of the definition that has that URL, if one does.
        def.file_origins = shared_origins.unwrap_or_default();
        Ok(())
    }
}

/// Splits a command-line override `NAME=URL`.
pub fn parse_override(text: &str, origin: &str) -> Result<(String, String), IndexDefError> {
    match text.split_once('=') {
        Some((name, url)) if !name.trim().is_empty() && !url.trim().is_empty() => {
            Ok((name.trim().to_string(), url.trim().to_string()))
        }
        _ => Err(IndexDefError::BadOverride {
            origin: origin.to_string(),
            text: text.to_string(),
        }),
    }
}

/// Parses an index URL; simple indexes get a trailing slash so relative links resolve.
fn parse_index_url(text: &str, kind: IndexKind) -> Result<Url, String> {
    let mut url = Url::parse(text).map_err(|e| e.to_string())?;
    match url.scheme() {
        "http" | "https" | "file" => {}
        other => {
            return Err(format!(
                "scheme `{other}` is not supported; use http, https or file"
            ))
        }
    }
    if kind == IndexKind::Dir && url.scheme() != "file" {
        return Err("a `dir` index needs a file:// URL".to_string());
    }
    if kind != IndexKind::FindLinks && !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_urls_get_a_trailing_slash() {
        let url = parse_index_url("https://index.example/simple", IndexKind::Simple).unwrap();
        assert_eq!(url.as_str(), "https://index.example/simple/");
        let page =
            parse_index_url("https://index.example/releases/v1", IndexKind::FindLinks).unwrap();
        assert_eq!(page.as_str(), "https://index.example/releases/v1");
    }

    #[test]
    fn plain_http_is_warned_about_unless_on_loopback() {
        let def = |name: &str, url: &str| IndexDef {
            name: name.to_string(),
            url: parse_index_url(url, IndexKind::Simple).unwrap(),
            kind: IndexKind::Simple,
            source: PathBuf::from(format!("indexes/{name}.toml")),
            url_overridden_by: None,
            file_origins: Vec::new(),
        };
        let mut defs = IndexDefs::default();
        defs.insert(def("mirror", "http://mirror.example/simple"));
        defs.insert(def("local", "http://127.0.0.1:8080/simple"));
        defs.insert(def("localhost", "http://localhost:8080/simple"));
        defs.insert(def("secure", "https://index.example/simple"));
        let warnings = defs.plain_http_warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("`mirror`"));
        assert!(warnings[0].contains("http://mirror.example/simple/"));
    }

    #[test]
    fn an_override_to_another_index_url_serves_that_index_files() {
        let def = |name: &str, url: &str, files: &[&str]| IndexDef {
            name: name.to_string(),
            url: parse_index_url(url, IndexKind::Simple).unwrap(),
            kind: IndexKind::Simple,
            source: PathBuf::from(format!("indexes/{name}.toml")),
            url_overridden_by: None,
            file_origins: files.iter().map(|f| Url::parse(f).unwrap()).collect(),
        };
        let mut defs = IndexDefs::default();
        defs.insert(def(
            "public",
            "https://index.example/simple",
            &["https://files.example/"],
        ));
        defs.insert(def(
            "torch",
            "https://torch.example/whl/cu130",
            &["https://torch-files.example/"],
        ));
        let wheel = Url::parse("https://files.example/packages/torch-2.11.0.whl").unwrap();
        let own = Url::parse("https://torch-files.example/torch-2.11.0.whl").unwrap();
        assert!(defs.get("torch").unwrap().serves(&own));
        assert!(!defs.get("torch").unwrap().serves(&wheel));

        defs.override_url("torch", "https://index.example/simple/", "--index")
            .unwrap();
        let torch = defs.get("torch").unwrap();
        assert!(torch.serves(&wheel), "{:?}", torch.file_origins);
        assert!(
            !torch.serves(&own),
            "the definition's own files host stays behind"
        );

        defs.override_url("torch", "https://mirror.example/simple/", "--index")
            .unwrap();
        let torch = defs.get("torch").unwrap();
        assert!(torch.file_origins.is_empty());
        assert!(!torch.serves(&wheel));
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(parse_index_url("ftp://index.example/", IndexKind::Simple).is_err());
        assert!(parse_index_url("https://index.example/", IndexKind::Dir).is_err());
        assert!(parse_index_url("not a url", IndexKind::Simple).is_err());
    }

    #[test]
    fn overrides_split_on_the_first_equals() {
        assert_eq!(
            parse_override("pypi=http://127.0.0.1:8080/simple/?a=b", "--index").unwrap(),
            (
                "pypi".to_string(),
                "http://127.0.0.1:8080/simple/?a=b".to_string()
            )
        );
        assert!(parse_override("pypi", "--index").is_err());
        assert!(parse_override("=http://x/", "--index").is_err());
    }
}
