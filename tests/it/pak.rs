//! Integration tests of the `pak` module: real files on disk (fixtures and temp dirs), every
//! accepted form, includes, constraints, `${VAR}`, the real ComfyUI pak files, and the exact
//! place and help of every refused line.

use std::fs;
use std::path::{Path, PathBuf};

use comfypak::pak::{
    self, BinarySelector, PakError, PakErrorKind, PakFile, PakLine, PakRequirement,
};
use pep508_rs::{PackageName, VersionOrUrl};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pak")
}

fn no_vars(_: &str) -> Option<String> {
    None
}

fn names(lines: &[PakLine]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            l.requirement
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        })
        .collect()
}

fn name(s: &str) -> PackageName {
    s.parse().unwrap()
}

fn forms() -> PakFile {
    let vars = |n: &str| (n == "TOKEN").then(|| "s3cret".to_string());
    pak::parse_file(&fixtures().join("forms.txt"), &vars).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_accepted_form_parses() {
    let f = forms();
    assert_eq!(
        names(&f.requirements),
        vec![
            "numpy",
            "imageio",
            "requests",
            "torch",
            "scipy",
            "safetensors",
            "x-wheel",
            "cozy-comfyui",
            "y",
            "flash-attn",
            "",
            "tok",
        ]
    );
    assert!(f.constraints.is_empty());
    assert_eq!(f.files, vec![fixtures().join("forms.txt")]);
}

#[test]
fn pep508_details_are_kept() {
    let f = forms();
    let named = |i: usize| match &f.requirements[i].requirement {
        PakRequirement::Named(r) => r.clone(),
        other => panic!("not named: {other:?}"),
    };
    let imageio = named(1);
    assert_eq!(imageio.extras.len(), 1);
    assert_eq!(imageio.extras[0].to_string(), "ffmpeg");
    assert_eq!(f.requirements[1].text, "imageio[ffmpeg]");

    let requests = named(2);
    assert_eq!(requests.extras.len(), 2);
    assert_eq!(
        requests.version_or_url.as_ref().unwrap().to_string(),
        "==2.8.*, >=2.8.1"
    );
    assert_eq!(
        requests.marker.try_to_string().unwrap(),
        "python_full_version < '3.13'"
    );

    let torch = named(3);
    assert_eq!(torch.version_or_url.unwrap().to_string(), "==2.11.0+cu130");
    assert!(torch
        .marker
        .try_to_string()
        .unwrap()
        .contains("platform_machine == 'x86_64'"));

    // A continued line: joined without a space, located on its first physical line.
    let scipy = &f.requirements[4];
    assert_eq!(scipy.text, "scipy>=1.11,<2");
    assert_eq!((scipy.location.line, scipy.location.column), (16, 1));
    assert_eq!(named(4).version_or_url.unwrap().to_string(), ">=1.11, <2");

    let wheel = named(6);
    match wheel.version_or_url {
        Some(VersionOrUrl::Url(u)) => assert_eq!(
            u.as_str(),
            "https://files.example/x_wheel-1.0-py3-none-any.whl"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.requirements[6].requirement.needs_build(), None);
    assert_eq!(f.requirements[0].requirement.needs_build(), None);
}

#[test]
fn hashes_on_continued_lines() {
    let f = forms();
    let safetensors = &f.requirements[5];
    assert_eq!(
        safetensors.hashes,
        vec![
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "0123456789abcdef".repeat(4)),
        ]
    );
    assert_eq!(
        (safetensors.location.line, safetensors.location.column),
        (18, 1)
    );
    assert!(safetensors
        .text
        .starts_with("safetensors==0.5.3     --hash=sha256:"));
}

#[test]
fn bare_urls_are_unnamed_with_names_from_egg_or_wheel() {
    let f = forms();
    let unnamed = |i: usize| match &f.requirements[i].requirement {
        PakRequirement::UnnamedUrl { url, name } => (url.clone(), name.clone()),
        other => panic!("not a bare URL: {other:?}"),
    };
    assert_eq!(
        unnamed(7),
        (
            "git+https://git.example/o/cozy_comfyui@main#egg=cozy_comfyui".to_string(),
            Some(name("cozy-comfyui"))
        )
    );
    assert!(f.requirements[7]
        .requirement
        .needs_build()
        .unwrap()
        .contains("git repository"));
    assert_eq!(unnamed(8).1, Some(name("y")));
    assert!(f.requirements[8]
        .requirement
        .needs_build()
        .unwrap()
        .contains("source distribution"));
    assert_eq!(unnamed(9).1, Some(name("flash-attn")));
    assert_eq!(f.requirements[9].requirement.needs_build(), None);
    assert_eq!(unnamed(10).1, None);
    assert!(f.requirements[10].requirement.needs_build().is_some());
}

#[test]
fn variables_expand_but_text_keeps_the_reference() {
    let f = forms();
    let tok = &f.requirements[11];
    assert_eq!(
        tok.text,
        "tok @ https://${TOKEN}@files.example/tok-1.0-py3-none-any.whl"
    );
    match &tok.requirement {
        PakRequirement::Named(r) => match &r.version_or_url {
            Some(VersionOrUrl::Url(u)) => {
                assert_eq!(u.username(), "s3cret");
                assert_eq!(u.host_str(), Some("files.example"));
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn global_options_with_their_locations() {
    let f = forms();
    let o = &f.options;
    let index = o.index_url.as_ref().unwrap();
    assert_eq!(index.value, "https://index.example/simple");
    assert_eq!((index.location.line, index.location.column), (2, 13));
    assert_eq!(o.extra_index_urls.len(), 1);
    assert_eq!(o.extra_index_urls[0].value, "https://mirror.example/simple");
    assert_eq!(o.extra_index_urls[0].location.column, 19);
    assert_eq!(o.find_links.len(), 2);
    assert_eq!(o.find_links[0].value, "https://files.example/links/");
    // A find-links path is relative to the file and becomes a file:// URL of the directory.
    let wheels = url::Url::from_directory_path(fixtures().join("wheels")).unwrap();
    assert_eq!(o.find_links[1].value, wheels.to_string());
    assert!(o.pre);
    assert_eq!(o.only_binary.len(), 2);
    assert_eq!(o.only_binary[0].value, BinarySelector::All);
    assert_eq!(
        o.only_binary[1].value,
        BinarySelector::Packages(vec![name("numpy"), name("pillow")])
    );
    assert_eq!(o.no_binary[0].value, BinarySelector::None);
    assert_eq!(o.no_binary[0].location.line, 9);
}

#[test]
fn json_of_a_line_has_the_stable_keys() {
    let f = forms();
    let v = serde_json::to_value(&f.requirements[7]).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 6);
    for key in ["file", "line", "column", "text", "name", "needs_build"] {
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
    assert_eq!(v["line"], 22);
    assert_eq!(v["name"], "cozy-comfyui");
    let options = serde_json::to_value(&f.options).unwrap();
    assert_eq!(options["only_binary"][0]["value"], "All");
    assert_eq!(options["index_url"]["location"]["line"], 2);
}

#[test]
fn includes_are_flattened_in_place_relative_to_the_including_file() {
    let dir = fixtures().join("include");
    let f = pak::parse_file(&dir.join("main.txt"), &no_vars).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        names(&f.requirements),
        vec!["alpha", "beta", "delta", "gamma", "omega"]
    );
    assert_eq!(f.requirements[1].location.file, dir.join("sub/a.txt"));
    assert_eq!(f.requirements[2].location.file, dir.join("b.txt"));
    assert_eq!(f.requirements[2].location.line, 2);
    assert_eq!(f.requirements[4].location.file, dir.join("main.txt"));
    assert_eq!(f.requirements[4].location.line, 4);
    assert_eq!(
        f.files,
        vec![
            dir.join("main.txt"),
            dir.join("sub/a.txt"),
            dir.join("b.txt"),
            dir.join("constraints.txt"),
        ]
    );
    // Options of included files count.
    assert_eq!(
        f.options.extra_index_urls[0].location.file,
        dir.join("b.txt")
    );
    // Constraints, with their own locations.
    assert_eq!(names(&f.constraints), vec!["torch", "torchvision"]);
    assert_eq!(f.constraints[0].location.file, dir.join("constraints.txt"));
    assert_eq!(f.constraints[0].location.line, 2);
    assert_eq!(f.constraints[1].location.line, 3);
}

#[test]
fn include_cycle_names_the_chain() {
    let dir = fixtures().join("cycle");
    let err = pak::parse_file(&dir.join("one.txt"), &no_vars).unwrap_err();
    let loc = err.location().unwrap();
    assert_eq!(loc.file, dir.join("two.txt"));
    assert_eq!((loc.line, loc.column), (2, 4));
    assert_eq!(
        err.kind(),
        Some(&PakErrorKind::IncludeCycle {
            chain: vec![
                dir.join("one.txt"),
                dir.join("two.txt"),
                dir.join("one.txt")
            ]
        })
    );
    let text = err.to_string();
    assert!(text.contains("include cycle:"), "{text}");
    assert!(text.contains("one.txt -> "), "{text}");
    assert!(text.contains("2 | -r ../cycle/one.txt\n  |    ^"), "{text}");
}

#[test]
fn a_file_included_twice_without_a_cycle_is_fine() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("common.txt"), "six\n").unwrap();
    fs::write(tmp.path().join("a.txt"), "-r common.txt\n").unwrap();
    fs::write(tmp.path().join("main.txt"), "-r a.txt\n-r common.txt\n").unwrap();
    let f = pak::parse_file(&tmp.path().join("main.txt"), &no_vars).unwrap();
    assert_eq!(names(&f.requirements), vec!["six", "six"]);
    assert_eq!(f.files.len(), 3);
}

#[test]
fn self_include_is_a_cycle() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("self.txt");
    fs::write(&path, "numpy\n\n-rself.txt\n").unwrap();
    let err = pak::parse_file(&path, &no_vars).unwrap_err();
    assert_eq!(err.location().map(|l| (l.line, l.column)), Some((3, 3)));
    assert!(matches!(err.kind(), Some(PakErrorKind::IncludeCycle { chain }) if chain.len() == 2));
}

#[test]
fn parse_str_reads_includes_next_to_the_given_path() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("pak")).unwrap();
    fs::write(tmp.path().join("pak/more.txt"), "b==1\n").unwrap();
    let f = pak::parse_str(
        &tmp.path().join("pak/top.txt"),
        "a\n-r more.txt\n",
        &no_vars,
    )
    .unwrap();
    assert_eq!(names(&f.requirements), vec!["a", "b"]);
    assert_eq!(f.files[1], tmp.path().join("pak/more.txt"));
}

