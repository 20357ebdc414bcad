//! Lists, tables and properties (MS-PST 2.3): the heap-on-node (HN), its B-tree (BTH),
//! property contexts (PC) and table contexts (TC).
//!
//! A heap is read whole: PCs and TCs are small (large values live in sub-nodes, which are
//! read only when asked for), so memory is bounded by one node, never by the file.

use std::collections::BTreeMap;

use super::error::{le_u16, le_u32, Result};
use super::ndb::{nid, Ndb, NodeRef, StreamRef};
use super::props::{PropType, PropValue};

pub const SIG_HN: u8 = 0xEC;
pub const CLIENT_BTH: u8 = 0xB5;
pub const CLIENT_PC: u8 = 0xBC;
pub const CLIENT_TC: u8 = 0x7C;

/// A BTH read whole: (cbKey, cbEnt, records as (key, data) in key order).
pub type BthRecords = (usize, usize, Vec<(Vec<u8>, Vec<u8>)>);

/// A heap-on-node: the node's data blocks with their file offsets.
pub struct Heap<'a> {
    ndb: &'a Ndb,
    blocks: Vec<(Vec<u8>, u64)>,
    pub client_sig: u8,
    pub user_root: u32,
    node: NodeRef,
}

impl<'a> Heap<'a> {
    pub fn open(ndb: &'a Ndb, node: NodeRef) -> Result<Heap<'a>> {
        let tree = ndb.data_tree(node.data_bid)?;
        let mut blocks = Vec::with_capacity(tree.leaves.len());
        for bid in &tree.leaves {
            let block = ndb.block(*bid)?;
            blocks.push((block.data, block.offset));
        }
        let Some((first, offset)) = blocks.first() else {
            return Err(ndb.site(0).corrupt(
                format!("HN of node {:#x}", node.nid),
                "the node has no data",
            ));
        };
        let site = ndb.site(*offset);
        if first.len() < 12 || first[2] != SIG_HN {
            return Err(site.corrupt(
                format!("HN header of node {:#x}", node.nid),
                format!(
                    "bSig {:#04x}, expected 0xEC",
                    first.get(2).copied().unwrap_or(0)
                ),
            ));
        }
        let client_sig = first[3];
        let user_root = le_u32(first, 4).unwrap_or(0);
        Ok(Heap {
            ndb,
            blocks,
            client_sig,
            user_root,
            node,
        })
    }

    pub fn node(&self) -> NodeRef {
        self.node
    }

    /// The bytes of heap item `hid`.
    pub fn get(&self, hid: u32) -> Result<&[u8]> {
        let structure = || format!("HN page map of node {:#x}", self.node.nid);
        if hid & 0x1F != 0 {
            return Err(self
                .ndb
                .site(self.blocks[0].1)
                .corrupt(structure(), format!("HID {hid:#x} has type bits set")));
        }
        let index = ((hid >> 5) & 0x7FF) as usize;
        let block_index = (hid >> 16) as usize;
        let Some((data, offset)) = self.blocks.get(block_index) else {
            return Err(self.ndb.site(self.blocks[0].1).corrupt(
                structure(),
                format!(
                    "HID {hid:#x} points at block {block_index}, the heap has {}",
                    self.blocks.len()
                ),
            ));
        };
        let site = self.ndb.site(*offset);
        let map = le_u16(data, 0).unwrap_or(0) as usize;
        let count = le_u16(data, map)
            .ok_or_else(|| site.corrupt(structure(), format!("ibHnpm {map} is past the block")))?
            as usize;
        if index == 0 || index > count {
            return Err(site.corrupt(
                structure(),
                format!("HID {hid:#x}: index {index} of {count} allocations"),
            ));
        }
        let start = le_u16(data, map + 4 + 2 * (index - 1));
        let end = le_u16(data, map + 4 + 2 * index);
        match (start, end) {
            (Some(s), Some(e)) if s <= e && (e as usize) <= data.len() => {
                Ok(&data[s as usize..e as usize])
            }
            _ => Err(site.corrupt(
                structure(),
                format!(
                    "allocation {index} spans {start:?}..{end:?} in a {}-byte block",
                    data.len()
                ),
            )),
        }
    }

    fn site_of(&self, hid: u32) -> super::error::Site<'a> {
        let block = (hid >> 16) as usize;
        let offset = self.blocks.get(block).map_or(self.blocks[0].1, |b| b.1);
        self.ndb.site(offset)
    }

