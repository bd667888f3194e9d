//! The agent's request loop: read a request frame, sample, answer with a
//! sealed report frame, until stdin ends or stays silent too long. It decides
//! the outcome; `main` maps it to an exit code.

use crate::sample::Sampler;
use edgemon_proto::envelope::{self, FrameError, REQUEST_LEN};
use edgemon_proto::report::family::options::AgentOptions;
use std::io::{self, Read, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// Largest request frame read; a real request is exactly [`REQUEST_LEN`] bytes.
const MAX_REQUEST_FRAME: usize = 4 * REQUEST_LEN;

/// How the loop ended.
#[derive(Debug)]
pub enum Outcome {
    /// stdin ended cleanly between requests.
    Eof,
    /// No request within the idle timeout.
    Idle(Duration),
    /// A request could not be read or was refused.
    BadRequest(String),
    /// The answer could not be written.
    Output(io::Error),
}

/// Serves requests from `input` to `output` until one of the [`Outcome`]s.
///
/// `input` is read on its own thread so the idle timeout applies to a
/// blocking stdin; that thread is left behind when the process exits.
pub fn run(
    input: impl Read + Send + 'static,
    output: &mut impl Write,
    idle: Duration,
    options: AgentOptions,
) -> Outcome {
    let (tx, rx) = mpsc::sync_channel::<Result<Option<Vec<u8>>, FrameError>>(1);
    std::thread::spawn(move || {
        let mut input = input;
        loop {
            let frame = envelope::read_frame(&mut input, MAX_REQUEST_FRAME);
            let done = !matches!(frame, Ok(Some(_)));
            if tx.send(frame).is_err() || done {
                return;
            }
        }
    });

    let mut sampler = Sampler::new(options);
    loop {
        // This reply's key pair, made while waiting rather than after the request arrives;
        // `respond_with` consumes it, so each serves one reply.
        let keys = envelope::Responder::new();
        let request = match rx.recv_timeout(idle) {
            Ok(Ok(Some(request))) => request,
            Ok(Ok(None)) | Err(RecvTimeoutError::Disconnected) => return Outcome::Eof,
            Ok(Err(e)) => return Outcome::BadRequest(e.to_string()),
            Err(RecvTimeoutError::Timeout) => return Outcome::Idle(idle),
        };
        let xml = sampler.sample().to_xml();
        let reply = match envelope::respond_with(keys, &request, &xml) {
            Ok(reply) => reply,
            Err(e) => return Outcome::BadRequest(e.to_string()),
        };
        if let Err(e) = envelope::write_frame(output, &reply).and_then(|()| output.flush()) {
            return Outcome::Output(e);
        }
    }
}
