//! The IDX format of the MNIST files (<http://yann.lecun.com/exdb/mnist/>).
//!
//! A file starts with a big-endian header: the magic number (`0x00000801` = 2049 for
//! unsigned-byte labels, `0x00000803` = 2051 for unsigned-byte images), then one u32
//! per dimension (count; for images also rows and columns), then the bytes, row-major.
//! Files may be gzip-compressed; that is detected from the content, not the name.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::DatasetError;

/// Magic number of an IDX file of unsigned-byte labels (one dimension).
pub const LABELS_MAGIC: u32 = 2049;
/// Magic number of an IDX file of unsigned-byte images (three dimensions).
pub const IMAGES_MAGIC: u32 = 2051;

/// Images read from an IDX file: `count` images of `rows x cols` bytes, contiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.pixels.len().checked_div(self.rows * self.cols).unwrap_or(0)
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }
}

fn read_all(path: &Path) -> Result<Vec<u8>, DatasetError> {
    let mut raw = Vec::new();
    File::open(path).and_then(|f| BufReader::new(f).read_to_end(&mut raw)).map_err(|e| DatasetError::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DatasetError::BadIdx { path: path.into(), reason: format!("gzip data is corrupt or truncated ({e})") })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> DatasetError {
    DatasetError::BadIdx { path: path.into(), reason: reason.into() }
}

/// Reads the header and checks the magic; returns the dimensions and the body.
fn parse<'a>(path: &Path, data: &'a [u8], magic: u32, dims: usize) -> Result<(Vec<usize>, &'a [u8]), DatasetError> {
    let header_len = 4 + 4 * dims;
    if data.len() < 4 {
        return Err(bad(path, format!("file is {} bytes, too short for the 4-byte magic number", data.len())));
    }
    let word = |i: usize| u32::from_be_bytes([data[4 * i], data[4 * i + 1], data[4 * i + 2], data[4 * i + 3]]);
    let found = word(0);
    if found != magic {
        let kind = if magic == LABELS_MAGIC { "labels" } else { "images" };
        return Err(bad(path, format!("magic number is {found} (0x{found:08x}), expected {magic} (0x{magic:08x}) for {kind}")));
    }
    if data.len() < header_len {
        return Err(bad(path, format!("file is {} bytes, shorter than the {header_len}-byte header", data.len())));
    }
    let shape: Vec<usize> = (1..=dims).map(|i| word(i) as usize).collect();
    let body = &data[header_len..];
    let expected: usize = shape.iter().product();
    if body.len() < expected {
        return Err(bad(path, format!("truncated: header declares {shape:?} = {expected} bytes of data, file holds {}", body.len())));
    }
    if body.len() > expected {
        return Err(bad(path, format!("{} bytes after the {expected} declared by the header {shape:?}", body.len() - expected)));
    }
    Ok((shape, body))
}

/// Reads an IDX images file (magic 2051). MNIST images must be 28x28; this function
/// accepts any size and [`crate::mnist`] checks 28x28.
pub fn read_images(path: &Path) -> Result<IdxImages, DatasetError> {
    let data = read_all(path)?;
    let (shape, body) = parse(path, &data, IMAGES_MAGIC, 3)?;
    Ok(IdxImages { rows: shape[1], cols: shape[2], pixels: body.to_vec() })
}

/// Reads an IDX labels file (magic 2049).
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DatasetError> {
    let data = read_all(path)?;
    let (_, body) = parse(path, &data, LABELS_MAGIC, 1)?;
    Ok(body.to_vec())
}

fn write_file(path: &Path, header: &[u32], body: &[u8]) -> Result<(), DatasetError> {
    let file = File::create(path).map_err(|e| DatasetError::io(path, e))?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    let mut out: Box<dyn Write> = if gz { Box::new(GzEncoder::new(BufWriter::new(file), Compression::default())) } else { Box::new(BufWriter::new(file)) };
    let mut write = || -> std::io::Result<()> {
        for w in header {
            out.write_all(&w.to_be_bytes())?;
        }
        out.write_all(body)?;
        out.flush()
    };
    write().map_err(|e| DatasetError::io(path, e))
}

