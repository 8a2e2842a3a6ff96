//! Integration tests for kiln-core, built as one test binary so they link once.

mod search_cases;
mod search_props;
