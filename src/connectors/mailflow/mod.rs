//! The two contracts every mail copy goes through: a [`MailSource`] (IMAP, POP3, mbox,
//! Maildir, PST…) and a [`MailTarget`] (Maildir, IMAP, Microsoft 365…). One copy runner and
//! one verify runner (`crate::runners::copy`, `crate::runners::verify`) drive any source into
//! any target through them, so a new source or target is one file here, not a new copy path.
//!
//! Both contracts split a *configured* side (cheap, `Send + Sync`, built once per plan from
//! its settings: where, who, which rules) from its *sessions* (a connection or an open file,
//! owned by one copy lane at a time). The runner opens sessions, reserves connection slots
//! for their [`endpoints`](MailSource::endpoints), decides what to copy, and is the only one
//! that writes checkpoints: sessions report what a checkpoint should say, never commit one.
//!
//! ## The copy, as the runner performs it
//!
//! 1. A planning session lists the source's folders ([`SourceSession::folders`]); the plan's
//!    folder rules ([`FolderMapper`]) route each to a target folder or leave it out, and
//!    [`SourceSession::status`] says which have anything to do, so an incremental pass with
//!    nothing new opens no lane and no target connection.
//! 2. Lanes (threads with one source and one target session each) take target folders in
//!    turn. For one target folder the runner ensures it exists
//!    ([`TargetSession::ensure_folder`]; once per folder, also when it gets no mail, and
//!    subscribed as at the source: [`TargetSession::subscribe`]), reads its [`IdentityCounts`]
//!    ([`TargetSession::identities`]) and then, source folder by source folder, the messages
//!    not yet behind a checkpoint ([`SourceSession::list`] with [`Side::Pending`]), identified
//!    by their header fields ([`SourceSession::identify`] where the listing could not).
//! 3. A message is copied unless the target already holds as many copies of its identity as
//!    the source has up to and including it (see [`crate::connectors::mail::identity`]): the
//!    runner counts the messages behind the checkpoint ([`Side::Settled`]) only when a pending
//!    identity is already at the target.
//! 4. Bodies are fetched in bounded batches ([`SourceSession::fetch`]), appended as one batch
//!    ([`TargetSession::append`]); what the target acknowledged is committed in one state
//!    transaction with the checkpoints of the settled prefix ([`MessageMeta::checkpoint`]).
//!    A message larger than a lane's share of the apply's memory budget goes on its own,
//!    piece by piece ([`SourceSession::open_body`] → [`TargetSession::append_streamed`]),
//!    committed the same way once the target acknowledged it.
//! 5. A pass over mail copied earlier (a delta or catch-up) also carries flag changes:
//!    [`SourceSession::flag_changes`] → [`TargetSession::set_flags`].
//!
//! Errors are [`FlowError`]s; whether the runner retries is [`FlowError::is_transient`].

pub mod folders;
pub mod imap_source;
pub mod imap_target;
pub mod m365_target;
pub mod maildir_source;
pub mod maildir_target;
pub mod mbox_source;
pub mod pop3_source;
pub mod pst_source;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

pub use folders::{FolderMapper, Route, SpecialUse, TargetNames};

use super::mail::identity::{Identity, IdentityCounts};
use super::mail::{Flags, MailError, RawMessage};
use super::net::{Credentials, Endpoint, NetError};

/// A boxed, sendable future, as the contracts return: object-safe (`Box<dyn …>`) without a
/// macro dependency.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A step's committed checkpoints, key → value, as the source wrote them through
/// [`MessageMeta::checkpoint`]. A delta step sees its copy step's beneath its own.
pub type Checkpoints = BTreeMap<String, Vec<u8>>;

/// Why a copy could not go on. `Net` keeps the network error's retry hint.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Mail(#[from] MailError),
    /// The target refused this one message (a tagged NO). `left_behind`: the refusal is
    /// about the message itself (its size, `[TOOBIG]`; a header Exchange cannot store), so it
    /// is left behind and reported rather than failing the copy; otherwise (a full quota, a
    /// missing folder) it would meet every message and fails the copy loudly.
    #[error("refused by the target: {text}")]
    Refused { text: String, left_behind: bool },
    /// Worth another attempt: a dropped connection, a target that kept throttling.
    #[error("{0}")]
    Transient(String),
    /// Another attempt would meet the same: bad configuration, a corrupt file, a bad login.
    #[error("{0}")]
    Permanent(String),
}

