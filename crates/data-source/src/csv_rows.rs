//! CSV records to rows of numbers: the hot path of `pynomaly detect`.
//!
//! A general CSV parser (the `csv` crate's `csv-core`) spends more time finding field
//! boundaries than `fast-float2` spends converting the digits; here the number parser itself
//! finds them. The decompressed stream is cut into blocks of whole lines
//! ([`BlockReader`]); a record is parsed in place: blanks, a number
//! (`fast_float2::parse_partial`, correctly rounded like Python's `float`), blanks, then the
//! delimiter or the end of the line. Values go straight into the flat feature vector; no
//! field is copied and nothing is allocated per record. Long texts that repeat are looked
//! up instead of converted again ([`FieldCache`]): on `http.csv.gz` that cuts parsing CPU
//! by a quarter; a column whose values do not repeat turns the lookup off by itself.
//!
//! Anything that path does not recognise (a quoted field, a stray character, the wrong
//! number of fields) sends the line to [`parse_line_general`], a small CSV field splitter
//! that either accepts the line (quotes are allowed: `"1.5"`) or produces the precise error.
//! One consequence of working line by line: a quoted value cannot span lines. A value with
//! a newline in it is never a number, so such input was an error anyway; it is reported on
//! the line where the value starts.
//!
//! [`CsvRows::read_all`] overlaps the work: a scoped thread reads and decompresses blocks
//! while the caller parses them, several at a time on the rayon pool, and appends them in
//! order. Memory in flight is a few blocks of [`BLOCK_SIZE`], whose buffers are recycled.
//!
//! Measured with `examples/read_timing` on two cores, `http.csv.gz` (3.2 MB gzip, 33 MB of
//! text, 567,498 rows) takes about 105 ms of CPU and 70 ms wall; the `csv` crate's
//! `ByteRecord` on one thread takes 300 ms.

use std::io::{self, Read};
use std::sync::mpsc;

use rayon::prelude::*;

use crate::layout::{Layout, resolve_label};
use crate::{DataError, Header, LabelColumn, Labels};

/// Size of the blocks the stream is cut into (each rounded down to whole lines).
const BLOCK_SIZE: usize = 256 * 1024;

/// Lines of the decompressed input, in blocks of whole lines.
struct Block {
    /// The bytes are `buf[..len]`; the buffer is kept whole (and zeroed only once) so it
    /// can be refilled without touching fresh pages.
    buf: Vec<u8>,
    len: usize,
    /// 1-based number of the block's first line.
    first_line: u64,
}

impl Block {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Cuts a stream into [`Block`]s that end at a line break (or at the end of the input).
struct BlockReader<'a> {
    source: Box<dyn Read + Send + 'a>,
    /// The incomplete last line of the previous block.
    carry: Vec<u8>,
    next_line: u64,
    eof: bool,
}

impl BlockReader<'_> {
    fn is_done(&self) -> bool {
        self.eof && self.carry.is_empty()
    }

    /// The next block, read into `buf` (a used block's buffer, or a new one).
    fn next_block(&mut self, mut buf: Vec<u8>) -> Result<Option<Block>, DataError> {
        if self.is_done() {
            return Ok(None);
        }
        let size = BLOCK_SIZE.max(2 * self.carry.len());
        if buf.len() < size {
            buf.resize(size, 0);
        }
        buf[..self.carry.len()].copy_from_slice(&self.carry);
        let mut filled = self.carry.len();
        self.carry.clear();
        let len = loop {
            filled = self.fill(&mut buf, filled)?;
            if let Some(last) = buf[..filled].iter().rposition(|&b| b == b'\n') {
                self.carry.extend_from_slice(&buf[last + 1..filled]);
                break last + 1;
            }
            if self.eof {
                break filled;
            }
            // One line longer than the buffer: make room and read on.
            let bigger = 2 * buf.len();
            buf.resize(bigger, 0);
        };
        if len == 0 {
            return Ok(None);
        }
        let first_line = self.next_line;
        self.next_line += count_newlines(&buf[..len]);
        Ok(Some(Block {
            buf,
            len,
            first_line,
        }))
    }

    /// Reads into `buf[filled..]` until it is full or the input ends; returns the new
    /// filled length.
    fn fill(&mut self, buf: &mut [u8], mut filled: usize) -> Result<usize, DataError> {
        while filled < buf.len() && !self.eof {
            match self.source.read(&mut buf[filled..]) {
                Ok(0) => self.eof = true,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(DataError::Read {
                        line: self.next_line + count_newlines(&buf[..filled]),
                        source,
                    });
                }
            }
        }
        Ok(filled)
    }
}

