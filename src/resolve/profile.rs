//! Where one resolution's time went, for `comfypak resolve --profile` and for benchmarks.
//!
//! Owns the record the fetcher keeps while it works ([`TraceLog`]: one node per index page and
//! per METADATA read, with the requests behind it, the node that caused it, and the solver's
//! waits on it) and the summary made from it ([`ResolveProfile`]): requests and bytes per
//! phase, METADATA reads of very large wheels, the longest chain of dependent fetches that the
//! solver waited on, the solver's busy and waiting time, and the time with no request in
//! flight. Must not: change what is fetched or chosen, or print anything itself (the CLI
//! prints [`ResolveProfile`]'s `Display`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use pep440_rs::Version;
use pep508_rs::PackageName;

use crate::index::trace::{FetchTrace, RequestKind};

/// A wheel at least this large counts as very large (its METADATA sits behind a long
/// central directory or at the end of gigabytes).
pub const LARGE_WHEEL: u64 = 100 * 1024 * 1024;

/// What a node fetched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum NodeKey {
    Page(PackageName),
    Metadata(PackageName, Version),
}

impl fmt::Display for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeKey::Page(name) => write!(f, "page {name}"),
            NodeKey::Metadata(name, version) => write!(f, "METADATA {name} {version}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    key: NodeKey,
    /// The node whose result caused this one (the METADATA that named a dependency, or the
    /// page a METADATA read needs); None: the pak files or the solver.
    parent: Option<usize>,
    finished: Option<Instant>,
    trace: FetchTrace,
}

/// The fetcher's record of one resolution.
#[derive(Debug)]
pub(crate) struct TraceLog {
    start: Instant,
    nodes: Vec<Node>,
    ids: HashMap<NodeKey, usize>,
    /// The solver's waits: on which node, from when, until when.
    waits: Vec<(usize, Instant, Instant)>,
}

impl TraceLog {
    pub fn new(start: Instant) -> Self {
        TraceLog {
            start,
            nodes: Vec::new(),
            ids: HashMap::new(),
            waits: Vec::new(),
        }
    }

    /// The node of `key`, made now (caused by `parent`) if it is new.
    pub fn node(&mut self, key: NodeKey, parent: Option<usize>) -> usize {
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let id = self.nodes.len();
        self.nodes.push(Node {
            key: key.clone(),
            parent,
            finished: None,
            trace: FetchTrace::default(),
        });
        self.ids.insert(key, id);
        id
    }

    /// The node of `key`, if there is one.
    pub fn id(&self, key: &NodeKey) -> Option<usize> {
        self.ids.get(key).copied()
    }

    /// The node's fetch is over.
    pub fn finish(&mut self, id: usize, trace: FetchTrace) {
        if let Some(node) = self.nodes.get_mut(id) {
            node.finished = Some(Instant::now());
            node.trace = trace;
        }
    }

    /// The solver waited on node `id` from `since` until now.
    pub fn waited(&mut self, id: usize, since: Instant) {
        self.waits.push((id, since, Instant::now()));
    }

    /// The summary, once the solver is done (`solver` is how long it ran).
    pub fn profile(&self, solver: Duration) -> ResolveProfile {
        let start = self.start;
        let at = |t: Instant| t.saturating_duration_since(start);
        let mut phases: BTreeMap<RequestKind, PhaseStats> = BTreeMap::new();
        let mut pages = PageStats::default();
        let mut metadata = MetadataStats::default();
        let mut intervals = Vec::new();
        let mut large = Vec::new();
        for node in &self.nodes {
            for request in &node.trace.requests {
                let phase = phases.entry(request.kind).or_default();
                phase.requests += 1;
                phase.bytes += request.bytes;
                phase.time += request.end.saturating_duration_since(request.start);
                intervals.push((at(request.start), at(request.end)));
            }
            match &node.key {
                NodeKey::Page(_) => {
                    pages.total += 1;
                    if node.trace.from_cache {
                        pages.from_cache += 1;
                    }
                }
                NodeKey::Metadata(..) => {
                    metadata.total += 1;
                    if node.trace.from_cache {
                        metadata.from_cache += 1;
                    }
                    let size = node.trace.file_size.unwrap_or(0);
                    if size >= LARGE_WHEEL {
                        let (first, last) = span_of(&node.trace);
                        large.push(LargeRead {
                            what: node.key.to_string(),
                            wheel_size: size,
                            requests: node
                                .trace
                                .requests
                                .iter()
                                .map(|r| (r.kind, r.bytes))
                                .collect(),
                            time: last.saturating_duration_since(first),
                        });
                    }
                }
            }
        }
        large.sort_by_key(|read| std::cmp::Reverse(read.wheel_size));
        let mut biggest_pages: Vec<(String, u64, Duration)> = self
            .nodes
            .iter()
            .filter(|n| matches!(n.key, NodeKey::Page(_)))
            .filter_map(|n| {
                let request = n.trace.requests.first()?;
                Some((
                    n.key.to_string(),
                    n.trace.bytes(),
                    request.end.saturating_duration_since(request.start),
                ))
            })
            .collect();
        biggest_pages.sort_by_key(|page| std::cmp::Reverse(page.1));
        biggest_pages.truncate(5);

        let waiting: Duration = self
            .waits
            .iter()
            .map(|(_, from, to)| to.saturating_duration_since(*from))
            .sum();
        let mut longest_waits: Vec<(String, Duration)> = self
            .waits
            .iter()
            .filter_map(|(id, from, to)| {
                Some((
                    self.nodes.get(*id)?.key.to_string(),
                    to.saturating_duration_since(*from),
                ))
            })
            .collect();
        longest_waits.sort_by_key(|wait| std::cmp::Reverse(wait.1));
        longest_waits.truncate(5);

        let chain = self.critical_chain();
        let in_flight = union_len(&mut intervals);
        ResolveProfile {
            solver,
            solver_waiting: waiting.min(solver),
            solver_waits: self
                .waits
                .iter()
                .filter(|(_, from, to)| to.saturating_duration_since(*from) > WAITED)
                .count(),
            network_busy: in_flight.min(solver),
            phases,
            pages,
            metadata,
            biggest_pages,
            large,
            longest_waits,
            chain,
        }
    }

