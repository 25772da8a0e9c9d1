//! The `comfypak` binary: parses arguments and hands over to [`comfypak::cli`].

fn main() -> std::process::ExitCode {
    let code = comfypak::cli::main();
    comfypak::test_hook::write_counts();
    code
}
