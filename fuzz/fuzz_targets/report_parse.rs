//! Feeds arbitrary bytes to the report parser. It may refuse, never panic,
//! and anything it accepts must survive a write/parse round trip.
#![no_main]

use edgemon_proto::report::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = parse(data) {
        let again = parse(&report.to_xml()).expect("a parsed report writes back parseably");
        assert_eq!(again.cores, report.cores);
        assert_eq!(again.mem_used, report.mem_used);
        assert_eq!(again.hostname, report.hostname);
    }
});