    /// The chain of fetches behind the solver's last real wait: from that node up through the
    /// nodes that caused it.
    fn critical_chain(&self) -> Vec<ChainLink> {
        let last = self
            .waits
            .iter()
            .filter(|(_, from, to)| to.saturating_duration_since(*from) > WAITED)
            .max_by_key(|(_, _, to)| *to)
            .map(|(id, _, _)| *id)
            .or_else(|| {
                self.nodes
                    .iter()
                    .enumerate()
                    .filter_map(|(id, n)| Some((id, n.finished?)))
                    .max_by_key(|(_, finished)| *finished)
                    .map(|(id, _)| id)
            });
        let mut chain = Vec::new();
        let mut next = last;
        while let Some(id) = next {
            let Some(node) = self.nodes.get(id) else {
                break;
            };
            if chain.len() > self.nodes.len() {
                break;
            }
            let (first, end) = span_of(&node.trace);
            let end = node.finished.unwrap_or(end);
            let ready = node
                .parent
                .and_then(|p| self.nodes.get(p))
                .and_then(|p| p.finished);
            chain.push(ChainLink {
                what: node.key.to_string(),
                requests: node.trace.requests.len(),
                bytes: node.trace.bytes(),
                from_cache: node.trace.from_cache,
                start: first.saturating_duration_since(self.start),
                end: end.saturating_duration_since(self.start),
                gap: match (ready, node.trace.requests.first()) {
                    (Some(ready), Some(_)) => first.saturating_duration_since(ready),
                    _ => Duration::ZERO,
                },
            });
            next = node.parent;
        }
        chain.reverse();
        chain
    }
}

/// A wait shorter than this is the solver finding a result already there.
const WAITED: Duration = Duration::from_millis(1);

/// The first request's start and the last one's end (now, when there was none).
fn span_of(trace: &FetchTrace) -> (Instant, Instant) {
    let now = Instant::now();
    let first = trace.requests.iter().map(|r| r.start).min().unwrap_or(now);
    let last = trace.requests.iter().map(|r| r.end).max().unwrap_or(first);
    (first, last)
}

/// The length of the union of the intervals.
fn union_len(intervals: &mut [(Duration, Duration)]) -> Duration {
    intervals.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(Duration, Duration)> = None;
    for &(start, end) in intervals.iter() {
        match &mut current {
            Some((_, cur_end)) if start <= *cur_end => *cur_end = (*cur_end).max(end),
            _ => {
                if let Some((s, e)) = current {
                    total += e.saturating_sub(s);
                }
                current = Some((start, end));
            }
        }
    }
    if let Some((s, e)) = current {
        total += e.saturating_sub(s);
    }
    total
}

/// Requests of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhaseStats {
    pub requests: usize,
    pub bytes: u64,
    /// Summed over the requests (they overlap).
    pub time: Duration,
}

/// Index pages: how many the resolution needed, how many the cache gave without a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageStats {
    pub total: usize,
    pub from_cache: usize,
}

/// METADATA reads started, and how many the cache answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataStats {
    pub total: usize,
    pub from_cache: usize,
}

/// The METADATA read of a very large wheel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LargeRead {
    pub what: String,
    pub wheel_size: u64,
    /// Each request's kind and body bytes.
    pub requests: Vec<(RequestKind, u64)>,
    /// From the first request's start to the last one's end.
    pub time: Duration,
}

