//! JSON Lines records to rows of numbers.
//!
//! Every non-blank line is one record: either an array of numbers (`[1.5, 2, 0]`, the
//! first line may instead be an array of strings naming the columns) or an object of
//! name → number (`{"f0": 1.5, "f1": 2, "label": 0}`), whose first line fixes the column
//! names and order; later objects may list their keys in any order but must have the same
//! ones. Values are read by serde visitors straight into a reused row buffer, so a line
//! costs no allocation unless it is wrong.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::layout::{Layout, resolve_label};
use crate::{DataError, Header, LabelColumn, Labels};

const JSON_BUFFER: usize = 1024 * 1024;

pub(crate) struct JsonRows<'a> {
    reader: BufReader<Box<dyn Read + Send + 'a>>,
    line: Vec<u8>,
    line_no: u64,
    /// Column index by name, for object lines.
    index: Option<ColumnIndex>,
    row: Vec<f64>,
    seen: Vec<bool>,
    /// The first data row, already parsed, with its line number.
    pending: Option<(u64, Vec<f64>)>,
}

impl<'a> JsonRows<'a> {
    pub(crate) fn start(
        stream: Box<dyn Read + Send + 'a>,
        header: Header,
        label: &LabelColumn,
    ) -> Result<(Self, Layout), DataError> {
        let mut rows = JsonRows {
            reader: BufReader::with_capacity(JSON_BUFFER, stream),
            line: Vec::new(),
            line_no: 0,
            index: None,
            row: Vec::new(),
            seen: Vec::new(),
            pending: None,
        };
        if !rows.next_line()? {
            return Err(DataError::Empty);
        }
        let line_no = rows.line_no;
        let first: FirstLine =
            serde_json::from_slice(&rows.line).map_err(|e| json_error(&e, line_no))?;
        let (names, values) = match first {
            FirstLine::Object(pairs) => {
                let mut names = Vec::with_capacity(pairs.len());
                let mut index = HashMap::with_capacity(pairs.len());
                let mut cells = Vec::with_capacity(pairs.len());
                for (name, cell) in pairs {
                    if index.insert(name.clone(), names.len()).is_some() {
                        return Err(DataError::UnexpectedColumn {
                            line: line_no,
                            expected: quoted_list(&names),
                            name,
                        });
                    }
                    names.push(name);
                    cells.push(cell);
                }
                rows.index = Some(ColumnIndex::new(index));
                (Some(names), Some(cells))
            }
            FirstLine::Array(cells) => {
                let all_strings = cells.iter().all(|c| matches!(c, Cell::Str(_)));
                let is_header = match header {
                    Header::Present => true,
                    Header::Absent => false,
                    Header::Detect => all_strings && !cells.is_empty(),
                };
                if is_header {
                    let names = cells.into_iter().map(Cell::into_name).collect();
                    (Some(names), None)
                } else {
                    (None, Some(cells))
                }
            }
        };
        let n_fields = match (&names, &values) {
            (Some(n), _) => n.len(),
            (None, Some(v)) => v.len(),
            (None, None) => 0,
        };
        let label_index = resolve_label(names.as_deref(), label)?;
        let layout = Layout::new(n_fields, label_index, names)?;
        match values {
            Some(cells) => {
                let mut row = Vec::with_capacity(cells.len());
                for (column, cell) in cells.into_iter().enumerate() {
                    match cell {
                        Cell::Num(v) => row.push(v),
                        other => {
                            return Err(DataError::NotANumber {
                                line: line_no,
                                column: column + 1,
                                name: layout.name(column),
                                value: other.describe(),
                            });
                        }
                    }
                }
                rows.pending = Some((line_no, row));
            }
            None => {
                // A header line: make sure a data row follows.
                if !rows.next_line()? {
                    return Err(DataError::Empty);
                }
                rows.parse_line(&layout)?;
                rows.pending = Some((rows.line_no, rows.row.clone()));
            }
        }
        Ok((rows, layout))
    }

