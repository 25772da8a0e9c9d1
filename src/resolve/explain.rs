//! Conflicts in plain language: PubGrub's derivation tree turned into a first line that names
//! the pak file and line of each root requirement involved and what clashes with it, the
//! facts behind it, what to relax, and (below that) PubGrub's own derivation as a fallback.
//!
//! Must not: decide anything about the resolution; it only reads the tree, the pak lines
//! and what the solver recorded (dependency texts, the candidates it saw).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use pep440_rs::Version;
use pep508_rs::PackageName;
use pubgrub::{DefaultStringReporter, DerivationTree, External, Ranges, Reporter};

use super::candidates::{ProjectCandidates, Unusable};
use super::provider::{Pkg, RootSource, SolveInputs, SolveRecord};
use crate::target::Target;

pub(crate) type Tree = DerivationTree<Pkg, Ranges<Version>, String>;

pub(crate) struct ExplainContext<'a> {
    pub target: &'a Target,
    /// Pak locations are shown relative to this folder (the stack's).
    pub base_dir: &'a Path,
    pub inputs: &'a SolveInputs,
    pub record: &'a SolveRecord,
    pub pages: &'a dyn Fn(&PackageName) -> Option<Arc<ProjectCandidates>>,
    pub prerelease: bool,
}

/// One thing the derivation rests on.
enum Fact {
    /// Pak lines need `package` (constraints applied).
    Root { name: PackageName },
    /// `parent` (at the versions described) needs `text`.
    Dependency {
        parent: Pkg,
        parent_versions: String,
        child: PackageName,
        text: String,
    },
    /// No usable version of `name` in `range`.
    NoVersions {
        name: PackageName,
        range: Ranges<Version>,
    },
    /// `package` at `range` cannot be used: `reason`.
    Unavailable {
        package: Pkg,
        range: Ranges<Version>,
        reason: String,
    },
}

/// The whole message. `tree` is PubGrub's derivation as it came (its "no versions" leaves
/// say why); `collapsed` is the same with those leaves folded in, for PubGrub's own report.
/// The explanation of a conflict, and what the user can do (one help per line of advice).
pub(crate) fn explain(
    tree: &Tree,
    collapsed: &Tree,
    cx: &ExplainContext<'_>,
) -> (String, Vec<String>) {
    let mut externals = Vec::new();
    collect_externals(tree, &mut externals);
    let mut facts: Vec<Fact> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for external in externals {
        let Some(fact) = to_fact(external, cx) else {
            continue;
        };
        if seen.insert(fact_key(&fact)) {
            facts.push(fact);
        }
    }

    // "No other version of X exists" leaves, for a package whose versions the facts already
    // name as a parent, are PubGrub's bookkeeping: leave them out.
    let parents: BTreeSet<PackageName> = facts
        .iter()
        .filter_map(|f| match f {
            Fact::Dependency { parent, .. } => parent.base().cloned(),
            _ => None,
        })
        .collect();
    facts.retain(|f| !matches!(f, Fact::NoVersions { name, .. } if parents.contains(name)));
    // Pak lines first, then what packages need, then what is missing.
    facts.sort_by_key(|f| match f {
        Fact::Root { .. } => 0,
        Fact::Dependency { .. } => 1,
        Fact::NoVersions { .. } | Fact::Unavailable { .. } => 2,
    });

    let headline = headline(&facts, cx);
    let mut out = format!("cannot resolve the stack for {}: {headline}", cx.target);
    let bullets: Vec<String> = facts.iter().flat_map(|f| describe_fact(f, cx)).collect();
    if !bullets.is_empty() {
        out.push_str("\n  because:");
        for bullet in &bullets {
            out.push_str(&format!("\n    - {bullet}"));
        }
    }
    let help = help_lines(&facts, cx);
    let derivation = DefaultStringReporter::report(collapsed);
    out.push_str("\n\nPubGrub's derivation:");
    for line in derivation.lines() {
        out.push_str(&format!("\n    {line}"));
    }
    (out, help)
}