    /// All records of the BTH whose header is heap item `hid`, in key order.
    pub fn bth_records(&self, hid: u32) -> Result<BthRecords> {
        let header = self.get(hid)?;
        let structure = || format!("BTH header of node {:#x}", self.node.nid);
        if header.len() < 8 || header[0] != CLIENT_BTH {
            return Err(self.site_of(hid).corrupt(
                structure(),
                format!(
                    "bType {:#04x}, expected 0xB5",
                    header.first().copied().unwrap_or(0)
                ),
            ));
        }
        let key_size = header[1] as usize;
        let data_size = header[2] as usize;
        let levels = header[3];
        let root = le_u32(header, 4).unwrap_or(0);
        if key_size == 0 || key_size > 16 || data_size > 32 || levels > 8 {
            return Err(self.site_of(hid).corrupt(
                structure(),
                format!("cbKey {key_size}, cbEnt {data_size}, bIdxLevels {levels}"),
            ));
        }
        let mut out = Vec::new();
        if root != 0 {
            self.collect_bth(root, levels, key_size, data_size, &mut out)?;
        }
        Ok((key_size, data_size, out))
    }

    fn collect_bth(
        &self,
        hid: u32,
        level: u8,
        key_size: usize,
        data_size: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        let records = self.get(hid)?;
        if level == 0 {
            let size = key_size + data_size;
            for record in records.chunks_exact(size) {
                out.push((record[..key_size].to_vec(), record[key_size..].to_vec()));
            }
        } else {
            for record in records.chunks_exact(key_size + 4) {
                let child = le_u32(record, key_size).unwrap_or(0);
                self.collect_bth(child, level - 1, key_size, data_size, out)?;
            }
        }
        Ok(())
    }

    /// Resolves an HNID: a heap item, or a sub-node's whole data stream.
    pub fn hnid(&self, hnid: u32) -> Result<Vec<u8>> {
        if hnid == 0 {
            return Ok(Vec::new());
        }
        if hnid & 0x1F == nid::TYPE_HID as u32 {
            return Ok(self.get(hnid)?.to_vec());
        }
        match self.ndb.subnode(self.node.sub_bid, hnid)? {
            Some(sub) => self.ndb.read_stream(sub.data_bid),
            None => Err(self.ndb.site(self.blocks[0].1).corrupt(
                format!("sub-node tree of node {:#x}", self.node.nid),
                format!("no sub-node {hnid:#x} for a property value"),
            )),
        }
    }
}

impl Heap<'_> {
    /// The sub-node stream behind `hnid`, located and measured, when it may hold more than
    /// `hold_at_most` bytes; `None` for a heap item or a smaller stream (read it whole with
    /// [`hnid`](Self::hnid)).
    fn large_value(&self, hnid: u32, hold_at_most: usize) -> Result<Option<StreamRef>> {
        if hnid == 0 || hnid & 0x1F == nid::TYPE_HID as u32 {
            return Ok(None);
        }
        let Some(sub) = self.ndb.subnode(self.node.sub_bid, hnid)? else {
            // Said by `hnid`, with the same words.
            return Ok(None);
        };
        let tree = self.ndb.data_tree(sub.data_bid)?;
        // Leaves times the largest block bounds the size from above, before any leaf is read.
        if tree
            .leaves
            .len()
            .saturating_mul(self.ndb.format().max_block_data())
            <= hold_at_most
        {
            return Ok(None);
        }
        self.ndb.measure_stream(tree).map(Some)
    }
}

/// A property context: one object's properties (MS-PST 2.3.3).
#[derive(Debug, Clone, Default)]
pub struct PropertyBag {
    pub values: BTreeMap<u16, PropValue>,
}

impl PropertyBag {
    pub fn read(ndb: &Ndb, node: NodeRef) -> Result<PropertyBag> {
        PropertyBag::read_with(ndb, node, None)
    }

    /// [`read`](Self::read), except that property `streamed` (attachment data), when it is
    /// binary and lives in a sub-node of more than `hold_at_most` bytes, is not read but located and
    /// measured ([`PropValue::Stream`]): a 30 MB attachment is never held whole by reading
    /// its attachment object.
    pub fn read_streaming(
        ndb: &Ndb,
        node: NodeRef,
        streamed: u16,
        hold_at_most: usize,
    ) -> Result<PropertyBag> {
        PropertyBag::read_with(ndb, node, Some((streamed, hold_at_most)))
    }