/// Counts line breaks, 128 bytes at a time into a byte-wide counter so the compiler
/// vectorises it without widening every lane (a plain `filter().count()` is 10× slower).
fn count_newlines(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(128);
    let mut total = 0u64;
    for chunk in &mut chunks {
        let mut n = 0u8;
        for &b in chunk {
            n += u8::from(b == b'\n');
        }
        total += u64::from(n);
    }
    total + chunks.remainder().iter().filter(|&&b| b == b'\n').count() as u64
}

/// What a record parser needs to know.
#[derive(Clone, Copy)]
struct Shape {
    n_fields: usize,
    /// `usize::MAX` when there is no label column.
    label: usize,
    delimiter: u8,
}

pub(crate) struct CsvRows<'a> {
    blocks: BlockReader<'a>,
    block: Block,
    /// Next unparsed byte of `block`, always at the start of a line.
    pos: usize,
    /// Line number at `pos`.
    line: u64,
    shape: Shape,
    cache: FieldCache,
}

impl<'a> CsvRows<'a> {
    /// Reads the first record (and after a header the start of the next one), so the
    /// width, the names and the label column are known and an empty input is reported at
    /// once.
    pub(crate) fn start(
        stream: Box<dyn Read + Send + 'a>,
        delimiter: u8,
        header: Header,
        label: &LabelColumn,
    ) -> Result<(Self, Layout), DataError> {
        let mut blocks = BlockReader {
            source: stream,
            carry: Vec::new(),
            next_line: 1,
            eof: false,
        };
        let Some(block) = blocks.next_block(Vec::new())? else {
            return Err(DataError::Empty);
        };
        let bom = if block.bytes().starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        let mut rows = CsvRows {
            pos: bom,
            line: block.first_line,
            blocks,
            block,
            shape: Shape {
                n_fields: 0,
                label: usize::MAX,
                delimiter,
            },
            cache: FieldCache::new(Shape {
                n_fields: 0,
                label: usize::MAX,
                delimiter,
            }),
        };
        if !rows.skip_blank_lines()? {
            return Err(DataError::Empty);
        }
        let first_line = rows.line;
        let (content, next) = line_at(rows.block.bytes(), rows.pos);
        let fields = split_fields(content, delimiter).map_err(|message| DataError::Csv {
            line: first_line,
            message,
        })?;
        let is_header = match header {
            Header::Present => true,
            Header::Absent => false,
            Header::Detect => fields.iter().any(|f| {
                let f = f.trim_ascii();
                !f.is_empty() && fast_float2::parse::<f64, _>(f).is_err()
            }),
        };
        let names: Option<Vec<String>> = is_header.then(|| {
            fields
                .iter()
                .map(|f| String::from_utf8_lossy(f).trim().to_string())
                .collect()
        });
        let label_index = resolve_label(names.as_deref(), label)?;
        let layout = Layout::new(fields.len(), label_index, names)?;
        rows.shape.n_fields = layout.n_fields;
        rows.shape.label = label_index.unwrap_or(usize::MAX);
        rows.cache = FieldCache::new(rows.shape);
        if is_header {
            rows.pos = next;
            rows.line += 1;
            if !rows.skip_blank_lines()? {
                return Err(DataError::Empty);
            }
        }
        Ok((rows, layout))
    }

    /// Moves to the next line that is not blank, fetching blocks as needed; `false` at the
    /// end of the input.
    fn skip_blank_lines(&mut self) -> Result<bool, DataError> {
        loop {
            let bytes = self.block.bytes();
            while self.pos < bytes.len() {
                match blank_line_end(bytes, self.pos) {
                    Some(next) => {
                        self.pos = next;
                        self.line += 1;
                    }
                    None => return Ok(true),
                }
            }
            if !self.next_block()? {
                return Ok(false);
            }
        }
    }

