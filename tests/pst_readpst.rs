//! Every PST agrees with readpst (pst-utils, libpst): per folder, the message count, the
//! subjects, the senders, and the attachments' names and sizes. Runs on every PST in
//! `$CUTOVER_REAL_FIXTURES` when it is set, and always on the writer-made twins (Unicode and
//! ANSI, each NDB encoding), which readpst reads independently of this reader.
//!
//! readpst is a required tool (`.ci/run` installs pst-utils): without it these tests fail.

mod pst_fixtures;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cutover::connectors::mail::RawMessage;
use cutover::connectors::pst::{PropValue, PstFile};

/// What one side saw in one folder (sorted lists, compared as multisets).
#[derive(Debug, Default, PartialEq, Eq)]
struct FolderView {
    count: usize,
    subjects: Vec<String>,
    senders: Vec<String>,
    attachments: Vec<(String, u64)>,
}

/// Runs `readpst -D -S -o DIR FILE` and reads back its tree: a directory per folder under
/// one named after the store, a file per message named by number, `N-name` per attachment.
fn readpst_view(pst: &Path, out: &Path) -> BTreeMap<String, FolderView> {
    let status = Command::new("readpst")
        .args(["-D", "-S", "-q", "-o"])
        .arg(out)
        .arg(pst)
        .status()
        .expect("readpst must be installed (apt-get install pst-utils); .ci/run installs it");
    assert!(status.success(), "readpst failed on {}", pst.display());
    let mut stores = std::fs::read_dir(out)
        .expect("readpst output")
        .map(|e| e.unwrap().path());
    let store = stores.next().expect("readpst wrote a store directory");
    assert!(stores.next().is_none(), "one store directory");
    let mut views = BTreeMap::new();
    walk(&store, &store, &mut views);
    views
}

fn walk(root: &Path, dir: &Path, views: &mut BTreeMap<String, FolderView>) {
    let folder = dir
        .strip_prefix(root)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut view = FolderView::default();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            walk(root, &path, views);
        } else if name.chars().all(|c| c.is_ascii_digit()) {
            view.count += 1;
            let bytes = std::fs::read(&path).unwrap();
            if bytes.starts_with(b"BEGIN:VCARD") || bytes.starts_with(b"BEGIN:VCALENDAR") {
                continue;
            }
            let message = RawMessage::new(bytes);
            view.subjects.push(message.subject().unwrap_or_default());
            // readpst writes `From: <MAILER-DAEMON>` for a message without a sender.
            let sender = address_of(&message.header("From").unwrap_or_default());
            view.senders.push(if sender == "mailer-daemon" {
                String::new()
            } else {
                sender
            });
        } else if let Some((_, attachment)) = name.split_once('-') {
            // readpst writes an RTF body as `N-rtf-body.rtf`: a body, not an attachment.
            if attachment != "rtf-body.rtf" {
                let size = std::fs::metadata(&path).unwrap().len();
                view.attachments.push((attachment.to_owned(), size));
            }
        }
    }
    view.subjects.sort();
    view.senders.sort();
    view.attachments.sort();
    if view.count > 0 || !view.attachments.is_empty() {
        views.insert(folder, view);
    }
}

fn address_of(header: &[u8]) -> String {
    let text = String::from_utf8_lossy(header);
    let address = match (text.rfind('<'), text.rfind('>')) {
        (Some(start), Some(end)) if start < end => &text[start + 1..end],
        _ => text.trim(),
    };
    address.trim().to_ascii_lowercase()
}

/// Our view of the same folders, keyed like readpst's directories (the IPM subtree's folder
/// path). libpst's two habits are modelled where it differs by design:
/// - it writes no file for distribution lists ("1 items skipped");
/// - it writes associated messages whose class is mail ("IPM", "IPM.Note…") as messages,
///   not knowing they are associated; cutover never lists associated messages as mail.
fn our_view(pst: &Path) -> BTreeMap<String, FolderView> {
    let file = PstFile::open(pst).expect("open");
    let mut views = BTreeMap::new();
    for folder in file.folders().iter().filter(|f| f.in_ipm_subtree) {
        let mut view = FolderView::default();
        let mut nids = Vec::new();
        for nid in file.message_nids(folder.nid) {
            let summary = file.summary(nid).expect("summary");
            if !summary
                .message_class
                .to_ascii_lowercase()
                .starts_with("ipm.distlist")
            {
                nids.push((nid, summary.message_class));
            }
        }
        for nid in file.associated_nids(folder.nid) {
            let class = file.summary(nid).expect("summary").message_class;
            let lower = class.to_ascii_lowercase();
            if lower == "ipm" || lower.starts_with("ipm.note") {
                nids.push((nid, class));
            }
        }
        view.count = nids.len();
        for (nid, class) in nids {
            let lower = class.to_ascii_lowercase();
            if lower.starts_with("ipm.contact") || lower.starts_with("ipm.appointment") {
                continue;
            }
            let message = file.message(nid).expect("convert").into_raw();
            view.subjects.push(message.subject().unwrap_or_default());
            view.senders
                .push(address_of(&message.header("From").unwrap_or_default()));
            let item = file.item(nid).expect("item");
            for attachment in &item.attachments {
                if attachment.embedded.is_some() {
                    continue;
                }
                if let Some(PropValue::Binary(data)) = attachment.props.get(0x3701) {
                    let name = [0x3707u16, 0x3704, 0x3001]
                        .into_iter()
                        .find_map(|pid| match attachment.props.get(pid) {
                            Some(PropValue::Unicode(s)) if !s.is_empty() => Some(s.clone()),
                            Some(PropValue::String8(b)) if !b.is_empty() => {
                                Some(String::from_utf8_lossy(b).into_owned())
                            }
                            _ => None,
                        })
                        .unwrap_or_default();
                    view.attachments.push((name, data.len() as u64));
                }
            }
        }
        view.subjects.sort();
        view.senders.sort();
        view.attachments.sort();
        if view.count > 0 || !view.attachments.is_empty() {
            views.insert(folder.path.join("/"), view);
        }
    }
    views
}

fn check(pst: &Path) {
    let out = tempfile::tempdir().unwrap();
    let theirs = readpst_view(pst, out.path());
    let ours = our_view(pst);
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "{}: folders with messages",
        pst.display()
    );
    for (folder, view) in &ours {
        let other = &theirs[folder];
        assert_eq!(
            view.count,
            other.count,
            "{}: count of {folder:?}",
            pst.display()
        );
        assert_eq!(
            view.subjects,
            other.subjects,
            "{}: subjects in {folder:?}",
            pst.display()
        );
        assert_eq!(
            view.senders,
            other.senders,
            "{}: senders in {folder:?}",
            pst.display()
        );
        assert_eq!(
            view.attachments,
            other.attachments,
            "{}: attachments in {folder:?}",
            pst.display()
        );
    }
}

#[test]
fn real_fixtures_agree_with_readpst() {
    let files = pst_fixtures::real_psts();
    if files.is_empty() {
        eprintln!("CUTOVER_REAL_FIXTURES unset: the writer-made twins are checked by the next test; the real files are checked when it is set");
    }
    for file in files {
        check(&file);
    }
}

#[test]
fn writer_made_twins_agree_with_readpst() {
    let dir = tempfile::tempdir().unwrap();
    let twins = pst_fixtures::twins(dir.path());
    assert_eq!(twins.len(), 6);
    for file in twins {
        check(&file);
    }
}
