//! One labelled image ([`Example`]) and an in-memory set of them ([`Examples`]).

use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::DatasetError;

/// Pixels in one MNIST image (28 x 28).
pub const PIXELS: usize = 784;

/// Where a record came from: a Kafka topic/partition/offset or a Postgres LSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    Kafka { topic: String, partition: i32, offset: i64 },
    Lsn(tensorcdc_change::Lsn),
    Row(usize),
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Kafka { topic, partition, offset } => write!(f, "{topic}/{partition}@{offset}"),
            Position::Lsn(l) => write!(f, "lsn {l}"),
            Position::Row(r) => write!(f, "row {r}"),
        }
    }
}

/// The text [`Display`](std::fmt::Display) writes (`lsn 0/16B3748`, `topic/0@42`, `row 7`),
/// read back: a position recorded in `versions.jsonl` is this text.
impl std::str::FromStr for Position {
    type Err = tensorcdc_change::UnknownName;
    fn from_str(s: &str) -> Result<Self, tensorcdc_change::UnknownName> {
        let bad = || tensorcdc_change::UnknownName::new("position", s, "\"lsn X/Y\", \"topic/partition@offset\" or \"row N\"");
        if let Some(l) = s.strip_prefix("lsn ") {
            return l.parse().map(Position::Lsn).map_err(|_| bad());
        }
        if let Some(r) = s.strip_prefix("row ") {
            return r.parse().map(Position::Row).map_err(|_| bad());
        }
        let (rest, offset) = s.rsplit_once('@').ok_or_else(bad)?;
        let (topic, partition) = rest.rsplit_once('/').ok_or_else(bad)?;
        Ok(Position::Kafka { topic: topic.into(), partition: partition.parse().map_err(|_| bad())?, offset: offset.parse().map_err(|_| bad())? })
    }
}

/// One labelled image: 784 pixel bytes, a label 0..=9, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub pixels: Box<[u8; PIXELS]>,
    pub label: u8,
    pub key: Option<String>,
    pub position: Option<Position>,
}

impl Example {
    /// Builds an example, checking the pixel count and label range. `what` names the
    /// record in the error ("row 17", "tf.public.mnist_test/0@42").
    pub fn new(pixels: &[u8], label: i64, what: impl std::fmt::Display) -> Result<Self, DatasetError> {
        let pixels: Box<[u8; PIXELS]> = pixels
            .to_vec()
            .into_boxed_slice()
            .try_into()
            .map_err(|v: Box<[u8]>| DatasetError::BadExample { what: what.to_string(), reason: format!("{} pixels, expected {PIXELS} (28x28)", v.len()) })?;
        if !(0..=9).contains(&label) {
            return Err(DatasetError::BadExample { what: what.to_string(), reason: format!("label {label} is outside 0..=9") });
        }
        Ok(Example { pixels, label: label as u8, key: None, position: None })
    }
}

/// Examples held contiguously: `pixels.len() == 784 * labels.len()`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Examples {
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Examples {
    /// Builds a set from contiguous pixels and labels, checking their sizes and labels.
    pub fn new(pixels: Vec<u8>, labels: Vec<u8>) -> Result<Self, DatasetError> {
        if pixels.len() != labels.len() * PIXELS {
            return Err(DatasetError::BadExample {
                what: "examples".into(),
                reason: format!("{} pixel bytes for {} labels, expected {}", pixels.len(), labels.len(), labels.len() * PIXELS),
            });
        }
        if let Some((i, l)) = labels.iter().enumerate().find(|(_, l)| **l > 9) {
            return Err(DatasetError::BadExample { what: format!("row {i}"), reason: format!("label {l} is outside 0..=9") });
        }
        Ok(Examples { pixels, labels })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn push(&mut self, e: &Example) {
        self.pixels.extend_from_slice(&e.pixels[..]);
        self.labels.push(e.label);
    }

    /// The 784 pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * PIXELS..(i + 1) * PIXELS]
    }

    /// The first `n` examples (all of them if there are fewer).
    pub fn truncate(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.pixels.truncate(n * PIXELS);
        self
    }

    /// The order of one epoch: `0..len` shuffled by a generator seeded with `seed`.
    pub fn epoch_order(&self, seed: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        order
    }

    /// Fills `pixels` (as f32 / 255) and `labels` for the examples at `indices`.
    pub fn gather(&self, indices: &[usize], pixels: &mut Vec<f32>, labels: &mut Vec<i64>) {
        pixels.clear();
        pixels.reserve(indices.len() * PIXELS);
        labels.clear();
        for &i in indices {
            // Appended, not written over zeros: the buffer is usually fresh (the last one went
            // into a tensor), and zeroing 200 kB first cost as much as the scaling.
            pixels.extend(self.image(i).iter().map(|&s| scale(s)));
            labels.push(self.labels[i] as i64);
        }
    }
}

/// One pixel byte as the model's input: `s / 255`.
#[inline(always)]
fn scale(s: u8) -> f32 {
    s as f32 / 255.0
}

/// Writes `src[i] / 255` into `dst[i]` (the model's input scaling).
pub fn scale_pixels(src: &[u8], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = scale(s);
    }
}