    fn next_block(&mut self) -> Result<bool, DataError> {
        let buf = std::mem::take(&mut self.block.buf);
        match self.blocks.next_block(buf)? {
            Some(block) => {
                self.line = block.first_line;
                self.block = block;
                self.pos = 0;
                Ok(true)
            }
            None => {
                // The buffer went to the reader; leave an empty block behind.
                self.block.len = 0;
                self.pos = 0;
                Ok(false)
            }
        }
    }

    /// Appends up to `max_rows` rows; returns how many. On an error nothing of the bad
    /// record is kept, and the next call continues after it.
    pub(crate) fn read(
        &mut self,
        layout: &Layout,
        max_rows: usize,
        features: &mut Vec<f64>,
        labels: &mut Labels,
    ) -> Result<usize, DataError> {
        let mut n = 0;
        loop {
            n += parse_lines(
                self.block.bytes(),
                &mut self.pos,
                &mut self.line,
                max_rows - n,
                self.shape,
                &mut self.cache,
                layout,
                features,
                labels,
            )?;
            if n == max_rows || !self.next_block()? {
                return Ok(n);
            }
        }
    }

    /// Appends every remaining row, decompressing on a scoped thread while the rayon pool
    /// parses; returns how many rows.
    pub(crate) fn read_all(
        &mut self,
        layout: &Layout,
        features: &mut Vec<f64>,
        labels: &mut Labels,
    ) -> Result<usize, DataError> {
        // The rest of the current block here, then the remaining blocks in the pipeline.
        let mut n = parse_lines(
            self.block.bytes(),
            &mut self.pos,
            &mut self.line,
            usize::MAX,
            self.shape,
            &mut self.cache,
            layout,
            features,
            labels,
        )?;
        if self.blocks.is_done() {
            return Ok(n);
        }
        let shape = self.shape;
        let blocks = &mut self.blocks;
        let batch_max = 2 * rayon::current_num_threads();
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<Result<Block, DataError>>(batch_max);
            // Parsed blocks' buffers go back to the reader, so a few buffers serve the
            // whole input and no fresh pages are touched after the first blocks.
            let (recycle, recycled) = mpsc::channel::<Vec<u8>>();
            scope.spawn(move || {
                loop {
                    let buf = recycled.try_recv().unwrap_or_default();
                    let next = blocks.next_block(buf).transpose();
                    let stop = !matches!(next, Some(Ok(_)));
                    // A send fails when the parser stopped at an error: stop too.
                    if let Some(item) = next
                        && tx.send(item).is_err()
                    {
                        break;
                    }
                    if stop {
                        break;
                    }
                }
            });
            let mut parsed: Vec<Parsed> = Vec::new();
            while let Ok(first) = rx.recv() {
                let mut batch = Vec::with_capacity(batch_max);
                let mut failure = None;
                let mut next = Some(first);
                while let Some(item) = next.take() {
                    match item {
                        Ok(block) => batch.push(block),
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                    if batch.len() < batch_max {
                        next = rx.try_recv().ok();
                    }
                }
                if parsed.len() < batch.len() {
                    parsed.resize_with(batch.len(), Parsed::default);
                }
                let results: Vec<Result<(), DataError>> = batch
                    .par_iter()
                    .zip(parsed.par_iter_mut())
                    .map(|(block, out)| out.parse(block, shape, layout))
                    .collect();
                for (result, out) in results.into_iter().zip(&parsed) {
                    result?;
                    features.extend_from_slice(&out.features);
                    labels.extend_from(&out.labels);
                    n += out.rows;
                }
                if let Some(e) = failure {
                    return Err(e);
                }
                for block in batch {
                    // The reader may have finished already; then the buffer is dropped.
                    let _ = recycle.send(block.buf);
                }
            }
            Ok(n)
        })
    }
}

/// The rows of one block, in buffers reused from block to block.
#[derive(Default)]
struct Parsed {
    features: Vec<f64>,
    labels: Labels,
    rows: usize,
    /// Kept with the buffers, so it stays warm from block to block.
    cache: Option<FieldCache>,
}

impl Parsed {
    fn parse(&mut self, block: &Block, shape: Shape, layout: &Layout) -> Result<(), DataError> {
        self.features.clear();
        self.labels.clear();
        let cache = self.cache.get_or_insert_with(|| FieldCache::new(shape));
        let (mut pos, mut line) = (0, block.first_line);
        self.rows = parse_lines(
            block.bytes(),
            &mut pos,
            &mut line,
            usize::MAX,
            shape,
            cache,
            layout,
            &mut self.features,
            &mut self.labels,
        )?;
        Ok(())
    }
}

