//! kiln-data's integration tests in one binary (`cargo test -p kiln-data --test it`).

mod drift;
