//! Source folder → target folder, as pure functions so every rule is unit-tested without a
//! server. The same rules for every source: an IMAP account, a Maildir++ tree, a PST.
//!
//! Order of precedence for one source folder:
//! 1. not selectable (`\Noselect`) or excluded by `include`/`exclude` globs → skipped;
//! 2. an explicit `map:` entry → that target (segments split on `/`);
//! 3. a special-use role (`\Sent`, a PST's default folders) → the target's special folder
//!    name, because "Sent" at the source must land in M365's "Sent Items", not in a new
//!    folder beside it;
//! 4. a well-known top-level name of a source without roles (`Sent Messages`, `Spam`, …) →
//!    same;
//! 5. otherwise the source path ([`SourceFolder::path`]).
//!
//! Globs and map keys are matched against the name as the source spells it (`INBOX.Sent`)
//! and the normalized path (`Sent`); map keys also in its dotted form (`Projects.2023`), so
//! plans written either way work.

use std::collections::BTreeMap;

use super::SourceFolder;
use crate::connectors::folder_filter::FolderFilter;
use crate::plan::model::FolderRules;

/// RFC 6154 special-use roles that have a counterpart at every target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
}

impl SpecialUse {
    /// From LIST attributes (`\Sent`, `\Drafts`, `\Trash`, `\Junk`, `\Archive`).
    pub fn from_attributes(attrs: &[String]) -> Option<Self> {
        attrs
            .iter()
            .find_map(|a| match a.to_ascii_lowercase().as_str() {
                "\\sent" => Some(SpecialUse::Sent),
                "\\drafts" => Some(SpecialUse::Drafts),
                "\\trash" => Some(SpecialUse::Trash),
                "\\junk" => Some(SpecialUse::Junk),
                "\\archive" => Some(SpecialUse::Archive),
                _ => None,
            })
    }

    /// Well-known top-level names of servers without SPECIAL-USE.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_lowercase().as_str() {
            "sent" | "sent items" | "sent messages" | "sent mail" => Some(SpecialUse::Sent),
            "drafts" | "draft" => Some(SpecialUse::Drafts),
            "trash" | "deleted items" | "deleted messages" => Some(SpecialUse::Trash),
            "junk" | "spam" | "junk e-mail" | "junk email" | "bulk mail" => Some(SpecialUse::Junk),
            "archive" | "archives" => Some(SpecialUse::Archive),
            _ => None,
        }
    }
}

/// The target's names for the special folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetNames {
    pub sent: String,
    pub drafts: String,
    pub trash: String,
    pub junk: String,
    pub archive: String,
}

impl TargetNames {
    /// Microsoft 365 / Exchange Online display names.
    pub fn m365() -> Self {
        TargetNames {
            sent: "Sent Items".into(),
            drafts: "Drafts".into(),
            trash: "Deleted Items".into(),
            junk: "Junk Email".into(),
            archive: "Archive".into(),
        }
    }

    /// Dovecot's and most IMAP servers' conventional names.
    pub fn imap() -> Self {
        TargetNames {
            sent: "Sent".into(),
            drafts: "Drafts".into(),
            trash: "Trash".into(),
            junk: "Junk".into(),
            archive: "Archive".into(),
        }
    }

    pub fn name(&self, role: SpecialUse) -> &str {
        match role {
            SpecialUse::Sent => &self.sent,
            SpecialUse::Drafts => &self.drafts,
            SpecialUse::Trash => &self.trash,
            SpecialUse::Junk => &self.junk,
            SpecialUse::Archive => &self.archive,
        }
    }
}

/// Applies a plan's [`FolderRules`] and the target's special-folder names.
#[derive(Debug, Clone)]
pub struct FolderMapper {
    filter: FolderFilter,
    map: BTreeMap<String, String>,
    names: TargetNames,
}

impl FolderMapper {
    /// Fails on an invalid glob, naming it.
    pub fn new(rules: &FolderRules, names: TargetNames) -> Result<Self, String> {
        Ok(FolderMapper {
            filter: FolderFilter::new(rules)?,
            map: rules.map.clone(),
            names,
        })
    }

