//! The collector's envelope work per sample, for instruction counts that a
//! shared machine's noise does not move:
//!
//!     valgrind --tool=callgrind --toggle-collect='*collector_keygen*' \
//!         target/release/examples/dh_cost 50      # key generation only
//!     valgrind --tool=callgrind --toggle-collect='*collector_open*' \
//!         target/release/examples/dh_cost 50      # opening the replies only
//!
//! Divide the instruction count by N (argument, default 50). The agent's side
//! (`respond`) runs in between, outside both functions. Without valgrind it
//! prints wall-clock medians of the two.

use edgemon_proto::envelope::{Initiator, respond};
use std::time::{Duration, Instant};

#[inline(never)]
fn collector_keygen(n: usize) -> Vec<(Initiator, Vec<u8>)> {
    (0..n)
        .map(|_| {
            let init = Initiator::new();
            let request = init.request();
            (init, request)
        })
        .collect()
}

#[inline(never)]
fn collector_open(pairs: &[(Initiator, Vec<u8>)], replies: &[Vec<u8>]) -> usize {
    pairs
        .iter()
        .zip(replies)
        .map(|((init, _), reply)| init.open(reply, 1 << 20).map_or(0, |p| p.len()))
        .sum()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let payload = vec![b'x'; 1500];
    // Warm-up outside the counted functions: per-process tables and constants.
    let warm = collector_keygen(1);
    let reply = respond(&warm[0].1, &payload).expect("respond");
    let _ = collector_open(&warm, &[reply]);

    let t = Instant::now();
    let pairs = collector_keygen(n);
    let keygen = t.elapsed();
    let replies: Vec<Vec<u8>> = pairs
        .iter()
        .map(|(_, req)| respond(req, &payload).expect("respond"))
        .collect();
    let t = Instant::now();
    let opened = collector_open(&pairs, &replies);
    let open = t.elapsed();
    assert_eq!(opened, n * payload.len());
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "{n} samples: keygen {:.1} µs, open {:.1} µs per sample",
        per(keygen),
        per(open)
    );
}
