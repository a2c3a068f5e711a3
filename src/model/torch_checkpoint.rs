//! Reading `pytorch_model.bin`: the tensors of a `torch.save`d state dict,
//! without Python and without running the pickle.
//!
//! Many published checkpoints ship only this file. It is either a zip archive
//! (torch ≥ 1.6: `<root>/data.pkl` plus one stored entry per storage under
//! `<root>/data/<key>`) or the legacy stream (a magic-number pickle, a header,
//! the state-dict pickle, the list of storage keys, then each storage as an
//! 8-byte element count and its raw bytes).
//!
//! A pickle is a program; loading one with Python can run anything. This
//! reader interprets only the opcodes a state dict of tensors needs and
//! accepts only the globals that build one (`OrderedDict`, torch's tensor
//! rebuild functions, its storage types). Anything else is refused with its
//! name, so a crafted file cannot make berth do more than read bytes.

use std::collections::HashMap;
use std::path::Path;

use safetensors::Dtype;

use crate::error::{Error, Result};

/// One tensor as stored: its dtype, shape, and its values as contiguous little-endian bytes.
#[derive(Debug)]
pub struct StoredTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// Reads every tensor of a `torch.save` file (zip or legacy), sorted by name.
pub fn read_torch_checkpoint(path: &Path) -> Result<Vec<(String, StoredTensor)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let fail = |message: String| Error::Checkpoint { path: path.into(), message };
    let mut tensors = if bytes.starts_with(b"PK\x03\x04") {
        read_zip_checkpoint(&bytes).map_err(fail)?
    } else if bytes.first() == Some(&0x80) {
        read_legacy_checkpoint(&bytes).map_err(fail)?
    } else {
        return Err(fail("not a torch.save file: neither a zip archive nor a pickle stream".into()));
    };
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(tensors)
}

type Parsed<T> = std::result::Result<T, String>;

// ---------------------------------------------------------------- zip archive

/// The zip format of torch ≥ 1.6: entries are stored uncompressed.
fn read_zip_checkpoint(bytes: &[u8]) -> Parsed<Vec<(String, StoredTensor)>> {
    let entries = zip_entries(bytes)?;
    let pickle_name = entries
        .keys()
        .filter(|name| name.ends_with("/data.pkl") && name.matches('/').count() == 1)
        .min()
        .cloned()
        .ok_or("the zip archive has no <root>/data.pkl: not a torch.save file")?;
    let root = &pickle_name[..pickle_name.len() - "data.pkl".len()];
    if let Some(order) = entries.get(&format!("{root}byteorder")) {
        let order = zip_data(bytes, order, &format!("{root}byteorder"))?;
        if order != b"little" {
            return Err(format!("the storages are {} endian; berth reads only little-endian files", String::from_utf8_lossy(order)));
        }
    }
    let pickle = zip_data(bytes, &entries[&pickle_name], &pickle_name)?;
    let state = Unpickler::new(pickle).run()?;
    materialise(state, |key| {
        let name = format!("{root}data/{key}");
        let entry = entries.get(&name).ok_or_else(|| format!("storage `{key}` has no entry {name} in the archive"))?;
        zip_data(bytes, entry, &name)
    })
}

struct ZipEntry {
    method: u16,
    crc: u32,
    size: u64,
    compressed_size: u64,
    local_header: u64,
}

fn le16(b: &[u8], at: usize) -> Parsed<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]])).ok_or_else(|| "truncated zip structure".into())
}
fn le32(b: &[u8], at: usize) -> Parsed<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes(s.try_into().unwrap())).ok_or_else(|| "truncated zip structure".into())
}
fn le64(b: &[u8], at: usize) -> Parsed<u64> {
    b.get(at..at + 8).map(|s| u64::from_le_bytes(s.try_into().unwrap())).ok_or_else(|| "truncated zip structure".into())
}