impl FlowError {
    /// Whether the runner should try the step again (with backoff).
    pub fn is_transient(&self) -> bool {
        match self {
            FlowError::Net(e) => e.is_transient(),
            FlowError::Transient(_) => true,
            FlowError::Mail(_) | FlowError::Refused { .. } | FlowError::Permanent(_) => false,
        }
    }

    /// A throttling answer, or a connection the server closed while throttling: the runner
    /// reconnects and goes on from its checkpoints, without spending a retry.
    pub fn is_throttle(&self) -> bool {
        matches!(self, FlowError::Net(NetError::Throttled { .. }))
    }

    /// The wait a server suggested (throttling), if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            FlowError::Net(e) => e.retry_after(),
            _ => None,
        }
    }
}

pub type FlowResult<T> = Result<T, FlowError>;

/// Where a session's credentials come from, resolved at connect time (never when runners are
/// built, so `plan` on a machine without a secret still builds every step). Implemented by
/// the runners (a plan's secret reference, an app registration's token).
pub trait Login: Send + Sync + std::fmt::Debug {
    /// Credentials for one new connection. Called once per session opened; may block on a
    /// token request or a secret command.
    fn credentials(&self) -> BoxFuture<'_, FlowResult<Credentials>>;

    /// Everything that identifies the login but its secret (`alice@x|env:ALICE_PW`), for
    /// config hashes.
    fn describe(&self) -> String;
}

/// One source folder as the source names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFolder {
    /// The source's own, stable name for it: the IMAP wire name, a Maildir++ folder name, a
    /// PST folder's node id, `INBOX` for POP3, the file name of an mbox. Checkpoint keys and
    /// reports use it.
    pub id: String,
    /// As people read it, in the source's own spelling (`INBOX.Entwürfe`, decoded).
    pub display: String,
    /// The hierarchy as Unicode segments with a leading `INBOX` level dropped (Courier puts
    /// every folder under `INBOX.`); empty for the inbox itself.
    pub path: Vec<String>,
    /// A special-use role the source declares (`\Sent`, a PST's default folders); the mapper
    /// also recognizes well-known names.
    pub special: Option<SpecialUse>,
    /// Holds messages. IMAP `\Noselect` hierarchy nodes do not; they are never copied or
    /// listed as excluded.
    pub selectable: bool,
    /// The user subscribed to it at the source (IMAP `LSUB`, `\Subscribed`, a Maildir's
    /// `subscriptions` file), so the runner subscribes its target folder
    /// ([`TargetSession::subscribe`]). `true` where the source has no subscriptions (POP3,
    /// an mbox): their mail is meant to be seen.
    pub subscribed: bool,
}

/// What a cheap look at one folder tells ([`SourceSession::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FolderStatus {
    /// Messages in the folder (all of them, not only those after the checkpoint); 0 from a
    /// source that could only count them by reading them all (an mbox file).
    pub messages: u64,
    /// Whether anything may lie after the checkpoint; `false` only when the source is sure
    /// (IMAP: the checkpoint reaches UIDNEXT).
    pub has_pending: bool,
    /// Whether flags of messages behind the checkpoint may have changed since it was written;
    /// `false` only when the source is sure (CONDSTORE: HIGHESTMODSEQ unchanged) or holds no
    /// flags (POP3, files).
    pub flags_may_have_changed: bool,
}

/// Which messages [`SourceSession::list`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Not yet behind the checkpoints: what a copy still has to do. With no checkpoints,
    /// every message (what `verify` compares).
    Pending,
    /// Behind the checkpoints: what earlier runs settled (copied, found present, skipped).
    Settled,
}

/// One source message before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// The source's id of the message in its folder (IMAP UID, POP3 UIDL, mbox byte offset,
    /// Maildir file name, PST node id), for reports and for [`SourceSession::fetch`].
    pub id: String,
    /// Size in bytes as the source reports it (an estimate for a PST message before it is
    /// converted); decides the size limit before any download.
    pub size: u64,
    /// Known before the body is read where the source has the header fields at hand (IMAP
    /// header fetch, files); `None` when only the download tells (POP3 without `TOP`). The
    /// runner then identifies the fetched message itself.
    pub identity: Option<Identity>,
    /// For reports of mail left behind.
    pub subject: Option<String>,
    /// When it was received (INTERNALDATE, `Received:`, the mbox `From ` line, file time).
    pub received: Option<SystemTime>,
    /// `false`: outside the migration's date window. Not copied, but its checkpoint is
    /// committed so the next pass does not look at it again (POP3; other sources simply do
    /// not list such mail).
    pub in_window: bool,
    /// Set when the source could not read this message (a damaged PST node): the runner
    /// leaves it behind and reports it with this reason, and the rest of the folder goes on.
    pub problem: Option<String>,
    /// Flagged `\Deleted` at the source and not yet expunged (IMAP; a Maildir's `T`; an
    /// mbox's `X-Status: D` or Thunderbird's expunged bit). The runner leaves it behind and
    /// reports it, or copies it, as the plan's `settings.deleted_messages` says.
    pub deleted: bool,
    /// The checkpoint committed once this message is settled, together with every message
    /// listed before it. A key written again later (a folder's "last UID") keeps the last
    /// value; a key per message (a POP3 UIDL) accumulates.
    pub checkpoint: (String, Vec<u8>),
}

