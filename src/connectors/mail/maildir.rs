//! Maildir++ trees laid out as Dovecot lays them out, so a maildir written here can be served
//! by Dovecot as is (the integration tests do exactly that) and a Dovecot maildir can be read.
//!
//! Layout: the root is INBOX (`cur/`, `new/`, `tmp/`); every other folder is a directory
//! `.<seg>.<seg>` beside them, each segment in IMAP modified UTF-7 ([`super::utf7`]), with an
//! empty `maildirfolder` marker file. A message is one file; its flags live in the file name
//! after `:2,` and its internal date is the file's mtime. Keywords are lowercase letters in the
//! name, mapped to names by the folder's `dovecot-keywords` file (at most 26, Dovecot's limit).
//!
//! Crash safety of [`MaildirTarget::append`], the property the engine's resume relies on:
//!
//! * a message is written to `tmp/`, fsynced, then renamed into `cur/` and the directory
//!   fsynced. The rename is atomic, so `cur/` never holds a partial message;
//! * a crash before the rename leaves only a file in `tmp/`, invisible to every reader. The
//!   next target instance deletes such leftovers of earlier processes when it first uses the
//!   folder;
//! * a crash after the rename but before the engine recorded its checkpoint means the engine
//!   will offer the message again. [`MaildirTarget::identities`] counts the folder's files by
//!   [`Identity`] on first use, so the copy runner sees the message there and does not store
//!   it a second time.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, FileTimes};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::identity::{Identity, IdentityCounts};
use super::message::{Flag, Flags, RawMessage};
use super::utf7;
use super::{MailError, Result};

const KEYWORDS_FILE: &str = "dovecot-keywords";
/// Dovecot's list of subscribed folders, at the maildir's root.
const SUBSCRIPTIONS_FILE: &str = "subscriptions";
/// The first line and blank line of Dovecot's version-2 subscriptions file, whose lines hold
/// a name's levels separated by tabs; version 1 (what Dovecot writes into a new file) holds
/// one Maildir++ name (`Archive.2023`, modified UTF-7) per line.
const SUBSCRIPTIONS_V2: &str = "V\t2\n\n";
const MAX_KEYWORDS: usize = 26;
/// Suffix of this crate's files in `tmp/`, so cleanup never touches a file another program
/// (a Dovecot delivery in progress) is writing.
const TMP_SUFFIX: &str = ".cutover-tmp";

/// A folder name as Unicode segments, independent of any server's hierarchy delimiter: the
/// engine maps `INBOX.Sent` (delimiter `.`) or `Archive/2023` (delimiter `/`) onto segments,
/// and each store encodes them its own way. No segments means INBOX.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FolderPath {
    segments: Vec<String>,
}

impl FolderPath {
    pub fn inbox() -> Self {
        FolderPath {
            segments: Vec::new(),
        }
    }

    /// Validated segments. A single segment `INBOX` (any case, as IMAP treats it) is INBOX.
    /// A segment may not be empty, contain `.` (the Maildir++ separator, which would silently
    /// change the hierarchy), `/` (a path separator on disk) or control characters.
    pub fn new<I, S>(segments: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let segments: Vec<String> = segments.into_iter().map(Into::into).collect();
        for s in &segments {
            let reason = if s.is_empty() {
                Some("empty folder name segment")
            } else if s.contains('.') {
                Some("'.' is the Maildir++ hierarchy separator and cannot appear in a name")
            } else if s.contains('/') {
                Some("'/' cannot appear in a Maildir++ folder name")
            } else if s.chars().any(char::is_control) {
                Some("control character in folder name")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(MailError::InvalidFolder {
                    name: segments.join("/"),
                    reason: reason.into(),
                });
            }
        }
        if segments.len() == 1 && segments[0].eq_ignore_ascii_case("INBOX") {
            return Ok(FolderPath::inbox());
        }
        Ok(FolderPath { segments })
    }

    /// Splits `name` on `delimiter` (a server's hierarchy delimiter) and validates.
    pub fn parse(name: &str, delimiter: char) -> Result<Self> {
        FolderPath::new(name.split(delimiter))
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    pub fn is_inbox(&self) -> bool {
        self.segments.is_empty()
    }

    /// The Maildir++ directory name (`.Archive.2023`), `None` for INBOX (the root itself).
    pub fn dir_name(&self) -> Option<String> {
        if self.is_inbox() {
            return None;
        }
        let mut s = String::new();
        for seg in &self.segments {
            s.push('.');
            s.push_str(&utf7::encode(seg));
        }
        Some(s)
    }
}

impl fmt::Display for FolderPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_inbox() {
            f.write_str("INBOX")
        } else {
            f.write_str(&self.segments.join("/"))
        }
    }
}

