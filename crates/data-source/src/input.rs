//! Opening a byte stream: gzip detection by magic bytes and format sniffing, without
//! consuming anything the parsers need (the peeked bytes are chained back in front).

use std::io::{self, BufReader, Cursor, Read};

use flate2::bufread::MultiGzDecoder;

/// Buffer between the compressed source and the inflater. Large reads keep system calls
/// (or S3 body chunks) few; inflate then writes straight into the parser's buffer.
const COMPRESSED_BUFFER: usize = 256 * 1024;

/// How far to look for the first non-blank byte when sniffing the format.
const SNIFF_LIMIT: usize = 64 * 1024;

/// A decompressed stream, with what was learnt by peeking at its start.
pub(crate) struct Opened<'a> {
    pub stream: Box<dyn Read + Send + 'a>,
    pub gzip: bool,
    /// The first byte that is not whitespace or a UTF-8 byte-order mark, if any.
    pub first_byte: Option<u8>,
}

/// Wraps `reader`, inflating it when it starts with the gzip magic bytes `1f 8b`
/// (concatenated gzip members, as `cat a.gz b.gz` makes, are read as one stream).
pub(crate) fn open<'a, R: Read + Send + 'a>(mut reader: R) -> io::Result<Opened<'a>> {
    let mut magic = [0u8; 2];
    let n = read_up_to(&mut reader, &mut magic)?;
    let raw = Cursor::new(magic[..n].to_vec()).chain(reader);
    let gzip = magic[..n] == [0x1f, 0x8b];
    let mut stream: Box<dyn Read + Send + 'a> = if gzip {
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(
            COMPRESSED_BUFFER,
            raw,
        )))
    } else {
        Box::new(raw)
    };
    let mut prefix = Vec::new();
    let mut first_byte = None;
    let mut block = [0u8; 4096];
    while prefix.len() < SNIFF_LIMIT {
        let n = read_retrying(&mut stream, &mut block)?;
        if n == 0 {
            break;
        }
        prefix.extend_from_slice(&block[..n]);
        let body = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&prefix);
        if let Some(&b) = body.iter().find(|b| !b.is_ascii_whitespace()) {
            first_byte = Some(b);
            break;
        }
    }
    Ok(Opened {
        stream: Box::new(Cursor::new(prefix).chain(stream)),
        gzip,
        first_byte,
    })
}

/// Fills `buf` as far as the stream allows; returns how many bytes were read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = read_retrying(reader, &mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

fn read_retrying(reader: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
