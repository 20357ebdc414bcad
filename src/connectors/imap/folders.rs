//! Placeholder, filled in next.
pub struct FolderMapper;
pub struct MappedFolder;
pub enum SpecialUse {}