    /// The target folder of `folder`, or `None` when it is not copied.
    pub fn map(&self, folder: &SourceFolder) -> Option<Vec<String>> {
        match self.route(folder) {
            Route::Copy(target) => Some(target),
            Route::Excluded | Route::Container => None,
        }
    }

    /// What the plan does with `folder`: [`map`](Self::map), telling apart the two reasons
    /// for not copying it, because a preview lists excluded folders (mail left behind) but
    /// not hierarchy nodes (nothing to leave).
    pub fn route(&self, folder: &SourceFolder) -> Route {
        if !folder.selectable {
            return Route::Container;
        }
        let path = &folder.path;
        let joined = if path.is_empty() {
            "INBOX".to_owned()
        } else {
            path.join("/")
        };
        if !self.filter.selects(&[&folder.display, &joined]) {
            return Route::Excluded;
        }
        let explicit = self
            .map
            .get(&folder.display)
            .or_else(|| self.map.get(&joined))
            .or_else(|| self.map.get(&path.join(".")).filter(|_| !path.is_empty()));
        let special = folder.special.or_else(|| {
            (path.len() == 1)
                .then(|| SpecialUse::from_name(&path[0]))
                .flatten()
        });
        let target = match (explicit, special) {
            (Some(t), _) => split_target(t),
            (None, Some(role)) => vec![self.names.name(role).to_owned()],
            (None, None) => path.clone(),
        };
        Route::Copy(target)
    }
}

/// See [`FolderMapper::route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Copied into this target folder (segments; empty is the inbox).
    Copy(Vec<String>),
    /// Left out by the plan's `include`/`exclude` rules.
    Excluded,
    /// `\Noselect`/`\NonExistent`: a hierarchy node that holds no messages.
    Container,
}