/// Writes an IDX images file; gzip-compressed when the name ends in `.gz`.
pub fn write_images(path: &Path, images: &IdxImages) -> Result<(), DatasetError> {
    let n = images.len();
    if n * images.rows * images.cols != images.pixels.len() {
        return Err(bad(path, "pixel buffer is not a whole number of images"));
    }
    write_file(path, &[IMAGES_MAGIC, n as u32, images.rows as u32, images.cols as u32], &images.pixels)
}

/// Writes an IDX labels file; gzip-compressed when the name ends in `.gz`.
pub fn write_labels(path: &Path, labels: &[u8]) -> Result<(), DatasetError> {
    write_file(path, &[LABELS_MAGIC, labels.len() as u32], labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> (IdxImages, Vec<u8>) {
        let pixels = (0..n * 784).map(|i| (i * 7 % 256) as u8).collect();
        let labels = (0..n).map(|i| (i % 10) as u8).collect();
        (IdxImages { rows: 28, cols: 28, pixels }, labels)
    }

    #[test]
    fn round_trip_plain_and_gz() {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = sample(5);
        for name in ["x-images", "x-images.gz"] {
            let p = dir.path().join(name);
            write_images(&p, &images).unwrap();
            assert_eq!(read_images(&p).unwrap(), images);
        }
        for name in ["x-labels", "x-labels.gz"] {
            let p = dir.path().join(name);
            write_labels(&p, &labels).unwrap();
            assert_eq!(read_labels(&p).unwrap(), labels);
        }
        // gzip is detected by content: a .gz-named file that is plain still reads.
        let p = dir.path().join("plain-named.gz");
        std::fs::write(&p, std::fs::read(dir.path().join("x-labels")).unwrap()).unwrap();
        assert_eq!(read_labels(&p).unwrap(), labels);
    }

    fn err_of(r: Result<impl std::fmt::Debug, DatasetError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn wrong_magic_names_file_and_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = sample(2);
        let lp = dir.path().join("labels");
        let ip = dir.path().join("images");
        write_labels(&lp, &labels).unwrap();
        write_images(&ip, &images).unwrap();
        let e = err_of(read_images(&lp));
        assert!(e.contains("labels") && e.contains("magic number is 2049") && e.contains("expected 2051"), "{e}");
        let e = err_of(read_labels(&ip));
        assert!(e.contains("magic number is 2051") && e.contains("expected 2049"), "{e}");
    }

    #[test]
    fn truncated_header_and_body() {
        let dir = tempfile::tempdir().unwrap();
        let (images, _) = sample(3);
        let p = dir.path().join("images");
        write_images(&p, &images).unwrap();
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&p, &full[..full.len() - 10]).unwrap();
        let e = err_of(read_images(&p));
        assert!(e.contains("truncated") && e.contains("2352 bytes") && e.contains("holds 2342"), "{e}");
        std::fs::write(&p, &full[..6]).unwrap();
        let e = err_of(read_images(&p));
        assert!(e.contains("shorter than the 16-byte header"), "{e}");
        std::fs::write(&p, &full[..2]).unwrap();
        assert!(err_of(read_images(&p)).contains("too short for the 4-byte magic"));
        let mut long = full.clone();
        long.push(0);
        std::fs::write(&p, &long).unwrap();
        assert!(err_of(read_images(&p)).contains("1 bytes after"));
    }

    #[test]
    fn corrupt_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let (images, _) = sample(3);
        let p = dir.path().join("images.gz");
        write_images(&p, &images).unwrap();
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&p, &full[..full.len() / 2]).unwrap();
        let e = err_of(read_images(&p));
        assert!(e.contains("images.gz") && e.contains("gzip"), "{e}");
    }

    #[test]
    fn missing_file_is_io_error_with_path() {
        let e = err_of(read_labels(Path::new("/nonexistent/labels.gz")));
        assert!(e.contains("/nonexistent/labels.gz"), "{e}");
    }
}
