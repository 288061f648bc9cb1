//! The config loader on arbitrary text. Never a panic; an error names at least one problem,
//! each with a key path.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Relative file names resolve into an empty directory: nothing to read there.
    let dir = std::env::temp_dir().join("gateway-fuzz-config-empty");
    let _ = std::fs::create_dir_all(&dir);
    if let Err(e) = gateway::load::from_str(text, &dir) {
        assert!(!e.problems.is_empty());
        assert!(e.problems.iter().all(|p| !p.key.is_empty()));
    }
});
