//! Flags shared by every command that reads indexes or the cache: index URL overrides, cache
//! location and policy, concurrency. They map to [`NetworkOptions`], whose defaults they use.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::build::{NetworkOptions, Session, DEFAULT_CONCURRENCY, DEFAULT_PAGE_FRESHNESS_SECS};

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
    #[arg(long, default_value_t = DEFAULT_PAGE_FRESHNESS_SECS)]
    pub page_freshness: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
}

impl NetworkArgs {
    pub fn options(&self) -> NetworkOptions {
        NetworkOptions {
            index_overrides: self.index.clone(),
            cache_dir: self.cache_dir.clone(),
            offline: self.offline,
            refresh: self.refresh,
            page_freshness: Duration::from_secs(self.page_freshness),
            concurrency: self.concurrency.max(1),
        }
    }

    /// The session (runtime, HTTP client, cache) a command runs its stages in.
    pub fn session(&self) -> anyhow::Result<Session> {
        Ok(Session::new(self.options())?)
    }
}
