//! The messaging layer (MS-PST 2.4): the store, the folder tree, messages with their
//! recipients and attachments, and the name-to-id map.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::error::{PstError, Result};
use super::ltp::{PropertyBag, Table};
use super::ndb::{nid, Ndb, NodeRef};
use super::props::{id, PropValue};
use super::strings::decode_ansi;

/// A well-known folder, found from the store's and the Inbox's entry ids, never from the
/// folder's (localised) display name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FolderRole {
    /// The IPM subtree itself ("Top of Personal Folders"): the mailbox root.
    IpmSubtree,
    Inbox,
    SentItems,
    DeletedItems,
    Drafts,
    Outbox,
    Junk,
    Calendar,
    Contacts,
    Tasks,
    Journal,
    Notes,
    /// The search root ("Finder"): search folders, not mail.
    SearchRoot,
}

impl FolderRole {
    /// The name Exchange and most IMAP servers give this folder.
    pub fn target_name(self) -> &'static str {
        match self {
            FolderRole::IpmSubtree => "",
            FolderRole::Inbox => "INBOX",
            FolderRole::SentItems => "Sent Items",
            FolderRole::DeletedItems => "Deleted Items",
            FolderRole::Drafts => "Drafts",
            FolderRole::Outbox => "Outbox",
            FolderRole::Junk => "Junk Email",
            FolderRole::Calendar => "Calendar",
            FolderRole::Contacts => "Contacts",
            FolderRole::Tasks => "Tasks",
            FolderRole::Journal => "Journal",
            FolderRole::Notes => "Notes",
            FolderRole::SearchRoot => "Search Root",
        }
    }
}

/// One folder of the PST.
#[derive(Debug, Clone, Serialize)]
pub struct Folder {
    pub nid: u32,
    /// The parent folder's node id (None for the root folder).
    pub parent: Option<u32>,
    /// Display names from below the IPM subtree down to this folder; folders outside the IPM
    /// subtree (search root, orphans) start with the root folder's children.
    pub path: Vec<String>,
    /// [`Folder::path`] with every default folder on the way named as the target names it
    /// (`Caixa de Entrada/Top` → `INBOX/Top`, `Itens Enviados` → `Sent Items`).
    pub target_path: Vec<String>,
    pub role: Option<FolderRole>,
    /// Whether the folder sits below the IPM subtree (what a user sees in Outlook).
    pub in_ipm_subtree: bool,
    /// Normal (non-associated) messages whose node names this folder as parent.
    pub message_count: usize,
    /// Associated (FAI) messages: views, rules, autocomplete; never migrated as mail.
    pub associated_count: usize,
    /// What the folder's own PidTagContentCount says (Outlook's counter).
    pub content_count: Option<i32>,
    pub unread_count: Option<i32>,
    pub container_class: Option<String>,
    pub search_folder: bool,
}

/// Store-wide facts.
#[derive(Debug, Clone, Serialize)]
pub struct StoreInfo {
    pub display_name: String,
    pub format: super::ndb::Format,
    pub version: u16,
    pub crypt: super::crypt::CryptMethod,
    /// PidTagPstPassword is set: Outlook asks for a password. The data is not encrypted by
    /// it (it is a CRC in the store), so the file is read all the same.
    pub has_password: bool,
    /// The store's code page for ANSI strings, when it names one.
    pub code_page: Option<u32>,
    #[serde(skip)]
    pub record_key: Vec<u8>,
}

/// Something in the PST that could not be read; the rest of the file was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Folder path (display names joined with `/`), empty for store-level problems.
    pub folder: String,
    pub nid: u32,
    pub reason: String,
}

/// A named property: (property set GUID, numeric id) or (GUID, name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NamedKey {
    Id([u8; 16], u32),
    Name([u8; 16], String),
}

/// The name-to-id map (MS-PST 2.4.7): named property → the 0x8000+ id this file uses.
#[derive(Debug, Default, Clone)]
pub struct NameMap {
    map: HashMap<NamedKey, u16>,
}

