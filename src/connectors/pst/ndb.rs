//! The node database (MS-PST 2.2): header, the node and block B-trees, blocks, data trees
//! (XBLOCK/XXBLOCK) and sub-node trees (SLBLOCK/SIBLOCK).
//!
//! Everything is read by position: a lookup reads the few 512-byte pages on its path and the
//! blocks it needs, nothing else. A small bounded page cache keeps the B-tree's upper levels
//! warm; memory never depends on the file's size.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::crypt::{crc32, CryptMethod};
use super::error::{le_u16, le_u32, le_u64, PstError, Result, Site};

/// The two on-disk layouts: 32-bit ANSI (Outlook 97–2002, wVer 14/15) and 64-bit Unicode
/// (Outlook 2003 and later, wVer 23).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Ansi,
    Unicode,
}

impl Format {
    /// Bytes of a block id, byte index or B-tree key.
    pub fn id_size(self) -> usize {
        match self {
            Format::Ansi => 4,
            Format::Unicode => 8,
        }
    }

    pub fn block_trailer_size(self) -> usize {
        match self {
            Format::Ansi => 12,
            Format::Unicode => 16,
        }
    }

    /// The most data one block holds (8 KiB minus its trailer).
    pub fn max_block_data(self) -> usize {
        8192 - self.block_trailer_size()
    }

    fn page_data_size(self) -> usize {
        match self {
            Format::Ansi => 500,
            Format::Unicode => 496,
        }
    }

    fn bt_entries_size(self) -> usize {
        match self {
            Format::Ansi => 496,
            Format::Unicode => 488,
        }
    }

    pub(crate) fn read_id(self, data: &[u8], at: usize) -> Option<u64> {
        match self {
            Format::Ansi => le_u32(data, at).map(u64::from),
            Format::Unicode => le_u64(data, at),
        }
    }
}

pub const PAGE_SIZE: usize = 512;
const PTYPE_BBT: u8 = 0x80;
const PTYPE_NBT: u8 = 0x81;
const MAX_TREE_DEPTH: u8 = 16;
/// B-tree pages kept in memory (512 bytes each): 1 MiB, whatever the file's size.
const PAGE_CACHE_PAGES: usize = 2048;

/// MS-PST 5.5 `ComputeSig`: the signature of a block or B-tree page placed at `ib` with id `bid`.
pub fn compute_sig(ib: u64, bid: u64) -> u16 {
    let x = ib ^ bid;
    ((x >> 16) as u16) ^ (x as u16)
}

pub(crate) fn align64(n: usize) -> usize {
    n.div_ceil(64) * 64
}

/// The file header (MS-PST 2.2.2.6), the fields this reader needs.
#[derive(Debug, Clone)]
pub struct Header {
    pub format: Format,
    pub version: u16,
    pub client_version: u16,
    pub crypt: CryptMethod,
    pub file_eof: u64,
    pub nbt_root: (u64, u64),
    pub bbt_root: (u64, u64),
}

/// One leaf entry of the node B-tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeEntry {
    pub nid: u32,
    pub data_bid: u64,
    pub sub_bid: u64,
    pub parent: u32,
}

/// A node's two halves: its data (a block or data tree) and its sub-node tree. Top-level
/// nodes come from the NBT; sub-nodes from a parent's SLBLOCK entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRef {
    pub nid: u32,
    pub data_bid: u64,
    pub sub_bid: u64,
}

impl From<NodeEntry> for NodeRef {
    fn from(e: NodeEntry) -> Self {
        NodeRef {
            nid: e.nid,
            data_bid: e.data_bid,
            sub_bid: e.sub_bid,
        }
    }
}

/// A block's decoded bytes and where it lives in the file (for error messages).
#[derive(Debug, Clone)]
pub struct Block {
    pub data: Vec<u8>,
    pub offset: u64,
}

struct BlockInfo {
    ib: u64,
    cb: u16,
}

