//! The cli crate's integration tests, one test binary (ripgrep's
//! `tests/integration` layout): each module is what used to be its own
//! `tests/<name>.rs` binary, so tests are still found by their old file name
//! (`cargo test -p mpmanager-cli --test integration <name>::`), and the
//! crate links one test binary instead of one per file.
//!
//! A new test file goes here as `tests/integration/<name>.rs` plus a `mod`
//! line below; shared helpers are modules too (`use crate::<helper>;`).
//!
//! The perf group, `#[ignore]`d because its thresholds depend on the
//! allocator and the kernel (`serve_memory`, `stress`), runs with
//! `cargo test -p mpmanager-cli --test integration -- --ignored serve_memory:: serve_memory_limits:: stress::`
//! (as `.ci/run` does).

mod serve_common;
mod version_outputs;

mod bench_smoke;
mod pickle_show;
mod python_package;
mod seed_scenarios;
mod seeds_via_package;
mod serve_admission;
mod serve_busy_poll;
mod serve_cli;
mod serve_client;
mod serve_faults;
mod serve_input;
mod serve_locks;
mod serve_memory;
mod serve_memory_limits;
mod serve_pipelining;
mod serve_python;
mod serve_queue;
mod serve_robustness;
mod serve_shutdown;
mod serve_xmlrpc;
mod server_ends_with_program;
mod stress;
