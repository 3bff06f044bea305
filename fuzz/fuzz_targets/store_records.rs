//! The store's on-disk decoders: mailbox-log records, outbound-queue records and checkpoints
//! (through the `#[doc(hidden)]` entry points in `surel::store`, since the codecs are
//! crate-private).
//!
//! Input: `[selector][kind][bytes...]`. The entry points compute the CRC themselves so the
//! fuzzer reaches the field parsers instead of failing the checksum.
//!
//! Invariants (asserted inside the entry points): a record that decodes encodes back to exactly
//! the same frame (header, CRC, payload), `encoded_len` is exact, the message bytes sit where
//! the decoder said, and decoding the re-encoded frame gives the same record; a checkpoint that
//! decodes encodes to one that decodes to the same index and log position.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [selector, kind, bytes @ ..] = data else {
        return;
    };
    match selector % 3 {
        // Mailbox records use kinds 1..=8, queue records 32 and 33: fold the kind byte onto
        // the interesting values most of the time.
        0 => {
            surel::store::fuzz_decode_record(if *kind < 200 { kind % 10 } else { *kind }, bytes);
        }
        1 => {
            surel::store::fuzz_decode_queue_record(
                if *kind < 200 { 31 + kind % 4 } else { *kind },
                bytes,
            );
        }
        _ => {
            surel::store::fuzz_decode_checkpoint(data, bytes);
        }
    }
});
