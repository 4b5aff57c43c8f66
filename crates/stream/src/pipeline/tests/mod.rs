//! The pipeline's tests: the two parse paths agree ([`paths`]), and whole runs keep order
//! and commit only what was written ([`run`]).

mod paths;
mod run;
