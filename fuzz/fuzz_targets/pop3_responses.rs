//! Any bytes as a POP3 server's side of a whole session (greeting, CAPA, USER/PASS, STAT,
//! LIST, UIDL, RETR, TOP, DELE, QUIT): the client must return an error or a result, never
//! panic, hang or read an answer past its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cutover::connectors::pop3::replay_session(data);
});
