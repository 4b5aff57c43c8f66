//! The `pynomaly` binary: everything lives in the library (`pynomaly::cli`), so tests and
//! other binaries reuse it.

fn main() -> std::process::ExitCode {
    pynomaly::cli::main()
}