/// A folder found on disk: its name and where it is. Kept together because a directory
/// whose name is not valid modified UTF-7 (written by some other tool) still has mail in it;
/// it is listed under its on-disk spelling and read from its real directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildirFolder {
    pub name: FolderPath,
    pub dir: PathBuf,
}

/// One message file, described without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildirEntry {
    /// The unique part of the file name (before `:2,`): stable while flags change or the
    /// message moves from `new/` to `cur/`, so it is the source id and the checkpoint.
    pub id: String,
    pub path: PathBuf,
    pub flags: Flags,
    /// The file's mtime, which Dovecot uses as the IMAP INTERNALDATE.
    pub internal_date: Option<SystemTime>,
    pub size: u64,
}

impl MaildirEntry {
    pub fn read(&self) -> Result<RawMessage> {
        let bytes = fs::read(&self.path).map_err(|e| MailError::io(&self.path, e))?;
        Ok(RawMessage::new(bytes)
            .with_flags(self.flags.clone())
            .with_internal_date(self.internal_date))
    }
}

/// Read side of a maildir.
#[derive(Debug, Clone)]
pub struct Maildir {
    root: PathBuf,
}

impl Maildir {
    /// Opens an existing maildir; the root must have `cur/` or `new/`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_owned();
        if !root.join("cur").is_dir() && !root.join("new").is_dir() {
            return Err(MailError::io(
                &root,
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "not a maildir: no cur/ or new/ directory",
                ),
            ));
        }
        Ok(Maildir { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `name` lives (whether or not it exists).
    pub fn folder(&self, name: &FolderPath) -> MaildirFolder {
        MaildirFolder {
            name: name.clone(),
            dir: folder_dir(&self.root, name),
        }
    }

    /// INBOX first, then every `.`-directory that has `cur/` or `new/`, sorted by name.
    pub fn folders(&self) -> Result<Vec<MaildirFolder>> {
        let mut out = vec![self.folder(&FolderPath::inbox())];
        let mut others = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(|e| MailError::io(&self.root, e))? {
            let entry = entry.map_err(|e| MailError::io(&self.root, e))?;
            let os_name = entry.file_name();
            let raw = os_name.to_string_lossy();
            let Some(stripped) = raw.strip_prefix('.') else {
                continue;
            };
            if stripped.is_empty() || stripped == "." {
                continue;
            }
            let dir = entry.path();
            if !dir.join("cur").is_dir() && !dir.join("new").is_dir() {
                continue;
            }
            let name = decode_dir_name(stripped);
            others.push(MaildirFolder { name, dir });
        }
        others.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.dir.cmp(&b.dir)));
        out.extend(others);
        Ok(out)
    }

    /// The folders Dovecot's `subscriptions` file lists (either of its formats, see
    /// [`SUBSCRIPTIONS_V2`]), or `None` when there is no such file.
    pub fn subscriptions(&self) -> Result<Option<Vec<FolderPath>>> {
        let path = self.root.join(SUBSCRIPTIONS_FILE);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(parse_subscriptions(&String::from_utf8_lossy(&bytes)))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(MailError::io(&path, e)),
        }
    }

    /// The folder's messages from `new/` and `cur/`, sorted by id, so two runs over an
    /// unchanged folder see the same order and a checkpoint "after id X" is meaningful.
    /// Holds only file metadata, never message bytes.
    pub fn entries(&self, folder: &MaildirFolder) -> Result<Vec<MaildirEntry>> {
        self.entries_after(folder, None)
    }

    /// As [`Maildir::entries`], keeping only ids greater than `after` (a checkpoint).
    pub fn entries_after(
        &self,
        folder: &MaildirFolder,
        after: Option<&str>,
    ) -> Result<Vec<MaildirEntry>> {
        let keywords = read_keywords(&folder.dir)?;
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let dir = folder.dir.join(sub);
            let iter = match fs::read_dir(&dir) {
                Ok(it) => it,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(MailError::io(&dir, e)),
            };
            for entry in iter {
                let entry = entry.map_err(|e| MailError::io(&dir, e))?;
                let file_name = entry.file_name().to_string_lossy().into_owned();
                if file_name.starts_with('.') {
                    continue;
                }
                let (id, info) = match file_name.split_once(":2,") {
                    Some((id, info)) => (id.to_owned(), Some(info)),
                    None => (file_name.clone(), None),
                };
                if after.is_some_and(|a| id.as_str() <= a) {
                    continue;
                }
                let path = entry.path();
                let meta = match fs::metadata(&path) {
                    Ok(m) => m,
                    // Expunged by someone else between listing and stat: not a message any more.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(MailError::io(&path, e)),
                };
                if !meta.is_file() {
                    continue;
                }
                let flags = info.map(|i| parse_info(i, &keywords)).unwrap_or_default();
                out.push(MaildirEntry {
                    id,
                    path,
                    flags,
                    internal_date: meta.modified().ok(),
                    size: meta.len(),
                });
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.path.cmp(&b.path)));
        Ok(out)
    }
}