/// The central directory, by entry name (ZIP64 sizes and offsets included).
fn zip_entries(b: &[u8]) -> Parsed<HashMap<String, ZipEntry>> {
    // The end-of-central-directory record is in the last 64 KiB + 22 bytes.
    let search_from = b.len().saturating_sub(22 + 65_535);
    let eocd = (search_from..b.len().saturating_sub(21))
        .rev()
        .find(|&i| b[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or("no end-of-central-directory record: the zip archive is truncated")?;
    let mut count = le16(b, eocd + 10)? as u64;
    let mut directory = le32(b, eocd + 16)? as u64;
    // ZIP64: a locator just before the record points at the 64-bit record.
    if eocd >= 20 && b[eocd - 20..eocd - 16] == [0x50, 0x4b, 0x06, 0x07] {
        let record = le64(b, eocd - 12)? as usize;
        if le32(b, record)? != 0x0606_4b50 {
            return Err("corrupt ZIP64 end-of-central-directory record".into());
        }
        count = le64(b, record + 32)?;
        directory = le64(b, record + 48)?;
    }
    let mut entries = HashMap::new();
    let mut at = directory as usize;
    for _ in 0..count {
        if le32(b, at)? != 0x0201_4b50 {
            return Err("corrupt zip central directory".into());
        }
        let method = le16(b, at + 10)?;
        let crc = le32(b, at + 16)?;
        let mut compressed_size = le32(b, at + 20)? as u64;
        let mut size = le32(b, at + 24)? as u64;
        let name_len = le16(b, at + 28)? as usize;
        let extra_len = le16(b, at + 30)? as usize;
        let comment_len = le16(b, at + 32)? as usize;
        let mut local_header = le32(b, at + 42)? as u64;
        let name = b.get(at + 46..at + 46 + name_len).ok_or("truncated zip central directory")?;
        let name = String::from_utf8_lossy(name).into_owned();
        // The ZIP64 extra field holds, in order, whichever of the three fields overflowed.
        let extra = b.get(at + 46 + name_len..at + 46 + name_len + extra_len).ok_or("truncated zip central directory")?;
        let mut e = 0;
        while e + 4 <= extra.len() {
            let (id, len) = (le16(extra, e)?, le16(extra, e + 2)? as usize);
            if id == 0x0001 {
                let mut field = e + 4;
                for value in [&mut size, &mut compressed_size, &mut local_header] {
                    if *value == 0xFFFF_FFFF {
                        *value = le64(extra, field)?;
                        field += 8;
                    }
                }
            }
            e += 4 + len;
        }
        entries.insert(name, ZipEntry { method, crc, size, compressed_size, local_header });
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(entries)
}

/// The bytes of one stored entry, checked against its CRC-32.
fn zip_data<'a>(b: &'a [u8], entry: &ZipEntry, name: &str) -> Parsed<&'a [u8]> {
    if entry.method != 0 {
        return Err(format!("entry {name} is compressed (method {}); torch.save stores entries uncompressed", entry.method));
    }
    let header = entry.local_header as usize;
    if le32(b, header)? != 0x0403_4b50 {
        return Err(format!("entry {name}: corrupt local header"));
    }
    let start = header + 30 + le16(b, header + 26)? as usize + le16(b, header + 28)? as usize;
    let data = b
        .get(start..start + entry.size.min(entry.compressed_size) as usize)
        .filter(|_| entry.size == entry.compressed_size)
        .ok_or_else(|| format!("entry {name} runs past the end of the file: the archive is truncated"))?;
    if crc32(data) != entry.crc {
        return Err(format!("entry {name} fails its CRC-32 check: the file is corrupt"));
    }
    Ok(data)
}

fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *slot = c;
        }
        table
    });
    !data.iter().fold(!0u32, |c, &byte| table[((c ^ byte as u32) & 0xFF) as usize] ^ (c >> 8))
}

// ------------------------------------------------------------- legacy stream

/// torch's `_legacy_save` magic number and protocol version.
const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;
const LEGACY_PROTOCOL: i128 = 1001;