/// One message as [`SourceSession::fetch`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The message, with its flags and internal date.
    Message(RawMessage),
    /// The message without parts the source could not read or carry over (a PST attachment
    /// whose blocks are damaged, one stored only as a link): copied as it is, and reported
    /// with `missing`, which says what it lacks.
    Partial {
        message: RawMessage,
        missing: String,
    },
    /// Gone since it was listed (expunged): settled without copying.
    Gone,
    /// There, but the source cannot read it (a damaged file): left behind and reported with
    /// this reason; the copy goes on.
    Unreadable(String),
}

/// Pieces a [`BodyReader`] hands out at most, and the piece size of streamed copies.
pub const STREAM_PIECE: usize = 512 * 1024;

/// One message read piece by piece, from [`SourceSession::open_body`]: for a message larger
/// than a copy lane may hold, which goes from source to target without ever being whole in
/// memory. It borrows its source session: nothing else may be asked of that session until the
/// reader is read to its end or [`is_done`](Self::is_done) says the session is free (dropped
/// before, the session must not be used again).
pub trait BodyReader: Send {
    /// Exact size in bytes of what [`next_piece`](Self::next_piece) will hand out in all
    /// (IMAP: the FETCH literal's length), known before the first piece — what an IMAP
    /// APPEND announces.
    fn size(&self) -> u64;

    /// The message's flags at the source.
    fn flags(&self) -> &Flags;

    /// When the source received it (IMAP INTERNALDATE), if known.
    fn internal_date(&self) -> Option<SystemTime>;

    /// Replaces `buf`'s content with the next piece (at most [`STREAM_PIECE`] bytes, never
    /// empty) and returns `Ok(true)`; `Ok(false)` once all [`size`](Self::size) bytes were
    /// handed out and the source's session is ready for its next command. An error leaves
    /// the session unusable (a connection cut mid-literal): the caller drops it, and with it
    /// whatever it was writing the pieces to.
    fn next_piece<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> BoxFuture<'a, FlowResult<bool>>;

    /// Whether the source's session is free for its next command: [`next_piece`] returned
    /// `Ok(false)`, or the reader never held the session (a file read where it is, a spool, a
    /// message already in memory). A caller that gives up early (the target refused the
    /// message) reads the rest first when it is not, or drops the session.
    ///
    /// [`next_piece`]: Self::next_piece
    fn is_done(&self) -> bool;

    /// The whole message at once, if the reader holds it whole already (a source that cannot
    /// stream, see [`InMemoryBody`]): a target that stores messages whole takes it instead
    /// of gathering pieces, so it is not copied. The default, `None`, is for true streams.
    fn take_whole(&mut self) -> Option<RawMessage> {
        None
    }

    /// What the message lacks, as [`Fetched::Partial`] says it; known when the reader is
    /// opened. The default, nothing, is for sources that hand messages on as they are.
    fn missing(&self) -> Option<&str> {
        None
    }
}

/// What [`SourceSession::open_body`] found.
pub enum Opened<'a> {
    /// The message, to be read piece by piece.
    Body(Box<dyn BodyReader + 'a>),
    /// Gone since it was listed (as [`Fetched::Gone`]).
    Gone,
    /// There, but unreadable (as [`Fetched::Unreadable`]).
    Unreadable(String),
}

/// A [`BodyReader`] over a message already read whole: what the default
/// [`SourceSession::open_body`] gives, for sources that cannot stream.
pub struct InMemoryBody {
    message: Option<RawMessage>,
    missing: Option<String>,
    flags: Flags,
    internal_date: Option<SystemTime>,
    size: u64,
    at: usize,
}

