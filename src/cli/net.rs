//! Options shared by every command that reads indexes: cache location and policy, index
//! URL overrides, concurrency; and the async runtime those commands run on.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::cache::Cache;
use crate::http::{HttpClient, HttpSettings};
use crate::index::client::{CachePolicy, IndexClient};
use crate::index::definition::{parse_override, IndexDefs};

#[derive(Debug, Clone, Args)]
pub struct NetworkArgs {
    /// Point an index at another URL (a mirror, a file:// copy, a fixture server):
    /// NAME=URL, repeatable.
    #[arg(long = "index", value_name = "NAME=URL")]
    pub index: Vec<String>,
    /// Cache folder (default: COMFYPAK_CACHE_DIR, else $XDG_CACHE_HOME/comfypak).
    #[arg(long, env = "COMFYPAK_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Use only the cache; never touch the network.
    #[arg(long)]
    pub offline: bool,
    /// Revalidate every cached index page.
    #[arg(long)]
    pub refresh: bool,
    /// Seconds a page from a server that sends no cache validators is reused.
    #[arg(long, default_value_t = 600)]
    pub page_freshness: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

impl Default for NetworkArgs {
    /// The same values the command line gives when no flag is passed.
    fn default() -> Self {
        NetworkArgs {
            index: Vec::new(),
            cache_dir: None,
            offline: false,
            refresh: false,
            page_freshness: 600,
            concurrency: 64,
        }
    }
}

impl NetworkArgs {
    /// Applies `--index NAME=URL` overrides.
    /// Applies `--index NAME=URL` overrides, then warns about plain-http indexes.
    pub fn apply_overrides(&self, defs: &mut IndexDefs) -> anyhow::Result<()> {
        for text in &self.index {
            let (name, url) = parse_override(text, "--index")?;
            defs.override_url(&name, &url, "--index")?;
        }
        for warning in defs.plain_http_warnings() {
            eprintln!("warning: {warning}");
        }
        Ok(())
    }

    pub fn client(&self) -> anyhow::Result<IndexClient> {
        let http = HttpClient::new(HttpSettings {
            concurrency: self.concurrency.max(1),
            ..HttpSettings::default()
        })?;
        let cache = Cache::new(Cache::default_root(self.cache_dir.as_deref()));
        Ok(IndexClient::new(
            http,
            cache,
            CachePolicy {
                offline: self.offline,
                refresh: self.refresh,
                freshness: Duration::from_secs(self.page_freshness),
            },
        ))
    }
}

/// The multi-threaded runtime network commands run on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
