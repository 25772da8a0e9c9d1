//! `comfypak::filename` on real published wheel and sdist names, ranked against targets.

use std::str::FromStr;

use comfypak::filename::{
    BuildTag, DistFilename, FilenameError, FilenameWarning, SdistExtension, SdistFilename,
    WheelFilename,
};
use comfypak::target::{Tag, Target};
use pep440_rs::Version;
use pep508_rs::PackageName;

fn target(s: &str) -> Target {
    s.parse().unwrap()
}

fn wheel(s: &str) -> WheelFilename {
    s.parse()
        .unwrap_or_else(|e: FilenameError| panic!("{s}: {e}"))
}

fn pkg(s: &str) -> PackageName {
    PackageName::from_str(s).unwrap()
}

/// One real-world wheel: its name, and what must come out of it.
struct Case {
    file: &'static str,
    name: &'static str,
    version: &'static str,
    /// (python, abi, platform) set sizes after expansion.
    sets: (usize, usize, usize),
    /// Fits CPython 3.14 on manylinux_2_39_x86_64?
    fits_cp314_x86: bool,
    /// Fits free-threaded CPython 3.14 on manylinux_2_39_aarch64?
    fits_cp314t_arm: bool,
}

const fn case(
    file: &'static str,
    name: &'static str,
    version: &'static str,
    sets: (usize, usize, usize),
    fits_cp314_x86: bool,
    fits_cp314t_arm: bool,
) -> Case {
    Case {
        file,
        name,
        version,
        sets,
        fits_cp314_x86,
        fits_cp314t_arm,
    }
}

