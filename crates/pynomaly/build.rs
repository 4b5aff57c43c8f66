//! Link settings of the `pynomaly` binary.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        // Pack the binary's relative relocations (DT_RELR: GNU ld 2.38+, glibc 2.36+). The
        // binary stays position-independent (ASLR unchanged), but its ~47,000 relative
        // relocations shrink from a 1.1 MB table, which the loader reads at every start and
        // which then stays resident, to a few kilobytes: that table was 4% of the peak
        // memory of `pynomaly detect` on the http dataset (BENCHMARKS.md, issue 2).
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
