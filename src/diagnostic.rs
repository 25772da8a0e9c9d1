//! What the user can do about an error: each library error type supplies its own `help()`,
//! and [`help_of`] finds it for any error of a chain, so the command line prints every help
//! once, after the error and its causes (`cli::render_error`).
//!
//! Must not: print, choose exit codes, or put help text into an error's `Display`.

use std::error::Error;

/// The help of `err` when its type is one of the library's error types and it has one.
pub fn help_of(err: &(dyn Error + 'static)) -> Option<String> {
    macro_rules! first_help {
        ($($ty:ty),* $(,)?) => {
            $(
                if let Some(e) = err.downcast_ref::<$ty>() {
                    return e.help().map(|h| h.to_string());
                }
                // Errors shared between tasks travel as `Arc<E>`; large ones as `Box<E>`.
                if let Some(e) = err.downcast_ref::<std::sync::Arc<$ty>>() {
                    return e.help().map(|h| h.to_string());
                }
                if let Some(e) = err.downcast_ref::<Box<$ty>>() {
                    return e.help().map(|h| h.to_string());
                }
            )*
        };
    }
    first_help!(
        crate::http::HttpError,
        crate::index::client::IndexError,
        crate::index::definition::IndexDefError,
        crate::registry::RegistryError,
        crate::registry::pull::PullError,
        crate::pack::push::PushError,
        crate::fetch::FetchError,
        crate::fetch::select::SelectError,
        crate::build::OriginError,
        crate::cache::CacheError,
        crate::prune::PruneError,
        crate::pak::PakError,
        crate::lock::LockError,
        crate::lock::SummaryError,
        crate::stack::StackError,
        crate::install::InstallError,
        crate::install::wheel::WheelError,
        crate::pack::PackError,
        crate::pack::tar::TreeError,
        crate::resolve::ResolveError,
        crate::resolve::backend::BackendSelectError,
        crate::resolve::backend::BackendIndexError,
        crate::cuda::NoBuild,
        crate::resolve::layers::LayerError,
        crate::resolve::to_lock::ToLockError,
        crate::resolve::to_lock::StackResolveError,
        crate::runtime::RuntimeError,
        crate::build::BuildError,
    );
    None
}

/// The error's message followed by the help of every error in its chain, one
/// `help: …` line each: what a user would read, without the causes (for tests and logs).
pub fn with_help(err: &(dyn Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next: Option<&(dyn Error + 'static)> = Some(err);
    let mut seen = Vec::new();
    while let Some(e) = next {
        if let Some(help) = help_of(e) {
            if !seen.contains(&help) {
                out.push_str("\nhelp: ");
                out.push_str(&help);
                seen.push(help);
            }
        }
        next = e.source();
    }
    out
}