/// One fetch of the critical chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    pub what: String,
    pub requests: usize,
    pub bytes: u64,
    pub from_cache: bool,
    /// First request's start and the fetch's end, since the resolution began.
    pub start: Duration,
    pub end: Duration,
    /// From the moment the fetch that caused it ended to its first request (queueing,
    /// parsing, the solver asking late).
    pub gap: Duration,
}

/// Where one resolution's time went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveProfile {
    /// The solver's run, from its start to its answer (the resolution's wall time but for
    /// reading the inputs and building the lock).
    pub solver: Duration,
    /// How long the solver was blocked on pages and METADATA.
    pub solver_waiting: Duration,
    /// How many times it waited more than a millisecond.
    pub solver_waits: usize,
    /// The time with at least one request in flight.
    pub network_busy: Duration,
    pub phases: BTreeMap<RequestKind, PhaseStats>,
    pub pages: PageStats,
    pub metadata: MetadataStats,
    /// The five largest pages: what, bytes, request time.
    pub biggest_pages: Vec<(String, u64, Duration)>,
    pub large: Vec<LargeRead>,
    /// The five longest solver waits.
    pub longest_waits: Vec<(String, Duration)>,
    pub chain: Vec<ChainLink>,
}

impl ResolveProfile {
    /// Requests over all phases.
    pub fn requests(&self) -> usize {
        self.phases.values().map(|p| p.requests).sum()
    }

    /// Requests along the critical chain.
    pub fn chain_requests(&self) -> usize {
        self.chain.iter().map(|l| l.requests).sum()
    }
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn kib(bytes: u64) -> String {
    if bytes >= 10 * 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

impl fmt::Display for ResolveProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let busy = self.solver.saturating_sub(self.solver_waiting);
        writeln!(
            f,
            "solver: {} in all: {} working, {} blocked on the network ({} waits over 1 ms)",
            ms(self.solver),
            ms(busy),
            ms(self.solver_waiting),
            self.solver_waits
        )?;
        writeln!(
            f,
            "network: {} requests, {} with a request in flight, {} with none",
            self.requests(),
            ms(self.network_busy),
            ms(self.solver.saturating_sub(self.network_busy))
        )?;
        writeln!(
            f,
            "pages: {} needed, {} from the cache without a request; METADATA: {} read, {} from the cache",
            self.pages.total, self.pages.from_cache, self.metadata.total, self.metadata.from_cache
        )?;
        for (kind, phase) in &self.phases {
            writeln!(
                f,
                "  {:<26} {:>5} requests {:>12}  {:>9} summed",
                kind.label(),
                phase.requests,
                kib(phase.bytes),
                ms(phase.time)
            )?;
        }
        if !self.biggest_pages.is_empty() {
            writeln!(f, "largest pages:")?;
            for (what, bytes, time) in &self.biggest_pages {
                writeln!(f, "  {what:<40} {:>12} {:>9}", kib(*bytes), ms(*time))?;
            }
        }
        writeln!(
            f,
            "METADATA of very large wheels (>= {}): {}",
            kib(LARGE_WHEEL),
            self.large.len()
        )?;
        for read in &self.large {
            let requests: Vec<String> = read
                .requests
                .iter()
                .map(|(kind, bytes)| format!("{} {}", kind.label(), kib(*bytes)))
                .collect();
            writeln!(
                f,
                "  {:<40} wheel {:>10}: {} request(s) in {}: {}",
                read.what,
                kib(read.wheel_size),
                read.requests.len(),
                ms(read.time),
                requests.join(", ")
            )?;
        }
        if !self.longest_waits.is_empty() {
            writeln!(f, "longest solver waits:")?;
            for (what, time) in &self.longest_waits {
                writeln!(f, "  {what:<40} {:>9}", ms(*time))?;
            }
        }
        writeln!(
            f,
            "critical chain (the fetches behind the solver's last wait): {} fetches, {} requests",
            self.chain.len(),
            self.chain_requests()
        )?;
        for link in &self.chain {
            let source = if link.from_cache {
                "cache".to_string()
            } else {
                format!("{} req, {}", link.requests, kib(link.bytes))
            };
            writeln!(
                f,
                "  {:>6} .. {:>6}  {:<40} {:<22} after a {} gap",
                link.start.as_millis(),
                link.end.as_millis(),
                link.what,
                source,
                ms(link.gap)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_of_overlapping_intervals() {
        let d = Duration::from_millis;
        let mut intervals = vec![(d(0), d(10)), (d(5), d(20)), (d(30), d(40)), (d(35), d(36))];
        assert_eq!(union_len(&mut intervals), d(30));
        assert_eq!(union_len(&mut []), Duration::ZERO);
    }
}
