//! `mpmanager`: the command-line front end.
//!
//! * `mpmanager serve [--address ADDR] [--object NAME=TYPE]…` runs a
//!   manager server that CPython's `multiprocessing` clients can
//!   `connect()` to (see `mpmanager serve --help`).
//! * `mpmanager pickle show [FILE]` prints the Python `repr` of a pickle
//!   without executing anything (a safe way to look inside an untrusted
//!   pickle), in the inspector style (`mpmanager_pickle::repr::inspect`):
//!   objects of unknown classes are shown as the calls that rebuild them.
//! * `mpmanager pickle recode --protocol N [FILE]` rewrites a pickle at
//!   another protocol.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use mpmanager_pickle::{decode_with, encode_with, DecodeOptions, EncodeOptions};

mod serve;

// Allocator: this binary sets no `#[global_allocator]`, so it runs on the
// system allocator (glibc malloc), not mimalloc: every connection is a
// thread, and mimalloc gives each thread its own heap (segment metadata and
// a page per size class), ~98 KB resident per idle connection against
// ~27 KB with glibc's shared arenas; request throughput was the same within
// the noise (docs/BENCHMARKS.md, "Memory").

/// Turns off transparent huge pages for this process. With THP on (`always`,
/// or `madvise` for an allocator that advises huge pages, as mimalloc does)
/// each connection thread's first touch of its heap or arena can fault in a
/// 2 MiB page: ~1.2 MB resident per idle connection was measured that way
/// (docs/BENCHMARKS.md). Failure (an old kernel) only costs that memory.
fn disable_transparent_huge_pages() {
    // SAFETY: prctl(PR_SET_THP_DISABLE) only sets a flag on this process's
    // memory descriptor; no memory of ours is read or written.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r != 0 {
        // Deliberately ignored (the error is read and dropped): the server
        // works either way, see above.
        let _ = std::io::Error::last_os_error();
    }
}

#[derive(Parser)]
#[command(
    name = "mpmanager",
    version,
    about = "Python multiprocessing manager server, in Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a manager server for Python multiprocessing clients.
    #[command(long_about = serve::LONG_ABOUT)]
    Serve(serve::ServeArgs),
    /// Inspect and convert pickles, without executing anything in them.
    #[command(subcommand)]
    Pickle(PickleCommand),
}

#[derive(clap::Args)]
struct Limits {
    /// Refuse input larger than this many bytes.
    #[arg(long, default_value_t = 1 << 30)]
    max_input: usize,
    /// Refuse values nested deeper than this.
    #[arg(long, default_value_t = 1000)]
    max_depth: usize,
}

impl Limits {
    fn options(&self) -> DecodeOptions {
        let mut opts = DecodeOptions::default();
        opts.max_input = self.max_input;
        opts.max_depth = self.max_depth;
        opts
    }
}

#[derive(Subcommand)]
enum PickleCommand {
    /// Print the Python repr of a pickle (read from FILE, or stdin).
    ///
    /// Objects of classes the inspector does not know are shown as the
    /// calls that would rebuild them, e.g. `__main__.Point.__new__(...)`;
    /// nothing is imported or called.
    Show {
        /// The pickle file; stdin if omitted or `-`.
        file: Option<PathBuf>,
        #[command(flatten)]
        limits: Limits,
    },
    /// Rewrite a pickle at another protocol (to stdout, or --output).
    Recode {
        /// Protocol to write: 2, 3, 4 or 5.
        #[arg(long, short, default_value_t = 4, value_parser = clap::value_parser!(u8).range(2..=5))]
        protocol: u8,
        /// The pickle file; stdin if omitted or `-`.
        file: Option<PathBuf>,
        /// Where to write; stdout if omitted.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        limits: Limits,
    },
}

fn read_input(file: &Option<PathBuf>, max: usize) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    match file.as_deref() {
        Some(p) if p.as_os_str() != "-" => {
            let f =
                std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
            f.take(max as u64 + 1)
                .read_to_end(&mut data)
                .with_context(|| format!("cannot read {}", p.display()))?;
        }
        _ => {
            std::io::stdin()
                .take(max as u64 + 1)
                .read_to_end(&mut data)
                .context("cannot read stdin")?;
        }
    }
    Ok(data)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args)?,
        Command::Pickle(PickleCommand::Show { file, limits }) => {
            let data = read_input(&file, limits.max_input)?;
            let value = decode_with(&data, &limits.options()).context("not a valid pickle")?;
            let text =
                mpmanager_pickle::repr::try_inspect(&value).context("cannot show this value")?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}")?;
        }
        Command::Pickle(PickleCommand::Recode {
            protocol,
            file,
            output,
            limits,
        }) => {
            let data = read_input(&file, limits.max_input)?;
            let value = decode_with(&data, &limits.options()).context("not a valid pickle")?;
            let mut opts = EncodeOptions::protocol(protocol);
            opts.max_depth = limits.max_depth;
            let bytes = encode_with(&value, &opts).context("cannot write this value")?;
            match output {
                Some(p) => std::fs::write(&p, &bytes)
                    .with_context(|| format!("cannot write {}", p.display()))?,
                None => std::io::stdout().lock().write_all(&bytes)?,
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpmanager: {e:#}");
            ExitCode::FAILURE
        }
    }
}