#[test]
fn vars_expand_in_requirements_and_options() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("v.txt");
    // `$HOME` and `${lower}` are not pip's form: they stay as written.
    fs::write(
        &path,
        "--index-url https://${IDX_HOST}/simple\ntorch==${TORCH_VERSION}\nx @ https://files.example/$HOME/${lower}/x-1.0-py3-none-any.whl\n",
    )
    .unwrap();
    let vars = |n: &str| match n {
        "IDX_HOST" => Some("index.example".to_string()),
        "TORCH_VERSION" => Some("2.11.0".to_string()),
        _ => None,
    };
    let f = pak::parse_file(&path, &vars).unwrap();
    assert_eq!(
        f.options.index_url.unwrap().value,
        "https://index.example/simple"
    );
    match &f.requirements[0].requirement {
        PakRequirement::Named(r) => {
            assert_eq!(r.version_or_url.as_ref().unwrap().to_string(), "==2.11.0")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.requirements[0].text, "torch==${TORCH_VERSION}");
    match &f.requirements[1].requirement {
        PakRequirement::Named(r) => match &r.version_or_url {
            Some(VersionOrUrl::Url(u)) => assert!(
                u.path().starts_with("/$HOME/$%7Blower%7D/")
                    || u.path().starts_with("/$HOME/${lower}/"),
                "{}",
                u.path()
            ),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn env_vars_reads_the_process_environment() {
    // PATH is set in any test environment; a made-up name is not.
    assert!(pak::env_vars("PATH").is_some());
    assert_eq!(pak::env_vars("COMFYPAK_SURELY_UNSET_VARIABLE_X"), None);
}

#[test]
fn reference_comfyui_pak_files_parse() {
    let dir = fixtures().join("reference");
    let count = |file: &str| {
        let f = pak::parse_file(&dir.join(file), &no_vars).unwrap_or_else(|e| panic!("{e}"));
        assert!(f.constraints.is_empty());
        assert_eq!(f.options, pak::PakOptions::default());
        f
    };
    let p2 = count("pak2.txt");
    assert_eq!(p2.requirements.len(), 7);
    assert_eq!(p2.requirements[0].location.line, 2);

    let p3 = count("pak3.txt");
    assert_eq!(p3.requirements.len(), 34);
    let imageio: Vec<&PakLine> = p3
        .requirements
        .iter()
        .filter(|l| l.requirement.name() == Some(&name("imageio")))
        .collect();
    assert_eq!(imageio.len(), 2);
    assert_eq!(imageio[1].text, "imageio[pyav]");
    assert!(p3
        .requirements
        .iter()
        .all(|l| l.requirement.needs_build().is_none()));

    let p5 = count("pak5.txt");
    assert_eq!(p5.requirements.len(), 102);
    assert!(p5
        .requirements
        .iter()
        .any(|l| l.requirement.name() == Some(&name("gitpython"))));

    let p7 = count("pak7.txt");
    assert_eq!(p7.requirements.len(), 10);
    let dlib = &p7.requirements[0];
    assert!(matches!(&dlib.requirement, PakRequirement::Named(r) if r.name == name("dlib")));
    assert_eq!(dlib.requirement.needs_build(), None);
    let git: Vec<&PakLine> = p7.requirements[4..].iter().collect();
    assert_eq!(git.len(), 6);
    for line in &git {
        match &line.requirement {
            PakRequirement::UnnamedUrl { url, .. } => assert!(url.starts_with("git+https://")),
            other => panic!("{other:?}"),
        }
        let why = line
            .requirement
            .needs_build()
            .expect("a git URL needs a build");
        assert!(why.contains("git repository"), "{why}");
    }
    assert_eq!(git[0].requirement.name(), None);
    assert_eq!(git[1].requirement.name(), Some(&name("cozy-comfyui")));
    assert_eq!(git[2].requirement.name(), Some(&name("cozy-comfy")));
    assert_eq!((git[1].location.line, git[1].location.column), (6, 1));
}

/// One refused pak file: what is written, and exactly where and how it must be refused.
struct Bad {
    /// Contents of `main.txt`.
    main: &'static str,
    /// Other files in the same directory.
    others: &'static [(&'static str, &'static str)],
    /// The file the error must name.
    file: &'static str,
    line: usize,
    column: usize,
    kind: PakErrorKind,
    /// A fragment of the help line.
    help: &'static str,
}

fn opt(o: &str) -> String {
    o.to_string()
}

fn bad_cases() -> Vec<Bad> {
    use PakErrorKind as K;
    let b = |main, file, line, column, kind, help| Bad {
        main,
        others: &[],
        file,
        line,
        column,
        kind,
        help,
    };
    let m = "main.txt";
    vec![
        b("numpy\n-e ./pkg\n", m, 2, 1, K::Editable, "build a wheel"),
        b(
            "--editable=git+https://git.example/o/x.git\n",
            m,
            1,
            1,
            K::Editable,
            "build a wheel",
        ),
        b(
            "numpy\n  ./pkg\n",
            m,
            2,
            3,
            K::LocalPath,
            "name the project: `name @ ./pkg`",
        ),
        b(
            "/abs/pkg[extra]\n",
            m,
            1,
            1,
            K::LocalPath,
            "find-links directory",
        ),
        b(
            "\n\npkg-1.0-py3-none-any.whl\n",
            m,
            3,
            1,
            K::LocalPath,
            "name @ file:///",
        ),
        b(
            "x @ src/x-1.0.tar.gz\n",
            m,
            1,
            5,
            K::LocalPath,
            "find-links directory",
        ),
        b(
            "file:///srv/src/x\n",
            m,
            1,
            1,
            K::LocalPath,
            "find-links directory",
        ),
        b(
            "--trusted-host index.example\n",
            m,
            1,
            1,
            K::UnsupportedOption {
                option: opt("--trusted-host"),
            },
            "valid certificate",
        ),
        b(
            "# flags\n--use-feature=fast-deps\n",
            m,
            2,
            1,
            K::UnsupportedOption {
                option: opt("--use-feature"),
            },
            "remove this line",
        ),
        b(
            "x --global-option=--foo\n",
            m,
            1,
            3,
            K::UnsupportedOption {
                option: opt("--global-option"),
            },
            "build the wheel beforehand",
        ),
        b(
            "x  --config-settings key=v\n",
            m,
            1,
            4,
            K::UnsupportedOption {
                option: opt("--config-settings"),
            },
            "build the wheel beforehand",
        ),
        b(
            "--no-index\n",
            m,
            1,
            1,
            K::UnsupportedOption {
                option: opt("--no-index"),
            },
            "stack.toml",
        ),
        b(
            "-Z\n",
            m,
            1,
            1,
            K::UnknownOption { option: opt("-Z") },
            "pak files accept",
        ),
        b(
            "--pre --frobnicate\n",
            m,
            1,
            7,
            K::UnknownOption {
                option: opt("--frobnicate"),
            },
            "pak files accept",
        ),
        b(
            "numpy -i https://index.example/simple\n",
            m,
            1,
            7,
            K::OptionAfterRequirement { option: opt("-i") },
            "line of its own",
        ),
        b(
            "x==1 --hash=md5:0123\n",
            m,
            1,
            13,
            K::BadHash,
            "--hash=sha256:",
        ),
        b(
            "x==1 \\\n  --hash sha256:abcd\n",
            m,
            2,
            10,
            K::BadHash,
            "64 hex digits",
        ),
        b(
            "x==1 --hash=sha256\n",
            m,
            1,
            13,
            K::BadHash,
            "64 hex digits",
        ),
        b(
            "--hash=sha256:0000\n",
            m,
            1,
            1,
            K::HashWithoutRequirement,
            "on the line of the requirement",
        ),
        b(
            "x==1 --hash\n",
            m,
            1,
            6,
            K::MissingValue {
                option: opt("--hash"),
            },
            "--hash=sha256:",
        ),
        b(
            "numpy >=1.0,<\n",
            m,
            1,
            13,
            K::InvalidSpecifier,
            "`numpy>=1.0,<2`",
        ),
        b(
            "scipy>=1.11,\\\n<\n",
            m,
            2,
            1,
            K::InvalidSpecifier,
            "`scipy>=1.0,<2`",
        ),
        b(
            "numpy ==1.0.0.dev-x\n",
            m,
            1,
            7,
            K::InvalidSpecifier,
            "`numpy>=1.0,<2`",
        ),
        b(
            "numpy 1.0\n",
            m,
            1,
            7,
            K::InvalidSpecifier,
            "`numpy>=1.0,<2`",
        ),
        b(
            "numpy ; python_version >> \"3\"\n",
            m,
            1,
            24,
            K::InvalidMarker,
            "quote the values",
        ),
        b(
            "numpy ; os_nam == \"posix\"\n",
            m,
            1,
            9,
            K::InvalidMarker,
            "python_version >= \"3.12\"",
        ),
        b(
            "numpy[-x]\n",
            m,
            1,
            7,
            K::InvalidExtras,
            "`numpy[extra1,extra2]`",
        ),
        b(
            "numpy[a b]\n",
            m,
            1,
            9,
            K::InvalidExtras,
            "`numpy[extra1,extra2]`",
        ),
        b(
            "numpy_\n",
            m,
            1,
            6,
            K::InvalidName,
            "start the line with a package name",
        ),
        b(
            "git+https://git.example/o/x.git#egg=no/pe\n",
            m,
            1,
            37,
            K::InvalidName,
            "#egg=name",
        ),
        b(
            "https://files.example/x-1.0-py3-none-any.whl ; python_version > \"3\"\n",
            m,
            1,
            46,
            K::InvalidUrl,
            "name @ URL ; python_version",
        ),
        b("x @ https://[::1\n", m, 1, 5, K::InvalidUrl, "x @ https://"),
        b(
            "ftp://files.example/x-1.0-py3-none-any.whl\n",
            m,
            1,
            1,
            K::UnsupportedUrl,
            "https://",
        ),
        b(
            "-r https://files.example/more.txt\n",
            m,
            1,
            4,
            K::UnsupportedUrl,
            "download the file",
        ),
        b(
            "a\n-r missing.txt\n",
            m,
            2,
            4,
            K::IncludeNotFound {
                path: PathBuf::new(),
            },
            "relative to the file that names them",
        ),
        b(
            "x @ https://${TOKEN}@files.example/x-1.0-py3-none-any.whl\n",
            m,
            1,
            13,
            K::UnsetVariable { name: opt("TOKEN") },
            "set TOKEN",
        ),
        b(
            "--index-url\n",
            m,
            1,
            1,
            K::MissingValue {
                option: opt("--index-url"),
            },
            "--index-url https://index.example/simple",
        ),
        b(
            "-r --pre\n",
            m,
            1,
            1,
            K::MissingValue { option: opt("-r") },
            "-r other.txt",
        ),
        b(
            "--pre numpy\n",
            m,
            1,
            7,
            K::UnexpectedValue {
                option: opt("--pre"),
            },
            "requirements on lines of their own",
        ),
        Bad {
            main: "-r a.txt b.txt\n",
            others: &[("a.txt", "x\n")],
            file: m,
            line: 1,
            column: 10,
            kind: K::UnexpectedValue { option: opt("-r") },
            help: "one value",
        },
        b(
            "--pre=yes\n",
            m,
            1,
            1,
            K::UnexpectedValue {
                option: opt("--pre"),
            },
            "`--pre` alone",
        ),
        b(
            "--only-binary :all:,numpy\n",
            m,
            1,
            15,
            K::InvalidOptionValue {
                option: opt("--only-binary"),
            },
            "comma-separated names",
        ),
        b(
            "-i index.example/simple\n",
            m,
            1,
            4,
            K::InvalidOptionValue { option: opt("-i") },
            "-i https://index.example/simple",
        ),
        b(
            "-f ./no-such-dir\n",
            m,
            1,
            4,
            K::InvalidOptionValue {
                option: opt("--find-links"),
            },
            "relative to the file",
        ),
        b(
            "x --hash 'sha256:00\n",
            m,
            1,
            10,
            K::UnterminatedQuote,
            "close the quote",
        ),
        Bad {
            main: "numpy\n-c c.txt\n",
            others: &[("c.txt", "torch==2.11.0\nimageio[ffmpeg]==2.0\n")],
            file: "c.txt",
            line: 2,
            column: 8,
            kind: K::InvalidConstraint,
            help: "name with version specifiers and markers only",
        },
        Bad {
            main: "-c c.txt\n",
            others: &[("c.txt", "\ngit+https://git.example/o/x.git\n")],
            file: "c.txt",
            line: 2,
            column: 1,
            kind: K::InvalidConstraint,
            help: "name with version specifiers",
        },
        Bad {
            main: "-c c.txt\n",
            others: &[(
                "c.txt",
                "x @ https://files.example/x-1.0-py3-none-any.whl\n",
            )],
            file: "c.txt",
            line: 1,
            column: 3,
            kind: K::InvalidConstraint,
            help: "name with version specifiers",
        },
        Bad {
            main: "a\n-r sub/inner.txt\n",
            others: &[("sub/inner.txt", "b\n\n  -e .\n")],
            file: "sub/inner.txt",
            line: 3,
            column: 3,
            kind: K::Editable,
            help: "build a wheel",
        },
    ]
}

#[test]
fn refused_lines_name_file_line_column_and_help() {
    let cases = bad_cases();
    assert!(cases.len() >= 20);
    for case in cases {
        let tmp = tempfile::tempdir().unwrap();
        let main = tmp.path().join("main.txt");
        fs::write(&main, case.main).unwrap();
        for (name, contents) in case.others {
            let path = tmp.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
        }
        let vars = |_: &str| None;
        let err = match pak::parse_file(&main, &vars) {
            Ok(f) => panic!("{:?} was accepted: {f:?}", case.main),
            Err(e) => e,
        };
        let what = format!("{:?}:\n{err}", case.main);
        let line_error = err.line_error().unwrap_or_else(|| panic!("{what}"));
        assert_eq!(
            line_error.location.file,
            tmp.path().join(case.file),
            "{what}"
        );
        assert_eq!(
            (line_error.location.line, line_error.location.column),
            (case.line, case.column),
            "{what}"
        );
        match (&line_error.kind, &case.kind) {
            (PakErrorKind::IncludeNotFound { path }, PakErrorKind::IncludeNotFound { .. }) => {
                assert_eq!(path, &tmp.path().join("missing.txt"), "{what}")
            }
            (got, want) => assert_eq!(got, want, "{what}"),
        }
        assert!(
            line_error.help.contains(case.help),
            "help lacks {:?}: {what}",
            case.help
        );

        // The rendering: file:line:col, the physical line, a caret under the column, the help.
        let text = err.to_string();
        let header = format!(
            "{}:{}:{}: ",
            tmp.path().join(case.file).display(),
            case.line,
            case.column
        );
        assert!(text.starts_with(&header), "{what}");
        let physical = fs::read_to_string(tmp.path().join(case.file)).unwrap();
        let physical = physical.lines().nth(case.line - 1).unwrap();
        let number = case.line.to_string();
        let gutter = " ".repeat(number.len());
        let excerpt = format!(
            "{number} | {physical}\n{gutter} | {}^",
            " ".repeat(case.column - 1)
        );
        assert!(text.ends_with(&excerpt), "{what}");
        // Neither a prefix nor the help is part of the message: the renderer adds them.
        assert!(
            !text.contains("error:") && !text.contains("help:"),
            "{what}"
        );
    }
}

#[test]
fn a_missing_top_level_file_is_a_read_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = pak::parse_file(&tmp.path().join("nope.txt"), &no_vars).unwrap_err();
    assert!(matches!(err, PakError::Read { .. }));
    assert!(err.to_string().contains("nope.txt"));
    assert_eq!(err.location(), None);
}

#[test]
fn prefer_binary_is_accepted_as_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("p.txt");
    fs::write(&path, "--prefer-binary\nnumpy\n").unwrap();
    let f = pak::parse_file(&path, &no_vars).unwrap();
    assert_eq!(f.options, pak::PakOptions::default());
    assert_eq!(names(&f.requirements), vec!["numpy"]);
}

#[test]
fn every_include_spelling() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for (file, contents) in [
        ("r1.txt", "one\n"),
        ("r2.txt", "two\n"),
        ("r3.txt", "three\n"),
        ("r4.txt", "four\n"),
        ("c1.txt", "c-one==1\n"),
        ("c2.txt", "c-two==2\n"),
        ("c3.txt", "c-three==3\n"),
        ("c4.txt", "c-four==4\n"),
    ] {
        fs::write(dir.join(file), contents).unwrap();
    }
    let main = dir.join("main.txt");
    fs::write(
        &main,
        "-r r1.txt\n-rr2.txt\n--requirement r3.txt\n--requirement=r4.txt\n\
         -c c1.txt\n-cc2.txt\n--constraint c3.txt\n--constraint=c4.txt\n",
    )
    .unwrap();
    let f = pak::parse_file(&main, &no_vars).unwrap();
    assert_eq!(names(&f.requirements), vec!["one", "two", "three", "four"]);
    assert_eq!(
        names(&f.constraints),
        vec!["c-one", "c-two", "c-three", "c-four"]
    );
    assert_eq!(f.files.len(), 9);
    assert_eq!(f.files[0], main);
    assert_eq!(f.files[8], dir.join("c4.txt"));
}