/// Examples by row key, as a table holds them: an update replaces the example with its
/// key, a delete removes it (the same as the keyed rows of [`crate::features`]). Examples
/// without a key are appended.
#[derive(Debug, Default)]
pub struct KeyedExamples {
    set: Examples,
    index: std::collections::HashMap<String, usize>,
    deleted: Vec<bool>,
    removed: usize,
}

impl KeyedExamples {
    pub fn upsert(&mut self, e: &Example) {
        if let Some(&i) = e.key.as_ref().and_then(|k| self.index.get(k)) {
            self.set.pixels[i * PIXELS..(i + 1) * PIXELS].copy_from_slice(&e.pixels[..]);
            self.set.labels[i] = e.label;
            if std::mem::take(&mut self.deleted[i]) {
                self.removed -= 1;
            }
            return;
        }
        if let Some(k) = &e.key {
            self.index.insert(k.clone(), self.set.len());
        }
        self.set.push(e);
        self.deleted.push(false);
    }

    pub fn delete(&mut self, key: &str) {
        if let Some(&i) = self.index.get(key) {
            if !std::mem::replace(&mut self.deleted[i], true) {
                self.removed += 1;
            }
        }
    }

    /// Examples present now.
    pub fn len(&self) -> usize {
        self.set.len() - self.removed
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the examples present, in the order their keys first arrived (the set is
    /// kept, to be read into again).
    pub fn to_examples(&self) -> Examples {
        let mut out = Examples { pixels: Vec::with_capacity(self.len() * PIXELS), labels: Vec::with_capacity(self.len()) };
        for (i, gone) in self.deleted.iter().enumerate() {
            if !gone {
                out.pixels.extend_from_slice(self.set.image(i));
                out.labels.push(self.set.labels[i]);
            }
        }
        out
    }

    /// The examples present, in the order their keys first arrived.
    pub fn into_examples(self) -> Examples {
        if self.removed == 0 {
            return self.set;
        }
        let mut out = Examples::default();
        for (i, gone) in self.deleted.iter().enumerate() {
            if !gone {
                out.pixels.extend_from_slice(self.set.image(i));
                out.labels.push(self.set.labels[i]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_back_what_they_write() {
        let cases = [
            ("lsn 16/B374D848", Position::Lsn(tensorcdc_change::Lsn(0x16_B374_D848))),
            ("tf.public.t/2@41", Position::Kafka { topic: "tf.public.t".into(), partition: 2, offset: 41 }),
            ("a/b/0@7", Position::Kafka { topic: "a/b".into(), partition: 0, offset: 7 }),
            ("row 12", Position::Row(12)),
        ];
        for (text, p) in cases {
            assert_eq!(p.to_string(), text);
            assert_eq!(text.parse::<Position>().unwrap(), p, "{text}");
        }
        for bad in ["", "lsn zz", "topic@3", "t/x@1", "row -1"] {
            let e = bad.parse::<Position>().unwrap_err();
            assert_eq!((e.what, e.got.as_str()), ("position", bad), "{e}");
        }
    }

    #[test]
    fn keyed_examples_replace_and_remove() {
        let ex = |k: &str, label: i64| Example { key: Some(k.into()), ..Example::new(&[label as u8; PIXELS], label, "t").unwrap() };
        let mut set = KeyedExamples::default();
        for i in 0..10 {
            set.upsert(&ex(&i.to_string(), i % 10));
        }
        for i in 0..10 {
            set.upsert(&ex(&i.to_string(), 9 - i % 10));
        }
        for i in 0..5 {
            set.delete(&i.to_string());
        }
        assert_eq!(set.len(), 5);
        let out = set.into_examples();
        assert_eq!(out.labels, [4, 3, 2, 1, 0]);
        assert_eq!(out.image(0)[0], 4);
    }

    #[test]
    fn example_checks_size_and_label() {
        let e = Example::new(&[0u8; 783], 3, "row 7").unwrap_err().to_string();
        assert!(e.contains("row 7") && e.contains("783 pixels"), "{e}");
        let e = Example::new(&[0u8; 784], 10, "row 8").unwrap_err().to_string();
        assert!(e.contains("row 8") && e.contains("label 10"), "{e}");
        assert_eq!(Example::new(&[1u8; 784], 9, "x").unwrap().label, 9);
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let ex = Examples::new(vec![0; 784 * 100], vec![1; 100]).unwrap();
        let a = ex.epoch_order(1);
        assert_eq!(a, ex.epoch_order(1));
        assert_ne!(a, ex.epoch_order(2));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn gather_scales_by_255() {
        let mut px = vec![0u8; 784 * 2];
        px[784] = 255;
        px[785] = 51;
        let ex = Examples::new(px, vec![4, 7]).unwrap();
        let (mut p, mut l) = (Vec::new(), Vec::new());
        ex.gather(&[1], &mut p, &mut l);
        assert_eq!(l, vec![7]);
        assert_eq!(p[0], 1.0);
        assert!((p[1] - 0.2).abs() < 1e-7);
    }
}
