//! The MNIST layout: a directory holding the four IDX files, loading a split, and the
//! SQL export the blog's `mnist2sql` script produced.
//!
//! The SQL is what `psql -f` loads: `CREATE TABLE <t>(id SERIAL NOT NULL PRIMARY KEY,
//! label SMALLINT, pixels BYTEA);` then one `INSERT INTO <t>(label, pixels) VALUES(5,
//! '\x00..');` per row, in file order, so ids are 1..=n.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::{idx, DatasetError, Examples, PIXELS};

/// One of the two MNIST splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// The four MNIST file names.
pub const FILES: [&str; 4] = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"];

impl Split {
    /// The images and labels file names of this split.
    pub fn files(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => (FILES[0], FILES[1]),
            Split::Test => (FILES[2], FILES[3]),
        }
    }

    /// The table the blog keeps this split in.
    pub fn table(self) -> &'static str {
        match self {
            Split::Train => "mnist_train",
            Split::Test => "mnist_test",
        }
    }
}

/// Finds `name` in `dir`, also without its `.gz` suffix.
fn locate(dir: &Path, name: &str) -> Result<PathBuf, DatasetError> {
    let gz = dir.join(name);
    if gz.exists() {
        return Ok(gz);
    }
    let plain = dir.join(name.trim_end_matches(".gz"));
    if plain.exists() {
        return Ok(plain);
    }
    Err(DatasetError::MissingFile {
        path: gz,
        dir: dir.into(),
        expected: "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz",
    })
}

/// Fashion-MNIST's class names by label (Zalando's README), as Keras' tutorials show them.
pub const FASHION_CLASSES: [&str; 10] = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// The names of the ten classes, by label: `digits` (0 to 9), `fashion` (Fashion-MNIST's), or
/// ten names separated by commas.
pub fn class_names(spec: &str) -> Result<Vec<String>, crate::DatasetError> {
    match spec {
        "digits" => Ok((0..10).map(|d| d.to_string()).collect()),
        "fashion" | "fashion-mnist" => Ok(FASHION_CLASSES.iter().map(|c| c.to_string()).collect()),
        list => {
            let names: Vec<String> = list.split(',').map(|n| n.trim().to_string()).collect();
            if names.len() != 10 || names.iter().any(String::is_empty) {
                return Err(crate::DatasetError::Classes { given: list.to_string(), names: names.len() });
            }
            Ok(names)
        }
    }
}

/// The class names a folder of IDX files suggests: Fashion-MNIST's for a folder whose name
/// says so (Debian's `/usr/share/datasets/fashion-mnist`), digits otherwise.
pub fn class_names_of_dir(dir: &Path) -> Vec<String> {
    let fashion = dir.components().any(|c| c.as_os_str().to_string_lossy().to_lowercase().contains("fashion"));
    class_names(if fashion { "fashion" } else { "digits" }).expect("a preset")
}

/// Loads one split from a directory of MNIST files, checking 28x28 and matching counts.
pub fn load(dir: &Path, split: Split) -> Result<Examples, DatasetError> {
    let (img_name, lbl_name) = split.files();
    let img_path = locate(dir, img_name)?;
    let lbl_path = locate(dir, lbl_name)?;
    load_files(&img_path, &lbl_path)
}

/// Loads a pair of IDX files as examples.
pub fn load_files(img_path: &Path, lbl_path: &Path) -> Result<Examples, DatasetError> {
    let images = idx::read_images(img_path)?;
    if images.rows != 28 || images.cols != 28 {
        return Err(DatasetError::BadIdx { path: img_path.into(), reason: format!("images are {}x{}, expected 28x28", images.rows, images.cols) });
    }
    let labels = idx::read_labels(lbl_path)?;
    if images.len() != labels.len() {
        return Err(DatasetError::CountMismatch { images: img_path.into(), n_images: images.len(), labels: lbl_path.into(), n_labels: labels.len() });
    }
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, l)| **l > 9) {
        return Err(DatasetError::BadIdx { path: lbl_path.into(), reason: format!("label {l} at index {i} is outside 0..=9") });
    }
    Examples::new(images.pixels, labels)
}

/// Writes `examples` as the SQL script that creates and fills `table`.
pub fn write_sql(out: &mut impl Write, table: &str, examples: &Examples) -> std::io::Result<()> {
    writeln!(out, "CREATE TABLE {table}(id SERIAL NOT NULL PRIMARY KEY, label SMALLINT, pixels BYTEA);")?;
    let mut line = Vec::with_capacity(64 + 2 * PIXELS);
    for i in 0..examples.len() {
        line.clear();
        write!(line, "INSERT INTO {table}(label, pixels) VALUES({}, '\\x", examples.labels[i])?;
        line.extend_from_slice(hex::encode(examples.image(i)).as_bytes());
        line.extend_from_slice(b"');\n");
        out.write_all(&line)?;
    }
    Ok(())
}

