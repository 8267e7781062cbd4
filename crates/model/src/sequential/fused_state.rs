//! The fused strategy's Adam state on disk (`optimizer-fused.bin` in a checkpoint): each
//! column block's and the written-out head's step count and moments. burn's optimizer record
//! is keyed by parameter ids, which the blocks (and the layer they join into) do not share,
//! so the blocks' state has its own file.
//!
//! The file is one JSON line, `{"format":"tensorcdc fused Adam state","version":1,"layers":
//! [{"time":T,"weights":N,"biases":K},…]}`, then for each layer in order its kernel's first
//! and second moments and its bias's, as little-endian `f32`s.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dense::DenseMoments;

const FORMAT: &str = "tensorcdc fused Adam state";

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    layers: Vec<LayerHeader>,
}

#[derive(Serialize, Deserialize)]
struct LayerHeader {
    time: i32,
    weights: usize,
    biases: usize,
}

pub(crate) fn write(path: &Path, layers: &[DenseMoments]) -> std::io::Result<()> {
    let header = Header {
        format: FORMAT.into(),
        version: 1,
        layers: layers.iter().map(|l| LayerHeader { time: l.time, weights: l.m_w.len(), biases: l.m_b.len() }).collect(),
    };
    let mut out = serde_json::to_vec(&header).expect("header serialises");
    out.push(b'\n');
    for l in layers {
        for v in [&l.m_w, &l.v_w, &l.m_b, &l.v_b] {
            out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
        }
    }
    // Whole or not at all: a cut write must not be read as the state.
    let tmp = path.with_extension("tmp");
    std::fs::File::create(&tmp).and_then(|mut f| f.write_all(&out).and_then(|_| f.sync_all()))?;
    std::fs::rename(&tmp, path)
}

pub(crate) fn read(path: &Path) -> Result<Vec<DenseMoments>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut r = BufReader::new(file);
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).map_err(|e| e.to_string())?;
    let header: Header = serde_json::from_slice(&line).map_err(|e| format!("not a {FORMAT} file: {e}"))?;
    if header.format != FORMAT || header.version != 1 {
        return Err(format!("format {:?} version {}, expected {FORMAT:?} version 1", header.format, header.version));
    }
    // The sizes the header announces must be the file's, before anything is allocated.
    let floats_named = header.layers.iter().try_fold(0u64, |n, l| {
        let per = (l.weights as u64).checked_add(l.biases as u64)?.checked_mul(2)?;
        n.checked_add(per)
    });
    if floats_named.and_then(|n| n.checked_mul(4)).and_then(|b| b.checked_add(line.len() as u64)) != Some(len) {
        return Err(format!("the header's layer sizes do not match the file's {len} bytes"));
    }
    if let Some(l) = header.layers.iter().find(|l| l.time < 0) {
        return Err(format!("a negative Adam step count ({})", l.time));
    }
    let mut floats = |n: usize| -> Result<Vec<f32>, String> {
        let mut b = vec![0u8; n * 4];
        r.read_exact(&mut b).map_err(|e| format!("cut short: {e}"))?;
        Ok(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    };
    let mut layers = Vec::with_capacity(header.layers.len());
    for l in &header.layers {
        let (m_w, v_w, m_b, v_b) = (floats(l.weights)?, floats(l.weights)?, floats(l.biases)?, floats(l.biases)?);
        layers.push(DenseMoments { time: l.time, m_w, v_w, m_b, v_b });
    }
    if r.read(&mut [0u8]).map_err(|e| e.to_string())? != 0 {
        return Err("bytes after the last layer's moments".into());
    }
    Ok(layers)
}
