//! Feeds arbitrary bytes to the report parser. It may refuse, never panic,
//! and anything it accepts (metric family sections included) must survive a write/parse
//! round trip.
#![no_main]

use edgemon_proto::report::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = parse(data) {
        let again = parse(&report.to_xml()).expect("a parsed report writes back parseably");
        assert_eq!(again.cores, report.cores);
        assert_eq!(again.mem_used, report.mem_used);
        assert_eq!(again.hostname, report.hostname);
        // Metric family sections: members and the agent's cut survive; `refused` is the
        // reader's own count and starts again at zero.
        assert_eq!(again.sections.len(), report.sections.len());
        for (a, b) in again.sections.iter().zip(&report.sections) {
            assert_eq!(a.family.id, b.family.id);
            assert_eq!(a.members, b.members);
            assert_eq!(a.cut, b.cut);
            assert_eq!(a.refused, 0);
        }
    }
});