fn folder_dir(root: &Path, name: &FolderPath) -> PathBuf {
    match name.dir_name() {
        Some(d) => root.join(d),
        None => root.to_owned(),
    }
}

fn decode_dir_name(stripped: &str) -> FolderPath {
    let segments: Vec<String> = stripped
        .split('.')
        .map(|seg| utf7::decode(seg).unwrap_or_else(|_| seg.to_owned()))
        .collect();
    // Not `FolderPath::new`: a name on disk is listed even when this crate would not create it.
    FolderPath { segments }
}

/// The folders of a `subscriptions` file's text, either format (see [`SUBSCRIPTIONS_V2`]).
/// Lines that name no folder this crate can represent are left out.
fn parse_subscriptions(text: &str) -> Vec<FolderPath> {
    let (v2, body) = match text.strip_prefix(SUBSCRIPTIONS_V2) {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let decode = |seg: &str| utf7::decode(seg).unwrap_or_else(|_| seg.to_owned());
    body.lines()
        .filter(|l| !l.is_empty())
        .filter_map(|line| {
            let segments: Vec<String> = if v2 {
                line.split('\t').map(|s| decode(&tab_unescape(s))).collect()
            } else {
                line.split('.').map(decode).collect()
            };
            FolderPath::new(segments).ok()
        })
        .collect()
}

/// Dovecot's tab escaping (`str_append_tabescaped`): `\x01` starts an escape for itself,
/// tab, CR and LF.
fn tab_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\x01' => out.push_str("\x011"),
            '\t' => out.push_str("\x01t"),
            '\r' => out.push_str("\x01r"),
            '\n' => out.push_str("\x01n"),
            c => out.push(c),
        }
    }
    out
}

fn tab_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\x01' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('1') => out.push('\x01'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Maildir info flags: `D`raft, `F`lagged, `P`assed, `R`eplied, `S`een, `T`rashed, and `a`–`z`
/// for keywords. `P` has no IMAP system flag; it reads as the `$Forwarded` keyword, which is
/// what IMAP clients use for the same meaning.
fn parse_info(info: &str, keywords: &[String]) -> Flags {
    let mut flags = Flags::new();
    for c in info.chars() {
        match c {
            'D' => flags.insert(Flag::Draft),
            'F' => flags.insert(Flag::Flagged),
            'P' => {
                flags.insert_keyword("$Forwarded");
            }
            'R' => flags.insert(Flag::Answered),
            'S' => flags.insert(Flag::Seen),
            'T' => flags.insert(Flag::Deleted),
            'a'..='z' => {
                if let Some(k) = keywords.get(c as usize - 'a' as usize) {
                    flags.insert_keyword(k);
                }
            }
            _ => {}
        }
    }
    flags
}

/// Reads `dovecot-keywords` (`<index> <name>` per line); a missing file means no keywords.
/// Malformed lines are skipped: a broken keyword list must not stop a migration.
fn read_keywords(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(KEYWORDS_FILE);
    let text = match fs::read(&path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(MailError::io(&path, e)),
    };
    let mut slots: Vec<Option<String>> = vec![None; MAX_KEYWORDS];
    for line in text.lines() {
        let Some((idx, name)) = line.split_once(' ') else {
            continue;
        };
        let (Ok(idx), name) = (idx.trim().parse::<usize>(), name.trim()) else {
            continue;
        };
        if idx < MAX_KEYWORDS && !name.is_empty() {
            slots[idx] = Some(name.to_owned());
        }
    }
    // Gaps become placeholders so letters keep their positions.
    let last = slots.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
    Ok(slots
        .into_iter()
        .take(last)
        .map(Option::unwrap_or_default)
        .collect())
}

