//! Feeds arbitrary bytes to `Initiator::open` (as a hostile agent or channel
//! would) and to `respond` (as a hostile collector would). Neither may panic,
//! and `open` must never return a payload for bytes it did not seal.
#![no_main]

use edgemon_proto::envelope::{Initiator, respond};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// One initiator and one genuine reply to it, made once: sealing costs two
/// modular exponentiations, which would dominate every run.
fn fixture() -> &'static (Initiator, Vec<u8>) {
    static FIXTURE: OnceLock<(Initiator, Vec<u8>)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let init = Initiator::new();
        let reply = respond(&init.request(), b"payload").unwrap_or_default();
        (init, reply)
    })
}

fuzz_target!(|data: &[u8]| {
    let (init, original) = fixture();
    // Without the initiator's private exponent no input can carry a valid tag.
    assert!(init.open(data, 1 << 20).is_err());
    let _ = respond(data, b"<stats/>");
    // Splice the input into a genuine reply so the fuzzer reaches the MAC check.
    if let Some((&pos, rest)) = data.split_first() {
        let mut reply = original.clone();
        let start = usize::from(pos) * reply.len() / 256;
        for (slot, byte) in reply[start..].iter_mut().zip(rest) {
            *slot = *byte;
        }
        // Any change at all must be refused; only the untouched reply opens.
        let opened = init.open(&reply, 1 << 20);
        assert_eq!(opened.is_ok(), &reply == original, "{opened:?}");
    }
});
