//! What several end-to-end test files share.
pub mod chrome;
pub mod firefox;
pub mod media;
pub mod netns;
