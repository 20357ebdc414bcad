//! Any byte string: the parser must return, never panic or exhaust memory, and whatever it
//! accepts must write back byte for byte (the writer is the parser's inverse).
#![no_main]

use cutover::connectors::autocomplete::{parse, Row};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = parse(data) {
        let written = file
            .to_bytes()
            .expect("a parsed file has a known major version");
        assert_eq!(written, data, "parse -> write is not the identity");
        // The person-facing view must not panic on odd strings either.
        for row in &file.rows {
            let _ = Row::entry(row);
        }
    }
});
