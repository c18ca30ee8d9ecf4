//! Decompression of compressed clusters: raw deflate (`zlib` compression
//! type, without zlib header, as qcow2 stores it) and zstd.

use std::io::Read;

/// Decompresses `input` into exactly `out.len()` bytes; trailing input
/// after the end of the stream is ignored. Returns false if the data is
/// not a valid stream or does not fill `out`.
pub fn decompress(kind: u8, input: &[u8], out: &mut [u8]) -> bool {
    match kind {
        0 => inflate(input, out),
        1 => unzstd(input, out),
        _ => false,
    }
}

fn inflate(input: &[u8], out: &mut [u8]) -> bool {
    use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;
    let mut st = DecompressorOxide::new();
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, _in, written) = decompress(&mut st, input, out, 0, flags);
    // A full output buffer is success even if the stream goes on (QEMU
    // accepts Z_BUF_ERROR with the cluster filled).
    written == out.len()
        && matches!(
            status,
            TINFLStatus::Done | TINFLStatus::HasMoreOutput | TINFLStatus::NeedsMoreInput
        )
}

fn unzstd(input: &[u8], out: &mut [u8]) -> bool {
    let mut src = input;
    let mut done = 0;
    // A cluster may hold several frames; read until the cluster is full.
    while done < out.len() && !src.is_empty() {
        let mut dec = match ruzstd::streaming_decoder::StreamingDecoder::new(&mut src) {
            Ok(d) => d,
            Err(_) => return false,
        };
        loop {
            match dec.read(&mut out[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(_) => return false,
            }
            if done == out.len() {
                break;
            }
        }
    }
    done == out.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deflate_raw() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let mut c = miniz_oxide::deflate::compress_to_vec(&data, 6);
        c.extend_from_slice(&[0xaa; 100]);
        let mut out = vec![0u8; 4096];
        assert!(decompress(0, &c, &mut out));
        assert_eq!(out, data);
        assert!(!decompress(0, &[0xff; 10], &mut out));
        assert!(!decompress(1, &[0xff; 10], &mut out));
    }
}