pub const PS_MAPI: [u8; 16] = guid(0x0002_0328, 0, 0);
pub const PS_PUBLIC_STRINGS: [u8; 16] = guid(0x0002_0329, 0, 0);
pub const PSETID_APPOINTMENT: [u8; 16] = guid(0x0006_2002, 0, 0);
pub const PSETID_ADDRESS: [u8; 16] = guid(0x0006_2004, 0, 0);

/// A `{XXXXXXXX-0000-0000-C000-000000000046}` MAPI GUID in its on-disk byte order.
const fn guid(data1: u32, data2: u16, data3: u16) -> [u8; 16] {
    let a = data1.to_le_bytes();
    let b = data2.to_le_bytes();
    let c = data3.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], 0xC0, 0, 0, 0, 0, 0, 0, 0x46,
    ]
}

impl NameMap {
    fn read(ndb: &Ndb) -> Result<NameMap> {
        let Some(node) = ndb.node(nid::NAME_TO_ID_MAP)? else {
            return Ok(NameMap::default());
        };
        let bag = PropertyBag::read(ndb, node.into())?;
        let binary = |pid: u16| match bag.get(pid) {
            Some(PropValue::Binary(b)) => b.as_slice(),
            _ => &[],
        };
        let guids = binary(0x0002);
        let entries = binary(0x0003);
        let strings = binary(0x0004);
        let mut map = HashMap::new();
        for entry in entries.chunks_exact(8) {
            let value = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
            let guid_field = u16::from_le_bytes([entry[4], entry[5]]);
            let index = u16::from_le_bytes([entry[6], entry[7]]);
            let guid_index = guid_field >> 1;
            let set = match guid_index {
                0 => continue,
                1 => PS_MAPI,
                2 => PS_PUBLIC_STRINGS,
                n => {
                    let at = (n as usize - 3) * 16;
                    let Some(bytes) = guids.get(at..at + 16) else {
                        continue;
                    };
                    let mut g = [0u8; 16];
                    g.copy_from_slice(bytes);
                    g
                }
            };
            let key = if guid_field & 1 == 0 {
                NamedKey::Id(set, value)
            } else {
                let at = value as usize;
                let len = strings
                    .get(at..at + 4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
                let Some(name) = len.and_then(|len| strings.get(at + 4..at + 4 + len)) else {
                    continue;
                };
                NamedKey::Name(set, super::props::utf16le(name))
            };
            map.insert(key, 0x8000u16.wrapping_add(index));
        }
        Ok(NameMap { map })
    }

    /// The property id this file uses for a numeric named property.
    pub fn id(&self, set: [u8; 16], lid: u32) -> Option<u16> {
        self.map.get(&NamedKey::Id(set, lid)).copied()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A message (or an embedded one) read whole: properties, recipients, attachments.
#[derive(Debug, Clone)]
pub struct Item {
    pub nid: u32,
    pub props: PropertyBag,
    pub recipients: Vec<PropertyBag>,
    pub attachments: Vec<Attachment>,
    /// Parts that could not be read (an attachment, the recipient table): the item is still
    /// usable, the conversion says what is missing.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Attachment {
    pub props: PropertyBag,
    /// The attached message, for `ATTACH_EMBEDDED_MSG` attachments.
    pub embedded: Option<Box<Item>>,
}

/// The PST's nodes by parent, built once per open from one walk of the node B-tree: the only
/// per-message memory the reader keeps (8 bytes per node).
#[derive(Debug, Default)]
struct Index {
    folders: BTreeMap<u32, u32>,
    messages: Vec<(u32, u32)>,
    associated: Vec<(u32, u32)>,
    /// The receive folder table's node (NID type 0x0B), when the file has one.
    receive_folder_table: Option<u32>,
}

pub(crate) struct Messaging {
    pub ndb: Ndb,
    pub store: StoreInfo,
    pub folders: Vec<Folder>,
    pub names: NameMap,
    pub problems: Vec<Problem>,
    index: Index,
}

const MAX_EMBEDDING_DEPTH: usize = 16;

/// Attachment data up to this size is read with its attachment, while the message holds less
/// than [`MESSAGE_HELD_MAX`] of such data; larger data (and any beyond that) is located and
/// measured only ([`PropValue::Stream`]) and read block by block as the message is written
/// out. So converting a message holds neither a large attachment nor a hundred small ones.
pub(crate) const ATTACHMENT_HELD_MAX: usize = 256 * 1024;

/// Attachment data one message (its embedded messages included) holds at most; see
/// [`ATTACHMENT_HELD_MAX`].
///
/// Half a MiB: held in the message's template as base64 (about 0.7 MiB) beside the target's
/// pieces in flight (2 × 512 KiB), a streamed message stays within the 2 MiB the copy takes
/// from its memory budget for it.
pub(crate) const MESSAGE_HELD_MAX: usize = 512 * 1024;

impl Messaging {
    pub fn open(ndb: Ndb) -> Result<Messaging> {
        let store_node = ndb.node(nid::MESSAGE_STORE)?.ok_or_else(|| {
            ndb.site(ndb.header.nbt_root.1).corrupt(
                format!("NBT (root page at {:#x})", ndb.header.nbt_root.1),
                "no message store node (0x21)",
            )
        })?;
        let store_props = PropertyBag::read(&ndb, store_node.into())?;
        let code_page = int(&store_props, id::MESSAGE_CODEPAGE)
            .or_else(|| int(&store_props, id::INTERNET_CPID))
            .map(|c| c as u32);
        let store = StoreInfo {
            display_name: text(&store_props, id::DISPLAY_NAME, code_page).unwrap_or_default(),
            format: ndb.format(),
            version: ndb.header.version,
            crypt: ndb.header.crypt,
            has_password: int(&store_props, id::PST_PASSWORD).is_some_and(|p| p != 0),
            code_page,
            record_key: binary(&store_props, id::RECORD_KEY).unwrap_or_default(),
        };
        let names = NameMap::read(&ndb).unwrap_or_default();
        let mut index = Index::default();
        ndb.for_each_node(|entry| match nid::kind(entry.nid) {
            nid::TYPE_NORMAL_FOLDER | nid::TYPE_SEARCH_FOLDER => {
                index.folders.insert(entry.nid, entry.parent);
            }
            nid::TYPE_NORMAL_MESSAGE => index.messages.push((entry.parent, entry.nid)),
            nid::TYPE_ASSOC_MESSAGE => index.associated.push((entry.parent, entry.nid)),
            nid::TYPE_RECEIVE_FOLDER_TABLE => {
                index.receive_folder_table.get_or_insert(entry.nid);
            }
            _ => {}
        })?;
        index.messages.sort_unstable();
        index.associated.sort_unstable();
        let mut messaging = Messaging {
            ndb,
            store,
            folders: Vec::new(),
            names,
            problems: Vec::new(),
            index,
        };
        messaging.build_folders(&store_props)?;
        Ok(messaging)
    }

    fn build_folders(&mut self, store_props: &PropertyBag) -> Result<()> {
        let entry_nid = |pid: u16| entry_id_nid(store_props.get(pid));
        let subtree = entry_nid(id::IPM_SUBTREE_ENTRYID);
        let mut roles: HashMap<u32, FolderRole> = HashMap::new();
        let assign = |nid: Option<u32>, role: FolderRole, roles: &mut HashMap<u32, FolderRole>| {
            if let Some(nid) = nid {
                roles.entry(nid).or_insert(role);
            }
        };
        assign(subtree, FolderRole::IpmSubtree, &mut roles);
        assign(
            entry_nid(id::IPM_WASTEBASKET_ENTRYID),
            FolderRole::DeletedItems,
            &mut roles,
        );
        assign(
            entry_nid(id::IPM_SENTMAIL_ENTRYID),
            FolderRole::SentItems,
            &mut roles,
        );
        assign(
            entry_nid(id::IPM_OUTBOX_ENTRYID),
            FolderRole::Outbox,
            &mut roles,
        );
        assign(
            entry_nid(id::FINDER_ENTRYID),
            FolderRole::SearchRoot,
            &mut roles,
        );

        // Read every folder's properties once (folders are few).
        let mut props: BTreeMap<u32, PropertyBag> = BTreeMap::new();
        let folder_nids: Vec<u32> = self.index.folders.keys().copied().collect();
        for folder in &folder_nids {
            match self.ndb.node(*folder).and_then(|node| match node {
                Some(node) => PropertyBag::read(&self.ndb, node.into()),
                None => Ok(PropertyBag::default()),
            }) {
                Ok(bag) => {
                    props.insert(*folder, bag);
                }
                Err(err) => self.problems.push(Problem {
                    folder: String::new(),
                    nid: *folder,
                    reason: err.to_string(),
                }),
            }
        }
        // The Inbox is the store's receive folder (the receive folder table maps message
        // classes to folders); failing that, the folder that carries the entry ids of the
        // other default folders (MS-OXOSFLD 2.2.x), which Outlook writes on the Inbox.
        let carries_ids = |bag: &PropertyBag| {
            bag.get(id::IPM_APPOINTMENT_ENTRYID).is_some()
                || bag.get(id::IPM_CONTACT_ENTRYID).is_some()
        };
        let is_special = |folder: u32| folder == nid::ROOT_FOLDER || Some(folder) == subtree;
        let inbox = self
            .receive_folder()
            .filter(|n| props.contains_key(n) && !is_special(*n))
            .or_else(|| {
                props
                    .iter()
                    .find_map(|(f, bag)| (!is_special(*f) && carries_ids(bag)).then_some(*f))
            });
        assign(inbox, FolderRole::Inbox, &mut roles);
        let carrier = inbox
            .and_then(|n| props.get(&n))
            .filter(|bag| carries_ids(bag))
            .or_else(|| {
                props
                    .iter()
                    .find_map(|(f, bag)| (!is_special(*f) && carries_ids(bag)).then_some(bag))
            })
            .or_else(|| props.get(&nid::ROOT_FOLDER));
        if let Some(bag) = carrier {
            let pairs = [
                (id::IPM_APPOINTMENT_ENTRYID, FolderRole::Calendar),
                (id::IPM_CONTACT_ENTRYID, FolderRole::Contacts),
                (id::IPM_JOURNAL_ENTRYID, FolderRole::Journal),
                (id::IPM_NOTE_ENTRYID, FolderRole::Notes),
                (id::IPM_TASK_ENTRYID, FolderRole::Tasks),
                (id::IPM_DRAFTS_ENTRYID, FolderRole::Drafts),
            ];
            for (pid, role) in pairs {
                assign(entry_id_nid(bag.get(pid)), role, &mut roles);
            }
            // PidTagAdditionalRenEntryIds: [4] is Junk E-mail (MS-OXOSFLD 2.2.4).
            if let Some(PropValue::MvBinary(ids)) = bag.get(id::ADDITIONAL_REN_ENTRYIDS) {
                if let Some(junk) = ids.get(4) {
                    assign(nid_of_entry_id(junk), FolderRole::Junk, &mut roles);
                }
            }
        }

        // An entry id naming a folder whose container class says otherwise (a calendar
        // role on a folder of mail) is not trusted: such files exist (libyal's test file
        // has stale ids on renamed folders).
        let code_page = self.store.code_page;
        roles.retain(|folder, role| {
            let class = props
                .get(folder)
                .and_then(|bag| text(bag, id::CONTAINER_CLASS, code_page))
                .unwrap_or_default()
                .to_ascii_lowercase();
            let expected = match role {
                FolderRole::Calendar => "ipf.appointment",
                FolderRole::Contacts => "ipf.contact",
                FolderRole::Tasks => "ipf.task",
                FolderRole::Notes => "ipf.stickynote",
                FolderRole::Journal => "ipf.journal",
                FolderRole::Inbox
                | FolderRole::SentItems
                | FolderRole::DeletedItems
                | FolderRole::Drafts
                | FolderRole::Outbox
                | FolderRole::Junk => {
                    return class.is_empty()
                        || class.starts_with("ipf.note")
                        || class.starts_with("ipf.imap")
                        || *role == FolderRole::DeletedItems
                }
                FolderRole::IpmSubtree | FolderRole::SearchRoot => return true,
            };
            // Outlook always sets the class of these folders; without it, do not guess.
            class.starts_with(expected)
        });
        let mut folders = Vec::new();
        for folder in folder_nids {
            let bag = props.get(&folder);
            let parent = self
                .index
                .folders
                .get(&folder)
                .copied()
                .filter(|p| *p != folder);
            let name = bag
                .and_then(|b| text(b, id::DISPLAY_NAME, code_page))
                .unwrap_or_else(|| format!("folder-{folder:x}"));
            // Walk up to the IPM subtree or the root, collecting names (bounded: no loops).
            let mut path = vec![name];
            let mut chain = vec![folder];
            let mut in_subtree = Some(folder) == subtree;
            let mut cursor = parent;
            let mut steps = 0;
            while let Some(up) = cursor {
                steps += 1;
                if steps > 256 || up == nid::ROOT_FOLDER && Some(up) != subtree {
                    break;
                }
                if Some(up) == subtree {
                    in_subtree = true;
                    break;
                }
                let up_name = props
                    .get(&up)
                    .and_then(|b| text(b, id::DISPLAY_NAME, code_page))
                    .unwrap_or_else(|| format!("folder-{up:x}"));
                path.push(up_name);
                chain.push(up);
                cursor = self.index.folders.get(&up).copied().filter(|p| *p != up);
            }
            path.reverse();
            chain.reverse();
            if folder == nid::ROOT_FOLDER || Some(folder) == subtree {
                path.clear();
                chain.clear();
            }
            let target_path = path
                .iter()
                .zip(&chain)
                .map(|(name, nid)| match roles.get(nid) {
                    Some(role) if *role != FolderRole::IpmSubtree => role.target_name().to_owned(),
                    _ => name.clone(),
                })
                .collect();
            let message_count = count_children(&self.index.messages, folder);
            let associated_count = count_children(&self.index.associated, folder);
            folders.push(Folder {
                nid: folder,
                parent,
                path,
                target_path,
                role: roles.get(&folder).copied(),
                in_ipm_subtree: in_subtree,
                message_count,
                associated_count,
                content_count: bag.and_then(|b| int(b, id::CONTENT_COUNT)),
                unread_count: bag.and_then(|b| int(b, id::CONTENT_UNREAD)),
                container_class: bag.and_then(|b| text(b, id::CONTAINER_CLASS, code_page)),
                search_folder: nid::kind(folder) == nid::TYPE_SEARCH_FOLDER,
            });
        }
        // Parents before children, siblings by name: a stable, readable order.
        folders.sort_by(|a, b| {
            (!a.in_ipm_subtree, &a.path, a.nid).cmp(&(!b.in_ipm_subtree, &b.path, b.nid))
        });
        self.folders = folders;
        Ok(())
    }

    /// The folder receiving "IPM.Note" (else "IPM", else the default class) mail, from the
    /// receive folder table. Rows hold the class (PidTagMessageClass) and the folder's node
    /// id (0x6605).
    fn receive_folder(&self) -> Option<u32> {
        let table_nid = self.index.receive_folder_table?;
        let node = self.ndb.node(table_nid).ok()??;
        let table = Table::read(&self.ndb, node.into()).ok()?;
        let mut best: Option<(u8, u32)> = None;
        for row in &table.rows {
            let class = text(row, id::MESSAGE_CLASS, self.store.code_page)
                .unwrap_or_default()
                .to_ascii_lowercase();
            let rank = match class.as_str() {
                "ipm.note" => 0,
                "ipm" => 1,
                "" => 2,
                _ => continue,
            };
            let folder = match row.get(0x6605) {
                Some(PropValue::I32(n)) => *n as u32,
                Some(PropValue::Binary(entry)) => match nid_of_entry_id(entry) {
                    Some(n) => n,
                    None => continue,
                },
                _ => continue,
            };
            if folder == nid::ROOT_FOLDER {
                continue;
            }
            if best.is_none_or(|(r, _)| rank < r) {
                best = Some((rank, folder));
            }
        }
        best.map(|(_, folder)| folder)
    }

    /// Node ids of a folder's normal messages, in node-id order (stable across runs).
    pub fn message_nids(&self, folder: u32) -> Vec<u32> {
        children(&self.index.messages, folder)
    }

    /// Node ids of a folder's associated (FAI) messages.
    pub fn associated_nids(&self, folder: u32) -> Vec<u32> {
        children(&self.index.associated, folder)
    }

    pub fn folder_path(&self, folder: u32) -> String {
        self.folders
            .iter()
            .find(|f| f.nid == folder)
            .map(|f| f.path.join("/"))
            .unwrap_or_default()
    }

    /// The top-level node of a message, or a clear error.
    pub fn message_node(&self, message: u32) -> Result<NodeRef> {
        match nid::kind(message) {
            nid::TYPE_NORMAL_MESSAGE | nid::TYPE_ASSOC_MESSAGE => {}
            _ => {
                return Err(PstError::NoSuchNode {
                    path: self.ndb.path().to_path_buf(),
                    what: "message",
                    nid: message,
                })
            }
        }
        self.ndb
            .node(message)?
            .map(NodeRef::from)
            .ok_or_else(|| PstError::NoSuchNode {
                path: self.ndb.path().to_path_buf(),
                what: "message",
                nid: message,
            })
    }

    /// Only the message's own properties (no recipients, no attachments): cheap metadata.
    pub fn message_props(&self, message: u32) -> Result<PropertyBag> {
        let node = self.message_node(message)?;
        PropertyBag::read(&self.ndb, node)
    }

    /// A message with its recipients and attachments, embedded messages included.
    pub fn item(&self, message: u32) -> Result<Item> {
        let node = self.message_node(message)?;
        self.read_item(node, 0, &mut 0)
    }

    /// `held`: attachment data read so far for the top-level message.
    fn read_item(&self, node: NodeRef, depth: usize, held: &mut usize) -> Result<Item> {
        let props = PropertyBag::read(&self.ndb, node)?;
        let mut problems = Vec::new();
        let mut recipients = Vec::new();
        let mut attachments = Vec::new();
        // Contacts, distribution lists and associated messages often have no sub-node tree
        // at all: that means "no recipients, no attachments", not an error.
        if node.sub_bid != 0 {
            match self.ndb.subnode(node.sub_bid, nid::RECIPIENT_TABLE) {
                Ok(Some(table)) => match Table::read(&self.ndb, table) {
                    Ok(table) => recipients = table.rows,
                    Err(err) => problems.push(format!("recipient table: {err}")),
                },
                Ok(None) => {}
                Err(err) => problems.push(format!("recipient table: {err}")),
            }
            match self.attachment_nodes(node) {
                Ok(nodes) => {
                    for attachment in nodes {
                        match self.read_attachment(attachment, depth, held) {
                            Ok(a) => attachments.push(a),
                            Err(err) => {
                                problems.push(format!("attachment {:#x}: {err}", attachment.nid))
                            }
                        }
                    }
                }
                Err(err) => problems.push(format!("attachment table: {err}")),
            }
        }
        Ok(Item {
            nid: node.nid,
            props,
            recipients,
            attachments,
            problems,
        })
    }

    /// The attachments' sizes added up from the message's attachment table (PidTagAttachSize,
    /// which Outlook keeps in the table): 0 for a message without attachments. Reads the
    /// table only, not the attachments.
    pub fn attachments_size(&self, message: u32) -> Result<u64> {
        let node = self.message_node(message)?;
        if node.sub_bid == 0 {
            return Ok(0);
        }
        let Some(table) = self.ndb.subnode(node.sub_bid, nid::ATTACHMENT_TABLE)? else {
            return Ok(0);
        };
        Ok(Table::read(&self.ndb, table)?
            .rows
            .iter()
            .filter_map(|row| int(row, id::ATTACH_SIZE))
            .map(|size| u64::from(size as u32))
            .sum())
    }

    /// The message's attachment sub-nodes in attachment-table order (falling back to the
    /// sub-node tree when the table is missing).
    fn attachment_nodes(&self, node: NodeRef) -> Result<Vec<NodeRef>> {
        let all = self.ndb.subnodes(node.sub_bid)?;
        let by_nid: HashMap<u32, NodeRef> = all
            .iter()
            .filter(|n| nid::kind(n.nid) == nid::TYPE_ATTACHMENT)
            .map(|n| (n.nid, *n))
            .collect();
        let mut ordered = Vec::new();
        if let Some(table) = all.iter().find(|n| n.nid == nid::ATTACHMENT_TABLE) {
            let table = Table::read(&self.ndb, *table)?;
            for row in table.rows {
                if let Some(PropValue::I32(row_id)) = row.get(id::LTP_ROW_ID) {
                    if let Some(n) = by_nid.get(&(*row_id as u32)) {
                        ordered.push(*n);
                    }
                }
            }
        }
        if ordered.is_empty() {
            let mut nodes: Vec<NodeRef> = by_nid.into_values().collect();
            nodes.sort_by_key(|n| n.nid);
            return Ok(nodes);
        }
        Ok(ordered)
    }

    fn read_attachment(&self, node: NodeRef, depth: usize, held: &mut usize) -> Result<Attachment> {
        let hold_at_most = ATTACHMENT_HELD_MAX.min(MESSAGE_HELD_MAX.saturating_sub(*held));
        let props = PropertyBag::read_streaming(&self.ndb, node, id::ATTACH_DATA, hold_at_most)?;
        if let Some(PropValue::Binary(data)) = props.get(id::ATTACH_DATA) {
            *held += data.len();
        }
        let mut embedded = None;
        if let Some(PropValue::Object { nid: object, .. }) = props.get(id::ATTACH_DATA) {
            if depth >= MAX_EMBEDDING_DEPTH {
                return Err(self.ndb.site(0).corrupt(
                    format!("attachment {:#x}", node.nid),
                    format!("messages embedded more than {MAX_EMBEDDING_DEPTH} deep"),
                ));
            }
            let sub = self.ndb.subnode(node.sub_bid, *object)?.ok_or_else(|| {
                self.ndb.site(0).corrupt(
                    format!("attachment {:#x}", node.nid),
                    format!("embedded message sub-node {object:#x} is missing"),
                )
            })?;
            embedded = Some(Box::new(self.read_item(sub, depth + 1, held)?));
        }
        Ok(Attachment { props, embedded })
    }
}

fn count_children(pairs: &[(u32, u32)], parent: u32) -> usize {
    let start = pairs.partition_point(|(p, _)| *p < parent);
    let end = pairs.partition_point(|(p, _)| *p <= parent);
    end - start
}

fn children(pairs: &[(u32, u32)], parent: u32) -> Vec<u32> {
    let start = pairs.partition_point(|(p, _)| *p < parent);
    let end = pairs.partition_point(|(p, _)| *p <= parent);
    pairs[start..end].iter().map(|(_, n)| *n).collect()
}

/// A PST entry id: 4 flag bytes, the store's 16-byte record key, then the node id.
pub fn nid_of_entry_id(bytes: &[u8]) -> Option<u32> {
    let b = bytes.get(20..24)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn entry_id_nid(value: Option<&PropValue>) -> Option<u32> {
    match value {
        Some(PropValue::Binary(bytes)) => nid_of_entry_id(bytes),
        _ => None,
    }
}

pub fn int(bag: &PropertyBag, pid: u16) -> Option<i32> {
    match bag.get(pid)? {
        PropValue::I32(v) => Some(*v),
        PropValue::I16(v) => Some(i32::from(*v)),
        PropValue::Bool(v) => Some(i32::from(*v)),
        _ => None,
    }
}

pub fn binary(bag: &PropertyBag, pid: u16) -> Option<Vec<u8>> {
    match bag.get(pid)? {
        PropValue::Binary(v) => Some(v.clone()),
        _ => None,
    }
}

pub fn time(bag: &PropertyBag, pid: u16) -> Option<i64> {
    match bag.get(pid)? {
        PropValue::Time(v) => super::props::filetime_to_unix(*v),
        _ => None,
    }
}

/// A string property, ANSI ones decoded with `code_page` (Windows-1252 when unknown).
pub fn text(bag: &PropertyBag, pid: u16, code_page: Option<u32>) -> Option<String> {
    match bag.get(pid)? {
        PropValue::Unicode(s) => Some(s.clone()),
        PropValue::String8(bytes) => Some(decode_ansi(bytes, code_page)),
        _ => None,
    }
}
