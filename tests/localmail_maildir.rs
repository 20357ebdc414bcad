//! Maildir++ reader and target against real directories.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cutover::connectors::mail::identity::Identity;
use cutover::connectors::mail::maildir::MaildirFolder;
use cutover::connectors::mail::{
    Flag, Flags, FolderPath, MailError, Maildir, MaildirTarget, RawMessage,
};

fn identity(m: &RawMessage) -> Identity {
    Identity::of_message(m.bytes())
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn folder(name: &str) -> FolderPath {
    FolderPath::parse(name, '/').unwrap()
}

fn msg(bytes: &[u8]) -> RawMessage {
    RawMessage::new(bytes.to_vec())
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|it| {
            it.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn write_then_read_is_byte_identical_with_flags_and_mtime() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    let mut target = MaildirTarget::open(&root).unwrap();

    let cases = vec![
        (
            FolderPath::inbox(),
            msg(b"Message-ID: <a@x>\r\nSubject: a\r\n\r\nbody\r\n")
                .with_flags(Flags::new().with(Flag::Seen).with(Flag::Answered))
                .with_internal_date(Some(at(1_600_000_000))),
        ),
        (
            folder("Archive/2023"),
            msg(b"Subject: no id\n\nFrom a line\n")
                .with_flags(
                    Flags::new()
                        .with(Flag::Flagged)
                        .with(Flag::Deleted)
                        .with(Flag::Draft)
                        .with_keyword("$Label1")
                        .with_keyword("$Forwarded"),
                )
                .with_internal_date(Some(at(1_500_000_123))),
        ),
        (
            folder("Kunden/Müller & Söhne"),
            msg(b"Message-ID: <b@x>\n\n\xff\xfe binary-ish\n").with_internal_date(None),
        ),
        (
            folder("Archive/2023"),
            msg(b"").with_flags(Flags::new().with_keyword("NonJunk")),
        ),
    ];
    let mut paths = Vec::new();
    for (f, m) in &cases {
        paths.push(target.store(f, m).unwrap());
    }

    // Dovecot's on-disk names: modified UTF-7, '.' separator, maildirfolder marker.
    let top = names_in(&root);
    assert!(top.contains(&".Archive.2023".to_owned()), "{top:?}");
    assert!(
        top.contains(&".Kunden.M&APw-ller &- S&APY-hne".to_owned()),
        "{top:?}"
    );
    assert!(root.join(".Archive.2023/maildirfolder").is_file());
    assert!(!root.join("maildirfolder").exists());
    for sub in ["cur", "new", "tmp"] {
        assert!(root.join(".Archive.2023").join(sub).is_dir());
    }
    assert_eq!(
        fs::read_to_string(root.join(".Archive.2023/dovecot-keywords")).unwrap(),
        "0 $Forwarded\n1 $Label1\n2 NonJunk\n"
    );

    // Dovecot-style unique names with S= equal to the size and sorted info letters.
    for (p, (_, m)) in paths.iter().zip(&cases) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let (base, info) = name.split_once(":2,").unwrap();
        let (head, size) = base.rsplit_once(",S=").unwrap();
        assert_eq!(size.parse::<usize>().unwrap(), m.len());
        let (secs, rest) = head.split_once(".M").unwrap();
        assert!(secs.parse::<u64>().is_ok(), "{name}");
        assert!(
            rest.contains(&format!("P{}Q", std::process::id())),
            "{name}"
        );
        let mut sorted: Vec<char> = info.chars().collect();
        sorted.sort_unstable();
        assert_eq!(sorted.into_iter().collect::<String>(), info);
        assert_eq!(p.parent().unwrap().file_name().unwrap(), "cur");
    }
    assert!(paths[1].to_string_lossy().ends_with(":2,DFTab"));
    assert!(names_in(&root.join(".Archive.2023/tmp")).is_empty());

    let md = Maildir::open(&root).unwrap();
    let folders: Vec<FolderPath> = md.folders().unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(
        folders,
        vec![
            FolderPath::inbox(),
            folder("Archive/2023"),
            folder("Kunden/Müller & Söhne")
        ]
    );
    for (f, m) in &cases {
        let entries = md.entries(&md.folder(f)).unwrap();
        let found: Vec<RawMessage> = entries.iter().map(|e| e.read().unwrap()).collect();
        let got = found
            .iter()
            .find(|g| g.bytes() == m.bytes())
            .unwrap_or_else(|| panic!("message missing in {f}"));
        assert_eq!(got.flags, m.flags, "flags in {f}");
        if let Some(t) = m.internal_date {
            assert_eq!(got.internal_date, Some(t), "mtime in {f}");
        }
    }
}

#[test]
fn identities_count_what_each_folder_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = MaildirTarget::open(dir.path()).unwrap();
    let inbox = FolderPath::inbox();

    // One identity, however a relay rewrote the message: stored twice, counted twice.
    let a1 = msg(b"Message-ID: <same@Example.com>\n\none\n");
    let a2 = msg(b"Received: by relay\nMessage-ID:\n <same@example.COM>\n\none, rewritten\n");
    assert_eq!(identity(&a1), identity(&a2));
    t.store(&inbox, &a1).unwrap();
    t.store(&inbox, &a2).unwrap();
    let n1 = msg(b"Subject: no id\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n\nbody\n");
    let n2 = msg(b"Subject: no id\nDate: Mon, 1 Jan 2024 10:00:01 +0000\n\nbody\n");
    t.store(&inbox, &n1).unwrap();
    t.store(&inbox, &n2).unwrap();
    let counts = t.identities(&inbox).unwrap();
    assert_eq!(counts.get(&identity(&a1)), 2);
    assert_eq!(counts.get(&identity(&n1)), 1);
    assert_eq!(counts.get(&identity(&n2)), 1);
    assert_eq!(counts.total(), 4);

    // Per folder: the same message in another folder is counted there.
    let sent = folder("Sent");
    t.store(&sent, &a1).unwrap();
    assert_eq!(t.identities(&sent).unwrap().get(&identity(&a1)), 1);
    assert_eq!(names_in(&dir.path().join("cur")).len(), 4);

    // Queries never create folders; an incomplete folder is completed on store.
    assert!(t.identities(&folder("Nope")).unwrap().is_empty());
    assert!(!dir.path().join(".Nope").exists());
    fs::create_dir_all(dir.path().join(".Half/cur")).unwrap();
    t.store(&folder("Half"), &a1).unwrap();
    assert!(dir.path().join(".Half/maildirfolder").is_file());

    // A fresh instance reads the same counts from the files.
    let mut again = MaildirTarget::open(dir.path()).unwrap();
    assert_eq!(again.identities(&inbox).unwrap(), counts);
}

