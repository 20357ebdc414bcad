//! A minimal PST writer for tests: ANSI or Unicode, any NDB encoding, folders with messages,
//! recipients, attachments (by value, large ones through data trees, embedded messages to any
//! depth), contacts and appointments through named properties.
//!
//! Written against MS-PST from the spec, independent of the reader's code, so a reader bug
//! and a writer bug must agree to hide each other — and readpst reads these files too, which
//! is the third opinion the tests use.
#![allow(dead_code)]

use std::collections::BTreeMap;

/// A property: id, type, value bytes as MS-PST stores them (strings: UTF-16LE for 0x001F,
/// 8-bit for 0x001E, no terminator).
#[derive(Debug, Clone)]
pub struct Prop {
    pub id: u16,
    pub kind: u16,
    pub value: Vec<u8>,
}

pub fn unicode(id: u16, text: &str) -> Prop {
    Prop {
        id,
        kind: 0x001F,
        value: text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
    }
}

pub fn string8(id: u16, bytes: &[u8]) -> Prop {
    Prop {
        id,
        kind: 0x001E,
        value: bytes.to_vec(),
    }
}

pub fn int32(id: u16, value: i32) -> Prop {
    Prop {
        id,
        kind: 0x0003,
        value: value.to_le_bytes().to_vec(),
    }
}

pub fn boolean(id: u16, value: bool) -> Prop {
    Prop {
        id,
        kind: 0x000B,
        value: vec![u8::from(value), 0, 0, 0],
    }
}

pub fn binary(id: u16, bytes: &[u8]) -> Prop {
    Prop {
        id,
        kind: 0x0102,
        value: bytes.to_vec(),
    }
}

/// A FILETIME from Unix seconds.
pub fn time(id: u16, unix_seconds: i64) -> Prop {
    let ticks = (unix_seconds + 11_644_473_600) * 10_000_000;
    Prop {
        id,
        kind: 0x0040,
        value: ticks.to_le_bytes().to_vec(),
    }
}

pub fn mv_binary(id: u16, items: &[Vec<u8>]) -> Prop {
    let mut value = (items.len() as u32).to_le_bytes().to_vec();
    let mut offset = 4 + 4 * items.len();
    for item in items {
        value.extend_from_slice(&(offset as u32).to_le_bytes());
        offset += item.len();
    }
    for item in items {
        value.extend_from_slice(item);
    }
    Prop {
        id,
        kind: 0x1102,
        value,
    }
}

#[derive(Debug, Clone, Default)]
pub struct MessageSpec {
    pub props: Vec<Prop>,
    pub recipients: Vec<Vec<Prop>>,
    pub attachments: Vec<AttachmentSpec>,
    /// Write no sub-node tree at all, as Outlook does for many contacts and FAI messages.
    pub no_subnodes: bool,
}

#[derive(Debug, Clone)]
pub struct AttachmentSpec {
    pub props: Vec<Prop>,
    /// An attached message (PR_ATTACH_METHOD 5).
    pub embedded: Option<Box<MessageSpec>>,
}

#[derive(Debug, Clone, Default)]
pub struct FolderSpec {
    pub name: String,
    pub container_class: Option<String>,
    /// "inbox", "sent", "deleted", "drafts", "outbox", "junk", "calendar", "contacts", "tasks".
    pub role: Option<&'static str>,
    pub messages: Vec<MessageSpec>,
    pub associated: Vec<MessageSpec>,
    pub children: Vec<FolderSpec>,
}

#[derive(Debug, Clone)]
pub struct PstSpec {
    pub ansi: bool,
    /// 0 none, 1 permute, 2 cyclic.
    pub crypt: u8,
    pub store_name: String,
    pub password: bool,
    pub folders: Vec<FolderSpec>,
    /// Named properties (property set GUID bytes, numeric id) in id order: the n-th gets
    /// property id 0x8000 + n.
    pub named: Vec<([u8; 16], u32)>,
}

impl Default for PstSpec {
    fn default() -> Self {
        PstSpec {
            ansi: false,
            crypt: 1,
            store_name: "Personal Folders".into(),
            password: false,
            folders: Vec::new(),
            named: Vec::new(),
        }
    }
}

