//! Feeds arbitrary byte streams to `read_frame`: no panics, no frame over the
//! limit, and the frames read account for the stream's bytes exactly.
#![no_main]

use edgemon_proto::envelope::read_frame;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    let mut consumed = 0usize;
    loop {
        match read_frame(&mut r, MAX) {
            Ok(Some(body)) => {
                assert!(body.len() <= MAX);
                consumed += 4 + body.len();
            }
            Ok(None) => {
                assert_eq!(consumed, data.len());
                break;
            }
            Err(_) => break,
        }
    }
});
