//! MLflow `/invocations` CSV bodies against tensor inputs and raw columns: decoding never
//! panics.
#![no_main]

use kiln_protocol::scoring::{self, ModelInputs};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let single = common::single_tensor();
    let columns = common::columns();
    for wants in [ModelInputs::Tensors(&single), ModelInputs::Columns(&columns)] {
        let _ = scoring::decode(Some("text/csv"), data, wants);
    }
});
