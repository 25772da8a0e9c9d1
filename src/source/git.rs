//! Git sources: `git+URL@REF#subdirectory=…` requirements checked out with the system `git`.
//!
//! Owns parsing such a URL, the repository cache (one bare repository per URL under
//! `git/db/`, fetched into with `git fetch`), resolving a branch, tag or commit to a commit
//! id, and the checkout of one commit with its submodules into `git/checkouts/` (made in a
//! temp folder and renamed into place, so a failed checkout leaves nothing). Git's own
//! configuration applies, so credential helpers and netrc work for private repositories;
//! git never prompts. Must not build anything, nor touch a checkout once it is made.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Why a git source could not be had.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("`{url}` is not a git URL comfypak can fetch: {message}")]
    BadUrl { url: String, message: String },
    #[error("git {doing} for {url} failed: {message}")]
    Git {
        url: String,
        doing: String,
        message: String,
    },
    #[error("{url} has no branch, tag or commit `{reference}`")]
    MissingRef { url: String, reference: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl GitError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            GitError::MissingRef { .. } => Some(
                "check the `@REF` part of the URL: a branch, a tag or a full commit id".to_string(),
            ),
            GitError::Git { .. } => Some(
                "for a private repository, configure a git credential helper or ~/.netrc; \
                 comfypak runs the system git with its configuration and never prompts"
                    .to_string(),
            ),
            _ => None,
        }
    }
}

/// A `git+…` requirement URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitUrl {
    /// The repository URL git fetches (without `git+`, `@REF` or the fragment).
    pub repository: String,
    /// The `@REF` part: a branch, a tag or a commit id.
    pub reference: Option<String>,
    /// `#subdirectory=…`: where the project is inside the repository.
    pub subdirectory: Option<String>,
}

impl GitUrl {
    /// Parses `git+https://host/repo.git@REF#egg=name&subdirectory=sub`.
    pub fn parse(text: &str) -> Result<GitUrl, GitError> {
        let bad = |message: &str| GitError::BadUrl {
            url: text.to_string(),
            message: message.to_string(),
        };
        let rest = text
            .strip_prefix("git+")
            .ok_or_else(|| bad("it does not start with `git+`"))?;
        let (rest, fragment) = match rest.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (rest, None),
        };
        let subdirectory = fragment.and_then(|f| {
            f.split('&')
                .find_map(|p| p.strip_prefix("subdirectory="))
                .map(str::to_string)
        });
        if let Some(sub) = &subdirectory {
            if sub.starts_with('/') || sub.split('/').any(|c| c == "..") {
                return Err(bad("`subdirectory=` must stay inside the repository"));
            }
        }
        let scheme_end = rest.find("://").ok_or_else(|| bad("no `://`"))?;
        let scheme = &rest[..scheme_end];
        if !matches!(scheme, "https" | "http" | "file" | "ssh") {
            return Err(bad(
                "only https, http, ssh and file repositories are fetched",
            ));
        }
        // `@REF` after the path (an `@` in the authority is a user name).
        let path_start = rest[scheme_end + 3..]
            .find('/')
            .map(|i| scheme_end + 3 + i)
            .unwrap_or(rest.len());
        let (repository, reference) = match rest[path_start..].rfind('@') {
            Some(at) => (
                rest[..path_start + at].to_string(),
                Some(rest[path_start + at + 1..].to_string()).filter(|r| !r.is_empty()),
            ),
            None => (rest.to_string(), None),
        };
        Ok(GitUrl {
            repository,
            reference,
            subdirectory,
        })
    }
}