struct FolderState {
    dir: PathBuf,
    /// Whether the directories exist; queries on a missing folder must not create it.
    exists: bool,
    /// The folder's messages by identity: its files when first used, plus this instance's
    /// stores.
    index: IdentityCounts,
    keywords: Vec<String>,
}

/// Per-process delivery counter (the `Q<n>` of Dovecot's file names): with the pid and the
/// microsecond clock it makes names unique even for two targets in one process.
static DELIVERIES: AtomicU64 = AtomicU64::new(0);

/// Write side of a maildir; see the module docs for the crash-safety argument. It stores
/// what it is given: deciding what is missing is the copy runner's, from [`Self::identities`].
pub struct MaildirTarget {
    root: PathBuf,
    host: String,
    pid: u32,
    started_secs: u64,
    folders: HashMap<FolderPath, FolderState>,
    sync: bool,
}

impl MaildirTarget {
    /// Opens `root` as a maildir, creating it (with INBOX's `cur/new/tmp`) if missing.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_owned();
        for sub in ["cur", "new", "tmp"] {
            let d = root.join(sub);
            crate::files::create_dir_all(&d).map_err(|e| MailError::io(&d, e))?;
        }
        Ok(MaildirTarget {
            root,
            host: dovecot_hostname(),
            pid: std::process::id(),
            started_secs: unix_secs(SystemTime::now()),
            folders: HashMap::new(),
            sync: true,
        })
    }

    /// Turns fsync off (it is on by default). Only for writing fixtures (the corpus, the demo
    /// mailbox), where a crash costs a regeneration: two fsyncs per message dominate the time
    /// of writing thousands of small messages. Without fsync the crash-safety argument in the
    /// module docs does not hold after a power loss, so a migration target never does this.
    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How many messages of each identity `folder` holds (none when it does not exist).
    /// Creates nothing.
    pub fn identities(&mut self, folder: &FolderPath) -> Result<IdentityCounts> {
        Ok(self.folder_state(folder, false)?.index.clone())
    }

    /// Creates `folder` (its `cur/new/tmp` and the `maildirfolder` marker) when missing.
    pub fn ensure_folder(&mut self, folder: &FolderPath) -> Result<()> {
        self.folder_state(folder, true).map(|_| ())
    }

    /// Adds `folder` to Dovecot's `subscriptions` file (in the format the file has; a new
    /// file as Dovecot starts one), rewritten atomically; `false` when it was listed already.
    /// INBOX needs no subscription.
    pub fn subscribe(&mut self, folder: &FolderPath) -> Result<bool> {
        if folder.is_inbox() {
            return Ok(false);
        }
        // One file for the whole maildir, written by every copy lane: read, change and
        // replace it one writer at a time (the apply lock keeps other processes out).
        static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _writing = WRITING.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.root.join(SUBSCRIPTIONS_FILE);
        let text = match fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(MailError::io(&path, e)),
        };
        if parse_subscriptions(&text).contains(folder) {
            return Ok(false);
        }
        let mut text = text;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        let encoded: Vec<String> = folder.segments().iter().map(|s| utf7::encode(s)).collect();
        if text.starts_with(SUBSCRIPTIONS_V2) {
            let escaped: Vec<String> = encoded.iter().map(|s| tab_escape(s)).collect();
            text.push_str(&escaped.join("\t"));
        } else {
            text.push_str(&encoded.join("."));
        }
        text.push('\n');
        let tmp = self.root.join(format!("{SUBSCRIPTIONS_FILE}{TMP_SUFFIX}"));
        // Left by a process killed between writing and renaming; nobody else writes it now.
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(MailError::io(&tmp, e)),
        }
        write_file(&tmp, text.as_bytes(), None, self.sync).map_err(|e| MailError::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| MailError::io(&path, e))?;
        if self.sync {
            sync_dir(&self.root).map_err(|e| MailError::io(&self.root, e))?;
        }
        Ok(true)
    }

    /// Stores `message` in `folder` as a new file, creating the folder if missing. Returns
    /// only after the message is durable (file and directory fsynced), so the engine may
    /// checkpoint as soon as it returns.
    pub fn store(&mut self, folder: &FolderPath, message: &RawMessage) -> Result<PathBuf> {
        let identity = Identity::of_message(message.bytes());
        let mut delivery = self.begin(folder, &message.flags, message.len() as u64)?;
        delivery.write(message.bytes())?;
        self.finish(delivery, message.internal_date, identity)
    }

    /// Starts a new message of `size` bytes in `folder` (created if missing): a private
    /// file in the folder's `tmp/`, written with [`Delivery::write`] and moved into `cur/` by
    /// [`finish`](Self::finish). Dropped before, the file is removed: nothing partial is
    /// ever in `cur/`.
    pub fn begin(&mut self, folder: &FolderPath, flags: &Flags, size: u64) -> Result<Delivery> {
        let host = self.host.clone();
        let pid = self.pid;
        let state = self.folder_state(folder, true)?;
        let letters = info_letters(state, flags)?;
        let (path, tmp) = loop {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let n = DELIVERIES.fetch_add(1, Ordering::Relaxed);
            let base = format!(
                "{}.M{}P{}Q{}.{},S={}",
                now.as_secs(),
                now.subsec_micros(),
                pid,
                n,
                host,
                size
            );
            let path = state.dir.join("cur").join(format!("{base}:2,{letters}"));
            let tmp = state.dir.join("tmp").join(format!("{base}{TMP_SUFFIX}"));
            if !path.exists() && !tmp.exists() {
                break (path, tmp);
            }
        };
        // Private, as every file of the target: whole messages.
        let file = crate::files::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| MailError::io(&tmp, e))?;
        Ok(Delivery {
            folder: folder.clone(),
            tmp,
            path,
            file: Some(file),
            finished: false,
        })
    }

    /// Makes `delivery` durable and visible: its file time set to `internal_date`, fsynced,
    /// renamed into `cur/`, the directory fsynced. Only then may the engine checkpoint it.
    pub fn finish(
        &mut self,
        mut delivery: Delivery,
        internal_date: Option<SystemTime>,
        identity: Identity,
    ) -> Result<PathBuf> {
        let sync = self.sync;
        let tmp = delivery.tmp.clone();
        let path = delivery.path.clone();
        if let Some(file) = delivery.file.take() {
            let done = (|| {
                if let Some(t) = internal_date {
                    file.set_times(FileTimes::new().set_modified(t))?;
                }
                if sync {
                    file.sync_all()?;
                }
                Ok::<(), io::Error>(())
            })();
            drop(file);
            if let Err(e) = done {
                let _ = fs::remove_file(&tmp);
                return Err(MailError::io(&tmp, e));
            }
        }
        delivery.finished = true;
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(MailError::io(&path, e));
        }
        let state = self.folder_state(&delivery.folder, true)?;
        if sync {
            let cur = state.dir.join("cur");
            sync_dir(&cur).map_err(|e| MailError::io(&cur, e))?;
        }
        state.index.add(identity);
        Ok(path)
    }

    /// Makes flags agree with `changes`: for each identity, its copies in file-name order
    /// take the changes listed for it in order. The system flags `\Seen \Answered
    /// \Flagged \Draft` are set or cleared as given, keywords added; the file is renamed (its
    /// name carries the flags). Returns how many messages changed.
    pub fn set_flags(&mut self, folder: &FolderPath, changes: &[(Identity, Flags)]) -> Result<u64> {
        let sync = self.sync;
        let state = self.folder_state(folder, false)?;
        if !state.exists || changes.is_empty() {
            return Ok(0);
        }
        let on_disk = MaildirFolder {
            name: folder.clone(),
            dir: state.dir.clone(),
        };
        let reader = Maildir {
            root: state.dir.clone(),
        };
        let mut by_identity: HashMap<Identity, Vec<MaildirEntry>> = HashMap::new();
        for entry in reader.entries(&on_disk)? {
            let identity = Identity::of_message(&read_header(&entry.path)?);
            by_identity.entry(identity).or_default().push(entry);
        }
        let mut taken: HashMap<Identity, usize> = HashMap::new();
        let mut changed = 0;
        for (identity, flags) in changes {
            let n = taken.entry(*identity).or_default();
            let Some(entry) = by_identity.get(identity).and_then(|e| e.get(*n)) else {
                continue;
            };
            *n += 1;
            let mut wanted = entry.flags.clone();
            for flag in [Flag::Seen, Flag::Answered, Flag::Flagged, Flag::Draft] {
                if flags.contains(flag) {
                    wanted.insert(flag);
                } else {
                    wanted.remove(flag);
                }
            }
            for k in flags.keywords() {
                wanted.insert_keyword(k);
            }
            if wanted == entry.flags {
                continue;
            }
            let letters = info_letters(state, &wanted)?;
            let to = state
                .dir
                .join("cur")
                .join(format!("{}:2,{letters}", entry.id));
            fs::rename(&entry.path, &to).map_err(|e| MailError::io(&to, e))?;
            changed += 1;
        }
        if sync && changed > 0 {
            let cur = state.dir.join("cur");
            sync_dir(&cur).map_err(|e| MailError::io(&cur, e))?;
        }
        Ok(changed)
    }

    /// The folder's state, created on first use: leftovers of crashed writers removed from
    /// `tmp/`, the dedupe index built from the files present, and, when `create`, the
    /// directories made.
    fn folder_state(&mut self, folder: &FolderPath, create: bool) -> Result<&mut FolderState> {
        use std::collections::hash_map::Entry;
        let state = match self.folders.entry(folder.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                let dir = folder_dir(&self.root, folder);
                clean_tmp(&dir.join("tmp"), &self.host, self.pid, self.started_secs)?;
                let index = scan_index(&dir)?;
                let keywords = read_keywords(&dir)?;
                v.insert(FolderState {
                    exists: ["cur", "new", "tmp"].iter().all(|d| dir.join(d).is_dir()),
                    dir,
                    index,
                    keywords,
                })
            }
        };
        if create && !state.exists {
            create_folder(&self.root, &state.dir)?;
            state.exists = true;
        }
        Ok(state)
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Dovecot's host part: the hostname with `/` and `:` escaped as octal (they would break the
/// path or the `:2,` info separator); `,` too, which would break the `,S=` field.
fn dovecot_hostname() -> String {
    let raw = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '/' => out.push_str("\\057"),
            ':' => out.push_str("\\072"),
            ',' => out.push_str("\\054"),
            c if c.is_whitespace() || c.is_control() => out.push('_'),
            c => out.push(c),
        }
    }
    out
}

