//! The configuration loader, `surel::config::Config::from_toml`, on arbitrary text.
//!
//! Invariants: no panic (the error path slices the user's text to name a line); a document
//! that loads passes `validate` and the accessors work on it; an error that names a line names
//! one inside the document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use surel::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text) {
        Ok(config) => {
            config.validate().expect("a loaded config is valid");
            let _ = config.effective_cores();
            for listener in ["smtp", "submission", "pop3", "imap"] {
                let _ = config.is_enabled(listener);
            }
            let _ = config.relay.smarthost.detail();
            for hop in config.relay.routes.values() {
                let _ = hop.detail();
            }
        }
        Err(e) => {
            if let Some(rest) = e.0.strip_prefix("line ") {
                let n: usize = rest
                    .split(':')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("a line number");
                assert!(n >= 1 && n <= text.lines().count().max(1) + 1, "line {n}: {e}");
            }
        }
    }
});
