//! `comfypak::target` checked against the real `packaging` library.
//!
//! `fixtures/oracle/vectors.json` is the output of `fixtures/oracle/packaging_oracle.py` run
//! with packaging 26.3. When `COMFYPAK_ORACLE_PYTHON` names a Python that has packaging 26.3,
//! the script is also run live and its output compared.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use comfypak::target::{Arch, Libc, Platform, PythonVersion, Tag, Target};
use pep508_rs::MarkerTree;
use serde_json::Value;

fn oracle_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/oracle")
}

fn committed_vectors() -> Value {
    let path = oracle_dir().join("vectors.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn vector_targets(vectors: &Value) -> &Vec<Value> {
    vectors["targets"]
        .as_array()
        .expect("vectors.json has a \"targets\" array")
}

/// The target a vector describes; its "abi" must agree with ours (Target's Deserialize checks).
fn target_of(vector: &Value) -> Target {
    serde_json::from_value(vector.clone())
        .unwrap_or_else(|e| panic!("vector {vector:.80}: not a Target: {e}"))
}

fn label(vector: &Value) -> String {
    format!(
        "{}{} {}",
        vector["python"].as_str().unwrap_or("?"),
        if vector["free_threaded"] == Value::Bool(true) {
            "t"
        } else {
            ""
        },
        vector["platform"].as_str().unwrap_or("?")
    )
}

/// Describes how two ordered lists differ: first divergence with context, lengths, and the
/// items only one side has.
fn list_diff(expected: &[String], actual: &[String]) -> Option<String> {
    if expected == actual {
        return None;
    }
    let mut out = format!(
        "expected (packaging) {} items, got (comfypak) {} items\n",
        expected.len(),
        actual.len()
    );
    let first = expected
        .iter()
        .zip(actual)
        .position(|(e, a)| e != a)
        .unwrap_or(expected.len().min(actual.len()));
    out.push_str(&format!("first difference at index {first}:\n"));
    let from = first.saturating_sub(3);
    for i in from..(first + 4) {
        let e = expected.get(i).map(String::as_str).unwrap_or("<end>");
        let a = actual.get(i).map(String::as_str).unwrap_or("<end>");
        let mark = if e == a { "  " } else { "!=" };
        out.push_str(&format!(
            "  [{i:4}] {mark} packaging: {e:45} comfypak: {a}\n"
        ));
    }
    let expected_set: HashSet<&String> = expected.iter().collect();
    let actual_set: HashSet<&String> = actual.iter().collect();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|t| !actual_set.contains(t))
        .collect();
    let extra: Vec<&String> = actual
        .iter()
        .filter(|t| !expected_set.contains(t))
        .collect();
    out.push_str(&format!(
        "missing from comfypak ({}): {:?}\n",
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>()
    ));
    out.push_str(&format!(
        "extra in comfypak ({}): {:?}\n",
        extra.len(),
        extra.iter().take(10).collect::<Vec<_>>()
    ));
    Some(out)
}

