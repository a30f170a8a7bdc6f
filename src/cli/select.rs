//! Flags that pick indices (`--match`, `--exclude`) and name them on a
//! target (`--rename`, `--prefix`, `--suffix`), shared by every command.

use clap::Args;
use regex::Regex;

use super::CliError;
use crate::catalog::IndexSelector;
use crate::plan::Renamer;

#[derive(Debug, Clone, Args)]
pub struct SelectArgs {
    /// Regex over index names (unanchored), tested against every index,
    /// hidden ones included.
    #[arg(long = "match", value_name = "REGEX")]
    pub match_: Option<String>,
    /// Regex of index names to leave out.
    #[arg(long, value_name = "REGEX")]
    pub exclude: Option<String>,
}

impl SelectArgs {
    /// `all_by_default`: without `--match`, select everything (restore)
    /// rather than the names not starting with `.` (dump, copy).
    pub fn resolve(&self, all_by_default: bool) -> Result<IndexSelector, CliError> {
        Ok(IndexSelector {
            include: compile("match", self.match_.as_deref())?,
            exclude: compile("exclude", self.exclude.as_deref())?,
            all_by_default,
        })
    }
}

fn compile(flag: &str, re: Option<&str>) -> Result<Option<Regex>, CliError> {
    re.map(|r| {
        Regex::new(r).map_err(|e| CliError::usage(anyhow::anyhow!("invalid --{flag} regex: {e}")))
    })
    .transpose()
}

#[derive(Debug, Clone, Args)]
pub struct RenameArgs {
    /// Rename target indices: `REGEX=REPLACEMENT` (`$1` for groups). Alias
    /// names are kept.
    #[arg(long, value_name = "REGEX=REPLACEMENT", allow_hyphen_values = true)]
    pub rename: Option<String>,
    /// Prefix added to every target index name (after --rename).
    #[arg(long, value_name = "P", default_value = "", allow_hyphen_values = true)]
    pub prefix: String,
    /// Suffix added to every target index name (after --rename).
    #[arg(long, value_name = "S", default_value = "", allow_hyphen_values = true)]
    pub suffix: String,
}

impl RenameArgs {
    pub fn resolve(&self) -> Result<Renamer, CliError> {
        let rename = self
            .rename
            .as_deref()
            .map(|spec| {
                Renamer::parse_rename(spec)
                    .map_err(|e| CliError::usage(anyhow::anyhow!("invalid --rename: {e}")))
            })
            .transpose()?;
        Ok(Renamer {
            rename,
            prefix: self.prefix.clone(),
            suffix: self.suffix.clone(),
        })
    }
}