fn read_legacy_checkpoint(bytes: &[u8]) -> Parsed<Vec<(String, StoredTensor)>> {
    let mut at = 0;
    let mut next_pickle = |what: &str| -> Parsed<Value> {
        let mut unpickler = Unpickler::new(&bytes[at..]);
        let value = unpickler.run().map_err(|e| format!("{what}: {e}"))?;
        at += unpickler.pos;
        Ok(value)
    };
    match next_pickle("the magic number")? {
        Value::Int(m) if m == LEGACY_MAGIC => {}
        _ => return Err("a pickle, but not one written by torch.save".into()),
    }
    match next_pickle("the protocol version")? {
        Value::Int(LEGACY_PROTOCOL) => {}
        other => return Err(format!("legacy torch.save protocol {other:?}; berth reads protocol 1001")),
    }
    let header = next_pickle("the system header")?;
    if let Value::Dict(items) = &header {
        if items.iter().any(|(k, v)| matches!((k, v), (Value::Str(k), Value::Bool(false)) if k == "little_endian")) {
            return Err("the storages are big endian; berth reads only little-endian files".into());
        }
    }
    let state = next_pickle("the state dict")?;
    let keys = match next_pickle("the storage keys")? {
        Value::List(keys) => keys,
        _ => return Err("the storage key list is not a list".into()),
    };
    // Each storage: its element count (int64), then its bytes, in key order.
    let element_sizes = storage_element_sizes(&state);
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else { return Err("a storage key is not a string".into()) };
        let count = bytes.get(at..at + 8).ok_or("the file ends before its storages: it is truncated")?;
        let count = u64::from_le_bytes(count.try_into().unwrap()) as usize;
        let width = *element_sizes.get(&key).ok_or_else(|| format!("storage `{key}` is listed but no tensor uses it"))?;
        let data = bytes.get(at + 8..at + 8 + count * width).ok_or("the file ends inside a storage: it is truncated")?;
        storages.insert(key, data);
        at += 8 + count * width;
    }
    materialise(state, |key| storages.get(key).copied().ok_or_else(|| format!("storage `{key}` is not in the file")))
}

/// Storage key → element width, read off the storages the state refers to.
fn storage_element_sizes(state: &Value) -> HashMap<String, usize> {
    let mut sizes = HashMap::new();
    if let Value::Dict(items) = state {
        for (_, value) in items {
            if let Value::Tensor(t) = value {
                sizes.insert(t.storage.key.clone(), t.storage.dtype.bitsize() / 8);
            }
        }
    }
    sizes
}

// ------------------------------------------------------------------- tensors

/// Turns the unpickled state dict into named tensors, copying each view's
/// elements (offset, sizes, strides) out of its storage's bytes.
fn materialise<'a>(state: Value, mut storage_bytes: impl FnMut(&str) -> Parsed<&'a [u8]>) -> Parsed<Vec<(String, StoredTensor)>> {
    let Value::Dict(items) = state else {
        return Err(format!("the file holds a {}, not a state dict of tensors", state.kind()));
    };
    let mut out = Vec::with_capacity(items.len());
    for (key, value) in items {
        let Value::Str(name) = key else { return Err(format!("a state-dict key is a {}, not a string", key.kind())) };
        let Value::Tensor(view) = value else {
            return Err(format!(
                "entry `{name}` is a {}, not a tensor (a training checkpoint? save the model's state_dict() alone)",
                value.kind()
            ));
        };
        let data = storage_bytes(&view.storage.key)?;
        let width = view.storage.dtype.bitsize() / 8;
        if data.len() != view.storage.numel * width {
            return Err(format!("tensor `{name}`: its storage holds {} bytes, {} expected", data.len(), view.storage.numel * width));
        }
        let numel: usize = view.shape.iter().product();
        let mut bytes = Vec::with_capacity(numel * width);
        if numel > 0 {
            let last: usize = view.offset + view.shape.iter().zip(&view.stride).map(|(&n, &s)| (n - 1) * s).sum::<usize>();
            if last >= view.storage.numel {
                return Err(format!("tensor `{name}` reaches element {last} of a storage of {}", view.storage.numel));
            }
            let mut index = vec![0usize; view.shape.len()];
            for _ in 0..numel {
                let element = view.offset + index.iter().zip(&view.stride).map(|(i, s)| i * s).sum::<usize>();
                bytes.extend_from_slice(&data[element * width..(element + 1) * width]);
                for axis in (0..index.len()).rev() {
                    index[axis] += 1;
                    if index[axis] < view.shape[axis] {
                        break;
                    }
                    index[axis] = 0;
                }
            }
        }
        out.push((name, StoredTensor { dtype: view.storage.dtype, shape: view.shape, bytes }));
    }
    Ok(out)
}

// -------------------------------------------------------------------- pickle

#[derive(Clone, Debug)]
struct StorageRef {
    dtype: Dtype,
    key: String,
    numel: usize,
}

