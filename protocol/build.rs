//! Generates the protocol types from `proto/confab/v1/*.proto` with protox (no system protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new("proto");
    let mut files: Vec<_> = std::fs::read_dir(dir.join("confab/v1"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(&files, [dir])?;
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    config.compile_fds(fds)?;
    Ok(())
}
