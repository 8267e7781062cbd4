//! The examples a trainer reads: feature vectors (row-major) and their targets, from a table's
//! records through a feature spec or from the blog's images, and the gathering of a batch.

/// Targets of a data set: class indices or values.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    Classes(Vec<i64>),
    Values(Vec<f32>),
}

/// Feature vectors (row-major, `width` each) and their targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Data {
    pub x: Vec<f32>,
    pub width: usize,
    pub y: Targets,
}

impl Data {
    /// Encodes records through a feature spec: the data of the rows that encode, and the
    /// rows skipped (key, reason).
    pub fn encode<'a>(
        spec: &tensorcdc_dataset::features::FeatureSpec,
        rows: impl Iterator<Item = &'a tensorcdc_dataset::features::Record>,
    ) -> (Data, Vec<(Option<String>, tensorcdc_dataset::features::EncodeError)>) {
        let e = spec.encode_all(rows);
        let y = if spec.task == tensorcdc_dataset::features::Task::Classification { Targets::Classes(e.classes) } else { Targets::Values(e.values) };
        (Data { x: e.x, width: e.width, y }, e.skipped)
    }

    /// The blog's images as the MNIST preset encodes them: each of the 784 bytes / 255, the
    /// label its class.
    pub fn images(pixels: &[u8], labels: &[u8]) -> Data {
        let mut x = vec![0f32; pixels.len()];
        tensorcdc_dataset::scale_pixels(pixels, &mut x);
        Data { x, width: tensorcdc_dataset::PIXELS, y: Targets::Classes(labels.iter().map(|&l| l as i64).collect()) }
    }

    pub fn len(&self) -> usize {
        match &self.y {
            Targets::Classes(c) => c.len(),
            Targets::Values(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn gather(&self, idx: &[usize]) -> (Vec<f32>, Targets) {
        let mut x = Vec::with_capacity(idx.len() * self.width);
        for &i in idx {
            x.extend_from_slice(&self.x[i * self.width..(i + 1) * self.width]);
        }
        let y = match &self.y {
            Targets::Classes(c) => Targets::Classes(idx.iter().map(|&i| c[i]).collect()),
            Targets::Values(v) => Targets::Values(idx.iter().map(|&i| v[i]).collect()),
        };
        (x, y)
    }
}
