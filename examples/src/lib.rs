//! Runnable examples of mpmanager's Rust API, each the Rust version of a
//! Python program about managers (run them from the repository root):
//!
//! | command | what it shows |
//! |---|---|
//! | `cargo run --example bulletin_board` | a `Namespace` as a bulletin board across processes; names starting with `_` stay local |
//! | `cargo run --example remote_queue` | the docs' remote manager: a server with one shared queue (`get_queue`) and two client processes |
//! | `cargo run --example nested_proxies` | what propagates through proxies and what does not (the Q&A "why was my list in a Namespace not changed?") |
//! | `cargo run --example maths` | a custom Rust type registered on the manager (`#[shared_type]`), the docs' `MyManager.register('Maths', MathsClass)`; `cargo run --example maths_server` serves it to Python clients |
//!
//! Each prints what its Python counterpart prints (proxy addresses aside);
//! `tests/examples.rs` checks that.
