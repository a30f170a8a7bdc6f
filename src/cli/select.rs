//! Flags that pick indices (`--match`, `--exclude`) and name them on a
//! target (`--rename`, `--prefix`, `--suffix`), shared by every command.

use clap::Args;
use regex::Regex;

use super::CliError;
use crate::catalog::IndexSelector;
use crate::restore::plan::Renamer;

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

/// Refuses a selection that picked nothing out of an input's `names` (all
/// of an archive's indices; `None` when unknown, for another tool's dump),
/// naming what was matched against: a typo in `--match` must not make a
/// restore or a verify succeed with nothing done. An input without any
/// index and without `--match` or `--exclude` (an archive of cluster
/// metadata only) is fine.
pub(crate) fn refuse_empty(
    selector: &IndexSelector,
    names: Option<&[String]>,
    input: &std::path::Path,
) -> Result<(), CliError> {
    let filtered = selector.include.is_some() || selector.exclude.is_some();
    if !filtered && names.is_some_and(|n| n.is_empty()) {
        return Ok(());
    }
    let what = match &selector.include {
        Some(re) => format!("--match '{}'", re.as_str()),
        None => "the selection".into(),
    };
    let among = match names {
        Some(names) => {
            let mut sorted = names.to_vec();
            sorted.sort();
            let shown = sorted
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            let more = if sorted.len() > 5 { ", …" } else { "" };
            format!(
                "none of the {} indices of {} ({shown}{more})",
                names.len(),
                input.display()
            )
        }
        None => format!("no index of {}", input.display()),
    };
    let exclude = selector
        .exclude
        .as_ref()
        .map(|e| format!(" once --exclude '{}' is applied", e.as_str()))
        .unwrap_or_default();
    Err(CliError::failure(anyhow::anyhow!(
        "nothing selected: {what} selects {among}{exclude}"
    )))
}

impl SelectArgs {
    /// A selective restore (`--match` or `--exclude`) puts back only the
    /// templates its indices need; a full one puts back all of them. (A
    /// copy selects with `--match` by default and copies every template.)
    pub fn keep_needed_templates(&self, plan: &mut crate::restore::plan::RestorePlan) {
        if self.match_.is_none() && self.exclude.is_none() {
            return;
        }
        let names: Vec<String> = plan.indices.iter().map(|i| i.target.clone()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        crate::restore::templates::keep_needed(&mut plan.templates, &names);
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