impl InMemoryBody {
    pub fn new(message: RawMessage) -> InMemoryBody {
        InMemoryBody {
            flags: message.flags.clone(),
            internal_date: message.internal_date,
            size: message.len() as u64,
            message: Some(message),
            missing: None,
            at: 0,
        }
    }

    /// A message without some of its parts ([`Fetched::Partial`]).
    pub fn partial(message: RawMessage, missing: String) -> InMemoryBody {
        InMemoryBody {
            missing: Some(missing),
            ..InMemoryBody::new(message)
        }
    }
}

impl BodyReader for InMemoryBody {
    fn size(&self) -> u64 {
        self.size
    }

    fn flags(&self) -> &Flags {
        &self.flags
    }

    fn internal_date(&self) -> Option<SystemTime> {
        self.internal_date
    }

    fn next_piece<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> BoxFuture<'a, FlowResult<bool>> {
        Box::pin(async move {
            let Some(message) = &self.message else {
                self.at = self.size as usize;
                return Ok(false);
            };
            let bytes = message.bytes();
            if self.at >= bytes.len() {
                self.message = None;
                return Ok(false);
            }
            let end = (self.at + STREAM_PIECE).min(bytes.len());
            buf.clear();
            buf.extend_from_slice(&bytes[self.at..end]);
            self.at = end;
            Ok(true)
        })
    }

    /// Read whole already: the session is free.
    fn is_done(&self) -> bool {
        true
    }

    fn take_whole(&mut self) -> Option<RawMessage> {
        if self.at > 0 {
            return None;
        }
        self.at = self.size as usize;
        self.message.take()
    }

    fn missing(&self) -> Option<&str> {
        self.missing.as_deref()
    }
}

/// An unnamed private file (`0600`, never linked into a folder, so a crash leaves nothing) for
/// a [`FileBody`], in [`spool_dir`] (or, where that refuses it, the system's temporary
/// folder).
pub fn spool_file() -> std::io::Result<std::fs::File> {
    let dir = spool_dir(std::env::var_os("TMPDIR"), std::path::Path::new("/var/tmp"));
    tempfile::tempfile_in(dir).or_else(|_| tempfile::tempfile())
}

/// Where spool files go: `$TMPDIR` when set (the user's choice), else `/var/tmp` where it is
/// a directory, else the system's temporary folder. Not `/tmp` first: many systems mount it
/// as `tmpfs`, where a spooled message would take the memory the spool exists to spare;
/// `/var/tmp` is on disk by convention (FHS).
fn spool_dir(tmpdir: Option<std::ffi::OsString>, var_tmp: &std::path::Path) -> std::path::PathBuf {
    match tmpdir {
        Some(dir) if !dir.is_empty() => dir.into(),
        _ if var_tmp.is_dir() => var_tmp.to_path_buf(),
        _ => std::env::temp_dir(),
    }
}

/// A [`BodyReader`] over a file holding the message: a Maildir's message file where it is, or
/// a spool file ([`spool_file`]: an unnamed private file, `0600`, never linked into a folder,
/// so nothing is left behind by a crash) for a source that can only read a message whole in
/// one go (a POP3 `RETR` is dot-stuffed, so its exact size is known only at its end), yet
/// must not hold it in memory.
pub struct FileBody {
    file: std::fs::File,
    size: u64,
    read: u64,
    flags: Flags,
    internal_date: Option<SystemTime>,
}

impl FileBody {
    /// `file` holds the message (`size` bytes) and is read from its start.
    pub fn new(
        mut file: std::fs::File,
        size: u64,
        flags: Flags,
        internal_date: Option<SystemTime>,
    ) -> std::io::Result<FileBody> {
        std::io::Seek::rewind(&mut file)?;
        Ok(FileBody {
            file,
            size,
            read: 0,
            flags,
            internal_date,
        })
    }
}

impl BodyReader for FileBody {
    fn size(&self) -> u64 {
        self.size
    }

    fn flags(&self) -> &Flags {
        &self.flags
    }

    fn internal_date(&self) -> Option<SystemTime> {
        self.internal_date
    }

    fn next_piece<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> BoxFuture<'a, FlowResult<bool>> {
        Box::pin(async move {
            let left = self.size - self.read;
            if left == 0 {
                return Ok(false);
            }
            let n = left.min(STREAM_PIECE as u64) as usize;
            buf.clear();
            buf.resize(n, 0);
            std::io::Read::read_exact(&mut self.file, buf)
                .map_err(|e| FlowError::Transient(format!("reading the message's file: {e}")))?;
            self.read += n as u64;
            Ok(true)
        })
    }

    /// A file: the session that spooled it (or the folder it lies in) is free.
    fn is_done(&self) -> bool {
        true
    }
}

