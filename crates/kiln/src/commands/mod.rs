pub mod data;
pub mod features;
pub mod keys;
pub mod package;
pub mod server;
pub mod train;
