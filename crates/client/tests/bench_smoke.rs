//! The Rust-client benchmark (`examples/bench_client.rs`) still runs: tiny
//! loops, in-process server, floor on a thread, no Redis (well under 20 s).

#[allow(dead_code, unused_imports)]
#[path = "../examples/bench_client.rs"]
mod bench_client;

#[test]
fn bench_client_smoke_run_prints_every_row() {
    let t = std::time::Instant::now();
    let r = bench_client::run(&bench_client::Opts::smoke()).expect("bench run");
    for op in bench_client::OPS {
        // one latency row and four throughput rows per operation
        assert_eq!(
            r.text.matches(&format!("| `{op}` |")).count(),
            5,
            "{}",
            r.text
        );
    }
    assert!(r.text.contains("Latency, 1 thread"), "{}", r.text);
    assert!(r.text.contains("Redis not run"), "{}", r.text);
    // Latency targets are always judged; Redis ones only with Redis.
    assert_eq!(r.targets.len(), bench_client::OPS.len(), "{:?}", r.targets);
    assert_eq!(
        bench_client::parse_redis(
            "GET: rps=1.0 (overall: 2.0)\r GET: 81234.56 requests per second, p50=0.055 msec\n"
        ),
        Some(81234.56)
    );
    assert!(t.elapsed().as_secs() < 20, "took {:?}", t.elapsed());
}
