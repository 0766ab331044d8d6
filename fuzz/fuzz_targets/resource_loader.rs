//! Any resource file an admin (or the admin API) can hand in: loaded with the loader's
//! size and depth limits, and compiled when it loads. Nothing may panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = tollgate_crds::parse_documents("fuzz.yaml", text) {
        let _ = tollgate_crds::compile(&parsed.resources);
    }
});