    /// Appends up to `max_rows` rows; returns how many.
    pub(crate) fn read(
        &mut self,
        layout: &Layout,
        max_rows: usize,
        features: &mut Vec<f64>,
        labels: &mut Labels,
    ) -> Result<usize, DataError> {
        let mut n = 0;
        if max_rows > 0
            && let Some((line, row)) = self.pending.take()
        {
            check_width(&row, layout, line)?;
            push_row(&row, layout, features, labels);
            n += 1;
        }
        while n < max_rows && self.next_line()? {
            self.parse_line(layout)?;
            push_row(&self.row, layout, features, labels);
            n += 1;
        }
        Ok(n)
    }

    /// Parses the current line into `self.row` (all fields, in column order).
    fn parse_line(&mut self, layout: &Layout) -> Result<(), DataError> {
        let line = self.line_no;
        let mut bad: Option<Bad> = None;
        let row = &mut self.row;
        let mut de = serde_json::Deserializer::from_slice(&self.line);
        let parsed = match &self.index {
            Some(index) => {
                row.clear();
                row.resize(layout.n_fields, f64::NAN);
                self.seen.clear();
                self.seen.resize(layout.n_fields, false);
                ObjectRow {
                    index,
                    row: row.as_mut_slice(),
                    seen: &mut self.seen,
                    bad: &mut bad,
                }
                .deserialize(&mut de)
            }
            None => {
                row.clear();
                ArrayRow { row, bad: &mut bad }.deserialize(&mut de)
            }
        };
        parsed
            .and_then(|()| de.end())
            .map_err(|e| json_error(&e, line))?;
        if let Some(bad) = bad {
            return Err(match bad {
                Bad::Value { column, value } => DataError::NotANumber {
                    line,
                    column: column + 1,
                    name: layout.name(column),
                    value,
                },
                Bad::Unexpected(name) => DataError::UnexpectedColumn {
                    line,
                    name,
                    expected: layout.names.as_deref().map(quoted_list).unwrap_or_default(),
                },
            });
        }
        // Object lines only: array lines leave `seen` empty.
        if let Some(missing) = self.seen.iter().position(|s| !s) {
            return Err(DataError::MissingColumn {
                line,
                name: layout.name(missing).unwrap_or_default(),
            });
        }
        check_width(&self.row, layout, line)
    }

    /// Reads the next non-blank line into `self.line`; `false` at the end of the input.
    fn next_line(&mut self) -> Result<bool, DataError> {
        loop {
            self.line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|source| DataError::Read {
                    line: self.line_no + 1,
                    source,
                })?;
            if n == 0 {
                return Ok(false);
            }
            self.line_no += 1;
            if self.line_no == 1 && self.line.starts_with(b"\xEF\xBB\xBF") {
                self.line.drain(..3);
            }
            if !self.line.trim_ascii().is_empty() {
                return Ok(true);
            }
        }
    }
}

fn check_width(row: &[f64], layout: &Layout, line: u64) -> Result<(), DataError> {
    if row.len() == layout.n_fields {
        Ok(())
    } else {
        Err(DataError::Ragged {
            line,
            found: row.len(),
            expected: layout.n_fields,
        })
    }
}

fn push_row(row: &[f64], layout: &Layout, features: &mut Vec<f64>, labels: &mut Labels) {
    match layout.label_index {
        None => features.extend_from_slice(row),
        Some(label) => {
            features.extend_from_slice(&row[..label]);
            features.extend_from_slice(&row[label + 1..]);
            labels.push(row[label]);
        }
    }
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cold]
fn json_error(e: &serde_json::Error, line: u64) -> DataError {
    // serde_json appends "at line 1 column N" (within this one line): say "character N".
    let text = e.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) => format!(
            "invalid JSON: {} (at character {})",
            &text[..at],
            e.column()
        ),
        None => format!("invalid JSON: {text}"),
    };
    DataError::Json { line, message }
}

/// Column positions by name: a linear scan for the usual handful of columns (faster than
/// hashing), a hash map for wide objects.
struct ColumnIndex {
    names: Vec<String>,
    map: Option<HashMap<String, usize>>,
}

impl ColumnIndex {
    fn new(map: HashMap<String, usize>) -> Self {
        let mut names = vec![String::new(); map.len()];
        for (name, &i) in &map {
            names[i].clone_from(name);
        }
        let map = (names.len() > 16).then_some(map);
        Self { names, map }
    }

    fn get(&self, name: &str) -> Option<usize> {
        match &self.map {
            Some(map) => map.get(name).copied(),
            None => self.names.iter().position(|n| n == name),
        }
    }