impl PstSpec {
    /// The property id a named property gets in this file (registering it if new).
    pub fn named_id(&mut self, set: [u8; 16], lid: u32) -> u16 {
        if let Some(i) = self.named.iter().position(|n| *n == (set, lid)) {
            return 0x8000 + i as u16;
        }
        self.named.push((set, lid));
        0x8000 + (self.named.len() - 1) as u16
    }
}

pub const fn mapi_guid(data1: u32) -> [u8; 16] {
    let a = data1.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0xC0, 0, 0, 0, 0, 0, 0, 0x46,
    ]
}
pub const PSETID_APPOINTMENT: [u8; 16] = mapi_guid(0x0006_2002);
pub const PSETID_ADDRESS: [u8; 16] = mapi_guid(0x0006_2004);

const STORE_RECORD_KEY: [u8; 16] = *b"cutover-test-pst";

// --------------------------------------------------------------------------------------
// Heap-on-node builder

struct Heap {
    client_sig: u8,
    items: Vec<Vec<u8>>,
    user_root: u32,
}

impl Heap {
    fn new(client_sig: u8) -> Heap {
        Heap {
            client_sig,
            items: Vec::new(),
            user_root: 0,
        }
    }

    /// Adds an item, returning its HID (block 0).
    fn add(&mut self, bytes: Vec<u8>) -> u32 {
        self.items.push(bytes);
        (self.items.len() as u32) << 5
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; 12];
        let mut offsets = vec![12u16];
        for item in &self.items {
            out.extend_from_slice(item);
            offsets.push(out.len() as u16);
        }
        if !out.len().is_multiple_of(2) {
            out.push(0);
        }
        let map = out.len() as u16;
        out[0..2].copy_from_slice(&map.to_le_bytes());
        out[2] = 0xEC;
        out[3] = self.client_sig;
        out[4..8].copy_from_slice(&self.user_root.to_le_bytes());
        out.extend_from_slice(&(self.items.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        for o in offsets {
            out.extend_from_slice(&o.to_le_bytes());
        }
        out
    }
}

// --------------------------------------------------------------------------------------
// The file builder

struct Sub {
    nid: u32,
    data: u64,
    sub: u64,
}

struct Builder {
    ansi: bool,
    crypt: u8,
    next_bid: u64,
    /// (bid, stored bytes before encoding)
    blocks: Vec<(u64, Vec<u8>)>,
    nodes: Vec<(u32, u64, u64, u32)>,
    next_sub_index: u32,
}

impl Builder {
    fn max_block(&self) -> usize {
        if self.ansi {
            8180
        } else {
            8176
        }
    }

    fn id_size(&self) -> usize {
        if self.ansi {
            4
        } else {
            8
        }
    }

