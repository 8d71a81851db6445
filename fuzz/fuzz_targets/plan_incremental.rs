#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz_entries::plan_incremental(data));
