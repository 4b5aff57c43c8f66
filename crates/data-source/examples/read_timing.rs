//! Times reading a file into a matrix: `cargo run --release -p data-source --example
//! read_timing -- FILE [CHUNK_ROWS]` (with CHUNK_ROWS, reads chunk by chunk instead).

use std::time::Instant;

use data_source::{ReadOptions, TableReader};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: read_timing FILE [CHUNK_ROWS]")?;
    let chunk: Option<usize> = args.next().map(|s| s.parse()).transpose()?;
    let start = Instant::now();
    let mut reader = TableReader::open(&path, &ReadOptions::default())?;
    let (rows, cols, checksum) = match chunk {
        None => {
            let table = reader.read_all()?;
            let (r, c) = table.features.dim();
            (r, c, table.features.sum())
        }
        Some(n) => {
            let (mut rows, mut sum) = (0, 0.0);
            while let Some(c) = reader.next_chunk(n)? {
                rows += c.features.nrows();
                sum += c.features.sum();
            }
            (rows, reader.n_features(), sum)
        }
    };
    println!(
        "{rows} rows x {cols} features in {:.1} ms (checksum {checksum})",
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