#[derive(Clone, Debug)]
struct TensorView {
    storage: StorageRef,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// The values a state-dict pickle builds. `Global` is a callable that REDUCE may apply.
#[derive(Clone, Debug)]
enum Value {
    None,
    Bool(bool),
    Int(i128),
    /// A float or byte string: never part of a tensor, so only its kind is kept.
    Float,
    Str(String),
    Bytes,
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorView),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Str(_) => "string",
            Value::Bytes => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "class or function",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

/// The only globals a state dict needs.
#[derive(Clone, Copy, Debug)]
enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    StorageType(Dtype),
}

fn resolve_global(module: &str, name: &str) -> Parsed<Global> {
    Ok(match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch", storage) => Global::StorageType(match storage {
            "FloatStorage" => Dtype::F32,
            "DoubleStorage" => Dtype::F64,
            "HalfStorage" => Dtype::F16,
            "BFloat16Storage" => Dtype::BF16,
            "LongStorage" => Dtype::I64,
            "IntStorage" => Dtype::I32,
            "ShortStorage" => Dtype::I16,
            "CharStorage" => Dtype::I8,
            "ByteStorage" => Dtype::U8,
            "BoolStorage" => Dtype::BOOL,
            _ => return Err(format!("the pickle asks for `torch.{storage}`, which is not a storage type berth reads")),
        }),
        _ => {
            return Err(format!(
                "the pickle asks for `{module}.{name}`, which a state dict of tensors never needs; berth refuses to build it"
            ));
        }
    })
}

/// A stack machine for the opcodes of pickle protocols 0–5 that state dicts use.
struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    /// Positions in `stack` where each open MARK began.
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8]) -> Self {
        Unpickler { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() }
    }

    fn take(&mut self, n: usize) -> Parsed<&'a [u8]> {
        let slice = self.data.get(self.pos..self.pos + n).ok_or("the pickle ends early: the file is truncated")?;
        self.pos += n;
        Ok(slice)
    }
    fn u8(&mut self) -> Parsed<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Parsed<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Parsed<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Parsed<&'a str> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&c| c == b'\n').ok_or("the pickle ends early: the file is truncated")?;
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| "a pickle text field is not UTF-8".to_string())
    }
    fn text(&mut self, n: usize) -> Parsed<Value> {
        let bytes = self.take(n)?;
        Ok(Value::Str(std::str::from_utf8(bytes).map_err(|_| "a pickle string is not UTF-8".to_string())?.to_owned()))
    }
    fn pop(&mut self) -> Parsed<Value> {
        self.stack.pop().ok_or_else(|| "malformed pickle: pop from an empty stack".into())
    }
    fn pop_mark(&mut self) -> Parsed<Vec<Value>> {
        let mark = self.marks.pop().ok_or("malformed pickle: no MARK")?;
        if mark > self.stack.len() {
            return Err("malformed pickle: MARK above the stack".into());
        }
        Ok(self.stack.split_off(mark))
    }
    fn top(&mut self) -> Parsed<&mut Value> {
        self.stack.last_mut().ok_or_else(|| "malformed pickle: empty stack".into())
    }
    fn memo_get(&mut self, key: u64) -> Parsed<()> {
        let value = self.memo.get(&key).cloned().ok_or_else(|| format!("malformed pickle: memo {key} is not set"))?;
        self.stack.push(value);
        Ok(())
    }
    fn memo_put(&mut self, key: u64) -> Parsed<()> {
        let value = self.stack.last().cloned().ok_or("malformed pickle: memo of an empty stack")?;
        self.memo.insert(key, value);
        Ok(())
    }

    /// Runs to STOP and returns the one value left.
    fn run(&mut self) -> Parsed<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let protocol = self.u8()?;
                    if protocol > 5 {
                        return Err(format!("pickle protocol {protocol} is newer than any berth reads (5)"));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: a length hint only
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i128));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i128));
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v as i128));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    if n > 16 {
                        return Err(format!("a {n}-byte integer is larger than any tensor needs"));
                    }
                    let bytes = self.take(n)?;
                    let mut v: i128 = 0;
                    for (i, &b) in bytes.iter().enumerate() {
                        v |= (b as i128) << (8 * i);
                    }
                    // Two's complement: sign-extend from the top byte.
                    if n > 0 && n < 16 && bytes[n - 1] & 0x80 != 0 {
                        v -= 1i128 << (8 * n);
                    }
                    self.stack.push(Value::Int(v));
                }
                b'G' => {
                    self.take(8)?;
                    self.stack.push(Value::Float);
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.text(n)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.text(n)?;
                    self.stack.push(v);
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.stack.push(Value::Bytes);
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.stack.push(Value::Bytes);
                }
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("malformed pickle: tuple of missing items".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b']' => self.stack.push(Value::List(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items));
                }
                b'a' => {
                    let item = self.pop()?;
                    match self.top()? {
                        Value::List(items) => items.push(item),
                        other => return Err(format!("malformed pickle: APPEND to a {}", other.kind())),
                    }
                }
                b'e' => {
                    let new = self.pop_mark()?;
                    match self.top()? {
                        Value::List(items) => items.extend(new),
                        other => return Err(format!("malformed pickle: APPENDS to a {}", other.kind())),
                    }
                }
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b'd' => {
                    let items = self.pop_mark()?;
                    let dict = pairs(items)?;
                    self.stack.push(Value::Dict(dict));
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    dict_insert(self.top()?, vec![(key, value)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let new = pairs(items)?;
                    dict_insert(self.top()?, new)?;
                }
                b'c' => {
                    let module = self.line()?.to_owned();
                    let name = self.line()?.to_owned();
                    self.stack.push(Value::Global(resolve_global(&module, &name)?));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err("malformed pickle: STACK_GLOBAL of non-strings".into());
                    };
                    self.stack.push(Value::Global(resolve_global(&module, &name)?));
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let result = reduce(callable, args)?;
                    self.stack.push(result);
                }
                b'b' => {
                    // BUILD sets an object's state; an OrderedDict's is its `_metadata`, unused here.
                    let _state = self.pop()?;
                    match self.top()? {
                        Value::Dict(_) => {}
                        other => return Err(format!("the pickle sets the state of a {}, which berth does not build", other.kind())),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = persistent_storage(pid)?;
                    self.stack.push(storage);
                }
                b'q' => {
                    let key = self.u8()? as u64;
                    self.memo_put(key)?;
                }
                b'r' => {
                    let key = self.u32()? as u64;
                    self.memo_put(key)?;
                }
                0x94 => {
                    let key = self.memo.len() as u64;
                    self.memo_put(key)?;
                }
                b'h' => {
                    let key = self.u8()? as u64;
                    self.memo_get(key)?;
                }
                b'j' => {
                    let key = self.u32()? as u64;
                    self.memo_get(key)?;
                }
                b'0' => {
                    self.pop()?;
                }
                other => {
                    return Err(format!("pickle opcode 0x{other:02x} at byte {} is not one a state dict of tensors uses", self.pos - 1));
                }
            }
        }
    }
}