/// A flag change a later pass carries over: the message's identity and its flags now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagChange {
    pub identity: Identity,
    pub flags: Flags,
}

/// What [`SourceSession::flag_changes`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagChanges {
    /// Messages behind the checkpoint whose flags may differ from what was copied (all of
    /// them when the source cannot tell which changed).
    pub changes: Vec<FlagChange>,
    /// A checkpoint to commit once the target took the changes (the folder's new
    /// modification sequence), if the source keeps one.
    pub checkpoint: Option<(String, Vec<u8>)>,
}

/// A configured mail source: where it is, who signs in, which mail of it belongs to the
/// migration (date window, size limit are the runner's). Built once per step, shared by its
/// lanes.
pub trait MailSource: Send + Sync {
    /// Everything that defines what this source yields — kind, server or file, login (not its
    /// secret), window — for the step's config hash. Stable across runs and versions.
    fn describe(&self) -> String;

    /// Sessions the source allows at once for one step. The default, one, suits a single
    /// maildrop or file; IMAP allows a few (bounded further by `max_connections` and
    /// `max_connections_per_login`).
    fn max_sessions(&self) -> usize {
        1
    }

    /// The servers a session connects to, so the runner can reserve their `max_connections`
    /// slots for everything a lane holds in one call (which keeps limits deadlock-free). The
    /// default, none, is for files.
    fn endpoints(&self) -> Vec<Endpoint> {
        Vec::new()
    }

    /// Opens a session. Called by the planning pass, by each lane when it gets its first
    /// folder, by `plan` and by `verify`, always after the caller reserved the slots of
    /// [`endpoints`](Self::endpoints). Errors: a refused login is permanent, a dropped
    /// connection transient.
    fn open(&self) -> BoxFuture<'_, FlowResult<Box<dyn SourceSession>>>;
}

/// One open connection (or file) of a [`MailSource`], used by one lane at a time.
pub trait SourceSession: Send {
    /// Every folder of the source, in the source's order, hierarchy nodes included (marked
    /// not [`selectable`](SourceFolder::selectable)). Called once per session that plans.
    fn folders(&mut self) -> BoxFuture<'_, FlowResult<Vec<SourceFolder>>>;

