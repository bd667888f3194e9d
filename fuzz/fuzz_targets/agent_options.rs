//! Feeds arbitrary text to the agent's `--options` token reader. It may refuse, never panic,
//! and options it accepts must encode to a token that reads back the same, unless a value
//! held a carriage return (which the encoder leaves out).
#![no_main]

use edgemon_proto::report::family::options::AgentOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(options) = AgentOptions::from_token(token) {
        let again = AgentOptions::from_token(&options.to_token()).expect("own token reads");
        if !token_has_cr(&options) {
            assert_eq!(again, options);
        }
    }
});

fn token_has_cr(o: &AgentOptions) -> bool {
    [&o.fs_exclude_mounts, &o.fs_exclude_types, &o.if_exclude, &o.dev_exclude]
        .iter()
        .any(|l| l.iter().any(|v| v.contains('\r')))
        || o.watch.iter().any(|w| (w.name.clone() + &w.pattern).contains(['\r', '\t']))
}
