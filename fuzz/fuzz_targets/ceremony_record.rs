#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sn2::fuzzing::ceremony_record(data));
