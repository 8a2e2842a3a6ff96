//! MLflow `/invocations` JSON bodies (dataframe_split, dataframe_records, instances, inputs)
//! against tensor inputs and raw columns: decoding never panics.
#![no_main]

use kiln_protocol::scoring::{self, ModelInputs};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let tensors = common::tensors();
    let single = common::single_tensor();
    let columns = common::columns();
    for wants in [
        ModelInputs::Tensors(&tensors),
        ModelInputs::Tensors(&single),
        ModelInputs::Columns(&columns),
    ] {
        if let Ok(scoring::Batch::Tensors(t)) = scoring::decode(Some("application/json"), data, wants) {
            let _ = scoring::encode_predictions(&t);
        }
    }
});