/// Parses whole lines of `bytes` from `*pos` until `max_rows` rows or the end of `bytes`,
/// skipping blank lines; returns how many rows were appended. `*pos` and `*line` move past
/// every line consumed, the bad one included when there is an error.
#[allow(clippy::too_many_arguments)]
fn parse_lines(
    bytes: &[u8],
    pos: &mut usize,
    line: &mut u64,
    max_rows: usize,
    shape: Shape,
    cache: &mut FieldCache,
    layout: &Layout,
    features: &mut Vec<f64>,
    labels: &mut Labels,
) -> Result<usize, DataError> {
    let mut n = 0;
    while n < max_rows && *pos < bytes.len() {
        if let Some(next) = blank_line_end(bytes, *pos) {
            *pos = next;
            *line += 1;
            continue;
        }
        let (nf, nl) = (features.len(), labels.len());
        let parsed = match parse_record_fast(bytes, *pos, shape, cache, features, labels) {
            Some(next) => Ok(next),
            None => {
                features.truncate(nf);
                labels.truncate(nl);
                let (content, next) = line_at(bytes, *pos);
                parse_line_general(content, *line, shape, layout, features, labels).map(|()| next)
            }
        };
        match parsed {
            Ok(next) => {
                *pos = next;
                *line += 1;
                n += 1;
            }
            Err(e) => {
                features.truncate(nf);
                labels.truncate(nl);
                *pos = line_at(bytes, *pos).1;
                *line += 1;
                return Err(e);
            }
        }
    }
    Ok(n)
}

/// If the line at `pos` holds only blanks, the position after it.
#[inline]
fn blank_line_end(bytes: &[u8], pos: usize) -> Option<usize> {
    let mut p = pos;
    while p < bytes.len() && matches!(bytes[p], b' ' | b'\t' | b'\r') {
        p += 1;
    }
    if p == bytes.len() {
        Some(p)
    } else if bytes[p] == b'\n' {
        Some(p + 1)
    } else {
        None
    }
}

/// The line at `pos` without its line break, and the position after the break.
fn line_at(bytes: &[u8], pos: usize) -> (&[u8], usize) {
    let rest = &bytes[pos..];
    let (content, next) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], pos + i + 1),
        None => (rest, bytes.len()),
    };
    (content.strip_suffix(b"\r").unwrap_or(content), next)
}

/// The record at `pos`, parsed in place when it is plain: unquoted numbers, blanks around
/// them, exactly `n_fields` fields. Returns the position after the line, or `None` when
/// the line needs [`parse_line_general`] (which may still accept it). Whatever it appended
/// before giving up is for the caller to truncate.
#[inline]
fn parse_record_fast(
    bytes: &[u8],
    pos: usize,
    shape: Shape,
    cache: &mut FieldCache,
    features: &mut Vec<f64>,
    labels: &mut Labels,
) -> Option<usize> {
    let is_blank = |b: u8| b == b' ' || (b == b'\t' && shape.delimiter != b'\t');
    let (ends_field, columns) = (&cache.ends_field, &mut cache.columns);
    let mut p = pos;
    for column in 0..shape.n_fields {
        while p < bytes.len() && is_blank(bytes[p]) {
            p += 1;
        }
        let value = match columns.get_mut(column).filter(|c| c.enabled) {
            Some(memo) => {
                let start = p;
                p = if shape.delimiter < NUMBER_MIN {
                    number_end(bytes, p)
                } else {
                    text_end(bytes, p, ends_field)
                };
                memo.value(&bytes[start..p])?
            }
            None => {
                let (value, len) = fast_float2::parse_partial::<f64, _>(&bytes[p..]).ok()?;
                if !value.is_finite() {
                    return None;
                }
                p += len;
                value
            }
        };
        while p < bytes.len() && is_blank(bytes[p]) {
            p += 1;
        }
        if column + 1 < shape.n_fields {
            if bytes.get(p) != Some(&shape.delimiter) {
                return None;
            }
            p += 1;
        }
        if column == shape.label {
            labels.push(value);
        } else {
            features.push(value);
        }
    }
    if bytes.get(p) == Some(&b'\r') {
        p += 1;
    }
    match bytes.get(p) {
        None => Some(p),
        Some(b'\n') => Some(p + 1),
        Some(_) => None,
    }
}