fn is_commit_id(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn git(dir: Option<&Path>, args: &[&str], url: &str, doing: &str) -> Result<String, GitError> {
    let mut command = Command::new("git");
    if let Some(dir) = dir {
        command.arg("-C").arg(dir);
    }
    command
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("LC_ALL", "C");
    let output = command.output().map_err(|e| GitError::Git {
        url: url.to_string(),
        doing: doing.to_string(),
        message: format!("cannot run git: {e} (install git)"),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        return Err(GitError::Git {
            url: url.to_string(),
            doing: doing.to_string(),
            message: lines[lines.len().saturating_sub(6)..].join("\n"),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// What the self-contained `.git` of a build ([`add_metadata`]) carries that can change the
/// build beyond the checked-out files: the commit itself (setuptools-scm's `g<hash>` and
/// distance), and every tag of the repository cache `db` with the object it points at and, for
/// an annotated tag, the commit under it (versions come from tags: a tag added or moved gives
/// another version from the same tree). One text, for the build cache key.
pub fn build_state(db: &Path, commit: &str, url: &str) -> Result<String, GitError> {
    let tags = git(
        Some(db),
        &[
            "for-each-ref",
            "--sort=refname",
            "--format=%(refname) %(objectname) %(*objectname)",
            "refs/tags",
        ],
        url,
        "list tags",
    )?;
    Ok(format!("commit {commit}\n{tags}\n"))
}

/// Gives `tree` (a copy of the checkout of `commit`, without `.git`) a self-contained `.git`:
/// a clone of the repository cache `db` with all its branches and tags and no alternates
/// pointing outside, HEAD detached at `commit` and the index at its tree, so a build backend
/// that reads git metadata (setuptools-scm, versioneer) sees what pip's in-place build of
/// the checkout would. `origin` is the repository's real URL.
pub fn add_metadata(tree: &Path, db: &Path, commit: &str, origin: &str) -> Result<(), GitError> {
    let tmp = tree.with_extension("git-tmp");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GitError::Io { path, source }
    };
    let result = (|| {
        git(
            None,
            &[
                "clone",
                "--quiet",
                "--no-local",
                "--no-checkout",
                &db.to_string_lossy(),
                &tmp.to_string_lossy(),
            ],
            origin,
            "clone (for the build's .git)",
        )?;
        let dot_git = tree.join(".git");
        std::fs::rename(tmp.join(".git"), &dot_git).map_err(io(&dot_git))?;
        git(
            Some(tree),
            &["remote", "set-url", "origin", origin],
            origin,
            "remote",
        )?;
        git(
            Some(tree),
            &["update-ref", "--no-deref", "HEAD", commit],
            origin,
            "update-ref",
        )?;
        git(Some(tree), &["read-tree", commit], origin, "read-tree")?;
        // Refresh the index's file stats; a tree that differs (submodules) is no error here.
        let _ = git(
            Some(tree),
            &["update-index", "-q", "--refresh"],
            origin,
            "update-index",
        );
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// The short hash naming `url`'s folders in the cache.
fn url_key(url: &str) -> String {
    hex::encode(&Sha256::digest(url.as_bytes())[..12])
}

/// Fetches `url` into its cached bare repository and resolves `reference` (None: the
/// remote's HEAD) to a commit id. Offline: only what the cache has.
pub fn resolve(
    cache_dir: &Path,
    url: &GitUrl,
    offline: bool,
) -> Result<(PathBuf, String), GitError> {
    let repo = &url.repository;
    let db = cache_dir.join("git/db").join(url_key(repo));
    if !db.join("HEAD").is_file() {
        let tmp = cache_dir
            .join("git/db")
            .join(format!(".tmp-{}", crate::fsutil::unique_suffix()));
        std::fs::create_dir_all(&tmp).map_err(|source| GitError::Io {
            path: tmp.clone(),
            source,
        })?;
        git(Some(&tmp), &["init", "--bare", "--quiet"], repo, "init")?;
        if let Err(e) = std::fs::rename(&tmp, &db) {
            let _ = std::fs::remove_dir_all(&tmp);
            if !db.join("HEAD").is_file() {
                return Err(GitError::Io {
                    path: db.clone(),
                    source: e,
                });
            }
        }
    }
    let reference = url.reference.as_deref();
    if let Some(commit) = reference.filter(|r| is_commit_id(r)) {
        let have = |db: &Path| {
            git(
                Some(db),
                &["cat-file", "-e", &format!("{commit}^{{commit}}")],
                repo,
                "looking up the commit",
            )
            .is_ok()
        };
        if !have(&db) && !offline {
            git(
                Some(&db),
                &[
                    "fetch",
                    "--quiet",
                    "--force",
                    repo,
                    "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                repo,
                "fetch",
            )?;
            // A commit no branch or tag reaches: ask for it by id.
            if !have(&db) {
                let _ = git(
                    Some(&db),
                    &["fetch", "--quiet", repo, commit],
                    repo,
                    "fetch",
                );
            }
        }
        if !have(&db) {
            return Err(GitError::MissingRef {
                url: repo.clone(),
                reference: commit.to_string(),
            });
        }
        return Ok((db, commit.to_ascii_lowercase()));
    }
    if !offline {
        git(
            Some(&db),
            &[
                "fetch",
                "--quiet",
                "--force",
                "--prune",
                repo,
                "+HEAD:refs/comfypak/HEAD",
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
            repo,
            "fetch",
        )?;
    }
    let candidates: Vec<String> = match reference {
        None => vec!["refs/comfypak/HEAD".to_string()],
        Some(r) => vec![
            format!("refs/heads/{r}"),
            format!("refs/tags/{r}"),
            r.to_string(),
        ],
    };
    for candidate in &candidates {
        if let Ok(commit) = git(
            Some(&db),
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{candidate}^{{commit}}"),
            ],
            repo,
            "resolving the ref",
        ) {
            if is_commit_id(&commit) {
                return Ok((db, commit));
            }
        }
    }
    Err(GitError::MissingRef {
        url: repo.clone(),
        reference: reference.unwrap_or("HEAD").to_string(),
    })
}

/// The checkout of `commit` (with its submodules) from the cached repository `db`, made once
/// per (URL, commit): `git/checkouts/<url>/<commit>`.
pub fn checkout(
    cache_dir: &Path,
    url: &GitUrl,
    db: &Path,
    commit: &str,
) -> Result<PathBuf, GitError> {
    let repo = &url.repository;
    let parent = cache_dir.join("git/checkouts").join(url_key(repo));
    let dest = parent.join(commit);
    if dest.join(".comfypak-complete").is_file() {
        return Ok(dest);
    }
    std::fs::create_dir_all(&parent).map_err(|source| GitError::Io {
        path: parent.clone(),
        source,
    })?;
    let tmp = parent.join(format!(".tmp-{}", crate::fsutil::unique_suffix()));
    let result = (|| {
        let db_text = db.to_string_lossy().to_string();
        let tmp_text = tmp.to_string_lossy().to_string();
        git(
            None,
            &[
                "clone",
                "--quiet",
                "--no-checkout",
                "--shared",
                &db_text,
                &tmp_text,
            ],
            repo,
            "clone",
        )?;
        git(
            Some(&tmp),
            &["checkout", "--quiet", "--detach", commit],
            repo,
            "checkout",
        )?;
        // Submodule URLs relative to the repository are relative to its real URL.
        git(
            Some(&tmp),
            &["remote", "set-url", "origin", repo],
            repo,
            "remote",
        )?;
        git(
            Some(&tmp),
            &["submodule", "update", "--init", "--recursive", "--quiet"],
            repo,
            "submodule update",
        )?;
        std::fs::write(tmp.join(".comfypak-complete"), commit).map_err(|source| GitError::Io {
            path: tmp.clone(),
            source,
        })?;
        match std::fs::rename(&tmp, &dest) {
            Ok(()) => Ok(()),
            Err(_) if dest.join(".comfypak-complete").is_file() => Ok(()),
            Err(source) => Err(GitError::Io {
                path: dest.clone(),
                source,
            }),
        }
    })();
    if tmp.exists() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map(|()| dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls() {
        let u =
            GitUrl::parse("git+https://git.example/o/r.git@v1.2#egg=r&subdirectory=py").unwrap();
        assert_eq!(u.repository, "https://git.example/o/r.git");
        assert_eq!(u.reference.as_deref(), Some("v1.2"));
        assert_eq!(u.subdirectory.as_deref(), Some("py"));
        let u = GitUrl::parse("git+https://user@git.example/o/r.git").unwrap();
        assert_eq!(u.repository, "https://user@git.example/o/r.git");
        assert_eq!(u.reference, None);
        assert!(GitUrl::parse("git+ftp://x/y").is_err());
        assert!(GitUrl::parse("git+https://x/y#subdirectory=../z").is_err());
    }
}
