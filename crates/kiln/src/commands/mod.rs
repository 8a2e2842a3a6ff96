pub mod data;
pub mod server;
