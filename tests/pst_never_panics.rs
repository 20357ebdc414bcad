//! No byte sequence makes the PST reader panic: mutations of writer-made files (and of the
//! real fixtures when `CUTOVER_REAL_FIXTURES` is set) end in a file read with problems or in
//! an error naming the file, never in a panic or a hang.

mod pst_fixtures;

use cutover::connectors::pst::PstFile;
use proptest::prelude::*;

fn exercise(bytes: Vec<u8>) {
    match PstFile::from_bytes("mutated.pst", bytes) {
        Ok(file) => {
            let _ = file.read_everything();
        }
        Err(err) => {
            let text = err.to_string();
            assert!(
                text.starts_with("mutated.pst"),
                "error names the file: {text}"
            );
        }
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = [(false, 1u8), (true, 2), (false, 0)]
        .into_iter()
        .map(|(ansi, crypt)| pst_fixtures::pst_writer::write(&pst_fixtures::sample(ansi, crypt)))
        .collect();
    for path in pst_fixtures::real_psts() {
        seeds.push(std::fs::read(path).unwrap());
    }
    seeds
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// A few bytes flipped anywhere (header, pages, blocks).
    #[test]
    fn flipped_bytes(seed in 0usize..16, flips in proptest::collection::vec((any::<u32>(), any::<u8>()), 1..12)) {
        let seeds = seeds();
        let mut bytes = seeds[seed % seeds.len()].clone();
        for (at, value) in flips {
            let at = at as usize % bytes.len();
            bytes[at] ^= value | 1;
        }
        exercise(bytes);
    }

    /// Flips concentrated in the B-tree pages and blocks after the header, where a reader
    /// trusts counts and offsets; CRCs are recomputed by nobody, so checks must hold.
    #[test]
    fn flipped_structure(seed in 0usize..16, start in any::<u32>(), run in proptest::collection::vec(any::<u8>(), 1..64)) {
        let seeds = seeds();
        let mut bytes = seeds[seed % seeds.len()].clone();
        let tail = bytes.len() - 0x4400;
        let at = 0x4400 + start as usize % tail;
        for (i, v) in run.into_iter().enumerate() {
            if let Some(b) = bytes.get_mut(at + i) {
                *b = v;
            }
        }
        exercise(bytes);
    }

    /// Truncated anywhere.
    #[test]
    fn truncated(seed in 0usize..16, keep in any::<u32>()) {
        let seeds = seeds();
        let bytes = &seeds[seed % seeds.len()];
        exercise(bytes[..keep as usize % bytes.len()].to_vec());
    }
}

/// The CRC checks mean random flips mostly stop at the first block read. This variant
/// re-signs every block after mutating it, so the LTP and messaging layers see hostile
/// structures behind valid CRCs.
#[test]
fn hostile_structures_behind_valid_checks() {
    let specs = [
        pst_fixtures::sample(false, 0),
        pst_fixtures::sample(true, 2),
    ];
    for round in 0..64u32 {
        let bytes = pst_fixtures::pst_writer::write_mutated(&specs[round as usize % 2], round);
        exercise(bytes);
    }
}
