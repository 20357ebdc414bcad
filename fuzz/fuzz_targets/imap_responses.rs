//! Any bytes as an IMAP server's side of a whole session (greeting, login, LIST, EXAMINE,
//! FETCH, APPEND, CREATE, SEARCH, LOGOUT): the client must return an error or a result, never
//! panic, hang or read a message past its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cutover::connectors::imap::client::replay_session(data);
});