    /// A cheap look at `folder` against `checkpoints`: no message is listed. Called by the
    /// planning pass for every routed folder; a folder with neither pending mail nor possible
    /// flag changes is then skipped without opening a lane.
    fn status<'a>(
        &'a mut self,
        folder: &'a SourceFolder,
        checkpoints: &'a Checkpoints,
    ) -> BoxFuture<'a, FlowResult<FolderStatus>>;

    /// The messages of `folder` on one `side` of `checkpoints`, in the order the copy settles
    /// them (ascending UID, file order…): a checkpoint written for a message covers every
    /// message listed before it. Only mail inside the source's date window is listed, except
    /// where the source must record mail outside it ([`MessageMeta::in_window`]). A source
    /// that learns identities only from bodies may leave [`MessageMeta::identity`] out; the
    /// caller then asks [`identify`](Self::identify) where it needs them.
    fn list<'a>(
        &'a mut self,
        folder: &'a SourceFolder,
        checkpoints: &'a Checkpoints,
        side: Side,
    ) -> BoxFuture<'a, FlowResult<Vec<MessageMeta>>>;

    /// Fills in [`identity`](MessageMeta::identity), [`subject`](MessageMeta::subject) and
    /// [`received`](MessageMeta::received) of `messages` where [`list`](Self::list) left them
    /// out, by reading header fields only (POP3 `TOP n 0`). Called by verify, by a copy
    /// counting what lies behind a checkpoint, and for a report of mail left behind. The
    /// default does nothing, for sources whose listing always has them.
    fn identify<'a>(
        &'a mut self,
        folder: &'a SourceFolder,
        messages: &'a mut [MessageMeta],
    ) -> BoxFuture<'a, FlowResult<()>> {
        let _ = (folder, messages);
        Box::pin(async { Ok(()) })
    }

    /// The messages of `messages` (listed from `folder` by this or another session of the
    /// same source), read whole, with flags and internal date, in the same order (see
    /// [`Fetched`]). [`Fetched::Gone`] only when the source is sure the message no longer
    /// exists — the runner settles it and the checkpoint passes it; a message a server lists
    /// but will not hand over (`BODY[] NIL`, left out of its answer) is an error, never `Gone`.
    /// The caller bounds a call to one batch (a few MiB).
    fn fetch<'a>(
        &'a mut self,
        folder: &'a SourceFolder,
        messages: &'a [&'a MessageMeta],
    ) -> BoxFuture<'a, FlowResult<Vec<Fetched>>>;

    /// Whether [`open_body`](Self::open_body) streams (hands out pieces as they arrive, never
    /// holding the message whole). The default, `false`, is for sources whose `open_body` is
    /// the default: the runner then counts such a message whole against its memory budget.
    fn streams(&self) -> bool {
        false
    }

    /// One message of `folder` (listed by this or another session of the same source), to be
    /// read piece by piece: for a message larger than the runner's share of its memory budget.
    /// Called only for messages whose [`identity`](MessageMeta::identity) is known. Until the
    /// reader is done, the session serves nothing else. [`Opened::Gone`] and
    /// [`Opened::Unreadable`] as for [`fetch`](Self::fetch). The default fetches the message
    /// whole ([`fetch`](Self::fetch)) and hands it out as an [`InMemoryBody`].
    fn open_body<'a>(
        &'a mut self,
        folder: &'a SourceFolder,
        message: &'a MessageMeta,
    ) -> BoxFuture<'a, FlowResult<Opened<'a>>> {
        Box::pin(async move {
            let mut fetched = self.fetch(folder, &[message]).await?;
            Ok(match fetched.pop() {
                Some(Fetched::Message(m)) => Opened::Body(Box::new(InMemoryBody::new(m))),
                Some(Fetched::Partial { message, missing }) => {
                    Opened::Body(Box::new(InMemoryBody::partial(message, missing)))
                }
                Some(Fetched::Unreadable(why)) => Opened::Unreadable(why),
                Some(Fetched::Gone) | None => Opened::Gone,
            })
        })
    }

    /// Called after the runner committed the checkpoints of `messages` (their copies are
    /// durable at the target). The default does nothing; a POP3 source configured to delete
    /// after copying marks them deleted here (and only a clean [`close`](Self::close) makes
    /// the server delete them).
    fn committed<'a>(
        &'a mut self,
        folder: &'a SourceFolder,
        messages: &'a [&'a MessageMeta],
    ) -> BoxFuture<'a, FlowResult<()>> {
        let _ = (folder, messages);
        Box::pin(async { Ok(()) })
    }

    /// Flags now of messages behind `checkpoints`, for a pass over mail copied earlier. The
    /// default, none, is for sources without flags (POP3) or that cannot change (files).
    fn flag_changes<'a>(
        &'a mut self,
        folder: &'a SourceFolder,
        checkpoints: &'a Checkpoints,
    ) -> BoxFuture<'a, FlowResult<FlagChanges>> {
        let _ = (folder, checkpoints);
        Box::pin(async { Ok(FlagChanges::default()) })
    }

    /// Ends the session cleanly (IMAP LOGOUT, POP3 QUIT — which is what commits POP3
    /// deletions). Dropping a session without closing it abandons it (after a failure or a
    /// cancel mid-response).
    fn close(self: Box<Self>) -> BoxFuture<'static, FlowResult<()>>;
}

/// A configured mail target: the user's mailbox at the destination.
pub trait MailTarget: Send + Sync {
    /// Everything that defines where mail goes — kind, server or folder, login (not its
    /// secret) — for the step's config hash.
    fn describe(&self) -> String;

    /// The target's own names for the special folders (`Sent Items` at Microsoft 365).
    fn names(&self) -> TargetNames;

    /// Sessions the target takes at once for one step; `None` for no limit of its own.
    fn max_sessions(&self) -> Option<usize> {
        None
    }

    /// The servers a session connects to (see [`MailSource::endpoints`]).
    fn endpoints(&self) -> Vec<Endpoint> {
        Vec::new()
    }

    /// Opens a session after the caller reserved the slots of [`endpoints`](Self::endpoints).
    /// A read-only session (`writable: false`, for `plan` and `verify`) must not create
    /// anything, not even the mailbox's root.
    fn open(&self, writable: bool) -> BoxFuture<'_, FlowResult<Box<dyn TargetSession>>>;

    /// The names the target will store `wanted` folders under, in the same order: the same
    /// path, or another one with why, where the target reserves a name (Exchange's `Files`)
    /// or cannot tell two apart (Exchange compares names without case: `Archive` and
    /// `archive` would be one folder). Called with every target folder of a step, sorted, so
    /// the choice is stable from run to run. The default keeps every name.
    fn folder_names(&self, wanted: &[Vec<String>]) -> Vec<(Vec<String>, Option<String>)> {
        wanted.iter().map(|w| (w.clone(), None)).collect()
    }

