//! The filesystem side of configuration: reading a node file and the peer policy files it names.
//! Kept out of `config` so that module stays pure (text in, `Config` or errors out) and the
//! purity test can forbid filesystem access there.

use std::path::Path;

use crate::config::{parse, Config, ConfigError, ConfigErrorKind, ConfigErrors};

/// Reads and validates a node file and the peer policy files it names (paths relative to it).
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            field: "(file)".to_string(),
            kind: ConfigErrorKind::Io,
            message: format!("cannot read configuration file: {e}"),
        }])
    })?;
    parse(&text, path, &|p| std::fs::read_to_string(p))
}
