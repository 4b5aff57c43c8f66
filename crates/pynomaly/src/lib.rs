//! # pynomaly: anomaly detection as a service, and its command line
//!
//! This crate is the `pynomaly` binary's library: [`cli`] parses the command line and runs
//! one subcommand per module. The algorithms live in `detect-core`, file reading in
//! `data-source`; the commands only wire them together and report.

pub mod cli;
