//! Reading a whole mailbox back from a test Dovecot, to compare a copy with its source:
//! every message keyed by folder and dedupe key, with its bytes, flags and internal date.

use std::collections::BTreeMap;
use std::time::SystemTime;

use cutover::connectors::imap::ImapClient;
use cutover::connectors::mail::identity::Identity;
use cutover::connectors::mail::{utf7, Flags};
use cutover::connectors::net::{Credentials, Endpoint};
use cutover::plan::model::Tls;

use super::dovecot::{Dovecot, User};

/// (folder, key) → (bytes, flags, internal date) of each stored copy. Folder names are
/// Unicode with `/` between levels.
pub type Contents = BTreeMap<(String, Identity), Vec<(Vec<u8>, Flags, Option<SystemTime>)>>;

pub async fn login(d: &Dovecot, u: &User) -> ImapClient {
    let endpoint =
        Endpoint::new("127.0.0.1", d.imaps_port, Tls::Implicit).with_ca_file(d.ca_file());
    ImapClient::connect(&endpoint, &Credentials::password(&u.login, &u.password))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.logs()))
}

/// Every message of every folder of `u`.
pub async fn imap_contents(d: &Dovecot, u: &User) -> Contents {
    let mut c = login(d, u).await;
    let mut out = Contents::new();
    for b in c.list().await.unwrap() {
        if !b.is_selectable() {
            continue;
        }
        let st = c.examine(&b.name).await.unwrap();
        if st.exists == 0 {
            continue;
        }
        let name = b
            .name
            .split(b.delimiter.unwrap_or('/'))
            .map(|s| utf7::decode(s).unwrap())
            .collect::<Vec<_>>()
            .join("/");
        let mut f = c.uid_fetch("1:*").await.unwrap();
        while let Some(m) = f.next().await.unwrap() {
            let m = m.message;
            out.entry((name.clone(), m.identity())).or_default().push((
                m.bytes().to_vec(),
                m.flags.clone(),
                m.internal_date,
            ));
        }
    }
    c.logout().await.unwrap();
    out
}

/// `actual` holds exactly the messages of `expected`, each as many times as there (once,
/// unless the source itself holds a message twice), byte-identical, with the same flags and
/// internal date.
pub fn assert_same(expected: &Contents, actual: &Contents) {
    let keys = |c: &Contents| c.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(expected), keys(actual), "folders and messages");
    for (k, copies) in actual {
        let want = &expected[k];
        assert_eq!(
            copies.len(),
            want.len(),
            "{k:?} stored {} times, expected {}",
            copies.len(),
            want.len()
        );
        let mut have = copies.clone();
        let mut want = want.clone();
        have.sort_by(|a, b| a.0.cmp(&b.0));
        want.sort_by(|a, b| a.0.cmp(&b.0));
        for ((eb, ef, ed), (ab, af, ad)) in want.iter().zip(&have) {
            assert!(eb == ab, "{k:?}: bytes differ");
            assert_eq!(ef, af, "{k:?}: flags");
            assert_eq!(ed, ad, "{k:?}: internal date");
        }
    }
}

/// Every message of `contents` is there once, and there are `expected` of them.
pub fn assert_each_once(contents: &Contents, expected: usize) {
    for (k, copies) in contents {
        assert_eq!(copies.len(), 1, "{k:?} stored {} times", copies.len());
    }
    assert_eq!(contents.len(), expected, "distinct messages");
}
