//! Helpers shared by the resolver test files: package names, a runtime, an index client
//! with short retries for loopback fixture servers, and index definition files.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::time::Duration;

use comfypak::cache::Cache;
use comfypak::http::{HttpClient, HttpSettings};
use comfypak::index::client::{CachePolicy, IndexClient};
use pep508_rs::PackageName;

pub fn name(n: &str) -> PackageName {
    PackageName::new(n.to_string()).unwrap()
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An index client caching under `cache`, retrying quickly, without netrc.
pub fn client(cache: &Path) -> IndexClient {
    let http = HttpSettings {
        backoff: Duration::from_millis(10),
        read_timeout: Duration::from_secs(10),
        netrc: None,
        ..HttpSettings::default()
    };
    IndexClient::new(
        HttpClient::new(http).unwrap(),
        Cache::new(cache),
        CachePolicy::default(),
    )
}

/// `<dir>/indexes/<name>.toml` for each (name, URL, kind), as a stack's `index-dir` holds
/// them; returns that folder.
pub fn write_index_definitions(dir: &Path, definitions: &[(&str, &str, &str)]) -> PathBuf {
    let indexes = dir.join("indexes");
    std::fs::create_dir_all(&indexes).unwrap();
    for (index, url, kind) in definitions {
        std::fs::write(
            indexes.join(format!("{index}.toml")),
            format!("name = \"{index}\"\nurl = \"{url}\"\nkind = \"{kind}\"\n"),
        )
        .unwrap();
    }
    indexes
}

/// Copies the folder `from` to `to` (created), with its subfolders (the shipped `pak/` holds
/// the `runtime-config/` folder of `image.toml`).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