#[test]
fn crlf_comments_after_fragments_and_comment_lines_in_continuations() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("w.txt");
    fs::write(
        &path,
        "numpy\r\n\
         https://files.example/y-2.0.tar.gz#egg=y # fetched by URL\r\n\
         scipy \\\r\n\
         # a comment line ends the continuation \\\r\n\
         pandas\r\n\
         \t# indented comment\r\n",
    )
    .unwrap();
    let f = pak::parse_file(&path, &no_vars).unwrap();
    assert_eq!(
        names(&f.requirements),
        vec!["numpy", "y", "scipy", "pandas"]
    );
    assert_eq!(
        f.requirements[1].text,
        "https://files.example/y-2.0.tar.gz#egg=y"
    );
    assert_eq!(f.requirements[3].location.line, 5);
}

#[test]
fn constraint_files_accept_specifiers_and_markers() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(
        tmp.path().join("c.txt"),
        "torch==2.11.0 ; sys_platform == \"linux\"\nnumpy<3\n",
    )
    .unwrap();
    fs::write(tmp.path().join("m.txt"), "-c c.txt\ntorch\n").unwrap();
    let f = pak::parse_file(&tmp.path().join("m.txt"), &no_vars).unwrap();
    assert_eq!(names(&f.requirements), vec!["torch"]);
    assert_eq!(names(&f.constraints), vec!["torch", "numpy"]);
    assert_eq!(f.constraints[1].location.file, tmp.path().join("c.txt"));
}
