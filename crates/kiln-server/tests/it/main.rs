//! The HTTP suite: the in-process app on 127.0.0.1:0, against SQLite and, when reachable,
//! PostgreSQL.

mod common;
mod logged_models;
mod monitoring;
mod registry;
mod tracking;