/// Reads a PST's node database by position. `Send + Sync`: reads go through `pread`, the page
/// cache through a mutex.
pub struct Ndb {
    file: Source,
    path: PathBuf,
    len: u64,
    pub header: Header,
    cache: Mutex<HashMap<u64, Arc<[u8]>>>,
    /// When false, CRC mismatches are not errors (used nowhere by default; kept for a
    /// future salvage mode). Signatures and ids are always checked.
    verify_crc: bool,
}

impl Ndb {
    pub fn open(path: &Path) -> Result<Ndb> {
        let file = File::open(path).map_err(|source| PstError::Io {
            path: path.to_path_buf(),
            offset: 0,
            structure: "file".into(),
            source,
        })?;
        let len = file
            .metadata()
            .map_err(|source| PstError::Io {
                path: path.to_path_buf(),
                offset: 0,
                structure: "file".into(),
                source,
            })?
            .len();
        Ndb::with_source(Source::File(file), path, len)
    }

    /// Reads a PST held in memory; `name` stands in for the path in errors.
    pub fn from_bytes(name: &Path, bytes: Arc<[u8]>) -> Result<Ndb> {
        let len = bytes.len() as u64;
        Ndb::with_source(Source::Memory(bytes), name, len)
    }

    fn with_source(file: Source, path: &Path, len: u64) -> Result<Ndb> {
        let mut ndb = Ndb {
            file,
            path: path.to_path_buf(),
            len,
            header: Header {
                format: Format::Unicode,
                version: 0,
                client_version: 0,
                crypt: CryptMethod::None,
                file_eof: 0,
                nbt_root: (0, 0),
                bbt_root: (0, 0),
            },
            cache: Mutex::new(HashMap::new()),
            verify_crc: true,
        };
        ndb.header = ndb.read_header()?;
        Ok(ndb)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> Format {
        self.header.format
    }

    pub(crate) fn site(&self, offset: u64) -> Site<'_> {
        Site {
            path: &self.path,
            offset,
        }
    }