/// The ABI-coupled projects (torch extensions: some build names a torch series or C++ ABI)
/// that take part in the conflict; torch itself excluded.
pub(crate) fn coupled_packages(
    tree: &Tree,
    torch: &PackageName,
    pages: &dyn Fn(&PackageName) -> Option<Arc<ProjectCandidates>>,
) -> BTreeSet<PackageName> {
    let mut externals = Vec::new();
    collect_externals(tree, &mut externals);
    let mut named: BTreeSet<PackageName> = BTreeSet::new();
    for external in externals {
        match external {
            External::NotRoot(..) => {}
            External::FromDependencyOf(parent, _, child, _) => {
                named.extend(parent.base().cloned());
                named.extend(child.base().cloned());
            }
            External::NoVersions(package, _) | External::Custom(package, _, _) => {
                named.extend(package.base().cloned());
            }
        }
    }
    named
        .into_iter()
        .filter(|name| name != torch)
        .filter(|name| {
            pages(name).is_some_and(|page| {
                page.versions.iter().any(|v| {
                    v.coupling
                        .as_ref()
                        .is_some_and(super::candidates::VersionCoupling::ties_torch)
                })
            })
        })
        .collect()
}

fn collect_externals<'t>(
    tree: &'t Tree,
    out: &mut Vec<&'t External<Pkg, Ranges<Version>, String>>,
) {
    match tree {
        DerivationTree::External(external) => out.push(external),
        DerivationTree::Derived(derived) => {
            collect_externals(&derived.cause1, out);
            collect_externals(&derived.cause2, out);
        }
    }
}

fn fact_key(fact: &Fact) -> String {
    match fact {
        Fact::Root { name } => format!("root {name}"),
        Fact::Dependency {
            parent,
            parent_versions,
            child,
            ..
        } => format!("dep {parent} {parent_versions} {child}"),
        Fact::NoVersions { name, range } => format!("none {name} {range}"),
        Fact::Unavailable { package, range, .. } => format!("unavailable {package} {range}"),
    }
}