/// Every byte a number is written with except `+` is at least `-` (0x2D); the usual
/// delimiters (`,` and tab), blanks and line breaks are below it.
const NUMBER_MIN: u8 = b'-';

/// Where the text of a number starting at `p` ends: at the first byte below `-` other
/// than `+`, found eight bytes at a time. Letters and other bytes do not stop it; they
/// make the text fail to parse, which sends the line to the general parser.
#[inline]
fn number_end(bytes: &[u8], mut p: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(w) = bytes.get(p..).and_then(|rest| rest.first_chunk::<8>()) {
        let x = u64::from_le_bytes(*w);
        // The classic "has a byte less than n" test; its lowest flag is exact.
        let below = x.wrapping_sub(ONES * u64::from(NUMBER_MIN)) & !x & HIGH;
        if below == 0 {
            p += 8;
            continue;
        }
        let q = p + (below.trailing_zeros() / 8) as usize;
        if bytes[q] != b'+' {
            return q;
        }
        p = q + 1;
    }
    while p < bytes.len() && (bytes[p] >= NUMBER_MIN || bytes[p] == b'+') {
        p += 1;
    }
    p
}

/// Where a field's text starting at `p` ends, one byte at a time (any delimiter).
#[inline]
fn text_end(bytes: &[u8], mut p: usize, ends_field: &[bool; 256]) -> usize {
    while p < bytes.len() && !ends_field[usize::from(bytes[p])] {
        p += 1;
    }
    p
}

/// Columns whose values are remembered (wider inputs are small in practice, and their
/// tables would not stay in cache).
const MEMO_COLUMNS: usize = 16;
/// Slots per column, `1 << MEMO_BITS`: a direct-mapped table.
const MEMO_BITS: u32 = 11;
const MEMO_SLOTS: usize = 1 << MEMO_BITS;
/// Shorter texts parse about as fast as they are looked up.
const MEMO_MIN_LEN: usize = 8;
const MEMO_MAX_LEN: usize = 24;
/// After this many lookups a column whose hit rate is under one half stops looking up.
const MEMO_TRIAL: u32 = 1024;

/// The values of recently seen field texts, per column.
///
/// Real tables repeat values a lot (counts, codes, log-transformed counts: `http.csv.gz`
/// has 458 distinct texts of 17–19 digits in its first column among 567,498 rows), and
/// converting a long decimal costs several times a table lookup. A column that does not
/// repeat turns itself off after a trial, so distinct-valued data pays almost nothing.
/// Only exact byte matches hit, so results are identical with or without it.
struct FieldCache {
    /// Bytes that end a field's text: the delimiter, blanks and line breaks.
    ends_field: [bool; 256],
    columns: Vec<ColumnMemo>,
}

impl FieldCache {
    fn new(shape: Shape) -> Self {
        let mut ends_field = [false; 256];
        for b in [shape.delimiter, b' ', b'\t', b'\r', b'\n'] {
            ends_field[usize::from(b)] = true;
        }
        let columns = (0..shape.n_fields.min(MEMO_COLUMNS))
            .map(|_| ColumnMemo {
                slots: vec![MemoSlot::default(); MEMO_SLOTS],
                lookups: 0,
                hits: 0,
                enabled: true,
            })
            .collect();
        Self {
            ends_field,
            columns,
        }
    }
}

#[derive(Clone, Copy, Default)]
struct MemoSlot {
    /// The text's first, middle and last eight bytes.
    key: [u64; 3],
    /// 0 for an empty slot.
    len: usize,
    value: f64,
}

struct ColumnMemo {
    slots: Vec<MemoSlot>,
    lookups: u32,
    hits: u32,
    enabled: bool,
}

