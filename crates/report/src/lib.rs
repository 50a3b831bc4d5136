//! Turns a run into what people read: the terminal summary and the versioned `run.json` document. Renderers take
//! plain values and return strings; they never print.

pub mod compare;
pub mod diagnosis;
pub mod document;
pub mod history;
pub mod html;
pub mod markdown;
pub mod plan;
pub mod server;
pub mod table;
pub mod term;
pub mod trace;

pub use document::{DiagnosisDocument, RunDocument, SCHEMA_VERSION};
