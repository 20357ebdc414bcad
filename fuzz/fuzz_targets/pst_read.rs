//! Any bytes as a PST: open, list every folder, convert every message, read contacts,
//! calendar and autocomplete. Must never panic, hang or allocate without bound.
//!
//! Seed corpus: the writer-made samples and, when you have them, the real fixtures
//! (`cp $CUTOVER_REAL_FIXTURES/*.pst fuzz/corpus/pst_read/`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = cutover::connectors::pst::PstFile::from_bytes("fuzz.pst", data.to_vec()) {
        let _ = file.read_everything();
    }
});
