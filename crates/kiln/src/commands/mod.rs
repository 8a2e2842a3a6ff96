pub mod data;
pub mod features;
pub mod server;