fn to_fact(
    external: &External<Pkg, Ranges<Version>, String>,
    cx: &ExplainContext<'_>,
) -> Option<Fact> {
    match external {
        External::NotRoot(..) => None,
        External::FromDependencyOf(Pkg::Root, _, child, _) => Some(Fact::Root {
            name: child.base()?.clone(),
        }),
        External::FromDependencyOf(parent, parent_range, child, _) => {
            let child_name = child.base()?;
            if let Pkg::Extra(base, _) = parent {
                if base == child_name {
                    // The virtual extra package's tie to its base: plumbing, not a fact.
                    return None;
                }
            }
            let recorded: Vec<(&Version, &String)> = cx
                .record
                .edges
                .get(parent)
                .map(|versions| {
                    versions
                        .iter()
                        .filter(|(version, _)| parent_range.contains(version))
                        .filter_map(|(version, deps)| {
                            deps.iter()
                                .find(|(dep, _)| dep.base() == Some(child_name))
                                .map(|(_, text)| (version, text))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let text = recorded
                .last()
                .map(|(_, text)| (*text).clone())
                .unwrap_or_else(|| format!("{child_name}{}", range_text(&Ranges::full())));
            let versions: Vec<&Version> = recorded.iter().map(|(v, _)| *v).collect();
            Some(Fact::Dependency {
                parent: parent.clone(),
                parent_versions: versions_text(&versions, parent_range),
                child: child_name.clone(),
                text,
            })
        }
        External::NoVersions(package, range) => Some(Fact::NoVersions {
            name: package.base()?.clone(),
            range: range.clone(),
        }),
        External::Custom(package, range, reason) => Some(Fact::Unavailable {
            package: package.clone(),
            range: range.clone(),
            reason: reason.clone(),
        }),
    }
}

/// "2.11.0+cu130", "2.10.0+cu130 and 2.11.0+cu130", "3 versions from 1.0 to 1.2".
fn versions_text(versions: &[&Version], range: &Ranges<Version>) -> String {
    match versions {
        [] => range_text(range),
        [one] => one.to_string(),
        [a, b] => format!("{a} and {b}"),
        [first, .., last] => format!("{} versions from {first} to {last}", versions.len()),
    }
}

/// A range in PEP 440 words: `==2.11.0` for a version with its local builds, `any version`.
pub(crate) fn range_text(range: &Ranges<Version>) -> String {
    if range == &Ranges::full() {
        return " (any version)".to_string();
    }
    if range.is_empty() {
        return " (no version)".to_string();
    }
    let mut parts = Vec::new();
    for (low, high) in range.iter() {
        let part = match (low, high) {
            (Bound::Included(a), Bound::Included(b)) if a == b => format!("=={a}"),
            (Bound::Included(a), Bound::Excluded(b))
                if !a.is_local() && b == &a.clone().with_post(Some(0)).with_dev(Some(0)) =>
            {
                format!("=={a}")
            }
            (Bound::Unbounded, Bound::Unbounded) => "*".to_string(),
            (low, high) => {
                let mut words = Vec::new();
                match low {
                    Bound::Included(v) => words.push(format!(">={v}")),
                    Bound::Excluded(v) => words.push(format!(">{v}")),
                    Bound::Unbounded => {}
                }
                match high {
                    Bound::Included(v) => words.push(format!("<={v}")),
                    Bound::Excluded(v) => words.push(format!("<{v}")),
                    Bound::Unbounded => {}
                }
                words.join(",")
            }
        };
        parts.push(part);
    }
    parts.join(" or ")
}

fn location_text(source: &RootSource, cx: &ExplainContext<'_>) -> String {
    let file = source
        .location
        .file
        .strip_prefix(cx.base_dir)
        .unwrap_or(&source.location.file);
    format!("{}:{}", file.display(), source.location.line)
}

/// "pak4.txt:12 needs numpy<2" for each pak line of `name`.
fn root_needs(name: &PackageName, cx: &ExplainContext<'_>) -> Vec<String> {
    let mut out: Vec<String> = cx
        .inputs
        .root_sources
        .get(name)
        .into_iter()
        .flatten()
        .map(|s| format!("{} needs {}", location_text(s, cx), s.text))
        .collect();
    if let Some((_, constraints)) = cx.inputs.constraints.get(name) {
        for c in constraints {
            out.push(format!(
                "{} constrains {} (constraint)",
                location_text(c, cx),
                c.text
            ));
        }
    }
    out
}

/// " (pak1.txt:4)" when pak lines name the package, else " (needed by X)" when known.
fn provenance(name: &PackageName, cx: &ExplainContext<'_>) -> String {
    if let Some(sources) = cx.inputs.root_sources.get(name) {
        let places: Vec<String> = sources.iter().map(|s| location_text(s, cx)).collect();
        return format!(" ({})", places.join(", "));
    }
    let mut parents: BTreeSet<String> = BTreeSet::new();
    for (parent, versions) in &cx.record.edges {
        if matches!(parent, Pkg::Root) {
            continue;
        }
        if versions
            .values()
            .any(|deps| deps.iter().any(|(dep, _)| dep.base() == Some(name)))
        {
            if let Some(base) = parent.base() {
                if base != name {
                    parents.insert(base.to_string());
                }
            }
        }
    }
    if parents.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = parents.into_iter().take(3).collect();
        format!(" (needed by {})", list.join(", "))
    }
}

/// ", constrained by lib>5 (constraints.txt:1)" when constraint lines restrict `child`.
fn constraint_note(child: &PackageName, cx: &ExplainContext<'_>) -> String {
    let Some((_, sources)) = cx.inputs.constraints.get(child) else {
        return String::new();
    };
    let notes: Vec<String> = sources
        .iter()
        .map(|c| format!("{} ({})", c.text, location_text(c, cx)))
        .collect();
    format!(", constrained by {}", notes.join(" and "))
}

fn parent_text(parent: &Pkg, versions: &str, cx: &ExplainContext<'_>) -> String {
    let provenance = parent.base().map(|n| provenance(n, cx)).unwrap_or_default();
    format!("{parent} {versions}{provenance}")
}

fn describe_fact(fact: &Fact, cx: &ExplainContext<'_>) -> Vec<String> {
    match fact {
        Fact::Root { name } => root_needs(name, cx),
        Fact::Dependency {
            parent,
            parent_versions,
            child,
            text,
        } => vec![format!(
            "{} needs {text}{}",
            parent_text(parent, parent_versions, cx),
            constraint_note(child, cx)
        )],
        Fact::NoVersions { name, range } => vec![no_versions_text(name, range, cx)],
        Fact::Unavailable {
            package,
            range,
            reason,
        } => {
            let versions = match range.as_singleton() {
                Some(v) => v.to_string(),
                None => range_text(range),
            };
            vec![format!("{package} {versions} {reason}")]
        }
    }
}

/// Why no version of `name` within `range` can be used.
fn no_versions_text(
    name: &PackageName,
    range: &Ranges<Version>,
    cx: &ExplainContext<'_>,
) -> String {
    let Some(page) = (cx.pages)(name) else {
        return format!("no version of {name} matches{}", spaced(range));
    };
    if let Some(missing) = &page.missing {
        return missing.clone();
    }
    let in_range: Vec<_> = page
        .versions
        .iter()
        .filter(|v| range.contains(&v.version))
        .collect();
    if in_range.is_empty() {
        let mut newest: Vec<String> = page
            .versions
            .iter()
            .take(5)
            .map(|v| v.version.to_string())
            .collect();
        if page.versions.len() > 5 {
            newest.push("...".to_string());
        }
        return format!(
            "no version of {name} matches{} (index `{}` has {})",
            spaced(range),
            page.index,
            if newest.is_empty() {
                "no files".to_string()
            } else {
                newest.join(", ")
            }
        );
    }
    const SHOWN: usize = 4;
    let allow_pre = cx.prerelease || cx.inputs.explicit_prerelease.contains(name);
    let mut reasons = Vec::new();
    for files in in_range.iter().take(SHOWN) {
        let why = match &files.wheel {
            Err(unusable) => unusable.describe(files),
            Ok(wheel) if wheel.yanked => {
                "is yanked (a yanked version is taken only when pinned with ==)".to_string()
            }
            Ok(_) if files.version.any_prerelease() && !allow_pre => {
                "is a pre-release (pass --pre, or name a pre-release in the specifier)".to_string()
            }
            Ok(_) => "was ruled out by the other requirements".to_string(),
        };
        reasons.push(format!("{} {}: {why}", name, files.version));
    }
    if in_range.len() > SHOWN {
        reasons.push(format!("and {} older versions", in_range.len() - SHOWN));
    }
    format!(
        "no usable version of {name}{} for {}: {}",
        spaced(range),
        cx.target,
        reasons.join("; ")
    )
}

fn spaced(range: &Ranges<Version>) -> String {
    let text = range_text(range);
    if text.starts_with(' ') {
        text
    } else {
        format!(" {text}")
    }
}

/// The one-line summary.
fn headline(facts: &[Fact], cx: &ExplainContext<'_>) -> String {
    let roots: BTreeSet<&PackageName> = facts
        .iter()
        .filter_map(|f| match f {
            Fact::Root { name } => Some(name),
            _ => None,
        })
        .collect();
    // A pak line against a dependency of another package.
    for fact in facts {
        if let Fact::Dependency {
            parent,
            parent_versions,
            child,
            text,
        } = fact
        {
            if roots.contains(child) {
                let needs = root_needs(child, cx).join(" and ");
                if !needs.is_empty() {
                    return format!(
                        "{needs}, but {} needs {text}",
                        parent_text(parent, parent_versions, cx)
                    );
                }
            }
        }
    }
    // Two packages needing different versions of a third.
    let mut by_child: BTreeMap<&PackageName, Vec<&Fact>> = BTreeMap::new();
    for fact in facts {
        if let Fact::Dependency { child, .. } = fact {
            by_child.entry(child).or_default().push(fact);
        }
    }
    for deps in by_child.values() {
        if let [Fact::Dependency {
            parent: p1,
            parent_versions: v1,
            text: t1,
            ..
        }, Fact::Dependency {
            parent: p2,
            parent_versions: v2,
            text: t2,
            ..
        }, ..] = deps.as_slice()
        {
            return format!(
                "{} needs {t1}, but {} needs {t2}",
                parent_text(p1, v1, cx),
                parent_text(p2, v2, cx)
            );
        }
    }
    // A pak line (or a dependency) that no usable version satisfies.
    for fact in facts {
        if let Fact::NoVersions { name, range } = fact {
            let mut needs = cx
                .inputs
                .root_sources
                .get(name)
                .into_iter()
                .flatten()
                .map(|s| format!("{} needs {}", location_text(s, cx), s.text))
                .collect::<Vec<_>>()
                .join(" and ");
            if needs.is_empty() {
                // Who needs it: the dependency that asked for this range.
                for other in facts {
                    if let Fact::Dependency {
                        parent,
                        parent_versions,
                        child,
                        text,
                    } = other
                    {
                        if child == name {
                            needs = format!(
                                "{} needs {text}{}",
                                parent_text(parent, parent_versions, cx),
                                constraint_note(child, cx)
                            );
                            break;
                        }
                    }
                }
            }
            let why = no_versions_text(name, range, cx);
            return if needs.is_empty() {
                why
            } else {
                format!("{needs}, but {why}")
            };
        }
        if let Fact::Unavailable {
            package,
            range,
            reason,
        } = fact
        {
            let versions = match range.as_singleton() {
                Some(v) => v.to_string(),
                None => range_text(range),
            };
            return format!("{package} {versions} {reason}");
        }
    }
    "no set of versions satisfies every pak line".to_string()
}

fn help_lines(facts: &[Fact], cx: &ExplainContext<'_>) -> Vec<String> {
    let mut help = Vec::new();
    let mut relax: Vec<String> = Vec::new();
    for fact in facts {
        if let Fact::Root { name } = fact {
            for source in cx.inputs.root_sources.get(name).into_iter().flatten() {
                relax.push(format!("{} in {}", source.text, location_text(source, cx)));
            }
            if let Some((_, constraints)) = cx.inputs.constraints.get(name) {
                for c in constraints {
                    relax.push(format!("{} in {}", c.text, location_text(c, cx)));
                }
            }
        }
    }
    for fact in facts {
        if let Fact::Dependency { child, .. } = fact {
            if let Some((_, constraints)) = cx.inputs.constraints.get(child) {
                for c in constraints {
                    relax.push(format!("{} in {}", c.text, location_text(c, cx)));
                }
            }
        }
    }
    let mut unique = BTreeSet::new();
    relax.retain(|r| unique.insert(r.clone()));
    let mut first = String::new();
    if !relax.is_empty() {
        first = format!("relax {}", relax.join(" or "));
    }
    // "or pin torch to a version that accepts numpy<2"
    for fact in facts {
        if let Fact::Dependency { parent, child, .. } = fact {
            let Some(parent_name) = parent.base() else {
                continue;
            };
            if let Some(source) = cx.inputs.root_sources.get(child).and_then(|s| s.first()) {
                let clause = format!(
                    "pin {parent_name} to a version that accepts {}",
                    source.text
                );
                first = if first.is_empty() {
                    clause
                } else {
                    format!("{first}, or {clause}")
                };
                break;
            }
        }
    }
    if !first.is_empty() {
        help.push(first);
    }
    let no_wheel = facts.iter().any(|fact| match fact {
        Fact::NoVersions { name, range } => (cx.pages)(name).is_some_and(|page| {
            page.versions.iter().any(|v| {
                range.contains(&v.version)
                    && matches!(
                        v.wheel,
                        Err(Unusable::NoFittingWheel | Unusable::SdistNotBuilt { .. })
                    )
            })
        }),
        _ => false,
    });
    if no_wheel {
        help.push(format!(
            "pick a version that has a wheel for {} ({}), pin the package to an index that has one, or let comfypak build its sdist (it needs a base, `[base]` in stack.toml or --base, and no only-binary for the package)",
            cx.target,
            target_tag_examples(cx.target)
        ));
    }
    help
}

/// The best few tags the target accepts, e.g. "cp314-cp314-manylinux_2_39_x86_64, ...".
fn target_tag_examples(target: &Target) -> String {
    let tags = target.tags();
    let mut shown: Vec<String> = tags
        .iter()
        .map(|t| t.to_string())
        .filter(|t| t.contains("manylinux") || t.contains("musllinux"))
        .take(1)
        .collect();
    shown.push("...".to_string());
    shown.push("py3-none-any".to_string());
    shown.join(", ")
}
