//! kiln-loadtest against a small HTTP server whose answers each test controls: the open
//! loop (a stall must show in the latency of every request scheduled during it; drops and
//! statuses are counted), the concurrency sweep, and target preparation.

mod open_loop;
mod server;
mod sweep;
mod target;