fn pairs(items: Vec<Value>) -> Parsed<Vec<(Value, Value)>> {
    if items.len() % 2 != 0 {
        return Err("malformed pickle: a dict with a key and no value".into());
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn dict_insert(target: &mut Value, new: Vec<(Value, Value)>) -> Parsed<()> {
    match target {
        Value::Dict(items) => {
            items.extend(new);
            Ok(())
        }
        other => Err(format!("malformed pickle: SETITEM on a {}", other.kind())),
    }
}

fn as_usize(value: &Value, what: &str) -> Parsed<usize> {
    match value {
        Value::Int(v) if *v >= 0 && *v <= usize::MAX as i128 => Ok(*v as usize),
        other => Err(format!("{what} is {other:?}, not a non-negative integer")),
    }
}

fn usize_tuple(value: &Value, what: &str) -> Parsed<Vec<usize>> {
    match value {
        Value::Tuple(items) => items.iter().map(|v| as_usize(v, what)).collect(),
        other => Err(format!("{what} is a {}, not a tuple", other.kind())),
    }
}

/// Applies one of the allowed callables.
fn reduce(callable: Value, args: Value) -> Parsed<Value> {
    let Value::Tuple(args) = args else { return Err("malformed pickle: REDUCE arguments are not a tuple".into()) };
    let Value::Global(global) = callable else {
        return Err(format!("malformed pickle: REDUCE calls a {}", callable.kind()));
    };
    match global {
        Global::OrderedDict if args.is_empty() => Ok(Value::Dict(Vec::new())),
        Global::RebuildTensor => {
            // (storage, storage_offset, size, stride, …): the rest (requires_grad, hooks, metadata) is not needed.
            let [Value::Storage(storage), offset, size, stride, ..] = args.as_slice() else {
                return Err("_rebuild_tensor without (storage, offset, size, stride)".into());
            };
            let shape = usize_tuple(size, "a tensor's size")?;
            let stride = usize_tuple(stride, "a tensor's stride")?;
            if shape.len() != stride.len() {
                return Err(format!("a tensor of size {shape:?} has stride {stride:?}"));
            }
            Ok(Value::Tensor(TensorView { storage: storage.clone(), offset: as_usize(offset, "a storage offset")?, shape, stride }))
        }
        Global::RebuildParameter => match args.into_iter().next() {
            Some(tensor @ Value::Tensor(_)) => Ok(tensor),
            _ => Err("_rebuild_parameter without a tensor".into()),
        },
        other => Err(format!("the pickle calls {other:?} with {} arguments, which a state dict never does", args.len())),
    }
}

/// `('storage', <storage type>, key, location, numel[, view metadata])`.
fn persistent_storage(pid: Value) -> Parsed<Value> {
    let Value::Tuple(fields) = pid else { return Err(format!("a persistent id is a {}, not a tuple", pid.kind())) };
    match fields.as_slice() {
        [Value::Str(tag), Value::Global(Global::StorageType(dtype)), Value::Str(key), _location, numel, rest @ ..] if tag == "storage" => {
            if rest.iter().any(|v| !matches!(v, Value::None)) {
                return Err(format!("storage `{key}` is a view of another storage, which berth does not read"));
            }
            Ok(Value::Storage(StorageRef { dtype: *dtype, key: key.clone(), numel: as_usize(numel, "a storage's size")? }))
        }
        _ => Err("a persistent id is not a torch storage reference".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pickle bytes for `{name: tensor}` as torch's zip format writes them (protocol 2).
    fn state_dict_pickle(global: &str) -> Vec<u8> {
        let mut p = vec![0x80, 2];
        p.extend_from_slice(b"ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00w");
        p.extend_from_slice(global.as_bytes());
        p.extend_from_slice(b"((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x00K\x02K\x02\x86K\x01K\x02\x86\x89)tRu.");
        p
    }

    #[test]
    fn a_transposed_view_is_read_in_logical_order() {
        let state = Unpickler::new(&state_dict_pickle("ctorch._utils\n_rebuild_tensor_v2\n")).run().unwrap();
        let storage: Vec<u8> = [1f32, 2., 3., 4.].iter().flat_map(|v| v.to_le_bytes()).collect();
        let tensors = materialise(state, |key| {
            assert_eq!(key, "0");
            Ok(&storage[..])
        })
        .unwrap();
        let (name, t) = &tensors[0];
        assert_eq!(name, "w");
        assert_eq!(t.shape, vec![2, 2]);
        // Stride (1, 2): element [0][1] is storage element 2.
        let values: Vec<f32> = t.bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(values, vec![1., 3., 2., 4.]);
    }

    #[test]
    fn a_global_outside_the_state_dict_set_is_refused() {
        let err = Unpickler::new(&state_dict_pickle("cos\nsystem\n")).run().unwrap_err();
        assert!(err.contains("`os.system`") && err.contains("refuses"), "{err}");
    }

    #[test]
    fn a_view_past_its_storage_is_refused() {
        let state = Unpickler::new(&state_dict_pickle("ctorch._utils\n_rebuild_tensor_v2\n")).run().unwrap();
        let short: Vec<u8> = [1f32, 2., 3.].iter().flat_map(|v| v.to_le_bytes()).collect();
        let err = materialise(state, |_| Ok(&short[..])).unwrap_err();
        assert!(err.contains("storage holds 12 bytes, 16 expected"), "{err}");
    }

    #[test]
    fn truncation_and_unknown_opcodes_are_errors() {
        let full = state_dict_pickle("ctorch._utils\n_rebuild_tensor_v2\n");
        let err = Unpickler::new(&full[..full.len() - 5]).run().unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        let err = Unpickler::new(b"\x80\x02i__builtin__\nlist\n.").run().unwrap_err();
        assert!(err.contains("opcode 0x69"), "{err}");
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
