//! Every message form, FOGIS `tid` dates and envelope timestamps: decoding never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fogis_pubsub::decode(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = fogis_pubsub::envelope::parse_tid(text);
        let _ = fogis_pubsub::envelope::parse_timestamp(text);
    }
});