    fn put_id(&self, out: &mut Vec<u8>, id: u64) {
        if self.ansi {
            out.extend_from_slice(&(id as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }

    fn block(&mut self, data: Vec<u8>, internal: bool) -> u64 {
        assert!(
            data.len() <= self.max_block(),
            "test PST writer: {} bytes do not fit a block",
            data.len()
        );
        self.next_bid += 4;
        let bid = self.next_bid | if internal { 2 } else { 0 };
        self.blocks.push((bid, data));
        bid
    }

    /// Stores a stream as one block, or a data tree (XBLOCK / XXBLOCK) when larger.
    fn stream(&mut self, data: &[u8]) -> u64 {
        if data.len() <= self.max_block() {
            return self.block(data.to_vec(), false);
        }
        let leaves: Vec<u64> = data
            .chunks(self.max_block())
            .map(|chunk| self.block(chunk.to_vec(), false))
            .collect();
        let per_x = (self.max_block() - 8) / self.id_size();
        let xblock = |b: &mut Builder, level: u8, ids: &[u64], total: usize| {
            let mut out = vec![0x01, level];
            out.extend_from_slice(&(ids.len() as u16).to_le_bytes());
            out.extend_from_slice(&(total as u32).to_le_bytes());
            for id in ids {
                b.put_id(&mut out, *id);
            }
            b.block(out, true)
        };
        if leaves.len() <= per_x {
            return xblock(self, 1, &leaves, data.len());
        }
        let chunk_bytes = per_x * self.max_block();
        let mut xs = Vec::new();
        for (i, group) in leaves.chunks(per_x).enumerate() {
            let size = (data.len() - i * chunk_bytes).min(chunk_bytes);
            xs.push(xblock(self, 1, group, size));
        }
        xblock(self, 2, &xs, data.len())
    }

    /// An SLBLOCK with these sub-nodes (sorted by nid).
    fn subnode_block(&mut self, mut subs: Vec<Sub>) -> u64 {
        if subs.is_empty() {
            return 0;
        }
        subs.sort_by_key(|s| s.nid);
        let mut out = vec![0x02, 0x00];
        out.extend_from_slice(&(subs.len() as u16).to_le_bytes());
        if !self.ansi {
            out.extend_from_slice(&[0; 4]);
        }
        for s in &subs {
            self.put_id(&mut out, u64::from(s.nid));
            self.put_id(&mut out, s.data);
            self.put_id(&mut out, s.sub);
        }
        self.block(out, true)
    }

    fn sub_nid(&mut self, kind: u32) -> u32 {
        self.next_sub_index += 1;
        (self.next_sub_index << 5) | kind
    }

    /// A property context: values of up to 4 bytes inline, others in the heap, large ones in
    /// sub-nodes (appended to `subs`).
    fn property_context(&mut self, props: &[Prop], subs: &mut Vec<Sub>) -> Vec<u8> {
        let mut heap = Heap::new(0xBC);
        let mut sorted: Vec<&Prop> = props.iter().collect();
        sorted.sort_by_key(|p| p.id);
        sorted.dedup_by_key(|p| p.id);
        let mut records = Vec::new();
        for p in sorted {
            let inline = matches!(p.kind, 0x0002 | 0x0003 | 0x0004 | 0x000A | 0x000B);
            let value = if inline {
                let mut v = [0u8; 4];
                let n = p.value.len().min(4);
                v[..n].copy_from_slice(&p.value[..n]);
                u32::from_le_bytes(v)
            } else if p.kind == 0x000D {
                // PtypObject: the value is an HID to (sub-node nid, size).
                heap.add(p.value.clone())
            } else if p.value.is_empty() {
                0
            } else if p.value.len() <= 1024 {
                heap.add(p.value.clone())
            } else {
                let nid = self.sub_nid(0x1F);
                let data = self.stream(&p.value);
                subs.push(Sub { nid, data, sub: 0 });
                nid
            };
            records.extend_from_slice(&p.id.to_le_bytes());
            records.extend_from_slice(&p.kind.to_le_bytes());
            records.extend_from_slice(&value.to_le_bytes());
        }
        let records_hid = if records.is_empty() {
            0
        } else {
            heap.add(records)
        };
        let mut bth = vec![0xB5, 2, 6, 0];
        bth.extend_from_slice(&records_hid.to_le_bytes());
        heap.user_root = heap.add(bth);
        heap.bytes()
    }

    /// A table context with rows in the heap. Columns: the union of the rows' properties,
    /// plus PidTagLtpRowId/Ver. Variable-size values are HNIDs into the heap.
    fn table_context(&mut self, rows: &[Vec<Prop>]) -> Vec<u8> {
        let mut heap = Heap::new(0x7C);
        let mut columns: BTreeMap<u16, u16> = BTreeMap::new();
        columns.insert(0x67F2, 0x0003);
        columns.insert(0x67F3, 0x0003);
        for row in rows {
            for p in row {
                columns.entry(p.id).or_insert(p.kind);
            }
        }
        let size_of = |kind: u16| -> usize {
            match kind {
                0x0002 => 2,
                0x000B => 1,
                0x0014 | 0x0040 | 0x0005 | 0x0006 | 0x0007 => 8,
                _ => 4,
            }
        };
        // Layout: row id, row version, 8/4-byte values, 2-byte, 1-byte, then the CEB.
        let mut layout: Vec<(u16, u16, usize, usize, usize)> = Vec::new(); // id, kind, offset, size, bit
        let mut offset = 0;
        let order: Vec<(u16, u16)> = {
            let mut v: Vec<(u16, u16)> = vec![(0x67F2, 0x0003), (0x67F3, 0x0003)];
            v.extend(
                columns
                    .iter()
                    .filter(|(id, _)| **id != 0x67F2 && **id != 0x67F3)
                    .map(|(a, b)| (*a, *b)),
            );
            v
        };
        for group in [[8usize, 4], [2, 2], [1, 1]] {
            for (id, kind) in &order {
                let size = size_of(*kind);
                if size == group[0] || size == group[1] {
                    let bit = layout.len();
                    layout.push((*id, *kind, offset, size, bit));
                    offset += size;
                }
            }
        }
        let end_4b = layout
            .iter()
            .filter(|c| c.3 >= 4)
            .map(|c| c.2 + c.3)
            .max()
            .unwrap_or(0);
        let end_2b = layout
            .iter()
            .filter(|c| c.3 == 2)
            .map(|c| c.2 + c.3)
            .max()
            .unwrap_or(end_4b);
        let end_1b = layout
            .iter()
            .filter(|c| c.3 == 1)
            .map(|c| c.2 + c.3)
            .max()
            .unwrap_or(end_2b);
        let ceb_start = offset;
        let row_size = ceb_start + layout.len().div_ceil(8);
        let mut matrix = Vec::new();
        let mut index_records = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            let mut bytes = vec![0u8; row_size];
            let row_id = row
                .iter()
                .find(|p| p.id == 0x67F2)
                .map(|p| u32::from_le_bytes([p.value[0], p.value[1], p.value[2], p.value[3]]))
                .unwrap_or(r as u32 + 1);
            for (id, kind, off, size, bit) in &layout {
                let value: Option<Vec<u8>> = if *id == 0x67F2 {
                    Some(row_id.to_le_bytes().to_vec())
                } else if *id == 0x67F3 {
                    Some(vec![0; 4])
                } else {
                    row.iter().find(|p| p.id == *id).map(|p| {
                        let fixed = matches!(
                            kind,
                            0x0002
                                | 0x0003
                                | 0x0004
                                | 0x000A
                                | 0x000B
                                | 0x0014
                                | 0x0040
                                | 0x0005
                                | 0x0006
                                | 0x0007
                        );
                        if fixed {
                            let mut v = p.value.clone();
                            v.resize(*size, 0);
                            v
                        } else {
                            heap.add(p.value.clone()).to_le_bytes().to_vec()
                        }
                    })
                };
                if let Some(v) = value {
                    bytes[*off..*off + size].copy_from_slice(&v[..*size]);
                    bytes[ceb_start + bit / 8] |= 0x80 >> (bit % 8);
                }
            }
            matrix.extend_from_slice(&bytes);
            index_records.extend_from_slice(&row_id.to_le_bytes());
            if self.ansi {
                index_records.extend_from_slice(&(r as u16).to_le_bytes());
            } else {
                index_records.extend_from_slice(&(r as u32).to_le_bytes());
            }
        }
        let index_hid = if index_records.is_empty() {
            0
        } else {
            heap.add(index_records)
        };
        let mut bth = vec![0xB5, 4, if self.ansi { 2 } else { 4 }, 0];
        bth.extend_from_slice(&index_hid.to_le_bytes());
        let bth_hid = heap.add(bth);
        let rows_hid = if matrix.is_empty() {
            0
        } else {
            heap.add(matrix)
        };
        let mut info = vec![0x7C, layout.len() as u8];
        for end in [end_4b, end_2b, end_1b, row_size] {
            info.extend_from_slice(&(end as u16).to_le_bytes());
        }
        info.extend_from_slice(&bth_hid.to_le_bytes());
        info.extend_from_slice(&rows_hid.to_le_bytes());
        info.extend_from_slice(&0u32.to_le_bytes());
        let mut sorted = layout.clone();
        sorted.sort_by_key(|c| (c.0, c.1));
        for (id, kind, off, size, bit) in sorted {
            info.extend_from_slice(&((u32::from(id) << 16) | u32::from(kind)).to_le_bytes());
            info.extend_from_slice(&(off as u16).to_le_bytes());
            info.push(size as u8);
            info.push(bit as u8);
        }
        heap.user_root = heap.add(info);
        heap.bytes()
    }

    /// A message (or an embedded one): its PC block and sub-node tree. Returns (data, sub).
    fn message(&mut self, spec: &MessageSpec) -> (u64, u64) {
        let mut subs = Vec::new();
        let mut props = spec.props.clone();
        if !spec.attachments.is_empty() && !props.iter().any(|p| p.id == 0x0E07) {
            props.push(int32(0x0E07, 0x10));
        }
        let pc = self.property_context(&props, &mut subs);
        if !spec.no_subnodes {
            let recipients: Vec<Vec<Prop>> = spec.recipients.clone();
            let table = self.table_context(&recipients);
            let data = self.block(table, false);
            subs.push(Sub {
                nid: 0x692,
                data,
                sub: 0,
            });
            let mut attachment_rows = Vec::new();
            for (i, attachment) in spec.attachments.iter().enumerate() {
                let nid = self.sub_nid(0x05);
                let mut attach_subs = Vec::new();
                let mut props = attachment.props.clone();
                if let Some(embedded) = &attachment.embedded {
                    let (data, sub) = self.message(embedded);
                    let object_nid = self.sub_nid(0x01);
                    attach_subs.push(Sub {
                        nid: object_nid,
                        data,
                        sub,
                    });
                    let mut value = object_nid.to_le_bytes().to_vec();
                    value.extend_from_slice(&0u32.to_le_bytes());
                    props.push(Prop {
                        id: 0x3701,
                        kind: 0x000D,
                        value,
                    });
                    props.push(int32(0x3705, 5));
                } else if !props.iter().any(|p| p.id == 0x3705) {
                    props.push(int32(0x3705, 1));
                }
                let pc = self.property_context(&props, &mut attach_subs);
                let data = self.block(pc, false);
                let sub = self.subnode_block(attach_subs);
                subs.push(Sub { nid, data, sub });
                // Outlook's attachment table carries each attachment's size (PidTagAttachSize).
                let mut row = vec![int32(0x67F2, nid as i32), int32(0x0E21, i as i32)];
                row.extend(props.iter().filter(|p| p.id == 0x0E20).cloned());
                attachment_rows.push(row);
            }
            let table = self.table_context(&attachment_rows);
            let data = self.block(table, false);
            subs.push(Sub {
                nid: 0x671,
                data,
                sub: 0,
            });
        }
        let data = self.block(pc, false);
        let sub = self.subnode_block(subs);
        (data, sub)
    }

    fn node(&mut self, nid: u32, data: u64, sub: u64, parent: u32) {
        self.nodes.push((nid, data, sub, parent));
    }
}

fn entry_id(nid: u32) -> Vec<u8> {
    let mut id = vec![0u8; 4];
    id.extend_from_slice(&STORE_RECORD_KEY);
    id.extend_from_slice(&nid.to_le_bytes());
    id
}

/// MS-PST 5.5.
fn sig(ib: u64, bid: u64) -> u16 {
    let x = ib ^ bid;
    ((x >> 16) as u16) ^ (x as u16)
}

fn crc(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
        *slot = c;
    }
    data.iter().fold(0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

/// Writes the spec as PST bytes.
pub fn write(spec: &PstSpec) -> Vec<u8> {
    write_with(spec, None)
}

/// Writes the spec with block contents corrupted *before* their CRCs and signatures are
/// computed: every check passes, the structures inside are hostile. `round` seeds which
/// blocks and bytes change.
pub fn write_mutated(spec: &PstSpec, round: u32) -> Vec<u8> {
    write_with(spec, Some(round))
}

fn write_with(spec: &PstSpec, mutate: Option<u32>) -> Vec<u8> {
    let mut b = Builder {
        ansi: spec.ansi,
        crypt: spec.crypt,
        next_bid: 0x100,
        blocks: Vec::new(),
        nodes: Vec::new(),
        next_sub_index: 0x40,
    };
    const ROOT: u32 = 0x122;
    const SUBTREE: u32 = 0x8022;
    const SEARCH_ROOT: u32 = 0x8042;
    let mut next_folder = 0x8062u32;
    let mut next_message = 0x10001u32;

    // Assign folder nids first so the store and the Inbox can name them.
    struct Placed<'a> {
        nid: u32,
        parent: u32,
        spec: &'a FolderSpec,
    }
    let mut placed = Vec::new();
    fn place<'a>(
        folders: &'a [FolderSpec],
        parent: u32,
        next: &mut u32,
        out: &mut Vec<Placed<'a>>,
    ) {
        for f in folders {
            let nid = *next;
            *next += 0x20;
            out.push(Placed {
                nid,
                parent,
                spec: f,
            });
            place(&f.children, nid, next, out);
        }
    }
    place(&spec.folders, SUBTREE, &mut next_folder, &mut placed);
    let role_nid = |role: &str| {
        placed
            .iter()
            .find(|p| p.spec.role == Some(role))
            .map(|p| p.nid)
    };

    // Store.
    let mut store = vec![
        unicode_or_8(spec.ansi, 0x3001, &spec.store_name),
        binary(0x0FF9, &STORE_RECORD_KEY),
        binary(0x35E0, &entry_id(SUBTREE)),
        binary(0x35E7, &entry_id(SEARCH_ROOT)),
    ];
    for (role, pid) in [("deleted", 0x35E3u16), ("sent", 0x35E4), ("outbox", 0x35E2)] {
        if let Some(n) = role_nid(role) {
            store.push(binary(pid, &entry_id(n)));
        }
    }
    if spec.password {
        store.push(int32(0x67FF, 0x1234_5678));
    }
    let mut subs = Vec::new();
    let pc = b.property_context(&store, &mut subs);
    let data = b.block(pc, false);
    let sub = b.subnode_block(subs);
    b.node(0x21, data, sub, 0);

    // Name-to-id map.
    let mut guids: Vec<[u8; 16]> = Vec::new();
    let mut entries = Vec::new();
    for (index, (set, lid)) in spec.named.iter().enumerate() {
        let guid_index = match guids.iter().position(|g| g == set) {
            Some(i) => i,
            None => {
                guids.push(*set);
                guids.len() - 1
            }
        } as u16
            + 3;
        entries.extend_from_slice(&lid.to_le_bytes());
        entries.extend_from_slice(&(guid_index << 1).to_le_bytes());
        entries.extend_from_slice(&(index as u16).to_le_bytes());
    }
    let names = vec![
        int32(0x0001, 251),
        binary(0x0002, &guids.concat()),
        binary(0x0003, &entries),
        binary(0x0004, &[]),
    ];
    let mut subs = Vec::new();
    let pc = b.property_context(&names, &mut subs);
    let data = b.block(pc, false);
    let sub = b.subnode_block(subs);
    b.node(0x61, data, sub, 0);

    // Root folder, IPM subtree, search root.
    for (nid, parent, name) in [
        (ROOT, ROOT, ""),
        (SUBTREE, ROOT, "Top of Personal Folders"),
        (SEARCH_ROOT, ROOT, "Search Root"),
    ] {
        let props = vec![
            unicode_or_8(spec.ansi, 0x3001, name),
            int32(0x3602, 0),
            boolean(0x360A, true),
        ];
        let mut subs = Vec::new();
        let pc = b.property_context(&props, &mut subs);
        let data = b.block(pc, false);
        b.node(nid, data, 0, parent);
    }

    for p in &placed {
        let f = p.spec;
        let mut props = vec![
            unicode_or_8(spec.ansi, 0x3001, &f.name),
            int32(0x3602, f.messages.len() as i32),
            int32(0x3603, 0),
            boolean(0x360A, !f.children.is_empty()),
        ];
        if let Some(class) = &f.container_class {
            props.push(unicode_or_8(spec.ansi, 0x3613, class));
        }
        if f.role == Some("inbox") {
            for (role, pid) in [
                ("calendar", 0x36D0u16),
                ("contacts", 0x36D1),
                ("tasks", 0x36D4),
                ("drafts", 0x36D7),
            ] {
                if let Some(n) = role_nid(role) {
                    props.push(binary(pid, &entry_id(n)));
                }
            }
            let junk = role_nid("junk").map(entry_id).unwrap_or_default();
            props.push(mv_binary(0x36D8, &[vec![], vec![], vec![], vec![], junk]));
        }
        let mut subs = Vec::new();
        let pc = b.property_context(&props, &mut subs);
        let data = b.block(pc, false);
        let sub = b.subnode_block(subs);
        b.node(p.nid, data, sub, p.parent);
        for (list, kind) in [(&f.messages, 0x04u32), (&f.associated, 0x08)] {
            for m in list {
                let nid = (next_message << 5) | kind;
                next_message += 1;
                let (data, sub) = b.message(m);
                b.node(nid, data, sub, p.nid);
            }
        }
    }
    if let Some(round) = mutate {
        let mut x = round.wrapping_mul(2_654_435_761) | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for (_, data) in b.blocks.iter_mut() {
            if next() % 4 != 0 || data.is_empty() {
                continue;
            }
            for _ in 0..=next() % 3 {
                let at = next() as usize % data.len();
                data[at] = match next() % 4 {
                    0 => 0,
                    1 => 0xFF,
                    2 => data[at].wrapping_add(1),
                    _ => next() as u8,
                };
            }
        }
    }
    layout(&mut b)
}

fn unicode_or_8(ansi: bool, id: u16, text: &str) -> Prop {
    if ansi {
        string8(id, &encoding_rs::WINDOWS_1252.encode(text).0)
    } else {
        unicode(id, text)
    }
}

/// Places blocks and B-tree pages, then writes the header.
fn layout(b: &mut Builder) -> Vec<u8> {
    let ansi = b.ansi;
    let trailer = if ansi { 12 } else { 16 };
    let mut file = vec![0u8; 0x4400];
    let mut bbt_leaves: Vec<(u64, u64, u16)> = Vec::new();
    let blocks = std::mem::take(&mut b.blocks);
    for (bid, data) in &blocks {
        let mut stored = data.clone();
        if bid & 2 == 0 {
            encode(b.crypt, &mut stored, *bid);
        }
        let ib = file.len() as u64;
        let total = (stored.len() + trailer).div_ceil(64) * 64;
        let mut block = stored.clone();
        block.resize(total - trailer, 0);
        block.extend_from_slice(&(stored.len() as u16).to_le_bytes());
        block.extend_from_slice(&sig(ib, *bid).to_le_bytes());
        if ansi {
            block.extend_from_slice(&(*bid as u32).to_le_bytes());
            block.extend_from_slice(&crc(&stored).to_le_bytes());
        } else {
            block.extend_from_slice(&crc(&stored).to_le_bytes());
            block.extend_from_slice(&bid.to_le_bytes());
        }
        file.extend_from_slice(&block);
        bbt_leaves.push((*bid, ib, stored.len() as u16));
    }
    bbt_leaves.sort_by_key(|l| l.0);
    let mut nodes = std::mem::take(&mut b.nodes);
    nodes.sort_by_key(|n| n.0);
    // Pages are 512-aligned.
    while !file.len().is_multiple_of(512) {
        file.push(0);
    }
    let mut next_page = 0x1_0000u64;
    let id = b.id_size();
    let leaf_bbt: Vec<(u64, Vec<u8>)> = bbt_leaves
        .iter()
        .map(|(bid, ib, cb)| {
            let mut e = Vec::new();
            b.put_id(&mut e, *bid);
            b.put_id(&mut e, *ib);
            e.extend_from_slice(&cb.to_le_bytes());
            e.extend_from_slice(&2u16.to_le_bytes());
            if !ansi {
                e.extend_from_slice(&[0; 4]);
            }
            (*bid, e)
        })
        .collect();
    let bbt = btree(b, &mut file, &mut next_page, 0x80, leaf_bbt);
    let leaf_nbt: Vec<(u64, Vec<u8>)> = nodes
        .iter()
        .map(|(nid, data, sub, parent)| {
            let mut e = Vec::new();
            b.put_id(&mut e, u64::from(*nid));
            b.put_id(&mut e, *data);
            b.put_id(&mut e, *sub);
            e.extend_from_slice(&parent.to_le_bytes());
            if !ansi {
                e.extend_from_slice(&[0; 4]);
            }
            (u64::from(*nid), e)
        })
        .collect();
    let nbt = btree(b, &mut file, &mut next_page, 0x81, leaf_nbt);
    let _ = id;
    header(b, &mut file, nbt, bbt, next_page);
    file
}

/// Writes a B-tree bottom-up; returns the root page's (bid, ib).
fn btree(
    b: &Builder,
    file: &mut Vec<u8>,
    next_page: &mut u64,
    ptype: u8,
    leaves: Vec<(u64, Vec<u8>)>,
) -> (u64, u64) {
    let ansi = b.ansi;
    let entries_size = if ansi { 496 } else { 488 };
    let mut level = 0u8;
    let mut current = leaves;
    loop {
        let entry_size = current
            .first()
            .map_or(if ansi { 12 } else { 24 }, |e| e.1.len());
        let per_page = entries_size / entry_size;
        let mut parents = Vec::new();
        let chunks: Vec<&[(u64, Vec<u8>)]> = if current.is_empty() {
            vec![&[]]
        } else {
            current.chunks(per_page).collect()
        };
        for chunk in &chunks {
            *next_page += 4;
            let bid = *next_page;
            let ib = file.len() as u64;
            let mut page = Vec::with_capacity(512);
            for (_, e) in chunk.iter() {
                page.extend_from_slice(e);
            }
            page.resize(entries_size, 0);
            page.push(chunk.len() as u8);
            page.push(per_page as u8);
            page.push(entry_size as u8);
            page.push(level);
            if !ansi {
                page.extend_from_slice(&[0; 4]);
            }
            let data_len = page.len();
            let c = crc(&page[..data_len]);
            page.push(ptype);
            page.push(ptype);
            page.extend_from_slice(&sig(ib, bid).to_le_bytes());
            if ansi {
                page.extend_from_slice(&(bid as u32).to_le_bytes());
                page.extend_from_slice(&c.to_le_bytes());
            } else {
                page.extend_from_slice(&c.to_le_bytes());
                page.extend_from_slice(&bid.to_le_bytes());
            }
            assert_eq!(page.len(), 512);
            file.extend_from_slice(&page);
            let key = chunk.first().map_or(0, |e| e.0);
            let mut entry = Vec::new();
            b.put_id(&mut entry, key);
            b.put_id(&mut entry, bid);
            b.put_id(&mut entry, ib);
            parents.push((key, entry, bid, ib));
        }
        if parents.len() == 1 {
            return (parents[0].2, parents[0].3);
        }
        level += 1;
        current = parents.into_iter().map(|(k, e, _, _)| (k, e)).collect();
    }
}

fn header(b: &Builder, file: &mut [u8], nbt: (u64, u64), bbt: (u64, u64), next_page: u64) {
    let ansi = b.ansi;
    let eof = file.len() as u64;
    let h = &mut file[..564];
    h[0..4].copy_from_slice(b"!BDN");
    h[8..10].copy_from_slice(b"SM");
    h[10..12].copy_from_slice(&(if ansi { 14u16 } else { 23 }).to_le_bytes());
    h[12..14].copy_from_slice(&19u16.to_le_bytes());
    h[14] = 1;
    h[15] = 1;
    let put = |h: &mut [u8], at: usize, v: u64| {
        if ansi {
            h[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes());
        } else {
            h[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
    };
    let (root, id) = if ansi {
        (164usize, 4usize)
    } else {
        (180usize, 8usize)
    };
    if ansi {
        put(h, 24, b.next_bid + 4); // bidNextB
        put(h, 28, next_page + 4); // bidNextP
        h[32..36].copy_from_slice(&1u32.to_le_bytes()); // dwUnique
    } else {
        put(h, 24, 0); // bidUnused
        put(h, 32, next_page + 4); // bidNextP
        h[40..44].copy_from_slice(&1u32.to_le_bytes());
    }
    // ROOT: dwReserved, ibFileEof, ibAMapLast, cbAMapFree, cbPMapFree, BREFNBT, BREFBBT,
    // fAMapValid.
    put(h, root + 4, eof);
    put(h, root + 4 + id, 0x4400);
    let nbt_at = root + 4 + 4 * id;
    put(h, nbt_at, nbt.0);
    put(h, nbt_at + id, nbt.1);
    put(h, nbt_at + 2 * id, bbt.0);
    put(h, nbt_at + 3 * id, bbt.1);
    h[nbt_at + 4 * id] = 0x02; // fAMapValid: VALID_AMAP2
    let (sentinel, crypt) = if ansi {
        (460usize, 461usize)
    } else {
        (512usize, 513usize)
    };
    h[sentinel] = 0x80;
    h[crypt] = b.crypt;
    if !ansi {
        h[516..524].copy_from_slice(&(b.next_bid + 4).to_le_bytes()); // bidNextB
    }
    let partial = crc(&h[8..8 + 471]);
    h[4..8].copy_from_slice(&partial.to_le_bytes());
    if !ansi {
        let full = crc(&h[8..8 + 516]);
        h[524..528].copy_from_slice(&full.to_le_bytes());
    }
}

fn encode(crypt: u8, data: &mut [u8], bid: u64) {
    // The encodings are the reader's own (crypt.rs is the spec's tables); the writer uses them
    // through the public CryptMethod so the tables exist once.
    let method = match crypt {
        1 => cutover::connectors::pst::CryptMethod::Permute,
        2 => cutover::connectors::pst::CryptMethod::Cyclic,
        _ => cutover::connectors::pst::CryptMethod::None,
    };
    method.encode(data, bid);
}
