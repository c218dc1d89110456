//! The objects crate's integration tests, one test binary (ripgrep's
//! `tests/integration` layout): each module is what used to be its own
//! `tests/<name>.rs` binary, so tests are still found by their old file name
//! (`cargo test -p mpmanager-objects --test integration <name>::`), and the
//! crate links one test binary instead of one per file.
//!
//! A new test file goes here as `tests/integration/<name>.rs` plus a `mod`
//! line below; shared helpers are modules too (`use crate::<helper>;`).

mod common;

mod cancellation;
mod cpython_semantics;
mod locks;
mod queue;
mod registry;
mod shared_type;