#[test]
fn fresh_instance_after_crash_counts_earlier_messages() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let f = folder("Projects/Alpha");
    let with_id = msg(b"Message-ID: <crash@x>\n\nA\n");
    let without_id = msg(b"Subject: hash me\n\nB\n").with_internal_date(Some(at(1_000_000_000)));
    {
        let mut t = MaildirTarget::open(root).unwrap();
        t.store(&f, &with_id).unwrap();
        t.store(&f, &without_id).unwrap();
        // Dropped without any checkpoint: the engine "crashed" after the renames.
    }
    // A message renamed into cur/ by hand, as a crashed writer would leave it, and one
    // in new/ as another deliverer would.
    let dir_f = root.join(".Projects.Alpha");
    fs::write(
        dir_f.join("cur/1.M1P1Q1.otherhost,S=3:2,S"),
        b"Subject: manual\n\nC\n",
    )
    .unwrap();
    fs::write(
        dir_f.join("new/2.M2P2Q2.otherhost"),
        b"Message-ID: <new@x>\n\nD\n",
    )
    .unwrap();

    let mut t = MaildirTarget::open(root).unwrap();
    let counts = t.identities(&f).unwrap();
    for m in [
        &with_id,
        &without_id,
        &msg(b"Subject: manual\n\nC\n"),
        &msg(b"Message-ID: <new@x>\n\nsame id, other bytes\n"),
    ] {
        assert_eq!(
            counts.get(&identity(m)),
            1,
            "{:?}",
            String::from_utf8_lossy(m.bytes())
        );
    }
    assert_eq!(counts.get(&identity(&msg(b"Subject: new\n\nE\n"))), 0);
    assert_eq!(counts.total(), 4);
}