    /// Wall time this mailbox's senders spent paused by the target's throttling in this
    /// process so far. The default, none, is for targets that do not throttle.
    fn throttled_time(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// Something a target session did differently from what it was asked, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetNote {
    /// `count` messages stored in `folder` without their keywords: the folder cannot store
    /// keywords (IMAP `PERMANENTFLAGS` without `\*`, as at Exchange Online).
    KeywordsDropped { folder: String, count: u64 },
}

/// One open connection to (or directory of) a [`MailTarget`], used by one lane at a time.
/// Folders are `/`-free Unicode segments; empty is the inbox.
pub trait TargetSession: Send {
    /// The largest message worth sending, when the target says (IMAP `APPENDLIMIT`); the
    /// runner leaves larger mail behind as it does mail over the plan's limit.
    fn size_limit(&self) -> Option<u64> {
        None
    }

    /// Creates `folder` (and its parents) when missing. Called before the first message goes
    /// to a folder, and once for every folder the plan routes mail to, even one with nothing
    /// to copy (users keep empty folders on purpose: rules file into them); on writable
    /// sessions only.
    fn ensure_folder<'a>(&'a mut self, folder: &'a [String]) -> BoxFuture<'a, FlowResult<()>>;

    /// Subscribes `folder`, so mail clients that show subscribed folders only (Outlook over
    /// IMAP, most phones) show it. Called once per target folder and step, on writable
    /// sessions, right after [`ensure_folder`](Self::ensure_folder) first made sure of it:
    /// `subscribed` says whether a source folder landing in it was subscribed at the source.
    /// `false` never unsubscribes anything (the target's own folders, a user's choice); a
    /// target may subscribe anyway (Microsoft 365 subscribes every migrated folder). The
    /// default does nothing, for targets without subscriptions.
    fn subscribe<'a>(
        &'a mut self,
        folder: &'a [String],
        subscribed: bool,
    ) -> BoxFuture<'a, FlowResult<()>> {
        let _ = (folder, subscribed);
        Box::pin(async { Ok(()) })
    }

    /// How many messages of each identity `folder` holds; a missing folder holds none. Never
    /// changes anything. Called once per target folder and lane, before the first append.
    fn identities<'a>(
        &'a mut self,
        folder: &'a [String],
    ) -> BoxFuture<'a, FlowResult<IdentityCounts>>;

    /// Stores `messages` in `folder`, in order, with their flags and internal dates, each as
    /// a new message (the runner already decided they are missing). Returns one result per
    /// message the target settled, in order: `Ok(id)` once it acknowledged the message
    /// durably (fsync, tagged OK), with the target's id of the new message where it tells
    /// (an IMAP UID under UIDPLUS); `Err(Refused)` for a refusal of that message alone. The
    /// list ends early at a failure that ends the session (its entry is the last); what
    /// follows is unknown. Throttling is waited out inside (cancellable through `cancel`: the
    /// list then ends early without a failure).
    fn append<'a>(
        &'a mut self,
        folder: &'a [String],
        messages: &'a [RawMessage],
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Vec<FlowResult<Option<String>>>>;

    /// Whether [`append_streamed`](Self::append_streamed) writes pieces on as they come
    /// (never holding the message whole). The default, `false`, is for targets whose
    /// `append_streamed` is the default.
    fn streams(&self) -> bool {
        false
    }

    /// Stores one message read piece by piece from `body` in `folder`, as [`append`](Self::append)
    /// stores one: `Ok(id)` once the target acknowledged it durably, `Err(Refused)` for a
    /// refusal of that message alone (the body may then be left unread: the caller reads it
    /// to its end), any other error ends the session. A target that cannot take back what it
    /// received of a message cut short (an IMAP APPEND literal) must fail — and be dropped by
    /// the caller, never closed — when `body` fails, so nothing partial is ever stored.
    /// Throttling is not waited out here: it is an error (the runner reconnects and goes on
    /// from its checkpoints), as the body cannot be read twice. `cancel` stops a message
    /// between pieces the same way — cut short, nothing of it stored, an error — so a Ctrl-C
    /// does not wait for a large message to finish. The default gathers the pieces (or takes
    /// the message whole, [`BodyReader::take_whole`]) and calls `append`.
    fn append_streamed<'a>(
        &'a mut self,
        folder: &'a [String],
        body: &'a mut dyn BodyReader,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, FlowResult<Option<String>>> {
        Box::pin(async move {
            let message = match body.take_whole() {
                Some(m) => m,
                None => {
                    let mut bytes = Vec::with_capacity(body.size() as usize);
                    let mut piece = Vec::new();
                    while body.next_piece(&mut piece).await? {
                        bytes.extend_from_slice(&piece);
                    }
                    RawMessage::new(bytes)
                        .with_flags(body.flags().clone())
                        .with_internal_date(body.internal_date())
                }
            };
            let mut results = self
                .append(folder, std::slice::from_ref(&message), cancel)
                .await;
            results.pop().unwrap_or_else(|| {
                Err(FlowError::Transient(
                    "the target left a message unanswered".into(),
                ))
            })
        })
    }

    /// Removes the messages `ids` (as [`append`](Self::append) returned them, in this or an
    /// earlier run: ids are kept in checkpoints, so they must stay meaningful across
    /// sessions — an id of a folder since recreated must name nothing) from `folder`, and
    /// nothing else. Called only to take back copies this copy stored twice: when a run
    /// killed mid-append left a command the server was still committing as the next run read
    /// the folder. `Ok(false)`: the target cannot remove exactly those (the default), and the
    /// copies stay.
    fn remove<'a>(
        &'a mut self,
        folder: &'a [String],
        ids: &'a [String],
    ) -> BoxFuture<'a, FlowResult<bool>> {
        let _ = (folder, ids);
        Box::pin(async { Ok(false) })
    }

    /// Makes the flags of `folder`'s messages match `changes` — for each identity, its
    /// copies in order — for the system flags `\Seen`, `\Answered`, `\Flagged`, `\Draft`
    /// (set or cleared) and keywords (added). Returns how many messages changed. The default
    /// reports that the target cannot.
    fn set_flags<'a>(
        &'a mut self,
        folder: &'a [String],
        changes: &'a [FlagChange],
    ) -> BoxFuture<'a, FlowResult<u64>> {
        let _ = (folder, changes);
        Box::pin(async {
            Err(FlowError::Permanent(
                "this target cannot change flags of stored mail".into(),
            ))
        })
    }

    /// What this session did differently from what it was asked since the last call (mail
    /// stored without its keywords…), for the runner to record. The default has nothing.
    fn take_notes(&mut self) -> Vec<TargetNote> {
        Vec::new()
    }

    /// Ends the session cleanly (IMAP LOGOUT).
    fn close(self: Box<Self>) -> BoxFuture<'static, FlowResult<()>>;
}

