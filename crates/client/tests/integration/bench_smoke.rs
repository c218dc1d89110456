//! The Rust-client benchmark (`examples/bench_client.rs`) still runs: tiny
//! loops, 1 and 2 threads, unix sockets and TCP, in-process servers, floor
//! on a thread, no Redis (well under 20 s).

#[allow(dead_code, unused_imports)]
#[path = "../../examples/bench_client.rs"]
mod bench_client;

use bench_client::{Opts, Transport, OPS};

#[test]
fn bench_client_smoke_run_prints_every_row() {
    let t = std::time::Instant::now();
    let opts = Opts::smoke();
    assert_eq!(opts.threads, [1, 2]);
    assert_eq!(opts.transports, [Transport::Unix, Transport::Tcp]);
    let r = bench_client::run(&opts).expect("bench run");
    // The TCP server listens on loopback with a real port.
    assert!(r.text.contains("tcp (127.0.0.1:"), "{}", r.text);
    assert!(!r.text.contains("127.0.0.1:0)"), "{}", r.text);
    for tr in ["unix", "tcp"] {
        for op in OPS {
            let rows: Vec<&str> = r
                .text
                .lines()
                .filter(|l| l.starts_with(&format!("| {tr} | `{op}` |")))
                .collect();
            // one latency row; per thread count a plain and a pipelined row
            assert_eq!(rows.len(), 1 + 2 * opts.threads.len(), "{}", r.text);
            for setup in [
                "| 1 thread |",
                "| 2 threads |",
                "| 1 thread, 4 in flight |",
                "| 2 threads, 4 in flight each |",
            ] {
                assert_eq!(
                    rows.iter().filter(|l| l.contains(setup)).count(),
                    1,
                    "{tr} {op} {setup}: {}",
                    r.text
                );
            }
            // Every figure measured: the client column is a positive number.
            for row in &rows[1..] {
                let client: f64 = row.split('|').nth(4).unwrap().trim().parse().unwrap();
                assert!(client > 0.0, "{row}");
            }
        }
    }
    assert!(
        !r.text.contains("NaN") && !r.text.contains("inf"),
        "{}",
        r.text
    );
    assert!(r.text.contains("Latency, 1 thread"), "{}", r.text);
    assert!(r.text.contains("Redis not run"), "{}", r.text);
    // Latency targets are always judged, per transport; Redis ones only
    // with Redis.
    assert_eq!(r.targets.len(), 2 * OPS.len(), "{:?}", r.targets);
    for tr in ["unix", "tcp"] {
        let n = r.targets.iter().filter(|(n, _)| n.starts_with(tr)).count();
        assert_eq!(n, OPS.len(), "{:?}", r.targets);
    }
    assert_eq!(
        bench_client::parse_redis(
            "GET: rps=1.0 (overall: 2.0)\r GET: 81234.56 requests per second, p50=0.055 msec\n"
        ),
        Some(81234.56)
    );
    assert!(t.elapsed().as_secs() < 20, "took {:?}", t.elapsed());
}