fn create_folder(root: &Path, dir: &Path) -> Result<()> {
    if dir.join("cur").is_dir() && dir.join("new").is_dir() && dir.join("tmp").is_dir() {
        return Ok(());
    }
    for sub in ["cur", "new", "tmp"] {
        let d = dir.join(sub);
        crate::files::create_dir_all(&d).map_err(|e| MailError::io(&d, e))?;
    }
    let marker = dir.join("maildirfolder");
    crate::files::touch(&marker).map_err(|e| MailError::io(&marker, e))?;
    sync_dir(dir).map_err(|e| MailError::io(dir, e))?;
    sync_dir(root).map_err(|e| MailError::io(root, e))?;
    Ok(())
}

/// Removes this crate's `tmp/` files left by an earlier process: a different pid on this
/// host, created (per the time in the name) before this target opened. Files of other
/// programs, other hosts (NFS) and this process are left alone.
fn clean_tmp(tmp: &Path, host: &str, pid: u32, started_secs: u64) -> Result<()> {
    let iter = match fs::read_dir(tmp) {
        Ok(it) => it,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(MailError::io(tmp, e)),
    };
    for entry in iter {
        let entry = entry.map_err(|e| MailError::io(tmp, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(base) = name.strip_suffix(TMP_SUFFIX) else {
            continue;
        };
        let Some((secs, file_pid, file_host)) = parse_unique_name(base) else {
            continue;
        };
        if file_host == host && file_pid != pid && secs <= started_secs {
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(MailError::io(&path, e)),
            }
        }
    }
    Ok(())
}

/// Parses `<secs>.M<usecs>P<pid>Q<n>.<host>,S=<size>` into (secs, pid, host).
fn parse_unique_name(base: &str) -> Option<(u64, u32, &str)> {
    let (secs, rest) = base.split_once('.')?;
    let secs = secs.parse().ok()?;
    let rest = rest.strip_prefix('M')?;
    let (_, rest) = rest.split_once('P')?;
    let (pid, rest) = rest.split_once('Q')?;
    let pid = pid.parse().ok()?;
    let (_, rest) = rest.split_once('.')?;
    let host = rest.split_once(",S=").map_or(rest, |(h, _)| h);
    Some((secs, pid, host))
}

/// Identities of every message file in `cur/` and `new/`.
fn scan_index(dir: &Path) -> Result<IdentityCounts> {
    let mut index = IdentityCounts::new();
    for sub in ["cur", "new"] {
        let d = dir.join(sub);
        let iter = match fs::read_dir(&d) {
            Ok(it) => it,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(MailError::io(&d, e)),
        };
        for entry in iter {
            let entry = entry.map_err(|e| MailError::io(&d, e))?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            match fs::metadata(&path) {
                Ok(m) if m.is_file() => {}
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(MailError::io(&path, e)),
            }
            index.add(Identity::of_message(&read_header(&path)?));
        }
    }
    Ok(index)
}

/// The header section of a message file (up to and including the blank line), all an
/// identity needs; a file without one is read whole. A file gone meanwhile reads as empty.
pub(crate) fn read_header(path: &Path) -> Result<Vec<u8>> {
    use std::io::BufRead;
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(MailError::io(path, e)),
    };
    let mut reader = io::BufReader::new(file);
    let mut out = Vec::new();
    loop {
        let start = out.len();
        let n = reader
            .read_until(b'\n', &mut out)
            .map_err(|e| MailError::io(path, e))?;
        let line = &out[start..];
        if n == 0 || line == b"\n" || line == b"\r\n" {
            return Ok(out);
        }
    }
}

