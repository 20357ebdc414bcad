//! Initial passwords for users cutover creates when the plan gives none.
//!
//! Microsoft Entra ID requires 8 to 256 characters from at least three of: upper case, lower
//! case, digits, symbols. cutover makes 20 characters with all four, drawn uniformly from the
//! operating system's random source (no look-alikes such as `0`/`O` or `1`/`l`, and only
//! symbols that survive being pasted into a sign-in form or a shell).

use crate::secrets::Secret;

const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const DIGITS: &[u8] = b"23456789";
const SYMBOLS: &[u8] = b"-_!@#%+=?";

/// Length of a generated password.
pub const LENGTH: usize = 20;

/// A fresh random password meeting Entra ID's complexity rules. Fails only when the
/// operating system has no random source.
pub fn initial_password() -> Result<Secret, String> {
    let classes = [UPPER, LOWER, DIGITS, SYMBOLS];
    let all: Vec<u8> = classes.concat();
    let mut out: Vec<u8> = Vec::with_capacity(LENGTH);
    // One of each class first, the rest from all of them, then shuffled so the classes'
    // positions are not fixed.
    for class in classes {
        out.push(class[uniform(class.len())?]);
    }
    while out.len() < LENGTH {
        out.push(all[uniform(all.len())?]);
    }
    for i in (1..out.len()).rev() {
        out.swap(i, uniform(i + 1)?);
    }
    Ok(Secret::new(
        String::from_utf8(out).map_err(|e| e.to_string())?,
    ))
}

/// A uniform index below `n` (rejection sampling: no modulo bias).
fn uniform(n: usize) -> Result<usize, String> {
    let n = n as u32;
    let zone = u32::MAX - (u32::MAX % n);
    loop {
        let r = getrandom::u32().map_err(|e| format!("no random source: {e}"))?;
        if r < zone {
            return Ok((r % n) as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_have_every_class_and_differ() {
        let a = initial_password().unwrap();
        let b = initial_password().unwrap();
        assert_ne!(a.expose(), b.expose());
        for p in [a.expose(), b.expose()] {
            assert_eq!(p.len(), LENGTH);
            for class in [UPPER, LOWER, DIGITS, SYMBOLS] {
                assert!(p.bytes().any(|c| class.contains(&c)), "{p}");
            }
        }
    }
}