    fn name(&self, column: usize) -> &str {
        &self.names[column]
    }
}

/// What went wrong inside a line, kept aside while serde finishes the line.
enum Bad {
    Value { column: usize, value: String },
    Unexpected(String),
}

/// One JSON value where a number is expected.
enum Cell {
    Num(f64),
    Str(String),
    Other(&'static str),
}

impl Cell {
    /// The value as it appeared, for an error message.
    fn describe(&self) -> String {
        match self {
            Cell::Num(v) => v.to_string(),
            Cell::Str(s) => serde_json::to_string(s).unwrap_or_else(|_| s.clone()),
            Cell::Other(what) => (*what).to_string(),
        }
    }

    fn into_name(self) -> String {
        match self {
            Cell::Str(s) => s,
            other => other.describe(),
        }
    }
}

impl<'de> de::Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CellVisitor)
    }
}

struct CellVisitor;

impl<'de> Visitor<'de> for CellVisitor {
    type Value = Cell;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_f64<E>(self, v: f64) -> Result<Cell, E> {
        Ok(Cell::Num(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Cell, E> {
        Ok(Cell::Num(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Cell, E> {
        Ok(Cell::Num(v as f64))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cell, E> {
        Ok(Cell::Str(v.to_string()))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Cell, E> {
        Ok(Cell::Other(if v { "true" } else { "false" }))
    }
    fn visit_unit<E>(self) -> Result<Cell, E> {
        Ok(Cell::Other("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cell, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Cell::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Cell::Other("an object"))
    }
}

/// The first line, parsed in full: it decides the shape of every line after it.
enum FirstLine {
    Array(Vec<Cell>),
    Object(Vec<(String, Cell)>),
}

impl<'de> de::Deserialize<'de> for FirstLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FirstLine;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of numbers or an object of name to number")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FirstLine, A::Error> {
                let mut cells = Vec::new();
                while let Some(c) = seq.next_element::<Cell>()? {
                    cells.push(c);
                }
                Ok(FirstLine::Array(cells))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FirstLine, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, Cell>()? {
                    pairs.push(pair);
                }
                Ok(FirstLine::Object(pairs))
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads an array line into `row`, noting the first non-number in `bad`.
struct ArrayRow<'r> {
    row: &'r mut Vec<f64>,
    bad: &'r mut Option<Bad>,
}

impl<'de> DeserializeSeed<'de> for ArrayRow<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ArrayRow<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of numbers, like the first line")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(cell) = seq.next_element::<Cell>()? {
            match cell {
                Cell::Num(v) => self.row.push(v),
                other => {
                    if self.bad.is_none() {
                        *self.bad = Some(Bad::Value {
                            column: self.row.len(),
                            value: other.describe(),
                        });
                    }
                    self.row.push(f64::NAN);
                }
            }
        }
        Ok(())
    }
}

/// Reads an object line into `row` by column name, noting the first problem in `bad`.
struct ObjectRow<'r> {
    index: &'r ColumnIndex,
    row: &'r mut [f64],
    seen: &'r mut [bool],
    bad: &'r mut Option<Bad>,
}

impl<'de> DeserializeSeed<'de> for ObjectRow<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ObjectRow<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of name to number, like the first line")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(Key { index: self.index })? {
            let cell: Cell = map.next_value()?;
            let column = match key {
                Ok(c) if !self.seen[c] => c,
                Ok(c) => {
                    if self.bad.is_none() {
                        let name = self.index.name(c).to_string();
                        *self.bad = Some(Bad::Unexpected(name));
                    }
                    continue;
                }
                Err(name) => {
                    if self.bad.is_none() {
                        *self.bad = Some(Bad::Unexpected(name));
                    }
                    continue;
                }
            };
            self.seen[column] = true;
            match cell {
                Cell::Num(v) => self.row[column] = v,
                other => {
                    if self.bad.is_none() {
                        *self.bad = Some(Bad::Value {
                            column,
                            value: other.describe(),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// An object key resolved to its column: `Err(name)` for a key the first line lacked.
struct Key<'r> {
    index: &'r ColumnIndex,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Result<usize, String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Result<usize, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a column name")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.index.get(v).ok_or_else(|| v.to_string()))
    }
}
