//! The plan's folder `include`/`exclude` globs, shared by every source connector so a rule
//! means the same for an mbox, a Maildir and an IMAP account: `*` within one level, `**`
//! across levels, matched against `/`-separated folder names.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::plan::model::FolderRules;

#[derive(Debug, Clone)]
pub struct FolderFilter {
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl FolderFilter {
    /// Fails on an invalid glob, naming it (validation reports these first).
    pub fn new(rules: &FolderRules) -> Result<FolderFilter, String> {
        let build = |patterns: &[String]| -> Result<GlobSet, String> {
            let mut set = GlobSetBuilder::new();
            for p in patterns {
                let glob = GlobBuilder::new(p)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| format!("folder glob {p:?}: {e}"))?;
                set.add(glob);
            }
            set.build().map_err(|e| e.to_string())
        };
        Ok(FolderFilter {
            include: if rules.include.is_empty() {
                None
            } else {
                Some(build(&rules.include)?)
            },
            exclude: build(&rules.exclude)?,
        })
    }

    /// Whether a folder known by any of `names` (e.g. its decoded and its joined spelling) is
    /// copied: some name matches `include` (or there is none), and no name matches `exclude`.
    pub fn selects(&self, names: &[&str]) -> bool {
        let matches = |set: &GlobSet| names.iter().any(|n| set.is_match(n));
        self.include.as_ref().is_none_or(matches) && !matches(&self.exclude)
    }
}
