//! Thrift's compact protocol, as much as the Parquet footer and page headers of the
//! prediction log's files need (see [`super::parquet`]), and the unsigned varint both use.

pub(super) fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Thrift's compact protocol, as much as Parquet's metadata needs.
pub(super) struct Thrift<'a> {
    out: &'a mut Vec<u8>,
    /// The last field id written in the current struct, and those of the enclosing ones.
    last: i16,
    stack: Vec<i16>,
}

pub(super) const CT_TRUE: u8 = 1;
pub(super) const CT_FALSE: u8 = 2;
pub(super) const CT_I32: u8 = 5;
pub(super) const CT_I64: u8 = 6;
pub(super) const CT_BINARY: u8 = 8;
pub(super) const CT_LIST: u8 = 9;
pub(super) const CT_STRUCT: u8 = 12;

impl<'a> Thrift<'a> {
    pub(super) fn new(out: &'a mut Vec<u8>) -> Thrift<'a> {
        Thrift {
            out,
            last: 0,
            stack: Vec::new(),
        }
    }

    pub(super) fn field(&mut self, id: i16, ty: u8) {
        let delta = id - self.last;
        if (1..=15).contains(&delta) {
            self.out.push(((delta as u8) << 4) | ty);
        } else {
            self.out.push(ty);
            varint(self.out, u64::from(((id << 1) ^ (id >> 15)) as u16));
        }
        self.last = id;
    }

    pub(super) fn i32(&mut self, id: i16, v: i32) {
        self.field(id, CT_I32);
        varint(self.out, u64::from(((v << 1) ^ (v >> 31)) as u32));
    }

    pub(super) fn i64(&mut self, id: i16, v: i64) {
        self.field(id, CT_I64);
        varint(self.out, ((v << 1) ^ (v >> 63)) as u64);
    }

    pub(super) fn bool(&mut self, id: i16, v: bool) {
        self.field(id, if v { CT_TRUE } else { CT_FALSE });
    }

    pub(super) fn binary(&mut self, id: i16, v: &[u8]) {
        self.field(id, CT_BINARY);
        self.raw_binary(v);
    }

    pub(super) fn raw_binary(&mut self, v: &[u8]) {
        varint(self.out, v.len() as u64);
        self.out.extend_from_slice(v);
    }

    /// A struct field; its fields follow, then [`end`](Self::end).
    pub(super) fn begin(&mut self, id: i16) {
        self.field(id, CT_STRUCT);
        self.begin_elem();
    }

    /// A struct as a list element.
    pub(super) fn begin_elem(&mut self) {
        self.stack.push(self.last);
        self.last = 0;
    }

    pub(super) fn end(&mut self) {
        self.out.push(0);
        self.last = self.stack.pop().unwrap_or(0);
    }

    /// The end of the outermost struct.
    pub(super) fn stop(&mut self) {
        self.out.push(0);
    }

    /// A list field of `len` elements of type `elem`: structs (each begun with
    /// [`begin_elem`](Self::begin_elem)) or strings (each with
    /// [`raw_binary`](Self::raw_binary)).
    pub(super) fn list(&mut self, id: i16, elem: u8, len: usize) {
        self.field(id, CT_LIST);
        if len < 15 {
            self.out.push(((len as u8) << 4) | elem);
        } else {
            self.out.push(0xf0 | elem);
            varint(self.out, len as u64);
        }
    }

    pub(super) fn list_i32(&mut self, id: i16, v: &[i32]) {
        self.list(id, CT_I32, v.len());
        for x in v {
            varint(self.out, u64::from(((x << 1) ^ (x >> 31)) as u32));
        }
    }
}
