//! kiln-release's integration tests: gates and lineage against a real SQLite store and a
//! local artifact store in a temporary folder.

mod common;
mod gates;
mod lineage;