/// The `:2,` info letters for `flags`, assigning keyword letters (and persisting them in
/// `dovecot-keywords`) as needed. Keywords beyond Dovecot's 26 are dropped: Dovecot could not
/// show them either, and losing a tag beats failing the message.
fn info_letters(state: &mut FolderState, flags: &Flags) -> Result<String> {
    let mut letters = Vec::new();
    for (flag, c) in [
        (Flag::Draft, 'D'),
        (Flag::Flagged, 'F'),
        (Flag::Answered, 'R'),
        (Flag::Seen, 'S'),
        (Flag::Deleted, 'T'),
    ] {
        if flags.contains(flag) {
            letters.push(c);
        }
    }
    let mut changed = false;
    for kw in flags.keywords() {
        let idx = match state.keywords.iter().position(|k| k == kw) {
            Some(i) => i,
            None => {
                // Reuse a gap left by a malformed keywords file before growing the list.
                if let Some(gap) = state.keywords.iter().position(String::is_empty) {
                    state.keywords[gap] = kw.to_owned();
                    changed = true;
                    gap
                } else if state.keywords.len() < MAX_KEYWORDS {
                    state.keywords.push(kw.to_owned());
                    changed = true;
                    state.keywords.len() - 1
                } else {
                    continue;
                }
            }
        };
        letters.push(char::from(b'a' + idx as u8));
    }
    if changed {
        write_keywords(&state.dir, &state.keywords)?;
    }
    letters.sort_unstable();
    letters.dedup();
    Ok(letters.into_iter().collect())
}