const CASES: &[Case] = &[
    // torch family (local version labels)
    case("torch-2.11.0+cu130-cp314-cp314-manylinux_2_28_x86_64.whl", "torch", "2.11.0+cu130", (1, 1, 1), true, false),
    case("torch-2.11.0+cu130-cp314-cp314t-manylinux_2_28_aarch64.whl", "torch", "2.11.0+cu130", (1, 1, 1), false, true),
    case("torchvision-0.26.0+cu130-cp314-cp314-manylinux_2_28_x86_64.whl", "torchvision", "0.26.0+cu130", (1, 1, 1), true, false),
    case("torchaudio-2.11.0+cu130-cp313-cp313-manylinux_2_28_x86_64.whl", "torchaudio", "2.11.0+cu130", (1, 1, 1), false, false),
    case("triton-3.6.0-cp314-cp314-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", "triton", "3.6.0", (1, 1, 2), true, false),
    // numpy-style compressed platform sets
    case("numpy-2.3.4-cp314-cp314-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", "numpy", "2.3.4", (1, 1, 2), true, false),
    case("numpy-2.3.4-cp314-cp314t-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl", "numpy", "2.3.4", (1, 1, 2), false, true),
    case("numpy-1.26.4-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "numpy", "1.26.4", (1, 1, 2), false, false),
    case("numpy-2.3.4-cp314-cp314-musllinux_1_2_x86_64.whl", "numpy", "2.3.4", (1, 1, 1), false, false),
    case("markupsafe-3.0.3-cp314-cp314-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl", "markupsafe", "3.0.3", (1, 1, 3), true, false),
    case("PyYAML-6.0.3-cp314-cp314t-manylinux2014_aarch64.manylinux_2_17_aarch64.manylinux_2_28_aarch64.whl", "pyyaml", "6.0.3", (1, 1, 3), false, true),
    case("scipy-1.16.3-cp314-cp314-manylinux2014_aarch64.manylinux_2_17_aarch64.whl", "scipy", "1.16.3", (1, 1, 2), false, false),
    case("pillow-12.3.0-cp314-cp314-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", "pillow", "12.3.0", (1, 1, 2), true, false),
    case("cuda_bindings-13.3.1-cp314-cp314-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl", "cuda-bindings", "13.3.1", (1, 1, 2), true, false),
    // abi3 wheels
    case("cryptography-46.0.3-cp311-abi3-manylinux_2_34_x86_64.whl", "cryptography", "46.0.3", (1, 1, 1), true, false),
    case("psutil-7.1.0-cp37-abi3-manylinux_2_12_x86_64.manylinux2010_x86_64.manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "psutil", "7.1.0", (1, 1, 4), true, false),
    // nvidia py3-none-<platform> wheels (the torch cu130 closure)
    case("nvidia_cublas-13.1.0.3-py3-none-manylinux_2_27_x86_64.whl", "nvidia-cublas", "13.1.0.3", (1, 1, 1), true, false),
    case("nvidia_nvtx-13.0.85-py3-none-manylinux1_x86_64.manylinux_2_5_x86_64.whl", "nvidia-nvtx", "13.0.85", (1, 1, 2), true, false),
    case("nvidia_cuda_nvrtc-13.0.88-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl", "nvidia-cuda-nvrtc", "13.0.88", (1, 1, 2), true, false),
    case("nvidia_nccl_cu13-2.28.9-py3-none-manylinux_2_18_aarch64.whl", "nvidia-nccl-cu13", "2.28.9", (1, 1, 1), false, true),
    // pure Python
    case("six-1.17.0-py2.py3-none-any.whl", "six", "1.17.0", (2, 1, 1), true, true),
    case("typing_extensions-4.16.0-py3-none-any.whl", "typing-extensions", "4.16.0", (1, 1, 1), true, true),
    case("torch_geometric-2.8.0.post1-py3-none-any.whl", "torch-geometric", "2.8.0.post1", (1, 1, 1), true, true),
    case("comfyui_frontend_package-1.28.8-py3-none-any.whl", "comfyui-frontend-package", "1.28.8", (1, 1, 1), true, true),
    case("Jinja2-3.1.6-py3-none-any.whl", "jinja2", "3.1.6", (1, 1, 1), true, true),
    case("soundfile-0.13.1-py2.py3-none-manylinux_2_28_x86_64.whl", "soundfile", "0.13.1", (2, 1, 1), true, false),
    // the perf wheels of the reference ComfyUI image
    case("nunchaku-1.2.1+cu13.0torch2.11-cp313-cp313-linux_x86_64.whl", "nunchaku", "1.2.1+cu13.0torch2.11", (1, 1, 1), false, false),
    case("sageattention-2.2.0-hopper-cp313-cp313-linux_x86_64.whl", "sageattention", "2.2.0", (1, 1, 1), false, false),
    case("sageattn3-1.0.0-cp313-cp313-linux_x86_64.whl", "sageattn3", "1.0.0", (1, 1, 1), false, false),
    case("spas_sage_attn-0.1.0-cp313-cp313-linux_x86_64.whl", "spas-sage-attn", "0.1.0", (1, 1, 1), false, false),
    case("flash_attn-2.8.3+cu130torch2.11-cp313-cp313-linux_x86_64.whl", "flash-attn", "2.8.3+cu130torch2.11", (1, 1, 1), false, false),
    case("flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp313-cp313-linux_x86_64.whl", "flash-attn", "2.8.3+cu12torch2.8cxx11abitrue", (1, 1, 1), false, false),
    case("flash_attn_3-3.0.0+cu130torch2.11gite2743ab-cp39-abi3-linux_x86_64.whl", "flash-attn-3", "3.0.0+cu130torch2.11gite2743ab", (1, 1, 1), true, false),
    case("llama_cpp_python-0.3.33+cu130.basic-cp313-cp313-linux_x86_64.whl", "llama-cpp-python", "0.3.33+cu130.basic", (1, 1, 1), false, false),
    case("onnxruntime_gpu-1.23.0-cp314-cp314-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", "onnxruntime-gpu", "1.23.0", (1, 1, 2), true, false),
];

#[test]
fn real_world_wheel_names_parse_and_fit_the_right_targets() {
    assert!(CASES.len() >= 25);
    let cp314_x86 = target("3.14:manylinux_2_39_x86_64").tags();
    let cp314t_arm = target("3.14t:manylinux_2_39_aarch64").tags();
    for c in CASES {
        let w = wheel(c.file);
        assert_eq!(w.name, pkg(c.name), "{}", c.file);
        assert_eq!(
            w.version,
            Version::from_str(c.version).unwrap(),
            "{}",
            c.file
        );
        assert_eq!(
            (w.python.len(), w.abi.len(), w.platform.len()),
            c.sets,
            "{}",
            c.file
        );
        assert_eq!(
            w.tags().count(),
            c.sets.0 * c.sets.1 * c.sets.2,
            "{}",
            c.file
        );
        assert_eq!(
            w.best_priority(&cp314_x86).is_some(),
            c.fits_cp314_x86,
            "{} on cp314 manylinux_2_39_x86_64",
            c.file
        );
        assert_eq!(
            w.best_priority(&cp314t_arm).is_some(),
            c.fits_cp314t_arm,
            "{} on cp314t manylinux_2_39_aarch64",
            c.file
        );
        let only_sageattention_warns = c.file.starts_with("sageattention-");
        assert_eq!(
            !w.warnings.is_empty(),
            only_sageattention_warns,
            "{}",
            c.file
        );
    }
}

#[test]
fn compressed_tag_sets_expand_in_order() {
    let w = wheel(
        "markupsafe-3.0.3-cp314-cp314-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl",
    );
    assert_eq!(
        w.platform,
        vec![
            "manylinux2014_x86_64",
            "manylinux_2_17_x86_64",
            "manylinux_2_28_x86_64"
        ]
    );
    let tags: Vec<String> = w.tags().map(|t| t.to_string()).collect();
    assert_eq!(
        tags,
        vec![
            "cp314-cp314-manylinux2014_x86_64",
            "cp314-cp314-manylinux_2_17_x86_64",
            "cp314-cp314-manylinux_2_28_x86_64"
        ]
    );
    let six = wheel("six-1.17.0-py2.py3-none-any.whl");
    let six_tags: Vec<Tag> = six.tags().collect();
    assert_eq!(
        six_tags,
        vec![
            Tag::new("py2", "none", "any"),
            Tag::new("py3", "none", "any")
        ]
    );
    // The best of the set counts: the 2_28 member, not the 2014 alias.
    let tags = target("3.14:manylinux_2_39_x86_64").tags();
    assert_eq!(
        w.best_priority(&tags),
        tags.priority(&"cp314-cp314-manylinux_2_28_x86_64".parse().unwrap())
    );
}

#[test]
fn ranking_against_cp314_manylinux_2_28() {
    let tags = target("3.14:manylinux_2_28_x86_64").tags();
    let rank = |f: &str| wheel(f).best_priority(&tags);
    let m228 = rank("numpy-2.3.4-cp314-cp314-manylinux_2_28_x86_64.whl").unwrap();
    let m2014 = rank("numpy-2.3.4-cp314-cp314-manylinux2014_x86_64.whl").unwrap();
    let abi3 = rank("cryptography-46.0.3-cp311-abi3-manylinux_2_28_x86_64.whl").unwrap();
    let py3_plat = rank("nvidia_cublas-13.1.0.3-py3-none-manylinux_2_27_x86_64.whl").unwrap();
    let any = rank("numpy-2.3.4-py3-none-any.whl").unwrap();
    assert!(m228 < m2014, "{m228} < {m2014}");
    assert!(m2014 < abi3 && abi3 < py3_plat && py3_plat < any);
    // A plain linux_x86_64 build of the interpreter ranks best (packaging 26.3 order).
    let linux = rank("sageattn3-1.0.0-cp314-cp314-linux_x86_64.whl").unwrap();
    assert_eq!(linux, 0);
    // Needs a newer glibc than the target has.
    assert_eq!(
        rank("numpy-2.3.4-cp314-cp314-manylinux_2_34_x86_64.whl"),
        None
    );
    // Wrong interpreter, wrong ABI, wrong architecture.
    assert_eq!(
        rank("torch-2.11.0+cu130-cp313-cp313-manylinux_2_28_x86_64.whl"),
        None
    );
    assert_eq!(
        rank("torch-2.11.0+cu130-cp314-cp314t-manylinux_2_28_x86_64.whl"),
        None
    );
    assert_eq!(
        rank("torch-2.11.0+cu130-cp314-cp314-manylinux_2_28_aarch64.whl"),
        None
    );

    // abi3 cp39 fits cp314 but not cp314t; abi3t would.
    let ft = target("3.14t:manylinux_2_28_x86_64").tags();
    let fa3 = wheel("flash_attn_3-3.0.0+cu130torch2.11gite2743ab-cp39-abi3-linux_x86_64.whl");
    assert!(fa3.best_priority(&tags).is_some());
    assert_eq!(fa3.best_priority(&ft), None);
    assert!(wheel("x-1.0-cp39-abi3t-linux_x86_64.whl")
        .best_priority(&ft)
        .is_some());

    // Sorting a real candidate set by preference.
    let mut files = [
        wheel("numpy-2.3.4-py3-none-any.whl"),
        wheel("numpy-2.3.4-cp314-cp314-manylinux2014_x86_64.whl"),
        wheel("numpy-2.3.4-cp313-cp313-manylinux_2_28_x86_64.whl"),
        wheel("numpy-2.3.4-cp314-cp314-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"),
    ];
    files.sort_by(|a, b| a.preference(b, &tags));
    let order: Vec<String> = files
        .iter()
        .map(|w| w.platform.join(".") + "/" + &w.python.join("."))
        .collect();
    assert_eq!(
        order,
        vec![
            "manylinux_2_27_x86_64.manylinux_2_28_x86_64/cp314",
            "manylinux2014_x86_64/cp314",
            "any/py3",
            "manylinux_2_28_x86_64/cp313",
        ]
    );
}

#[test]
fn build_tags_parse_order_and_break_ties() {
    let w = wheel("distribution-1.0-1-py27-none-any.whl");
    assert_eq!(
        w.build,
        Some(BuildTag {
            number: 1,
            suffix: String::new()
        })
    );
    let w = wheel("dlib-19.24.6-12abc-cp314-cp314-manylinux_2_28_x86_64.whl");
    assert_eq!(
        w.build,
        Some(BuildTag {
            number: 12,
            suffix: "abc".to_string()
        })
    );
    assert!(w.warnings.is_empty());
    let tags = target("3.14:manylinux_2_39_x86_64").tags();
    let b2 = wheel("foo-1.0-2-py3-none-any.whl");
    let b10 = wheel("foo-1.0-10-py3-none-any.whl");
    let none = wheel("foo-1.0-py3-none-any.whl");
    assert_eq!(b10.preference(&b2, &tags), std::cmp::Ordering::Less);
    assert_eq!(b2.preference(&none, &tags), std::cmp::Ordering::Less);
}

#[test]
fn non_numeric_build_tag_is_accepted_with_a_warning() {
    let file = "sageattention-2.2.0-hopper-cp313-cp313-linux_x86_64.whl";
    let w = wheel(file);
    assert_eq!(w.name, pkg("sageattention"));
    assert_eq!(w.version, Version::from_str("2.2.0").unwrap());
    assert_eq!(
        w.build,
        Some(BuildTag {
            number: 0,
            suffix: "hopper".to_string()
        })
    );
    assert_eq!(w.python, vec!["cp313"]);
    assert_eq!(w.platform, vec!["linux_x86_64"]);
    assert_eq!(w.warnings.len(), 1);
    assert!(matches!(
        &w.warnings[0],
        FilenameWarning::BuildTagNotNumeric { build, .. } if build == "hopper"
    ));
    let text = w.warnings[0].to_string();
    assert!(text.contains(file), "{text}");
    assert!(text.contains("binary distribution format"), "{text}");
    assert!(text.contains("build tag must start with a digit"), "{text}");
    // It fits a CPython 3.13 linux_x86_64 target, best of all.
    let cp313 = target("3.13:manylinux_2_39_x86_64").tags();
    assert_eq!(w.best_priority(&cp313), Some(0));
    // The warning survives into JSON output.
    let json = serde_json::to_value(&w).unwrap();
    assert!(json["warnings"][0]
        .as_str()
        .unwrap()
        .contains("must start with a digit"));
}

#[test]
fn malformed_wheel_names_give_clear_errors() {
    let cases: &[(&str, &str)] = &[
        ("foo-1.0.whl", "5 or 6 dash-separated parts"),
        ("foo-1.0-py3-none.whl", "this one has 4"),
        ("foo-bar-1.0-1-2-py3-none-any.whl", "this one has 8"),
        (
            "foo-notaversion-py3-none-any.whl",
            "invalid version \"notaversion\"",
        ),
        ("-1.0-py3-none-any.whl", "the name is empty"),
        ("foo!-1.0-py3-none-any.whl", "invalid project name \"foo!\""),
        ("_foo-1.0-py3-none-any.whl", "invalid project name"),
        ("foo-1.0-py3--any.whl", "invalid compatibility tag \"\""),
        ("foo-1.0-py3-none-.whl", "invalid compatibility tag"),
        ("foo-1.0-py2..py3-none-any.whl", "empty member"),
        ("foo-1.0-3py-none-any.whl", "must start with a letter"),
        (
            "foo-1.0-py3-none-linux/x86_64.whl",
            "other than ASCII letters",
        ),
        (
            "foo-1.0-99999999999999999999999-py3-none-any.whl",
            "does not fit in 64 bits",
        ),
        (
            "torch-2.11.0%2Bcu130-cp314-cp314-manylinux_2_28_x86_64.whl",
            "percent-encoded",
        ),
    ];
    for (file, needle) in cases {
        let err = WheelFilename::from_str(file).unwrap_err().to_string();
        assert!(err.starts_with(file), "error must name the file: {err}");
        assert!(err.contains(needle), "{file}: {err:?} lacks {needle:?}");
    }
    let err = WheelFilename::from_str("foo-1.0-py3-none-any.tar.gz").unwrap_err();
    assert!(matches!(err, FilenameError::UnsupportedExtension { .. }));
}

#[test]
fn sdists_with_dashed_names() {
    let s = SdistFilename::parse("insightface-0.7.3.tar.gz", None).unwrap();
    assert_eq!(
        (s.name, s.extension),
        (pkg("insightface"), SdistExtension::TarGz)
    );
    assert_eq!(s.version, Version::from_str("0.7.3").unwrap());

    for (file, name, version) in [
        (
            "comfyui-frontend-package-1.28.8.tar.gz",
            "comfyui-frontend-package",
            "1.28.8",
        ),
        (
            "python-dateutil-2.9.0.post0.tar.gz",
            "python-dateutil",
            "2.9.0.post0",
        ),
        ("zope.interface-7.0.tar.gz", "zope-interface", "7.0"),
        ("Foo_Bar-1.0.zip", "foo-bar", "1.0"),
        ("dlib-19.24.6.tar.gz", "dlib", "19.24.6"),
        ("nvidia-ml-py-13.610.43.tar.gz", "nvidia-ml-py", "13.610.43"),
    ] {
        let s = SdistFilename::parse(file, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.name, pkg(name), "{file}");
        assert_eq!(s.version, Version::from_str(version).unwrap(), "{file}");
        let hinted = SdistFilename::parse(file, Some(&pkg(name))).unwrap();
        assert_eq!(hinted, s, "{file} with hint");
    }

    // Ambiguous without a hint; the hint decides.
    let hinted = SdistFilename::parse("foo-1.0-1.tar.gz", Some(&pkg("foo"))).unwrap();
    assert_eq!(hinted.version, Version::from_str("1.0.post1").unwrap());

    for (file, ext) in [
        ("pkg-1.0.tar.bz2", SdistExtension::TarBz2),
        ("pkg-1.0.tgz", SdistExtension::Tgz),
        ("pkg-1.0.tar.xz", SdistExtension::TarXz),
        ("pkg-1.0.tar", SdistExtension::Tar),
        ("Pkg-1.0.TAR.GZ", SdistExtension::TarGz),
    ] {
        assert_eq!(
            SdistFilename::parse(file, None).unwrap().extension,
            ext,
            "{file}"
        );
    }
    assert!(SdistExtension::TarGz.is_standard());
    assert!(!SdistExtension::TarBz2.is_standard());
}

#[test]
fn dist_filename_dispatches_and_checks_the_hint() {
    let torch = pkg("torch");
    let d = DistFilename::parse(
        "torch-2.11.0+cu130-cp314-cp314-manylinux_2_28_x86_64.whl",
        Some(&torch),
    )
    .unwrap();
    assert!(matches!(d, DistFilename::Wheel(_)));
    assert_eq!(d.name(), &torch);
    assert_eq!(d.version(), &Version::from_str("2.11.0+cu130").unwrap());

    let d = DistFilename::parse("comfyui-frontend-package-1.28.8.tar.gz", None).unwrap();
    assert!(matches!(d, DistFilename::Sdist(_)));

    let err = DistFilename::parse(
        "torchvision-0.26.0+cu130-cp314-cp314-manylinux_2_28_x86_64.whl",
        Some(&torch),
    )
    .unwrap_err();
    assert!(matches!(err, FilenameError::NameMismatch { .. }));
    let text = err.to_string();
    assert!(
        text.contains("torchvision") && text.contains("expected a file of torch"),
        "{text}"
    );

    let err = DistFilename::parse("numpy-2.3.4.tar.gz", Some(&torch)).unwrap_err();
    assert!(err.to_string().contains("file of project numpy"), "{err}");

    for (file, needle) in [
        ("foo.tar.gz", "no '-' between name and version"),
        ("foo-bar.tar.gz", "no part after a '-' is a valid version"),
        ("foo-1.0.egg", "not a wheel"),
        ("foo-1.0.exe", "not a wheel"),
    ] {
        let err = DistFilename::parse(file, None).unwrap_err().to_string();
        assert!(err.starts_with(file), "{err}");
        assert!(err.contains(needle), "{file}: {err}");
    }
    let err = DistFilename::parse("foo-bar.tar.gz", Some(&pkg("foo"))).unwrap_err();
    assert!(err.to_string().contains("invalid version \"bar\""), "{err}");
}

#[test]
fn names_are_normalized_and_unescaped_names_warn() {
    let w = wheel("Flash_Attn-2.8.3-cp314-cp314-linux_x86_64.whl");
    assert_eq!(w.name, pkg("flash-attn"));
    assert!(w.warnings.is_empty());
    let w = wheel("foo__bar-1.0-py3-none-any.whl");
    assert_eq!(w.name, pkg("foo-bar"));
    assert!(matches!(
        w.warnings.as_slice(),
        [FilenameWarning::NameNotEscaped { .. }]
    ));
    // Tags are compared lowercase, as packaging does.
    let w = wheel("foo-1.0-PY3-NONE-ANY.whl");
    assert_eq!(w.python, vec!["py3"]);
    let tags = target("3.14:manylinux_2_39_x86_64").tags();
    assert!(w.best_priority(&tags).is_some());
}

/// Files where comfypak differs from `packaging.utils.parse_wheel_filename` on purpose
/// (listed last in fixtures/oracle/wheel_names.txt), with what comfypak does instead.
const DELIBERATE_DIFFERENCES: &[(&str, bool)] = &[
    // (filename, comfypak accepts it)
    (
        "sageattention-2.2.0-hopper-cp313-cp313-linux_x86_64.whl",
        true,
    ),
    ("foo__bar-1.0-py3-none-any.whl", true),
    ("foo-1.0-99999999999999999999999-py3-none-any.whl", false),
    ("_foo-1.0-py3-none-any.whl", false),
];

fn compare_with_packaging(vectors: &serde_json::Value, source: &str) -> usize {
    let mut failures = Vec::new();
    let wheels = vectors["wheels"].as_array().expect("wheels array");
    for entry in wheels {
        let file = entry["filename"].as_str().expect("filename");
        let ours = WheelFilename::from_str(file);
        if let Some((_, accepts)) = DELIBERATE_DIFFERENCES.iter().find(|(f, _)| *f == file) {
            // packaging decides one way, comfypak the other.
            let packaging_accepts = entry.get("error").is_none();
            if packaging_accepts == *accepts || ours.is_ok() != *accepts {
                failures.push(format!(
                    "{file}: documented difference no longer holds (packaging accepts: \
                     {packaging_accepts}, comfypak: {:?})",
                    ours
                ));
            }
            if let Ok(w) = &ours {
                if w.warnings.is_empty() {
                    failures.push(format!(
                        "{file}: accepted against the spec without a warning"
                    ));
                }
            }
            continue;
        }
        match (&ours, entry.get("error")) {
            (Err(e), Some(_)) => {
                if !e.to_string().contains(file) {
                    failures.push(format!("{file}: error does not name the file: {e}"));
                }
            }
            (Err(e), None) => failures.push(format!("{file}: packaging accepts, comfypak: {e}")),
            (Ok(w), Some(err)) => failures.push(format!(
                "{file}: packaging rejects ({err}), comfypak accepts {w:?}"
            )),
            (Ok(w), None) => {
                let build = w
                    .build
                    .as_ref()
                    .map(|b| serde_json::json!([b.number, b.suffix]));
                let mut tags: Vec<String> = w.tags().map(|t| t.to_string()).collect();
                tags.sort();
                let got = serde_json::json!({
                    "filename": file,
                    "name": w.name.to_string(),
                    "version": w.version.to_string(),
                    "build": build,
                    "tags": tags,
                });
                if &got != entry {
                    failures.push(format!("{file}:\n  packaging {entry}\n  comfypak  {got}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "differences from packaging ({source}):\n{}",
        failures.join("\n")
    );
    wheels.len()
}

fn oracle_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/oracle")
}

#[test]
fn wheel_names_agree_with_packaging_vectors() {
    let path = oracle_dir().join("wheel_vectors.json");
    let vectors: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(vectors["packaging_version"], "26.3");
    let compared = compare_with_packaging(&vectors, "fixtures/oracle/wheel_vectors.json");
    assert!(compared >= 40, "only {compared} names compared");
    // Every real-world case of this file is in the vectors.
    let listed: Vec<&str> = vectors["wheels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["filename"].as_str().unwrap())
        .collect();
    for c in CASES {
        assert!(
            listed.contains(&c.file),
            "{} missing from wheel_names.txt",
            c.file
        );
    }
}

/// With `COMFYPAK_ORACLE_PYTHON` set, runs packaging live on the same names.
#[test]
fn wheel_names_agree_with_live_packaging() {
    let Ok(python) = std::env::var("COMFYPAK_ORACLE_PYTHON") else {
        eprintln!("COMFYPAK_ORACLE_PYTHON unset: live packaging oracle skipped");
        return;
    };
    let script = oracle_dir().join("wheel_filename_oracle.py");
    let output = std::process::Command::new(&python)
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("run {python} {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let live: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    compare_with_packaging(&live, "live packaging");
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(oracle_dir().join("wheel_vectors.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        live, committed,
        "fixtures/oracle/wheel_vectors.json is stale: regenerate it with \
         `{python} fixtures/oracle/wheel_filename_oracle.py > fixtures/oracle/wheel_vectors.json`"
    );
}

/// Every wheel name the fixture indexes and the oracle list hold, plus spellings the spec
/// allows (compressed sets, uppercase parts).
fn known_wheel_names() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = Vec::new();
    for index in ["pypi-snapshot", "pytorch-cu130", "perf-wheels"] {
        let path = root.join(format!("fixtures/indexes/{index}.json"));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for files in json["projects"].as_object().unwrap().values() {
            for file in files.as_array().unwrap() {
                if let Some(name) = file["filename"].as_str() {
                    names.push(name.to_string());
                }
            }
        }
    }
    let listed = std::fs::read_to_string(oracle_dir().join("wheel_names.txt")).unwrap();
    names.extend(
        listed
            .lines()
            .filter(|l| !l.starts_with('#') && l.ends_with(".whl"))
            .map(str::to_string),
    );
    names.extend(
        [
            "Demo-1.0-py2.PY3-NONE-ANY.whl",
            "demo-1.0-1build-cp314-CP314-MANYLINUX_2_28_X86_64.whl",
            "demo-1.0-cp39.cp314-abi3.cp314-linux_x86_64.manylinux_2_17_x86_64.whl",
            "demo-1.0-cp314-cp314t-manylinux_2_17_aarch64.musllinux_1_1_aarch64.whl",
        ]
        .map(str::to_string),
    );
    names
}

#[test]
fn the_quick_tag_test_never_rejects_a_wheel_that_fits() {
    use comfypak::filename::wheel_may_fit;
    let names = known_wheel_names();
    assert!(names.len() > 1000, "only {} names", names.len());
    let targets = [
        "3.14:manylinux_2_39_x86_64",
        "3.14:manylinux_2_28_aarch64",
        "3.14t:manylinux_2_39_aarch64",
        "3.14:musllinux_1_2_x86_64",
        "3.13:manylinux_2_39_x86_64",
        "3.12:manylinux_2_5_x86_64",
    ];
    for spec in targets {
        let tags = target(spec).tags();
        let (mut fit, mut passed_over) = (0, 0);
        for name in &names {
            let fits = WheelFilename::from_str(name)
                .ok()
                .and_then(|w| w.best_priority(&tags))
                .is_some();
            let may = wheel_may_fit(name, &tags);
            assert!(
                !fits || may,
                "{spec}: {name} fits but the quick test rejects it"
            );
            fit += usize::from(fits);
            passed_over += usize::from(!may);
        }
        // It must also do its job: most of these names are for other targets.
        assert!(
            fit > 0 && passed_over > names.len() / 4,
            "{spec}: {fit} fit, {passed_over} passed over"
        );
    }
    let tags = target("3.14:manylinux_2_39_x86_64").tags();
    for (name, may) in [
        ("numpy-2.3.4-cp314-cp314-win_amd64.whl", false),
        ("numpy-2.3.4-cp314-cp314-macosx_14_0_arm64.whl", false),
        ("numpy-2.3.4-cp313-cp313-manylinux_2_28_x86_64.whl", false),
        ("numpy-2.3.4-cp314-cp314-manylinux_2_28_aarch64.whl", false),
        ("numpy-2.3.4.tar.gz", false),
        ("Demo-1.0-py2.PY3-NONE-ANY.whl", true),
        // Too malformed to judge by name: the full parse decides.
        ("demo-py3-none-any.whl", true),
    ] {
        assert_eq!(wheel_may_fit(name, &tags), may, "{name}");
    }
}

#[test]
fn names_match_their_normalized_form_without_allocating() {
    use comfypak::filename::{name_matches, wheel_name_version};
    for (written, normalized, equal) in [
        ("Pillow", "pillow", true),
        ("zope.interface", "zope-interface", true),
        ("typing_extensions", "typing-extensions", true),
        ("Foo__Bar", "foo-bar", true),
        ("foo-_.bar", "foo-bar", true),
        ("foobar", "foo-bar", false),
        ("foo_bar_", "foo-bar", false),
        ("foo", "foo-bar", false),
        ("foo_bar", "foo", false),
    ] {
        assert_eq!(
            name_matches(written, &pkg(normalized)),
            equal,
            "{written} vs {normalized}"
        );
    }
    assert_eq!(
        wheel_name_version("torch-2.11.0+cu130-cp314-cp314-manylinux_2_28_x86_64.whl"),
        Some(("torch", "2.11.0+cu130"))
    );
    assert_eq!(
        wheel_name_version("flash_attn-2.8.3-1-cp314-cp314-linux_x86_64.whl"),
        Some(("flash_attn", "2.8.3"))
    );
    assert_eq!(wheel_name_version("demo-1.0-py3-none.whl"), None);
    assert_eq!(wheel_name_version("demo-1.0.tar.gz"), None);
}
