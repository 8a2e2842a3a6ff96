//! OIP v2 request bodies, JSON and binary: decoding never panics, and whatever decodes also
//! encodes back (the inputs echoed as outputs, as the server would answer).
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    // The first two bytes pick the Inference-Header-Content-Length (none, or a length that
    // may point anywhere, past the end included); the rest is the body.
    let (header_len, body) = match data {
        [0, rest @ ..] => (None, rest),
        [a, b, rest @ ..] => (Some(u16::from_le_bytes([*a, *b]).to_string()), rest),
        _ => (None, data),
    };
    for specs in [common::tensors(), common::single_tensor()] {
        if let Ok(req) = kiln_protocol::oip::decode_request(body, header_len.as_deref(), &specs) {
            let _ = kiln_protocol::oip::check_outputs(&req, &specs);
            let _ = kiln_protocol::oip::encode_response("m", Some("1"), req.id.as_deref(), &req.inputs, &req);
        }
    }
});