/// Rewrites `dovecot-keywords` atomically only when its content would change.
fn write_keywords(dir: &Path, keywords: &[String]) -> Result<()> {
    let mut text = String::new();
    for (i, k) in keywords.iter().enumerate() {
        if !k.is_empty() {
            text.push_str(&format!("{i} {k}\n"));
        }
    }
    let path = dir.join(KEYWORDS_FILE);
    if fs::read(&path).ok().as_deref() == Some(text.as_bytes()) {
        return Ok(());
    }
    let tmp = dir.join(format!("{KEYWORDS_FILE}{TMP_SUFFIX}"));
    // A process killed between writing and renaming leaves this behind; the apply lock
    // means no one else is writing it now, so it is safe to start over.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(MailError::io(&tmp, e)),
    }
    write_file(&tmp, text.as_bytes(), None, true).map_err(|e| MailError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| MailError::io(&path, e))?;
    sync_dir(dir).map_err(|e| MailError::io(dir, e))
}

/// A message being written into a folder's `tmp/` ([`MaildirTarget::begin`]).
pub struct Delivery {
    folder: FolderPath,
    tmp: PathBuf,
    path: PathBuf,
    file: Option<File>,
    finished: bool,
}

impl Delivery {
    /// Appends `piece` to the file.
    pub fn write(&mut self, piece: &[u8]) -> Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.write_all(piece)
            .map_err(|e| MailError::io(&self.tmp, e))
    }
}

