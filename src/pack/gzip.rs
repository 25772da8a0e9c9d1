//! Parallel, deterministic gzip for layer blobs: one ordinary gzip stream (RFC 1952) whose
//! bytes depend only on the input and the level, never on the number of threads or the machine.
//!
//! How: the input is cut into fixed blocks of [`BLOCK`] bytes. Each block is compressed on its
//! own, on a dedicated pool of threads, as raw deflate primed with the last [`DICTIONARY`]
//! bytes of the block before it (so matches reach back across block edges as in one serial
//! stream) and ended with a sync flush (a byte-aligned, non-final end). The pieces are written
//! in order, followed by an empty final block, the CRC-32 and the length. This is the scheme of
//! pigz and of apko's layer writer.
//!
//! The compressor is pinned: zlib-rs [`ZLIB_RS_VERSION`] (exact version in `Cargo.toml`), raw
//! deflate, window 2^15, memLevel 8, default strategy, the level asked for (comfypak's default
//! 6), blocks of [`BLOCK`] bytes. zlib-rs picks SIMD routines at run time only where they
//! compute the same values (match length, hash slide); its hash function is the same on every
//! CPU. A change to any of these changes layer digests, and `tests/it/golden.rs` says so.
//! Level 6 stays the default: its output is about 2 % larger than GNU `gzip -6` on real
//! layers (zlib-rs's level-6 match finder; stock zlib in the same blocks is within 0.2 %), and
//! level 9, the first within 1 %, takes 2.3 times the CPU (README, "Layer compression").
//!
//! Owns the gzip container and the block scheme. Must not know about tar, layers or images.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, OnceLock};

use zlib_rs::DeflateFlush;

/// The zlib-rs version that defines the compressed bytes (pinned with `=` in Cargo.toml).
pub const ZLIB_RS_VERSION: &str = "0.6.8";

/// Bytes of input per independently compressed block.
pub const BLOCK: usize = 1 << 20;

/// Bytes of the previous block each block is primed with (deflate's whole window).
pub const DICTIONARY: usize = 32 << 10;

/// The final, empty deflate block (BFINAL=1, fixed Huffman codes, end-of-block).
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// The threads that compress blocks. A pool of its own: the layer builders run on rayon's
/// global pool and wait on compressors, so compressing there could leave no thread free to
/// run the blocks they wait for. Its size follows `RAYON_NUM_THREADS` or the CPU count; the
/// bytes do not depend on it.
fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("comfypak-gzip-{i}"))
            .build()
            .or_else(|_| rayon::ThreadPoolBuilder::new().num_threads(1).build())
            .expect("a thread pool of one thread")
    })
}

fn deflate_error(e: zlib_rs::DeflateError) -> io::Error {
    io::Error::other(format!("deflate (zlib-rs) failed: {}", e.as_str()))
}

/// One block as raw deflate at `level`, primed with `dictionary`, ended by a sync flush.
pub fn deflate_block(level: i32, dictionary: &[u8], block: &[u8]) -> io::Result<Vec<u8>> {
    let mut deflate = zlib_rs::Deflate::new(level, false, 15);
    if !dictionary.is_empty() {
        deflate.set_dictionary(dictionary).map_err(deflate_error)?;
    }
    let mut out = vec![0u8; zlib_rs::compress_bound(block.len()) + 64];
    loop {
        let read = deflate.total_in() as usize;
        let written = deflate.total_out() as usize;
        if written == out.len() {
            out.resize(out.len() * 2, 0);
        }
        deflate
            .compress(&block[read..], &mut out[written..], DeflateFlush::SyncFlush)
            .map_err(deflate_error)?;
        // After a sync flush, output space left over means the flush is complete.
        if deflate.total_in() as usize == block.len() && (deflate.total_out() as usize) < out.len()
        {
            break;
        }
    }
    out.truncate(deflate.total_out() as usize);
    Ok(out)
}

/// A gzip writer that compresses [`BLOCK`]-sized pieces in parallel and writes them in order.
pub struct ParallelGzip<W: Write> {
    inner: W,
    level: i32,
    /// Input not yet a whole block.
    buffer: Vec<u8>,
    /// The last block handed out, whose tail primes the next one.
    previous: Option<Arc<Vec<u8>>>,
    /// Blocks being compressed, oldest first.
    in_flight: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    max_in_flight: usize,
    crc: u32,
    size: u64,
}

