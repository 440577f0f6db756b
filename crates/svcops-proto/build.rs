//! Compiles `proto/` with protox (pure Rust, no protoc) and generates prost + tonic code.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "svcops/common/v1/common.proto",
        "svcops/common/v1/projections.proto",
        "svcops/frontoffice/v1/events.proto",
        "svcops/frontoffice/v1/front_office.proto",
        "svcops/frontoffice/v1/customer.proto",
        "svcops/frontoffice/v1/routing.proto",
        "svcops/middleoffice/v1/events.proto",
        "svcops/middleoffice/v1/middle_office.proto",
        "svcops/backoffice/v1/events.proto",
        "svcops/backoffice/v1/back_office.proto",
        "svcops/listenin/v1/events.proto",
        "svcops/listenin/v1/listen_in.proto",
    ];
    let descriptors = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("svcops_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    // Type names let events carry their fully qualified protobuf name (`prost::Name`).
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds_with_config(descriptors, config)?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
