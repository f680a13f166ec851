//! Compiles proto/ with protox (pure Rust), so a build needs no system `protoc`.
use std::path::PathBuf;

use prost::Message;

const FILES: &[&str] = &[
    "linli/common/v1/common.proto",
    "linli/people/v1/people.proto",
    "linli/issues/v1/issues.proto",
    "linli/logistics/v1/logistics.proto",
    "linli/gateway/v1/gateway.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let files: Vec<PathBuf> = FILES.iter().map(|f| root.join(f)).collect();
    let fds = protox::compile(&files, [&root])?;

    // Reflection serves this descriptor set, so clients like `buf curl` and
    // grpcurl can call the services without the .proto files.
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("linli_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