impl<W: Write> ParallelGzip<W> {
    /// Writes the gzip header (no name, no comment, mtime 0, OS "unknown": constant bytes).
    pub fn new(mut inner: W, level: u32) -> io::Result<Self> {
        let level = level.min(9);
        let extra_flags = match level {
            9 => 2,
            0 | 1 => 4,
            _ => 0,
        };
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, extra_flags, 255])?;
        Ok(ParallelGzip {
            inner,
            level: level as i32,
            buffer: Vec::with_capacity(BLOCK),
            previous: None,
            in_flight: VecDeque::new(),
            max_in_flight: 2 * pool().current_num_threads() + 2,
            crc: 0,
            size: 0,
        })
    }

    /// Hands one whole block (or the last, shorter one) to the pool.
    fn dispatch(&mut self, block: Vec<u8>) -> io::Result<()> {
        self.crc = zlib_rs::crc32::crc32(self.crc, &block);
        self.size += block.len() as u64;
        let block = Arc::new(block);
        let previous = self.previous.replace(Arc::clone(&block));
        let level = self.level;
        let (sender, receiver) = sync_channel(1);
        pool().spawn(move || {
            let dictionary = match &previous {
                Some(p) => &p[p.len().saturating_sub(DICTIONARY)..],
                None => &[][..],
            };
            // The receiver is gone only when the writer gave up; nothing to report then.
            let _ = sender.send(deflate_block(level, dictionary, &block));
        });
        self.in_flight.push_back(receiver);
        while self.in_flight.len() >= self.max_in_flight {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(receiver) = self.in_flight.pop_front() {
            let piece = receiver
                .recv()
                .map_err(|_| io::Error::other("a gzip block was lost (its thread panicked)"))??;
            self.inner.write_all(&piece)?;
        }
        Ok(())
    }

    /// Compresses what is left, writes the final block, CRC-32 and length; returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.buffer.is_empty() {
            let rest = std::mem::take(&mut self.buffer);
            self.dispatch(rest)?;
        }
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        self.inner.write_all(&FINAL_BLOCK)?;
        self.inner.write_all(&self.crc.to_le_bytes())?;
        // ISIZE is the length modulo 2^32 (RFC 1952).
        self.inner.write_all(&(self.size as u32).to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (BLOCK - self.buffer.len()).min(buf.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == BLOCK {
            let full = std::mem::replace(&mut self.buffer, Vec::with_capacity(BLOCK));
            self.dispatch(full)?;
        }
        Ok(n)
    }

    /// Does not end a block: the block edges are fixed by the input length alone.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Compressible, not trivially repetitive input of `len` bytes.
    fn sample(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut x: u32 = 12345;
        while out.len() < len {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            let word = [
                "torch",
                "nvidia",
                "cuda",
                "site-packages/",
                "__init__.py\n",
                "0123",
            ][(x >> 16) as usize % 6];
            out.extend_from_slice(word.as_bytes());
            out.push((x >> 8) as u8);
        }
        out.truncate(len);
        out
    }

    fn gzip(data: &[u8], level: u32, piece: usize) -> Vec<u8> {
        let mut gz = ParallelGzip::new(Vec::new(), level).unwrap();
        for chunk in data.chunks(piece.max(1)) {
            gz.write_all(chunk).unwrap();
        }
        gz.finish().unwrap()
    }

    #[test]
    fn one_gzip_stream_that_gunzips_back_for_any_length() {
        for len in [0, 1, 100, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17] {
            let data = sample(len);
            let compressed = gzip(&data, 6, 64 << 10);
            // flate2's decoder checks the trailer's CRC-32 and length.
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&compressed[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back.len(), data.len(), "length {len}");
            assert!(back == data, "round trip of {len} bytes");
        }
    }

    #[test]
    fn bytes_do_not_depend_on_how_the_input_is_written() {
        let data = sample(2 * BLOCK + 5000);
        let a = gzip(&data, 6, 1 << 20);
        assert_eq!(a, gzip(&data, 6, 4096));
        assert_eq!(a, gzip(&data, 6, 3 * BLOCK));
        assert_ne!(a, gzip(&data, 1, 1 << 20), "the level must matter");
    }

    #[test]
    fn priming_with_the_previous_block_finds_matches_across_the_edge() {
        // A block that repeats the second half of the previous block's incompressible tail:
        // only the dictionary lets it refer back (16 KiB back; deflate's farthest is 32 KiB).
        let mut x: u64 = 88172645463325252;
        let half: Vec<u8> = (0..BLOCK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let tail = &half[BLOCK - DICTIONARY..];
        let block = &tail[DICTIONARY / 2..];
        let primed = deflate_block(6, tail, block).unwrap();
        let unprimed = deflate_block(6, &[], block).unwrap();
        assert!(
            primed.len() * 10 < unprimed.len(),
            "primed {} vs unprimed {}",
            primed.len(),
            unprimed.len()
        );
    }
}