#[test]
fn crash_before_rename_leaves_tmp_junk_that_is_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let f = folder("Work");
    {
        let mut t = MaildirTarget::open(root).unwrap();
        t.store(&f, &msg(b"Message-ID: <w@x>\n\nW\n")).unwrap();
    }
    let tmp = root.join(".Work/tmp");
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let other_pid = std::process::id().wrapping_add(1);
    let ours_dead = format!("1600000000.M5P{other_pid}Q9.{host},S=5.cutover-tmp");
    let ours_live = format!(
        "1600000000.M5P{}Q9.{host},S=5.cutover-tmp",
        std::process::id()
    );
    let foreign = "1600000000.M5P77Q1.somehost".to_owned();
    let future = format!("99999999999.M5P{other_pid}Q9.{host},S=5.cutover-tmp");
    for name in [&ours_dead, &ours_live, &foreign, &future] {
        fs::write(tmp.join(name), b"parti").unwrap();
    }

    let mut t = MaildirTarget::open(root).unwrap();
    // First use of the folder cleans up; the half-written message never became visible.
    let counts = t.identities(&f).unwrap();
    assert_eq!(counts.get(&identity(&msg(b"Message-ID: <w@x>\n\nW\n"))), 1);
    assert_eq!(counts.total(), 1);
    let left = names_in(&tmp);
    if host.is_empty() {
        // Without a readable hostname the test cannot forge "our" names; nothing to assert.
        return;
    }
    assert!(!left.contains(&ours_dead), "{left:?}");
    assert!(
        left.contains(&ours_live),
        "same pid is a live writer: {left:?}"
    );
    assert!(left.contains(&foreign), "another program's file: {left:?}");
    assert!(
        left.contains(&future),
        "created after this run started: {left:?}"
    );
    let md = Maildir::open(root).unwrap();
    assert_eq!(md.entries(&md.folder(&f)).unwrap().len(), 1);
}

#[test]
fn reads_a_dovecot_maildir() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in [
        "cur",
        "new",
        "tmp",
        ".Sent/cur",
        ".Sent/new",
        ".Sent/tmp",
        ".Junk/cur",
        ".bad&name/cur",
        ".notafolder",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(
        root.join("dovecot-keywords"),
        "0 $Label1\n1 Work\nbroken line\n",
    )
    .unwrap();
    fs::write(root.join("dovecot-uidlist"), "3 V1 N2\n").unwrap();
    fs::write(root.join("cur/1700000002.M1P1.h,S=5,W=6:2,RSb"), b"two\r\n").unwrap();
    fs::write(root.join("new/1700000001.M1P1.h"), b"one\n").unwrap();
    fs::write(root.join("cur/1700000003.M1P1.h:2,"), b"three\n").unwrap();
    fs::write(root.join(".Sent/cur/1.M1P1.h:2,S"), b"sent\n").unwrap();

    let md = Maildir::open(root).unwrap();
    let folders = md.folders().unwrap();
    let names: Vec<String> = folders.iter().map(|f| f.name.to_string()).collect();
    assert_eq!(names, vec!["INBOX", "Junk", "Sent", "bad&name"]);
    assert!(folders[3].dir.ends_with(".bad&name"));

    let inbox = &folders[0];
    let entries = md.entries(inbox).unwrap();
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "1700000001.M1P1.h",
            "1700000002.M1P1.h,S=5,W=6",
            "1700000003.M1P1.h"
        ]
    );
    assert!(entries[0].flags.is_empty());
    assert_eq!(
        entries[1].flags,
        Flags::new()
            .with(Flag::Answered)
            .with(Flag::Seen)
            .with_keyword("Work")
    );
    assert_eq!(entries[1].size, 5);
    assert_eq!(entries[1].read().unwrap().bytes(), b"two\r\n");

    let after: Vec<String> = md
        .entries_after(inbox, Some("1700000001.M1P1.h"))
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(after.len(), 2);
    assert!(md.entries(&folders[1]).unwrap().is_empty());

    let missing = MaildirFolder {
        name: folder("Nope"),
        dir: root.join(".Nope"),
    };
    assert!(md.entries(&missing).unwrap().is_empty());
}

#[test]
fn invalid_inputs_are_errors_not_panics() {
    for bad in ["a.b", "a//b", "", "x\ny"] {
        let err = FolderPath::parse(bad, '/').unwrap_err();
        assert!(matches!(err, MailError::InvalidFolder { .. }), "{bad:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let err = Maildir::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains(&dir.path().display().to_string()));
}

#[test]
fn too_many_keywords_drop_the_extra_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = MaildirTarget::open(dir.path()).unwrap();
    let mut flags = Flags::new();
    for i in 0..30 {
        flags.insert_keyword(&format!("k{i:02}"));
    }
    let path = t
        .store(&FolderPath::inbox(), &msg(b"X: y\n\n").with_flags(flags))
        .unwrap();
    let md = Maildir::open(dir.path()).unwrap();
    let e = &md.entries(&md.folder(&FolderPath::inbox())).unwrap()[0];
    assert_eq!(e.path, path);
    assert_eq!(e.flags.keywords().count(), 26);
}