impl ColumnMemo {
    /// The finite number `text` is, or `None` when it is not one.
    #[inline]
    fn value(&mut self, text: &[u8]) -> Option<f64> {
        let len = text.len();
        if !(MEMO_MIN_LEN..=MEMO_MAX_LEN).contains(&len) {
            return parse_finite(text);
        }
        // Three overlapping 8-byte windows (start, middle, end) cover up to 24 bytes;
        // with the length they identify the text exactly.
        let key = [
            word(text, 0),
            word(text, (len - 8) / 2),
            word(text, len - 8),
        ];
        let hash = (key[0] ^ key[1].rotate_left(21) ^ key[2].rotate_left(42) ^ len as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let slot = &mut self.slots[(hash >> (64 - MEMO_BITS)) as usize];
        self.lookups = self.lookups.saturating_add(1);
        if self.lookups == MEMO_TRIAL && 2 * self.hits < MEMO_TRIAL {
            self.enabled = false;
        }
        if slot.len == len && slot.key == key {
            self.hits = self.hits.saturating_add(1);
            return Some(slot.value);
        }
        let value = parse_finite(text)?;
        *slot = MemoSlot { key, len, value };
        Some(value)
    }
}

/// The 8 bytes of `text` from `at` as a word (`at + 8 <= text.len()` where it is used).
#[inline]
fn word(text: &[u8], at: usize) -> u64 {
    text.get(at..)
        .and_then(|rest| rest.first_chunk::<8>())
        .map_or(0, |w| u64::from_le_bytes(*w))
}

#[inline]
fn parse_finite(text: &[u8]) -> Option<f64> {
    fast_float2::parse::<f64, _>(text)
        .ok()
        .filter(|v| v.is_finite())
}

/// Any record, with quotes, or the precise error: the field count is checked first, then
/// each field from the left.
#[cold]
#[inline(never)]
fn parse_line_general(
    content: &[u8],
    line: u64,
    shape: Shape,
    layout: &Layout,
    features: &mut Vec<f64>,
    labels: &mut Labels,
) -> Result<(), DataError> {
    let fields = split_fields(content, shape.delimiter)
        .map_err(|message| DataError::Csv { line, message })?;
    if fields.len() != shape.n_fields {
        return Err(DataError::Ragged {
            line,
            found: fields.len(),
            expected: shape.n_fields,
        });
    }
    for (column, field) in fields.iter().enumerate() {
        let text = field.trim_ascii();
        let value = match fast_float2::parse::<f64, _>(text) {
            Ok(v) if v.is_finite() => v,
            Ok(_) => {
                return Err(DataError::NonFinite {
                    line,
                    column: column + 1,
                    name: layout.name(column),
                    value: String::from_utf8_lossy(text).into_owned(),
                });
            }
            Err(_) => {
                let value = if text.is_empty() {
                    "an empty value".to_string()
                } else {
                    format!("\"{}\"", String::from_utf8_lossy(text))
                };
                return Err(DataError::NotANumber {
                    line,
                    column: column + 1,
                    name: layout.name(column),
                    value,
                });
            }
        };
        if column == shape.label {
            labels.push(value);
        } else {
            features.push(value);
        }
    }
    Ok(())
}

/// Splits one line into fields. A field may be quoted (`"a,b"`, with `""` for a quote);
/// blanks around a quoted field are ignored. The error is a message for
/// [`DataError::Csv`].
fn split_fields(content: &[u8], delimiter: u8) -> Result<Vec<Vec<u8>>, String> {
    let mut fields = Vec::new();
    let mut p = 0;
    loop {
        let start = p;
        while p < content.len() && matches!(content[p], b' ' | b'\t') && content[p] != delimiter {
            p += 1;
        }
        if content.get(p) == Some(&b'"') {
            let mut value = Vec::new();
            p += 1;
            loop {
                match content.get(p) {
                    None => {
                        return Err(format!(
                            "field {} opens a quote that is not closed on this line",
                            fields.len() + 1
                        ));
                    }
                    Some(b'"') if content.get(p + 1) == Some(&b'"') => {
                        value.push(b'"');
                        p += 2;
                    }
                    Some(b'"') => {
                        p += 1;
                        break;
                    }
                    Some(&b) => {
                        value.push(b);
                        p += 1;
                    }
                }
            }
            while p < content.len() && matches!(content[p], b' ' | b'\t') && content[p] != delimiter
            {
                p += 1;
            }
            if p < content.len() && content[p] != delimiter {
                return Err(format!(
                    "unexpected text after the closing quote of field {}",
                    fields.len() + 1
                ));
            }
            fields.push(value);
        } else {
            p = start;
            while p < content.len() && content[p] != delimiter {
                p += 1;
            }
            fields.push(content[start..p].to_vec());
        }
        if p >= content.len() {
            return Ok(fields);
        }
        p += 1; // the delimiter
    }
}