/// Compares every target of `vectors` against comfypak; returns all failures in one text.
fn compare_all(vectors: &Value, source: &str) -> usize {
    let mut failures = Vec::new();
    let mut compared = 0;
    for vector in vector_targets(vectors) {
        let target = target_of(vector);
        let expected_tags: Vec<String> = vector["tags"]
            .as_array()
            .expect("vector has tags")
            .iter()
            .map(|t| t.as_str().expect("tag is a string").to_string())
            .collect();
        let actual_tags = target.tags().to_strings();
        if let Some(diff) = list_diff(&expected_tags, &actual_tags) {
            failures.push(format!("{} tags ({source}):\n{diff}", label(vector)));
        }

        let expected_markers: BTreeMap<String, String> =
            serde_json::from_value(vector["markers"].clone()).expect("markers is a str map");
        let actual_markers: BTreeMap<String, String> = target
            .marker_values()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        if expected_markers != actual_markers {
            let keys: std::collections::BTreeSet<&String> = expected_markers
                .keys()
                .chain(actual_markers.keys())
                .collect();
            let mut text = format!("{} markers ({source}):\n", label(vector));
            for key in keys {
                let e = expected_markers.get(key);
                let a = actual_markers.get(key);
                if e != a {
                    text.push_str(&format!("  {key}: packaging {e:?}, comfypak {a:?}\n"));
                }
            }
            failures.push(text);
        }
        compared += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    compared
}

#[test]
fn tags_and_markers_equal_committed_packaging_vectors() {
    let vectors = committed_vectors();
    assert_eq!(vectors["packaging_version"], "26.3");
    let compared = compare_all(&vectors, "fixtures/oracle/vectors.json");
    assert!(compared >= 8, "only {compared} targets in vectors.json");
}

#[test]
fn committed_vectors_cover_the_required_targets() {
    let vectors = committed_vectors();
    let present: HashSet<String> = vector_targets(&vectors)
        .iter()
        .map(|v| target_of(v).to_string())
        .collect();
    for python in ["3.14", "3.14t"] {
        for arch in ["x86_64", "aarch64"] {
            for glibc in ["2_28", "2_39"] {
                let want = format!("{python}:manylinux_{glibc}_{arch}");
                assert!(present.contains(&want), "vectors.json lacks {want}");
            }
        }
    }
    assert!(present.contains("3.14:musllinux_1_2_x86_64"));
    assert!(present.iter().any(|t| t.starts_with("3.13")));
}

/// Runs the oracle script with `COMFYPAK_ORACLE_PYTHON` (CI sets it) and compares its live
/// output to comfypak and to the committed vectors (so stale vectors are caught too).
#[test]
fn live_packaging_oracle_agrees() {
    let Ok(python) = std::env::var("COMFYPAK_ORACLE_PYTHON") else {
        eprintln!("COMFYPAK_ORACLE_PYTHON unset: live packaging oracle skipped");
        return;
    };
    let script = oracle_dir().join("packaging_oracle.py");
    let output = Command::new(&python)
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("run {python} {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{python} {} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let live: Value = serde_json::from_slice(&output.stdout).expect("oracle prints JSON");
    compare_all(&live, "live packaging");
    assert_eq!(
        live,
        committed_vectors(),
        "fixtures/oracle/vectors.json is stale: regenerate it with \
         `{python} fixtures/oracle/packaging_oracle.py > fixtures/oracle/vectors.json`"
    );

    // The patching of host probes is faithful: the running host computed as a target equals
    // the real, unpatched sys_tags()/default_environment().
    let check = Command::new(&python)
        .arg(&script)
        .arg("--self-check")
        .output()
        .expect("run oracle --self-check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    if text.contains("--self-check needs") || text.contains("override module") {
        eprintln!("oracle self-check not possible on this host: {text}");
    } else {
        assert!(check.status.success(), "oracle self-check failed: {text}");
    }
}

/// The first 40 tags `sys_tags()` gave on a real NVIDIA H100 machine (CPython 3.12, glibc
/// 2.39, x86_64), from /work/shared/reference/torch-cu130-env.json (`sys_tags_first`).
const H100_CP312_FIRST_TAGS: &str = "cp312-cp312-linux_x86_64 cp312-cp312-manylinux_2_39_x86_64 \
cp312-cp312-manylinux_2_38_x86_64 cp312-cp312-manylinux_2_37_x86_64 \
cp312-cp312-manylinux_2_36_x86_64 cp312-cp312-manylinux_2_35_x86_64 \
cp312-cp312-manylinux_2_34_x86_64 cp312-cp312-manylinux_2_33_x86_64 \
cp312-cp312-manylinux_2_32_x86_64 cp312-cp312-manylinux_2_31_x86_64 \
cp312-cp312-manylinux_2_30_x86_64 cp312-cp312-manylinux_2_29_x86_64 \
cp312-cp312-manylinux_2_28_x86_64 cp312-cp312-manylinux_2_27_x86_64 \
cp312-cp312-manylinux_2_26_x86_64 cp312-cp312-manylinux_2_25_x86_64 \
cp312-cp312-manylinux_2_24_x86_64 cp312-cp312-manylinux_2_23_x86_64 \
cp312-cp312-manylinux_2_22_x86_64 cp312-cp312-manylinux_2_21_x86_64 \
cp312-cp312-manylinux_2_20_x86_64 cp312-cp312-manylinux_2_19_x86_64 \
cp312-cp312-manylinux_2_18_x86_64 cp312-cp312-manylinux_2_17_x86_64 \
cp312-cp312-manylinux2014_x86_64 cp312-cp312-manylinux_2_16_x86_64 \
cp312-cp312-manylinux_2_15_x86_64 cp312-cp312-manylinux_2_14_x86_64 \
cp312-cp312-manylinux_2_13_x86_64 cp312-cp312-manylinux_2_12_x86_64 \
cp312-cp312-manylinux2010_x86_64 cp312-cp312-manylinux_2_11_x86_64 \
cp312-cp312-manylinux_2_10_x86_64 cp312-cp312-manylinux_2_9_x86_64 \
cp312-cp312-manylinux_2_8_x86_64 cp312-cp312-manylinux_2_7_x86_64 \
cp312-cp312-manylinux_2_6_x86_64 cp312-cp312-manylinux_2_5_x86_64 \
cp312-cp312-manylinux1_x86_64 cp312-abi3-linux_x86_64";

#[test]
fn first_tags_equal_a_real_h100_host() {
    let target: Target = "3.12:manylinux_2_39_x86_64".parse().unwrap();
    let expected: Vec<String> = H100_CP312_FIRST_TAGS
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(expected.len(), 40);
    let actual: Vec<String> = target.tags().iter().take(40).map(Tag::to_string).collect();
    if let Some(diff) = list_diff(&expected, &actual) {
        panic!("{diff}");
    }
}

fn evaluates(target: &Target, marker: &str) -> bool {
    let tree = MarkerTree::from_str(marker).unwrap_or_else(|e| panic!("{marker}: {e}"));
    tree.evaluate(&target.markers(), &[])
}

#[test]
fn pep508_markers_evaluate_against_the_target() {
    let x86: Target = "3.14:manylinux_2_39_x86_64".parse().unwrap();
    let arm: Target = "3.14t:manylinux_2_39_aarch64".parse().unwrap();
    let old: Target = "3.13:manylinux_2_28_x86_64".parse().unwrap();

    assert!(evaluates(&arm, "platform_machine == \"aarch64\""));
    assert!(!evaluates(&x86, "platform_machine == \"aarch64\""));
    assert!(evaluates(&x86, "platform_machine == \"x86_64\""));
    for t in [&x86, &arm, &old] {
        assert!(evaluates(t, "sys_platform == \"linux\""));
        assert!(evaluates(t, "platform_system == \"Linux\""));
        assert!(evaluates(t, "os_name == \"posix\""));
        assert!(evaluates(t, "implementation_name == \"cpython\""));
        assert!(evaluates(
            t,
            "platform_python_implementation == \"CPython\""
        ));
        assert!(!evaluates(t, "sys_platform == \"win32\""));
    }
    assert!(evaluates(&x86, "python_version >= \"3.14\""));
    assert!(!evaluates(&old, "python_version >= \"3.14\""));
    assert!(evaluates(&old, "python_version < \"3.14\""));
    assert!(evaluates(&x86, "python_full_version >= \"3.14.0\""));
    assert!(evaluates(&x86, "python_full_version < \"3.14.1\""));
    // A real Requires-Dist line from the torch cu130 closure (cuda-bindings).
    let cudla = "(platform_system == \"Linux\" and platform_machine == \"aarch64\")";
    assert!(evaluates(&arm, cudla));
    assert!(!evaluates(&x86, cudla));
    // marker_values() and markers() describe the same environment.
    let values = arm.marker_values();
    assert_eq!(values["platform_machine"], "aarch64");
    assert_eq!(values["python_full_version"], "3.14.0");
    assert_eq!(values.len(), 11);
}

fn tag(s: &str) -> Tag {
    s.parse().unwrap()
}

#[test]
fn priorities_rank_like_packaging() {
    let cp314: Target = "3.14:manylinux_2_39_x86_64".parse().unwrap();
    let cp314t: Target = "3.14t:manylinux_2_39_x86_64".parse().unwrap();
    let tags = cp314.tags();
    let ft_tags = cp314t.tags();

    let p = |t: &str| tags.priority(&tag(t));
    assert_eq!(p("cp314-cp314-linux_x86_64"), Some(0));
    assert_eq!(p("cp314-cp314-manylinux_2_39_x86_64"), Some(1));
    let m228 = p("cp314-cp314-manylinux_2_28_x86_64").unwrap();
    let m2014 = p("cp314-cp314-manylinux2014_x86_64").unwrap();
    let abi3 = p("cp39-abi3-manylinux_2_28_x86_64").unwrap();
    let py3_plat = p("py3-none-manylinux_2_27_x86_64").unwrap();
    let any = p("py3-none-any").unwrap();
    assert!(m228 < m2014 && m2014 < abi3 && abi3 < py3_plat && py3_plat < any);
    assert_eq!(p("cp314-none-any"), Some(tags.len() - 17)); // before py314..py30-none-any
    assert_eq!(p("py30-none-any"), Some(tags.len() - 1));

    assert_eq!(p("cp313-cp313-manylinux_2_28_x86_64"), None);
    assert_eq!(p("cp314-cp314-manylinux_2_40_x86_64"), None);
    assert_eq!(p("cp314-cp314-manylinux_2_28_aarch64"), None);
    assert_eq!(p("cp314-cp314t-manylinux_2_28_x86_64"), None);
    assert_eq!(p("cp314-cp314-musllinux_1_2_x86_64"), None);
    assert_eq!(p("cp31-abi3-manylinux_2_28_x86_64"), None);
    assert!(p("cp32-abi3-manylinux_2_28_x86_64").is_some());

    // Free-threaded: no abi3, abi3t instead.
    let q = |t: &str| ft_tags.priority(&tag(t));
    assert_eq!(q("cp314-cp314t-linux_x86_64"), Some(0));
    assert_eq!(q("cp39-abi3-manylinux_2_28_x86_64"), None);
    assert!(q("cp39-abi3t-manylinux_2_28_x86_64").is_some());
    assert_eq!(q("cp314-cp314-manylinux_2_28_x86_64"), None);
    assert!(q("py3-none-any").is_some());

    // No duplicates: every tag has its own rank.
    let unique: HashSet<&Tag> = tags.iter().collect();
    assert_eq!(unique.len(), tags.len());
    for (i, t) in tags.iter().enumerate() {
        assert_eq!(tags.priority(t), Some(i));
    }
}

#[test]
fn glibc_floors_differ_by_architecture() {
    // aarch64 manylinux starts at glibc 2.17; x86_64 at 2.5.
    let arm: Target = "3.14:manylinux_2_17_aarch64".parse().unwrap();
    let plats = arm.platform_tags();
    assert_eq!(
        plats,
        vec![
            "linux_aarch64",
            "manylinux_2_17_aarch64",
            "manylinux2014_aarch64"
        ]
    );
    let too_old = Target::new(
        PythonVersion {
            major: 3,
            minor: 14,
        },
        false,
        Platform {
            libc: Libc::Manylinux { major: 2, minor: 5 },
            arch: Arch::Aarch64,
        },
    );
    assert_eq!(too_old.platform_tags(), vec!["linux_aarch64"]);
    let musl: Target = "3.14:musllinux_1_2_x86_64".parse().unwrap();
    assert_eq!(
        musl.platform_tags(),
        vec![
            "linux_x86_64",
            "musllinux_1_2_x86_64",
            "musllinux_1_1_x86_64",
            "musllinux_1_0_x86_64"
        ]
    );
}

#[test]
fn tag_parsing_and_errors() {
    let t = tag("CP314-CP314-Manylinux_2_39_X86_64");
    assert_eq!(t.to_string(), "cp314-cp314-manylinux_2_39_x86_64");
    for (bad, needle) in [
        ("cp314-cp314", "exactly three"),
        ("cp314--any", "empty"),
        ("py2.py3-none-any", "compressed tag set"),
        ("3cp-none-any", "identifier"),
        ("cp314-cp314-linux/x86", "letters"),
    ] {
        let err = bad.parse::<Tag>().unwrap_err().to_string();
        assert!(err.contains(bad), "{err}");
        assert!(err.contains(needle), "{bad}: {err}");
    }
}

#[test]
fn target_serializes_as_documented() {
    let target: Target = "3.14:manylinux_2_39_x86_64".parse().unwrap();
    assert_eq!(
        serde_json::to_string(&target).unwrap(),
        r#"{"python":"3.14","free_threaded":false,"platform":"manylinux_2_39_x86_64","abi":"cp314"}"#
    );
    let err = serde_json::from_str::<Target>(
        r#"{"python":"3.14","free_threaded":true,"platform":"manylinux_2_39_x86_64","abi":"cp314"}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("cp314t"), "{err}");
    let err = "3.14:manylinux_2_39_riscv64"
        .parse::<Target>()
        .unwrap_err()
        .to_string();
    assert!(err.contains("riscv64") && err.contains("x86_64"), "{err}");
}