    /// Reads exactly `len` bytes at `offset`, or says which structure ran past the end.
    pub(crate) fn read_at(&self, offset: u64, len: usize, structure: &str) -> Result<Vec<u8>> {
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(self.site(offset).corrupt(
                structure,
                format!(
                    "{len} bytes needed but the file ends at byte {:#x} (truncated?)",
                    self.len
                ),
            ));
        }
        let mut buffer = vec![0u8; len];
        self.file
            .read_exact_at(&mut buffer, offset)
            .map_err(|source| PstError::Io {
                path: self.path.clone(),
                offset,
                structure: structure.to_owned(),
                source,
            })?;
        Ok(buffer)
    }

    fn read_header(&self) -> Result<Header> {
        let site = self.site(0);
        if self.len < 512 {
            return Err(site.corrupt(
                "header",
                format!("file is {} bytes, a PST header needs 512", self.len),
            ));
        }
        let raw = self.read_at(0, 564.min(self.len as usize), "header")?;
        if &raw[0..4] != b"!BDN" {
            return Err(site.corrupt(
                "header",
                format!(
                    "magic is {:02x?}, a PST starts with \"!BDN\" (not an Outlook data file)",
                    &raw[0..4]
                ),
            ));
        }
        if &raw[8..10] != b"SM" {
            return Err(self.site(8).corrupt(
                "header",
                format!("client magic is {:02x?}, expected \"SM\"", &raw[8..10]),
            ));
        }
        let version = le_u16(&raw, 10).unwrap_or(0);
        let client_version = le_u16(&raw, 12).unwrap_or(0);
        let format = match version {
            14 | 15 => Format::Ansi,
            23 => Format::Unicode,
            36 => {
                return Err(PstError::Unsupported {
                    path: self.path.clone(),
                    offset: 10,
                    structure: "header".into(),
                    reason: "wVer 36 (4K-page OST file)".into(),
                })
            }
            other => {
                return Err(self.site(10).corrupt(
                    "header",
                    format!("wVer {other} is neither ANSI (14, 15) nor Unicode (23)"),
                ))
            }
        };
        let crc_partial = le_u32(&raw, 4).unwrap_or(0);
        let computed = crc32(&raw[8..8 + 471]);
        if crc_partial != computed {
            return Err(self.site(4).corrupt(
                "header",
                format!("dwCRCPartial is {crc_partial:#010x}, the bytes give {computed:#010x}"),
            ));
        }
        let (root, crypt_at) = match format {
            Format::Unicode => (180usize, 513usize),
            Format::Ansi => (164usize, 461usize),
        };
        if format == Format::Unicode {
            let crc_full = le_u32(&raw, 524).unwrap_or(0);
            let computed = crc32(&raw[8..8 + 516]);
            if crc_full != computed {
                return Err(self.site(524).corrupt(
                    "header",
                    format!("dwCRCFull is {crc_full:#010x}, the bytes give {computed:#010x}"),
                ));
            }
        }
        let crypt_byte = raw[crypt_at];
        let crypt = CryptMethod::from_byte(crypt_byte).ok_or_else(|| {
            if crypt_byte == 0x10 {
                PstError::Unsupported {
                    path: self.path.clone(),
                    offset: crypt_at as u64,
                    structure: "header".into(),
                    reason: "bCryptMethod 0x10 (Edge encryption)".into(),
                }
            } else {
                self.site(crypt_at as u64).corrupt(
                    "header",
                    format!("bCryptMethod {crypt_byte:#04x} is not 0, 1 or 2"),
                )
            }
        })?;
        let id = format.id_size();
        let field = |at: usize| format.read_id(&raw, at).unwrap_or(0);
        // ROOT: dwReserved, ibFileEof, ibAMapLast, cbAMapFree, cbPMapFree, BREFNBT, BREFBBT.
        let file_eof = field(root + 4);
        let nbt = root + 4 + 4 * id;
        let bbt = nbt + 2 * id;
        let header = Header {
            format,
            version,
            client_version,
            crypt,
            file_eof,
            nbt_root: (field(nbt), field(nbt + id)),
            bbt_root: (field(bbt), field(bbt + id)),
        };
        Ok(header)
    }

    /// Reads and checks one B-tree page (type, repeated type, signature, CRC, id).
    fn page(&self, ib: u64, bid: u64, ptype: u8) -> Result<Arc<[u8]>> {
        if let Some(page) = self.cache.lock().ok().and_then(|c| c.get(&ib).cloned()) {
            return Ok(page);
        }
        let name = page_name(ptype);
        let structure = format!("{name} page at {ib:#x}");
        let data = self.read_at(ib, PAGE_SIZE, &structure)?;
        let format = self.format();
        let site = self.site(ib);
        let t = format.page_data_size();
        let (found_type, repeat, sig) = (data[t], data[t + 1], le_u16(&data, t + 2).unwrap_or(0));
        let (crc, page_bid) = match format {
            Format::Unicode => (
                le_u32(&data, t + 4).unwrap_or(0),
                le_u64(&data, t + 8).unwrap_or(0),
            ),
            Format::Ansi => (
                le_u32(&data, t + 8).unwrap_or(0),
                u64::from(le_u32(&data, t + 4).unwrap_or(0)),
            ),
        };
        if found_type != ptype || repeat != ptype {
            return Err(site.corrupt(
                &structure,
                format!(
                    "page type {found_type:#04x}/{repeat:#04x}, expected {ptype:#04x} ({name})"
                ),
            ));
        }
        if page_bid != bid {
            return Err(site.corrupt(
                &structure,
                format!("trailer names page id {page_bid:#x}, the parent points to {bid:#x}"),
            ));
        }
        let expected_sig = compute_sig(ib, bid);
        if sig != expected_sig {
            return Err(site.corrupt(
                &structure,
                format!("signature {sig:#06x}, expected {expected_sig:#06x}"),
            ));
        }
        let computed = crc32(&data[..t]);
        if self.verify_crc && crc != computed {
            return Err(site.corrupt(
                &structure,
                format!("CRC {crc:#010x}, the bytes give {computed:#010x}"),
            ));
        }
        let page: Arc<[u8]> = data.into();
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= PAGE_CACHE_PAGES {
                cache.clear();
            }
            cache.insert(ib, page.clone());
        }
        Ok(page)
    }

    /// The entries of a B-tree page: (cEnt, cbEnt, cLevel) checked against the page size.
    fn page_entries(&self, page: &[u8], ib: u64, ptype: u8) -> Result<(usize, usize, u8)> {
        let format = self.format();
        let at = format.bt_entries_size();
        let (count, max, size, level) = (
            page[at] as usize,
            page[at + 1] as usize,
            page[at + 2] as usize,
            page[at + 3],
        );
        let id = format.id_size();
        let (leaf_size, branch_size) = match ptype {
            PTYPE_NBT => (if format == Format::Unicode { 32 } else { 16 }, 3 * id),
            _ => (if format == Format::Unicode { 24 } else { 12 }, 3 * id),
        };
        let expected = if level == 0 { leaf_size } else { branch_size };
        if size < expected || count > max || count * size > at || level > MAX_TREE_DEPTH {
            return Err(self.site(ib).corrupt(
                format!("{} page at {ib:#x}", page_name(ptype)),
                format!(
                    "bad entry layout: cEnt {count}, cEntMax {max}, cbEnt {size}, cLevel {level}"
                ),
            ));
        }
        Ok((count, size, level))
    }

    /// Descends a B-tree to the leaf entry for `key`. Returns the leaf entry's bytes.
    fn lookup(&self, root: (u64, u64), ptype: u8, key: u64) -> Result<Option<Vec<u8>>> {
        let (mut bid, mut ib) = root;
        let id = self.format().id_size();
        let mut last_level = u8::MAX;
        for _ in 0..=MAX_TREE_DEPTH {
            let page = self.page(ib, bid, ptype)?;
            let (count, size, level) = self.page_entries(&page, ib, ptype)?;
            if level >= last_level {
                return Err(self.site(ib).corrupt(
                    format!("{} page at {ib:#x}", page_name(ptype)),
                    format!("cLevel {level} does not descend from its parent's {last_level}"),
                ));
            }
            last_level = level;
            let key_of = |i: usize| -> u64 {
                let k = self.format().read_id(&page, i * size).unwrap_or(0);
                if ptype == PTYPE_BBT {
                    k & !1
                } else if ptype == PTYPE_NBT && level == 0 {
                    k & 0xFFFF_FFFF
                } else {
                    k
                }
            };
            if level == 0 {
                // Leaf: binary search for the exact key.
                let (mut lo, mut hi) = (0usize, count);
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    match key_of(mid).cmp(&key) {
                        std::cmp::Ordering::Equal => {
                            return Ok(Some(page[mid * size..(mid + 1) * size].to_vec()))
                        }
                        std::cmp::Ordering::Less => lo = mid + 1,
                        std::cmp::Ordering::Greater => hi = mid,
                    }
                }
                return Ok(None);
            }
            // Branch: the last entry whose key is <= key.
            let mut chosen = None;
            for i in 0..count {
                if key_of(i) <= key {
                    chosen = Some(i);
                } else {
                    break;
                }
            }
            let Some(i) = chosen else {
                return Ok(None);
            };
            let entry = &page[i * size..(i + 1) * size];
            bid = self.format().read_id(entry, id).unwrap_or(0);
            ib = self.format().read_id(entry, 2 * id).unwrap_or(0);
        }
        Err(self.site(ib).corrupt(
            format!("{} page at {ib:#x}", page_name(ptype)),
            "B-tree deeper than 16 levels (a loop?)",
        ))
    }

    /// The NBT entry for `nid`, if the file has that node.
    pub fn node(&self, nid: u32) -> Result<Option<NodeEntry>> {
        let Some(entry) = self.lookup(self.header.nbt_root, PTYPE_NBT, u64::from(nid))? else {
            return Ok(None);
        };
        Ok(Some(self.parse_node_entry(&entry)))
    }

    fn parse_node_entry(&self, entry: &[u8]) -> NodeEntry {
        let f = self.format();
        let id = f.id_size();
        NodeEntry {
            nid: f.read_id(entry, 0).unwrap_or(0) as u32,
            data_bid: f.read_id(entry, id).unwrap_or(0),
            sub_bid: f.read_id(entry, 2 * id).unwrap_or(0),
            parent: le_u32(entry, 3 * id).unwrap_or(0),
        }
    }

    fn block_info(&self, bid: u64) -> Result<BlockInfo> {
        let key = bid & !1;
        let Some(entry) = self.lookup(self.header.bbt_root, PTYPE_BBT, key)? else {
            return Err(self.site(self.header.bbt_root.1).corrupt(
                format!("BBT (root page at {:#x})", self.header.bbt_root.1),
                format!("no block with id {key:#x}"),
            ));
        };
        let f = self.format();
        let id = f.id_size();
        Ok(BlockInfo {
            ib: f.read_id(&entry, id).unwrap_or(0),
            cb: le_u16(&entry, 2 * id).unwrap_or(0),
        })
    }

    /// Reads one block: checks its trailer (size, signature, id, CRC) and decodes external
    /// blocks with the file's crypt method.
    pub fn block(&self, bid: u64) -> Result<Block> {
        let info = self.block_info(bid)?;
        let format = self.format();
        let cb = info.cb as usize;
        let structure = format!("block {:#x}", bid & !1);
        if cb > format.max_block_data() {
            return Err(self.site(info.ib).corrupt(
                &structure,
                format!(
                    "BBT says {cb} bytes, a block holds at most {}",
                    format.max_block_data()
                ),
            ));
        }
        let total = align64(cb + format.block_trailer_size());
        let mut raw = self.read_at(info.ib, total, &structure)?;
        let t = total - format.block_trailer_size();
        let trailer_cb = le_u16(&raw, t).unwrap_or(0) as usize;
        let sig = le_u16(&raw, t + 2).unwrap_or(0);
        let (crc, trailer_bid) = match format {
            Format::Unicode => (
                le_u32(&raw, t + 4).unwrap_or(0),
                le_u64(&raw, t + 8).unwrap_or(0),
            ),
            Format::Ansi => (
                le_u32(&raw, t + 8).unwrap_or(0),
                u64::from(le_u32(&raw, t + 4).unwrap_or(0)),
            ),
        };
        let site = self.site(info.ib);
        if trailer_cb != cb {
            return Err(site.corrupt(
                &structure,
                format!("trailer says {trailer_cb} bytes, the BBT says {cb}"),
            ));
        }
        if trailer_bid & !1 != bid & !1 {
            return Err(site.corrupt(&structure, format!("trailer names block {trailer_bid:#x}")));
        }
        let expected_sig = compute_sig(info.ib, trailer_bid);
        if sig != expected_sig {
            return Err(site.corrupt(
                &structure,
                format!("signature {sig:#06x}, expected {expected_sig:#06x}"),
            ));
        }
        raw.truncate(cb);
        let computed = crc32(&raw);
        if self.verify_crc && crc != computed {
            return Err(site.corrupt(
                &structure,
                format!("CRC {crc:#010x}, the bytes give {computed:#010x}"),
            ));
        }
        if bid & 2 == 0 {
            self.header.crypt.decode(&mut raw, bid);
        }
        Ok(Block {
            data: raw,
            offset: info.ib,
        })
    }

    /// The leaf blocks of a node's data: the block itself, or the leaves of its XBLOCK /
    /// XXBLOCK tree, in order, with the total size the tree declares.
    pub fn data_tree(&self, bid: u64) -> Result<DataTree> {
        if bid == 0 {
            return Ok(DataTree {
                leaves: Vec::new(),
                total: 0,
            });
        }
        if bid & 2 == 0 {
            let info = self.block_info(bid)?;
            return Ok(DataTree {
                leaves: vec![bid],
                total: u64::from(info.cb),
            });
        }
        let mut leaves = Vec::new();
        let total = self.collect_xblock(bid, 2, &mut leaves)?;
        // Each block is checked to carry its own id, so distinct leaves are distinct blocks
        // and a tree can describe no more data than the file holds; a leaf named twice would
        // let a tiny file describe gigabytes.
        let mut seen = leaves.iter().map(|b| b & !1).collect::<Vec<u64>>();
        seen.sort_unstable();
        if let Some(twice) = seen.windows(2).find(|w| w[0] == w[1]) {
            let block = self.block(bid)?;
            return Err(self.site(block.offset).corrupt(
                format!("XBLOCK {:#x}", bid & !1),
                format!("block {:#x} appears twice in the data tree", twice[0]),
            ));
        }
        Ok(DataTree { leaves, total })
    }

    fn collect_xblock(&self, bid: u64, max_level: u8, leaves: &mut Vec<u64>) -> Result<u64> {
        let block = self.block(bid)?;
        let site = self.site(block.offset);
        let structure = format!("XBLOCK {:#x}", bid & !1);
        let data = &block.data;
        if data.len() < 8 || data[0] != 0x01 {
            return Err(site.corrupt(
                &structure,
                format!(
                    "btype {:#04x}, expected 0x01 (data tree)",
                    data.first().copied().unwrap_or(0)
                ),
            ));
        }
        let level = data[1];
        let count = le_u16(data, 2).unwrap_or(0) as usize;
        let total = u64::from(le_u32(data, 4).unwrap_or(0));
        let id = self.format().id_size();
        if level == 0 || level > max_level || 8 + count * id > data.len() {
            return Err(site.corrupt(
                &structure,
                format!(
                    "cLevel {level}, cEnt {count} in a {}-byte block",
                    data.len()
                ),
            ));
        }
        for i in 0..count {
            let child = self.format().read_id(data, 8 + i * id).unwrap_or(0);
            if level == 1 {
                leaves.push(child);
            } else {
                self.collect_xblock(child, 1, leaves)?;
            }
        }
        Ok(total)
    }

    /// Reads a node's whole data stream. For attachments and large properties; memory is the
    /// stream's size.
    pub fn read_stream(&self, bid: u64) -> Result<Vec<u8>> {
        let tree = self.data_tree(bid)?;
        // lcbTotal is only a hint: a corrupt one must not reserve gigabytes.
        let bound = (tree.leaves.len() * self.format().max_block_data()) as u64;
        let mut out = Vec::with_capacity(tree.total.min(bound) as usize);
        for leaf in &tree.leaves {
            out.extend_from_slice(&self.block(*leaf)?.data);
        }
        Ok(out)
    }

    /// Measures a node's data stream (its [`data_tree`](Self::data_tree)) without holding it:
    /// every leaf block is read once and checked (trailer, signature, CRC), one at a time, and
    /// only its size kept. So a stream handed on piece by piece later ([`Ndb::block`] per leaf) has an
    /// exact size known before its first byte goes out (an IMAP APPEND announces it), and a
    /// damaged block is found before anything of the stream is sent.
    pub fn measure_stream(&self, tree: DataTree) -> Result<StreamRef> {
        let mut size = 0u64;
        for leaf in &tree.leaves {
            size += self.block(*leaf)?.data.len() as u64;
        }
        Ok(StreamRef {
            leaves: tree.leaves,
            size,
        })
    }

    /// Finds `nid` in the sub-node tree rooted at `sub_bid` (SLBLOCK / SIBLOCK).
    pub fn subnode(&self, sub_bid: u64, nid: u32) -> Result<Option<NodeRef>> {
        let mut bid = sub_bid;
        for _ in 0..=MAX_TREE_DEPTH {
            if bid == 0 {
                return Ok(None);
            }
            let block = self.block(bid)?;
            let (level, entries, size) = self.sub_block_layout(&block, bid)?;
            let id = self.format().id_size();
            let data = &block.data;
            let key_at = |i: usize| self.format().read_id(data, entries + i * size).unwrap_or(0);
            let count = (data.len() - entries) / size;
            let declared = le_u16(data, 2).unwrap_or(0) as usize;
            let count = count.min(declared);
            if level == 0 {
                for i in 0..count {
                    if key_at(i) as u32 == nid {
                        let at = entries + i * size;
                        return Ok(Some(NodeRef {
                            nid,
                            data_bid: self.format().read_id(data, at + id).unwrap_or(0),
                            sub_bid: self.format().read_id(data, at + 2 * id).unwrap_or(0),
                        }));
                    }
                }
                return Ok(None);
            }
            let mut next = None;
            for i in 0..count {
                if key_at(i) as u32 <= nid {
                    next = Some(
                        self.format()
                            .read_id(data, entries + i * size + id)
                            .unwrap_or(0),
                    );
                }
            }
            match next {
                Some(child) => bid = child,
                None => return Ok(None),
            }
        }
        Err(self.site(0).corrupt(
            format!("sub-node tree {sub_bid:#x}"),
            "deeper than 16 levels (a loop?)",
        ))
    }

    /// Every entry of a sub-node tree (leaf entries only), in key order.
    pub fn subnodes(&self, sub_bid: u64) -> Result<Vec<NodeRef>> {
        let mut out = Vec::new();
        self.collect_subnodes(sub_bid, 0, &mut out)?;
        Ok(out)
    }

    fn collect_subnodes(&self, bid: u64, depth: u8, out: &mut Vec<NodeRef>) -> Result<()> {
        if bid == 0 {
            return Ok(());
        }
        if depth > MAX_TREE_DEPTH {
            return Err(self.site(0).corrupt(
                format!("sub-node tree {bid:#x}"),
                "deeper than 16 levels (a loop?)",
            ));
        }
        let block = self.block(bid)?;
        let (level, entries, size) = self.sub_block_layout(&block, bid)?;
        let id = self.format().id_size();
        let data = &block.data;
        let count = ((data.len() - entries) / size).min(le_u16(data, 2).unwrap_or(0) as usize);
        for i in 0..count {
            let at = entries + i * size;
            let f = self.format();
            if level == 0 {
                out.push(NodeRef {
                    nid: f.read_id(data, at).unwrap_or(0) as u32,
                    data_bid: f.read_id(data, at + id).unwrap_or(0),
                    sub_bid: f.read_id(data, at + 2 * id).unwrap_or(0),
                });
            } else {
                self.collect_subnodes(f.read_id(data, at + id).unwrap_or(0), depth + 1, out)?;
            }
        }
        Ok(())
    }

    /// (cLevel, offset of the first entry, entry size) of an SLBLOCK or SIBLOCK.
    fn sub_block_layout(&self, block: &Block, bid: u64) -> Result<(u8, usize, usize)> {
        let data = &block.data;
        let structure = format!("sub-node block {:#x}", bid & !1);
        if data.len() < 4 || data[0] != 0x02 {
            return Err(self.site(block.offset).corrupt(
                &structure,
                format!(
                    "btype {:#04x}, expected 0x02 (SLBLOCK/SIBLOCK)",
                    data.first().copied().unwrap_or(0)
                ),
            ));
        }
        let level = data[1];
        let id = self.format().id_size();
        let entries = if self.format() == Format::Unicode {
            8
        } else {
            4
        };
        let size = if level == 0 { 3 * id } else { 2 * id };
        if level > 1 || data.len() < entries {
            return Err(self
                .site(block.offset)
                .corrupt(&structure, format!("cLevel {level}")));
        }
        Ok((level, entries, size))
    }

    /// Visits every NBT leaf entry in key order. Used once per open to index folders and
    /// messages by parent.
    pub fn for_each_node(&self, mut visit: impl FnMut(NodeEntry)) -> Result<()> {
        let root = self.header.nbt_root;
        self.walk_nbt(root.1, root.0, u8::MAX, &mut visit)
    }

    fn walk_nbt(
        &self,
        ib: u64,
        bid: u64,
        parent_level: u8,
        visit: &mut dyn FnMut(NodeEntry),
    ) -> Result<()> {
        let page = self.page(ib, bid, PTYPE_NBT)?;
        let (count, size, level) = self.page_entries(&page, ib, PTYPE_NBT)?;
        if level >= parent_level {
            return Err(self.site(ib).corrupt(
                format!("NBT page at {ib:#x}"),
                format!("cLevel {level} does not descend from its parent's {parent_level}"),
            ));
        }
        let id = self.format().id_size();
        for i in 0..count {
            let entry = &page[i * size..(i + 1) * size];
            if level == 0 {
                visit(self.parse_node_entry(entry));
            } else {
                let child_bid = self.format().read_id(entry, id).unwrap_or(0);
                let child_ib = self.format().read_id(entry, 2 * id).unwrap_or(0);
                self.walk_nbt(child_ib, child_bid, level, visit)?;
            }
        }
        Ok(())
    }
}