/// A target path (`/`-separated in plans) as segments.
pub fn split_target(t: &str) -> Vec<String> {
    let segs: Vec<String> = t
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if segs.len() == 1 && segs[0].eq_ignore_ascii_case("INBOX") {
        return Vec::new();
    }
    segs
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::connectors::imap::folders::target_wire_name;
    use crate::connectors::imap::Mailbox;
    use crate::connectors::mailflow::imap_source::source_folder;

    /// An IMAP LIST entry as the IMAP source describes it.
    fn mb(name: &str, delim: char, attrs: &[&str]) -> SourceFolder {
        source_folder(&Mailbox {
            name: name.into(),
            delimiter: Some(delim),
            attributes: attrs.iter().map(|s| s.to_string()).collect(),
        })
    }

    fn mapper(include: &[&str], exclude: &[&str], map: &[(&str, &str)]) -> FolderMapper {
        let rules = FolderRules {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            map: map
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        };
        FolderMapper::new(&rules, TargetNames::m365()).unwrap()
    }

    fn target(m: &FolderMapper, b: &SourceFolder) -> Option<Vec<String>> {
        m.map(b)
    }

    #[test]
    fn inbox_prefix_and_separator() {
        let m = mapper(&[], &[], &[]);
        assert_eq!(target(&m, &mb("INBOX", '.', &[])), Some(vec![]));
        assert_eq!(
            target(&m, &mb("INBOX.Projects.2023", '.', &[])),
            Some(vec!["Projects".into(), "2023".into()])
        );
        assert_eq!(
            target(&m, &mb("Projects/2023", '/', &[])),
            Some(vec!["Projects".into(), "2023".into()])
        );
        let f = m.map(&mb("INBOX.Projects.2023", '.', &[])).unwrap();
        assert_eq!(target_wire_name(&f, '/'), "Projects/2023");
    }

    #[test]
    fn special_use_and_well_known_names() {
        let m = mapper(&[], &[], &[]);
        assert_eq!(
            target(&m, &mb("Gesendet", '.', &["\\HasNoChildren", "\\Sent"])),
            Some(vec!["Sent Items".into()])
        );
        assert_eq!(
            target(&m, &mb("INBOX.Spam", '.', &[])),
            Some(vec!["Junk Email".into()])
        );
        assert_eq!(
            target(&m, &mb("Trash", '/', &[])),
            Some(vec!["Deleted Items".into()])
        );
        assert_eq!(
            target(&m, &mb("Drafts", '/', &["\\Drafts"])),
            Some(vec!["Drafts".into()])
        );
        assert_eq!(
            target(&m, &mb("Old", '/', &["\\Archive"])),
            Some(vec!["Archive".into()])
        );
        // Only top-level names are guessed.
        assert_eq!(
            target(&m, &mb("Clients.Sent", '.', &[])),
            Some(vec!["Clients".into(), "Sent".into()])
        );
        assert_eq!(mb("Sent", '/', &["\\Sent"]).special, Some(SpecialUse::Sent));
    }

    #[test]
    fn modified_utf7_both_ways() {
        let m = mapper(&[], &[], &[]);
        let f = m
            .map(&mb("INBOX.Entw&APw-rfe.&AMQ-rger", '.', &[]))
            .unwrap();
        assert_eq!(f, vec!["Entwürfe".to_string(), "Ärger".to_string()]);
        assert_eq!(target_wire_name(&f, '/'), "Entw&APw-rfe/&AMQ-rger");
        assert_eq!(target_wire_name(&f, '.'), "Entw&APw-rfe.&AMQ-rger");
        // Not valid modified UTF-7: kept as the server sent it.
        assert_eq!(
            target(&m, &mb("Caf\u{e9}", '.', &[])),
            Some(vec!["Caf\u{e9}".into()])
        );
        assert_eq!(target_wire_name(&["a&b".into()], '/'), "a&-b");
    }

    #[test]
    fn delimiter_inside_a_segment_does_not_add_a_level() {
        let f = mapper(&[], &[], &[]).map(&mb("Q1/Q2", '.', &[])).unwrap();
        assert_eq!(f, vec!["Q1/Q2".to_string()]);
        assert_eq!(target_wire_name(&f, '/'), "Q1_Q2");
    }

    #[test]
    fn include_exclude_and_explicit_map() {
        let m = mapper(
            &[],
            &["Junk*", "INBOX.Old*"],
            &[("INBOX.Sent", "Sent Items/From IONOS"), ("Notes", "INBOX")],
        );
        assert_eq!(target(&m, &mb("INBOX.Junk", '.', &[])), None);
        assert_eq!(target(&m, &mb("INBOX.Old.2019", '.', &[])), None);
        assert_eq!(
            target(&m, &mb("INBOX.Sent", '.', &["\\Sent"])),
            Some(vec!["Sent Items".into(), "From IONOS".into()])
        );
        assert_eq!(target(&m, &mb("INBOX.Notes", '.', &[])), Some(vec![]));
        let only = mapper(&["Projects", "Projects/**"], &[], &[]);
        assert_eq!(target(&only, &mb("INBOX", '.', &[])), None);
        assert!(target(&only, &mb("INBOX.Projects.A", '.', &[])).is_some());
        assert!(target(&only, &mb("Projects/A/B", '/', &[])).is_some());
        assert_eq!(target(&only, &mb("Other/Projects", '/', &[])), None);
    }

    #[test]
    fn noselect_is_skipped_and_bad_globs_are_reported() {
        let m = mapper(&[], &[], &[]);
        assert_eq!(target(&m, &mb("INBOX.Parent", '.', &["\\Noselect"])), None);
        assert_eq!(
            m.route(&mb("INBOX.Parent", '.', &["\\Noselect"])),
            Route::Container
        );
        let junk = mapper(&[], &["Junk*"], &[]);
        assert_eq!(junk.route(&mb("INBOX.Junk", '.', &[])), Route::Excluded);
        let rules = FolderRules {
            include: vec!["[".into()],
            ..FolderRules::default()
        };
        let err = FolderMapper::new(&rules, TargetNames::imap()).unwrap_err();
        assert!(err.contains("\"[\""), "{err}");
    }
}
