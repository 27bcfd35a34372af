//! Replays the committed fuzz corpora (fuzz/corpus/<target>/) and the inputs of crashes found and
//! fixed (fuzz/regressions/<target>/) through the same entry points the cargo-fuzz targets call,
//! so every input the fuzzers kept, and every past crash, runs in the normal test suite.

use std::path::Path;

type Entry = fn(&[u8]);

const TARGETS: [(&str, Entry); 4] = [
    ("ws_framing", confab_server::fuzzing::websocket),
    ("quic_framing", confab_server::fuzzing::quic_framing),
    ("client_frame", confab_server::fuzzing::client_frame),
    ("sdp", confab_server::fuzzing::sdp),
];

/// Runs `entry` on every file under `dir`; returns how many there were.
fn replay(dir: &Path, entry: Entry) -> usize {
    let Ok(files) = std::fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    for file in files {
        let path = file.expect("reading a corpus directory").path();
        let input = std::fs::read(&path).expect("reading a corpus file");
        let outcome = std::panic::catch_unwind(|| entry(&input));
        assert!(outcome.is_ok(), "{} panics", path.display());
        n += 1;
    }
    n
}

#[test]
fn every_corpus_and_regression_input_runs_clean() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for (target, entry) in TARGETS {
        let seeds = replay(&fuzz.join("corpus").join(target), entry);
        assert!(seeds > 0, "fuzz/corpus/{target} is empty");
        replay(&fuzz.join("regressions").join(target), entry);
    }
}