    fn read_with(ndb: &Ndb, node: NodeRef, streamed: Option<(u16, usize)>) -> Result<PropertyBag> {
        let heap = Heap::open(ndb, node)?;
        if heap.client_sig != CLIENT_PC {
            return Err(heap.site_of(0).corrupt(
                format!("PC of node {:#x}", node.nid),
                format!("bClientSig {:#04x}, expected 0xBC", heap.client_sig),
            ));
        }
        let (key_size, data_size, records) = heap.bth_records(heap.user_root)?;
        if key_size != 2 || data_size != 6 {
            return Err(heap.site_of(heap.user_root).corrupt(
                format!("PC of node {:#x}", node.nid),
                format!("BTH cbKey {key_size} / cbEnt {data_size}, expected 2 / 6"),
            ));
        }
        let mut values = BTreeMap::new();
        for (key, data) in records {
            let id = u16::from_le_bytes([key[0], key[1]]);
            let kind = PropType(le_u16(&data, 0).unwrap_or(0));
            let raw = le_u32(&data, 2).unwrap_or(0);
            let value = if kind.is_inline_in_pc() {
                PropValue::from_inline(kind, raw)
            } else if let Some(max) = streamed
                .filter(|(pid, _)| *pid == id && kind == PropType::BINARY)
                .map(|(_, m)| m)
            {
                match heap.large_value(raw, max) {
                    Ok(Some(stream)) => PropValue::Stream(stream),
                    Ok(None) => match heap.hnid(raw) {
                        Ok(bytes) => PropValue::decode(kind, &bytes),
                        Err(err) => PropValue::Unreadable(err.to_string()),
                    },
                    Err(err) => PropValue::Unreadable(err.to_string()),
                }
            } else {
                match heap.hnid(raw) {
                    Ok(bytes) => PropValue::decode(kind, &bytes),
                    // One unreadable value leaves the rest of the object readable.
                    Err(err) => PropValue::Unreadable(err.to_string()),
                }
            };
            values.insert(id, value);
        }
        Ok(PropertyBag { values })
    }

    pub fn get(&self, id: u16) -> Option<&PropValue> {
        self.values.get(&id)
    }
}

/// A table context's column (MS-PST 2.3.4.2 TCOLDESC).
#[derive(Debug, Clone, Copy)]
struct Column {
    id: u16,
    kind: PropType,
    offset: u16,
    size: u8,
    bit: u8,
}

/// A table context read whole: one property bag per row, in row-matrix order.
pub struct Table {
    pub rows: Vec<PropertyBag>,
}

impl Table {
    pub fn read(ndb: &Ndb, node: NodeRef) -> Result<Table> {
        let heap = Heap::open(ndb, node)?;
        let structure = || format!("TC of node {:#x}", node.nid);
        if heap.client_sig != CLIENT_TC {
            return Err(heap.site_of(0).corrupt(
                structure(),
                format!("bClientSig {:#04x}, expected 0x7C", heap.client_sig),
            ));
        }
        let info = heap.get(heap.user_root)?;
        if info.len() < 22 || info[0] != CLIENT_TC {
            return Err(heap.site_of(heap.user_root).corrupt(
                structure(),
                "TCINFO shorter than 22 bytes or bType not 0x7C",
            ));
        }
        let column_count = info[1] as usize;
        let row_size = le_u16(info, 8).unwrap_or(0) as usize; // rgib[TCI_bm]
        let ceb_offset = le_u16(info, 6).unwrap_or(0) as usize; // rgib[TCI_1b]
        let row_index = le_u32(info, 10).unwrap_or(0);
        let rows_hnid = le_u32(info, 14).unwrap_or(0);
        if info.len() < 22 + 8 * column_count {
            return Err(heap.site_of(heap.user_root).corrupt(
                structure(),
                format!("{column_count} columns do not fit in TCINFO"),
            ));
        }
        let mut columns = Vec::with_capacity(column_count);
        for i in 0..column_count {
            let at = 22 + 8 * i;
            let tag = le_u32(info, at).unwrap_or(0);
            let column = Column {
                id: (tag >> 16) as u16,
                kind: PropType(tag as u16),
                offset: le_u16(info, at + 4).unwrap_or(0),
                size: info[at + 6],
                bit: info[at + 7],
            };
            if column.offset as usize + column.size as usize > row_size
                || (column.bit as usize) / 8 + ceb_offset >= row_size.max(1)
            {
                return Err(heap.site_of(heap.user_root).corrupt(
                    structure(),
                    format!(
                        "column {:#06x} at {}+{} (bit {}) outside a {row_size}-byte row",
                        column.id, column.offset, column.size, column.bit
                    ),
                ));
            }
            columns.push(column);
        }
        // Row ids → row indexes; rows are read in index order.
        let mut indexes = Vec::new();
        if row_index != 0 {
            let (_, data_size, records) = heap.bth_records(row_index)?;
            for (_, data) in records {
                let index = match data_size {
                    2 => u32::from(le_u16(&data, 0).unwrap_or(0)),
                    _ => le_u32(&data, 0).unwrap_or(0),
                };
                indexes.push(index);
            }
        }
        indexes.sort_unstable();
        indexes.dedup();
        if indexes.is_empty() || row_size == 0 {
            return Ok(Table { rows: Vec::new() });
        }
        let matrix = RowMatrix::open(ndb, &heap, rows_hnid, row_size)?;
        let mut rows = Vec::with_capacity(indexes.len());
        for index in indexes {
            let row = matrix.row(ndb, index as usize)?;
            let mut bag = PropertyBag::default();
            for column in &columns {
                let byte = ceb_offset + column.bit as usize / 8;
                let exists = row
                    .get(byte)
                    .is_some_and(|b| b & (0x80 >> (column.bit % 8)) != 0);
                if !exists {
                    continue;
                }
                let start = column.offset as usize;
                let cell = &row[start..start + column.size as usize];
                let value = if column.kind.is_fixed() && column.kind.fixed_size() <= 8 {
                    PropValue::decode(column.kind, cell)
                } else {
                    let hnid = le_u32(cell, 0).unwrap_or(0);
                    match heap.hnid(hnid) {
                        Ok(bytes) => PropValue::decode(column.kind, &bytes),
                        Err(err) => PropValue::Unreadable(err.to_string()),
                    }
                };
                bag.values.insert(column.id, value);
            }
            rows.push(bag);
        }
        Ok(Table { rows })
    }
}

