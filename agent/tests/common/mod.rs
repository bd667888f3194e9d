//! What the agent's integration tests share: one request and the report it gets back, asked
//! as the collector asks (a fresh DH initiator per request).
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use edgemon_proto::envelope::{Initiator, read_frame, write_frame};
use edgemon_proto::report::{Report, parse};
use std::io::{Read, Write};

/// Largest reply read.
pub const MAX_REPLY: usize = 1 << 20;

/// Sends one request on `stdin` and returns the report the agent sealed on `stdout`.
pub fn ask(stdin: &mut impl Write, stdout: &mut impl Read) -> Report {
    let init = Initiator::new();
    write_frame(stdin, &init.request()).expect("request written");
    stdin.flush().expect("request flushed");
    let reply = read_frame(stdout, MAX_REPLY)
        .expect("reply frame readable")
        .expect("agent answered before closing stdout");
    let xml = init.open(&reply, MAX_REPLY).expect("reply opens");
    parse(&xml).expect("report parses")
}
