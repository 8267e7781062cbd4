//! `--download`: fetch the four MNIST files from a mirror, with a progress bar and an MD5
//! check against the published checksums.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};
use tensorcdc_dataset::mnist::FILES;

/// The default mirror (the one TensorFlow's MNIST tutorials use).
pub const DEFAULT_URL: &str = "https://storage.googleapis.com/cvdf-datasets/mnist/";

/// MD5 of the four original MNIST files.
const MD5: [(&str, &str); 4] = [
    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
];

/// Downloads the files missing from `dir`. `verify` checks the MNIST checksums
/// (turn it off for another data set in the same format, such as Fashion-MNIST).
pub fn download(base_url: &str, dir: &Path, verify: bool) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let base = if base_url.ends_with('/') { base_url.to_string() } else { format!("{base_url}/") };
    for name in FILES {
        let path = dir.join(name);
        if path.exists() {
            eprintln!("{name}: already in {}", dir.display());
            continue;
        }
        let url = format!("{base}{name}");
        let resp = ureq::get(&url).timeout(std::time::Duration::from_secs(60)).call().map_err(|e| {
            anyhow::anyhow!(
                "downloading {url} failed: {e}\n\
                 No network? Put the four MNIST files ({}) in a directory and pass --data DIR \
                 (Fashion-MNIST in the same format: `apt-get install dataset-fashion-mnist`, then \
                 --data /usr/share/datasets/fashion-mnist), or point --url at a mirror you can reach.",
                FILES.join(", ")
            )
        })?;
        let len = resp.header("Content-Length").and_then(|v| v.parse::<u64>().ok());
        let bar = ProgressBar::new(len.unwrap_or(0));
        bar.set_style(ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}").expect("template"));
        bar.set_message(name);
        let mut body = Vec::new();
        bar.wrap_read(resp.into_reader()).read_to_end(&mut body).with_context(|| format!("reading {url}"))?;
        bar.finish_and_clear();
        if verify {
            let want = MD5.iter().find(|(n, _)| *n == name).map(|(_, h)| *h).unwrap_or_default();
            let got = hex::encode(Md5::digest(&body));
            if got != want {
                bail!("{url}: MD5 {got} does not match MNIST's {want}; pass --no-checksum if this mirror serves another data set in the MNIST format");
            }
        }
        let tmp = path.with_extension("part");
        std::fs::write(&tmp, &body).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)?;
        eprintln!("{name}: {} bytes from {url}", body.len());
    }
    Ok(())
}