/// Where a TC's rows live: in the heap (small tables) or in a sub-node's data tree, where
/// rows never straddle blocks.
enum RowMatrix {
    Heap {
        data: Vec<u8>,
        row_size: usize,
        offset: u64,
    },
    Blocks {
        leaves: Vec<u64>,
        row_size: usize,
        per_block: usize,
    },
}

impl RowMatrix {
    fn open(ndb: &Ndb, heap: &Heap<'_>, hnid: u32, row_size: usize) -> Result<RowMatrix> {
        if hnid & 0x1F == 0 {
            return Ok(RowMatrix::Heap {
                data: heap.get(hnid)?.to_vec(),
                row_size,
                offset: heap.site_of(hnid).offset,
            });
        }
        let Some(sub) = ndb.subnode(heap.node().sub_bid, hnid)? else {
            return Err(heap.site_of(0).corrupt(
                format!("TC of node {:#x}", heap.node().nid),
                format!("row matrix sub-node {hnid:#x} is missing"),
            ));
        };
        let tree = ndb.data_tree(sub.data_bid)?;
        let per_block = (ndb.format().max_block_data() / row_size).max(1);
        Ok(RowMatrix::Blocks {
            leaves: tree.leaves,
            row_size,
            per_block,
        })
    }

    fn row(&self, ndb: &Ndb, index: usize) -> Result<Vec<u8>> {
        let (data, offset, size, at) = match self {
            RowMatrix::Heap {
                data,
                row_size,
                offset,
            } => {
                let at = index.saturating_mul(*row_size);
                return data
                    .get(at..at.saturating_add(*row_size))
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| {
                        ndb.site(*offset).corrupt(
                            "TC row matrix",
                            format!("row {index} is past the matrix's {} bytes", data.len()),
                        )
                    });
            }
            RowMatrix::Blocks {
                leaves,
                row_size,
                per_block,
            } => {
                let Some(bid) = leaves.get(index / per_block) else {
                    return Err(ndb.site(0).corrupt(
                        "TC row matrix",
                        format!("row {index} is past the matrix's {} blocks", leaves.len()),
                    ));
                };
                let block = ndb.block(*bid)?;
                (
                    block.data,
                    block.offset,
                    *row_size,
                    (index % per_block) * row_size,
                )
            }
        };
        data.get(at..at + size).map(<[u8]>::to_vec).ok_or_else(|| {
            ndb.site(offset).corrupt(
                "TC row matrix",
                format!("row {index} is past the block's {} bytes", data.len()),
            )
        })
    }
}