/// The checkpoint key under which the runner records a message it left behind on purpose
/// (over the size limit, refused by the target as too big), with what the report shows. A
/// source that deletes copied mail ([`SourceSession::committed`]) checks it: mail left behind
/// is never deleted.
pub fn left_behind_key(folder: &SourceFolder, message_id: &str) -> String {
    format!("{LEFT_BEHIND_PREFIX}{}:{message_id}", folder.id)
}

/// Every [`left_behind_key`] starts with this.
pub const LEFT_BEHIND_PREFIX: &str = "skipped:";

/// The checkpoint key of the record of a message copied without some of its parts
/// ([`Fetched::Partial`]).
pub fn partial_key(folder: &SourceFolder, message_id: &str) -> String {
    format!("{PARTIAL_PREFIX}{}:{message_id}", folder.id)
}

/// Every [`partial_key`] starts with this.
pub const PARTIAL_PREFIX: &str = "partial:";

/// The checkpoint key under which the runner records that it made sure of a target folder
/// (created, subscribed as the source says): once per folder and step, so an incremental
/// pass with nothing new touches neither target nor folder.
pub fn target_folder_key(segments: &[String]) -> String {
    format!("target-folder:{}", display_target(segments))
}

/// Target segments as people read them: `/`-joined, the inbox as `INBOX`.
pub fn display_target(segments: &[String]) -> String {
    if segments.is_empty() {
        "INBOX".into()
    } else {
        segments.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_files_go_to_tmpdir_else_var_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let chosen = dir.path().join("chosen");
        assert_eq!(spool_dir(Some(chosen.clone().into()), dir.path()), chosen);
        assert_eq!(spool_dir(None, dir.path()), dir.path());
        assert_eq!(spool_dir(Some("".into()), dir.path()), dir.path());
        assert_eq!(
            spool_dir(None, &dir.path().join("missing")),
            std::env::temp_dir()
        );
    }
}