/// Writes `mnist_train.sql` and `mnist_test.sql` in `out_dir` from the MNIST files in
/// `data_dir`. Returns the paths written and their row counts.
pub fn export_sql(data_dir: &Path, out_dir: &Path, limit: Option<usize>) -> Result<Vec<(PathBuf, usize)>, DatasetError> {
    std::fs::create_dir_all(out_dir).map_err(|e| DatasetError::io(out_dir, e))?;
    let mut written = Vec::new();
    for split in [Split::Train, Split::Test] {
        let mut examples = load(data_dir, split)?;
        if let Some(n) = limit {
            examples = examples.truncate(n);
        }
        let path = out_dir.join(format!("{}.sql", split.table()));
        let file = File::create(&path).map_err(|e| DatasetError::io(&path, e))?;
        let mut w = BufWriter::new(file);
        write_sql(&mut w, split.table(), &examples).and_then(|_| w.flush()).map_err(|e| DatasetError::io(&path, e))?;
        written.push((path, examples.len()));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    #[test]
    fn class_names_presets_lists_and_folders() {
        assert_eq!(super::class_names("digits").unwrap()[7], "7");
        assert_eq!(super::class_names("fashion").unwrap()[9], "Ankle boot");
        assert_eq!(super::class_names("a,b,c,d,e,f,g,h,i,j").unwrap()[2], "c");
        assert!(super::class_names("a,b").unwrap_err().to_string().contains("ten names"));
        assert_eq!(super::class_names_of_dir(Path::new("/usr/share/datasets/fashion-mnist"))[0], "T-shirt/top");
        assert_eq!(super::class_names_of_dir(Path::new("mnist"))[0], "0");
    }

    use super::*;
    use crate::idx::IdxImages;

    pub(crate) fn make_dir(dir: &Path, n_train: usize, n_test: usize) {
        for (split, n) in [(Split::Train, n_train), (Split::Test, n_test)] {
            let (i, l) = split.files();
            let pixels = (0..n * 784).map(|k| (k % 251) as u8).collect();
            idx::write_images(&dir.join(i), &IdxImages { rows: 28, cols: 28, pixels }).unwrap();
            idx::write_labels(&dir.join(l), &(0..n).map(|k| (k % 10) as u8).collect::<Vec<_>>()).unwrap();
        }
    }

    #[test]
    fn load_checks_counts_and_size() {
        let dir = tempfile::tempdir().unwrap();
        make_dir(dir.path(), 4, 3);
        assert_eq!(load(dir.path(), Split::Train).unwrap().len(), 4);
        // label count mismatch
        idx::write_labels(&dir.path().join(FILES[3]), &[1, 2]).unwrap();
        let e = load(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(e.contains("3 images") && e.contains("2 labels") && e.contains("t10k-labels"), "{e}");
        // 27x28 images
        idx::write_images(&dir.path().join(FILES[2]), &IdxImages { rows: 27, cols: 28, pixels: vec![0; 27 * 28 * 2] }).unwrap();
        let e = load(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(e.contains("27x28") && e.contains("expected 28x28"), "{e}");
        // label out of range
        idx::write_labels(&dir.path().join(FILES[1]), &[1, 2, 11, 3]).unwrap();
        let e = load(dir.path(), Split::Train).unwrap_err().to_string();
        assert!(e.contains("label 11 at index 2"), "{e}");
        // missing file
        std::fs::remove_file(dir.path().join(FILES[0])).unwrap();
        let e = load(dir.path(), Split::Train).unwrap_err().to_string();
        assert!(e.contains("train-images-idx3-ubyte.gz not found") && e.contains("--download"), "{e}");
    }

    #[test]
    fn sql_layout() {
        let ex = Examples::new((0..784 * 2).map(|k| (k % 256) as u8).collect(), vec![5, 0]).unwrap();
        let mut out = Vec::new();
        write_sql(&mut out, "mnist_x", &ex).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "CREATE TABLE mnist_x(id SERIAL NOT NULL PRIMARY KEY, label SMALLINT, pixels BYTEA);");
        assert!(lines[1].starts_with("INSERT INTO mnist_x(label, pixels) VALUES(5, '\\x000102"));
        assert!(lines[1].ends_with("');"));
        assert_eq!(lines[1].len(), "INSERT INTO mnist_x(label, pixels) VALUES(5, '\\x".len() + 1568 + 3);
    }
}
