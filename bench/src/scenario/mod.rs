//! The benchmark scenarios; each prints one JSON object describing its run.

pub mod idle;
pub mod join;
pub mod traffic;
