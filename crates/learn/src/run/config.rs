//! `tensorcdc run --config pipeline.toml`: the run's settings in a file. Every flag is a key
//! (`retrain_every = 200` or `retrain-every = 200`), lists are arrays (`layers = [64, 64]`),
//! librdkafka settings a table (`[kafka_settings]`). The file's settings go before the
//! command line's, and a flag given twice takes its last value, so flags win over the file.
//!
//! ```toml
//! source = "postgres://postgres@localhost/shop"
//! table = "loans"
//! label = "defaulted"
//! layers = [64, 64]
//! retrain_every = 500
//! metrics_addr = "0.0.0.0:9187"
//! ```

use std::ffi::OsString;

use anyhow::{bail, Context, Result};

/// The flags a TOML file stands for.
pub fn args_from_toml(text: &str, path: &str) -> Result<Vec<OsString>> {
    let table: toml::Table = text.parse().with_context(|| format!("{path}: not TOML"))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let flag = format!("--{}", key.replace('_', "-"));
        let scalar = |v: &toml::Value| -> Result<String> {
            Ok(match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => bail!("{path}: key {key:?}: expected a string, number or boolean, got {}", other.type_str()),
            })
        };
        match &value {
            toml::Value::Array(items) => {
                let parts = items.iter().map(scalar).collect::<Result<Vec<_>>>()?;
                out.push(format!("{flag}={}", parts.join(",")).into());
            }
            toml::Value::Table(t) if key == "kafka_settings" || key == "kafka-settings" => {
                for (k, v) in t {
                    out.push("-X".into());
                    out.push(format!("{k}={}", scalar(v)?).into());
                }
            }
            v => out.push(format!("{flag}={}", scalar(v)?).into()),
        }
    }
    Ok(out)
}

/// The command line with `run --config FILE` replaced by the file's flags (placed first, so
/// the command line's own flags win).
pub fn expand(argv: Vec<OsString>) -> Result<Vec<OsString>> {
    if argv.get(1).and_then(|a| a.to_str()) != Some("run") {
        return Ok(argv);
    }
    let mut rest = Vec::new();
    let mut file = None;
    let mut it = argv[2..].iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--config") => file = Some(it.next().context("--config needs a file")?.clone()),
            Some(s) if s.starts_with("--config=") => file = Some(OsString::from(&s["--config=".len()..])),
            _ => rest.push(a.clone()),
        }
    }
    let Some(file) = file else { return Ok(argv) };
    let path = file.to_string_lossy().into_owned();
    let text = std::fs::read_to_string(&file).with_context(|| format!("--config {path}"))?;
    let mut out = vec![argv[0].clone(), argv[1].clone()];
    out.extend(args_from_toml(&text, &path)?);
    out.extend(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_becomes_flags_and_the_command_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pipeline.toml");
        std::fs::write(&f, "source = \"postgres://x\"\ntable = \"loans\"\nlabel = \"y\"\nlayers = [32, 16]\nretrain_every = 50\n[kafka_settings]\n\"session.timeout.ms\" = 6000\n").unwrap();
        let argv: Vec<OsString> = ["tensorcdc", "run", "--config", f.to_str().unwrap(), "--retrain-every", "7"].iter().map(OsString::from).collect();
        let out: Vec<String> = expand(argv).unwrap().into_iter().map(|s| s.into_string().unwrap()).collect();
        assert_eq!(&out[..2], ["tensorcdc", "run"]);
        assert!(out.contains(&"--layers=32,16".to_string()) && out.contains(&"--source=postgres://x".to_string()), "{out:?}");
        assert!(out.windows(2).any(|w| w == ["-X", "session.timeout.ms=6000"]), "{out:?}");
        assert_eq!(out[out.len() - 2..], ["--retrain-every", "7"], "the command line comes last: {out:?}");
        let err = args_from_toml("layers = [[1]]", "p.toml").unwrap_err().to_string();
        assert!(err.contains("p.toml") && err.contains("layers"), "{err}");
        assert!(args_from_toml("not toml =", "p.toml").unwrap_err().to_string().contains("p.toml"));
    }
}
