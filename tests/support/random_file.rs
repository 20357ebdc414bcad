//! Files of pseudo-random bytes for upload tests and benchmarks (xorshift: every block
//! differs, so a misplaced or repeated block shows in the MD5), and a file's MD5.

use std::io::{Read, Write};
use std::path::Path;

use md5::Digest;

/// `len` pseudo-random bytes from `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Writes `len` pseudo-random bytes to `path`, a MiB at a time.
pub fn write_random(path: &Path, len: u64, seed: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut written = 0;
    let mut round = 0;
    while written < len {
        let n = (len - written).min(1 << 20);
        out.write_all(&random_bytes(n as usize, seed.wrapping_add(round)))
            .unwrap();
        written += n;
        round += 1;
    }
    out.flush().unwrap();
}

/// The MD5 of a file's bytes, read a MiB at a time.
pub fn file_md5(path: &Path) -> [u8; 16] {
    let mut hasher = md5::Md5::new();
    let mut file = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            return hasher.finalize().into();
        }
        hasher.update(&buf[..n]);
    }
}
