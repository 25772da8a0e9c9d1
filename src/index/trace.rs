//! What the network did for one index page or one METADATA read: each request's kind, bytes
//! and start and end times, so `resolve --profile` can say where a resolution's time went.
//!
//! Owns only the record ([`FetchTrace`], [`RequestTrace`]); the index client fills it as it
//! goes. It must not decide anything, retry anything, or print anything.

use std::time::Instant;

/// Which kind of request it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestKind {
    /// An index page, fetched in full.
    Page,
    /// An index page revalidated: the server answered 304 Not Modified.
    PageNotModified,
    /// A PEP 658 `.metadata` file.
    MetadataFile,
    /// The first range request over a wheel's tail.
    RangeTail,
    /// A further range request: the central directory reached back beyond the tail.
    RangeDirectory,
    /// A further range request: the METADATA member itself, outside the bytes read so far.
    RangeMember,
    /// The whole wheel (the server ignored the range).
    Whole,
}

impl RequestKind {
    /// A short label for reports.
    pub fn label(self) -> &'static str {
        match self {
            RequestKind::Page => "page",
            RequestKind::PageNotModified => "page (304)",
            RequestKind::MetadataFile => "PEP 658 file",
            RequestKind::RangeTail => "range: tail",
            RequestKind::RangeDirectory => "range: central directory",
            RequestKind::RangeMember => "range: METADATA member",
            RequestKind::Whole => "whole wheel",
        }
    }
}

/// One request: what it was, how many body bytes came back, when it started and ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTrace {
    pub kind: RequestKind,
    pub bytes: u64,
    pub start: Instant,
    pub end: Instant,
}

/// The requests behind one page or one METADATA read. Empty when the cache answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchTrace {
    pub requests: Vec<RequestTrace>,
    /// The cache answered without asking the server.
    pub from_cache: bool,
    /// For a METADATA read by ranges: the wheel's size (from Content-Range).
    pub file_size: Option<u64>,
}

impl FetchTrace {
    /// Records a request that started at `start` and has just ended.
    pub fn record(&mut self, kind: RequestKind, bytes: usize, start: Instant) {
        self.requests.push(RequestTrace {
            kind,
            bytes: bytes as u64,
            start,
            end: Instant::now(),
        });
    }

    /// Body bytes over all requests.
    pub fn bytes(&self) -> u64 {
        self.requests.iter().map(|r| r.bytes).sum()
    }
}