/// Where the bytes come from: an open file read by position, or (fuzzing, tests) memory.
enum Source {
    File(File),
    Memory(Arc<[u8]>),
}

impl Source {
    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Source::File(file) => read_exact_at(file, buffer, offset),
            Source::Memory(bytes) => {
                let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
                let end = start
                    .checked_add(buffer.len())
                    .filter(|end| *end <= bytes.len())
                    .ok_or(io::ErrorKind::UnexpectedEof)?;
                buffer.copy_from_slice(&bytes[start..end]);
                Ok(())
            }
        }
    }
}

/// The leaves of a data tree.
#[derive(Debug, Clone)]
pub struct DataTree {
    pub leaves: Vec<u64>,
    pub total: u64,
}

/// A data stream located and measured by [`Ndb::measure_stream`] but not read: attachment
/// data too large to hold, read block by block when the message is written out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRef {
    /// The data tree's leaf blocks, in order.
    pub leaves: Vec<u64>,
    /// Exact size in bytes: the leaves' sizes added up.
    pub size: u64,
}

fn page_name(ptype: u8) -> &'static str {
    match ptype {
        PTYPE_NBT => "NBT",
        PTYPE_BBT => "BBT",
        _ => "page",
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buffer: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buffer.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, buffer, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buffer = &mut buffer[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Node id helpers (MS-PST 2.2.2.1).
pub mod nid {
    pub const TYPE_HID: u8 = 0x00;
    pub const TYPE_NORMAL_FOLDER: u8 = 0x02;
    pub const TYPE_SEARCH_FOLDER: u8 = 0x03;
    pub const TYPE_NORMAL_MESSAGE: u8 = 0x04;
    pub const TYPE_ATTACHMENT: u8 = 0x05;
    pub const TYPE_ASSOC_MESSAGE: u8 = 0x08;
    pub const TYPE_RECEIVE_FOLDER_TABLE: u8 = 0x0B;

    pub const MESSAGE_STORE: u32 = 0x21;
    pub const NAME_TO_ID_MAP: u32 = 0x61;
    pub const ROOT_FOLDER: u32 = 0x122;
    pub const RECIPIENT_TABLE: u32 = 0x692;
    pub const ATTACHMENT_TABLE: u32 = 0x671;

    pub fn kind(nid: u32) -> u8 {
        (nid & 0x1F) as u8
    }
}
