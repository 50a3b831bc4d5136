//! Turns a run into what people read: the terminal summary and the versioned `run.json` document. Renderers take
//! plain values and return strings; they never print.

pub mod document;
pub mod server;
pub mod term;

pub use document::{RunDocument, SCHEMA_VERSION};