impl Drop for Delivery {
    /// Never finished: the partial file goes.
    fn drop(&mut self) {
        if !self.finished {
            self.file = None;
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn write_file(path: &Path, bytes: &[u8], mtime: Option<SystemTime>, sync: bool) -> io::Result<()> {
    // Private, as every file of the target: whole messages.
    let mut f = crate::files::options()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)?;
    if let Some(t) = mtime {
        f.set_times(FileTimes::new().set_modified(t))?;
    }
    if sync {
        f.sync_all()?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_in_both_dovecot_formats() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = MaildirTarget::open(dir.path()).unwrap();
        let nested = FolderPath::parse("Archive/Müller", '/').unwrap();
        let sent = FolderPath::parse("Sent", '/').unwrap();
        assert!(t.subscribe(&nested).unwrap());
        assert!(!t.subscribe(&nested).unwrap(), "listed once");
        assert!(!t.subscribe(&FolderPath::inbox()).unwrap());
        let file = dir.path().join(SUBSCRIPTIONS_FILE);
        assert_eq!(fs::read_to_string(&file).unwrap(), "Archive.M&APw-ller\n");
        let md = Maildir::open(dir.path()).unwrap();
        assert_eq!(md.subscriptions().unwrap(), Some(vec![nested.clone()]));
        // A version-2 file keeps its format.
        fs::write(&file, "V\t2\n\nArchive\tM&APw-ller\nTab\x01tbed\n").unwrap();
        assert!(t.subscribe(&sent).unwrap());
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            "V\t2\n\nArchive\tM&APw-ller\nTab\x01tbed\nSent\n"
        );
        let found = md.subscriptions().unwrap().unwrap();
        assert_eq!(found[0], nested);
        assert_eq!(found.last(), Some(&sent));
        // `Tab\tbed` is one segment with a tab, which no folder name may hold.
        assert_eq!(found.len(), 2);
        let empty = tempfile::tempdir().unwrap();
        MaildirTarget::open(empty.path()).unwrap();
        assert_eq!(
            Maildir::open(empty.path())
                .unwrap()
                .subscriptions()
                .unwrap(),
            None
        );
    }

    #[test]
    fn folder_paths() {
        assert!(FolderPath::new(["inbox"]).unwrap().is_inbox());
        assert_eq!(FolderPath::inbox().to_string(), "INBOX");
        let p = FolderPath::parse("Archive/2023/Müller & Co", '/').unwrap();
        assert_eq!(p.dir_name().unwrap(), ".Archive.2023.M&APw-ller &- Co");
        assert_eq!(p.to_string(), "Archive/2023/Müller & Co");
        assert_eq!(decode_dir_name("Archive.2023.M&APw-ller &- Co"), p);
        for bad in ["a.b", "", "x//y", "tab\t"] {
            assert!(FolderPath::parse(bad, '/').is_err(), "{bad:?}");
        }
        // INBOX children keep their literal first segment.
        let child = FolderPath::parse("INBOX.Sent", '.').unwrap();
        assert_eq!(child.dir_name().unwrap(), ".INBOX.Sent");
    }

    #[test]
    fn undecodable_dir_names_listed_verbatim() {
        assert_eq!(decode_dir_name("bad&name").segments(), ["bad&name"]);
    }

    #[test]
    fn info_flags() {
        let kws = vec!["$Label1".to_owned(), "NonJunk".to_owned()];
        let f = parse_info("DFPRSTbz", &kws);
        for flag in Flag::ALL {
            assert!(f.contains(flag));
        }
        assert_eq!(
            f.keywords().collect::<Vec<_>>(),
            vec!["$Forwarded", "NonJunk"]
        );
    }

    #[test]
    fn unique_names_parse() {
        assert_eq!(
            parse_unique_name("1700000000.M12P345Q6.host.example,S=10"),
            Some((1_700_000_000, 345, "host.example"))
        );
        assert_eq!(parse_unique_name("garbage"), None);
    }

    #[test]
    fn hostname_is_safe_in_file_names() {
        let h = dovecot_hostname();
        assert!(!h.is_empty());
        assert!(!h.contains(['/', ':', ',']));
    }
}
