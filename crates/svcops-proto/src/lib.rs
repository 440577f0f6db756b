//! Protobuf contracts of svcops: the gRPC services and the events of every office.
//!
//! Everything here is generated from `proto/` by `build.rs`; protobuf types stop at each
//! service's `grpc.rs` edge and never reach domain code.
#![allow(clippy::all, missing_docs, rust_2018_idioms)]

pub mod common {
    pub mod v1 {
        tonic::include_proto!("svcops.common.v1");
    }
}
pub mod frontoffice {
    pub mod v1 {
        tonic::include_proto!("svcops.frontoffice.v1");
    }
}
pub mod middleoffice {
    pub mod v1 {
        tonic::include_proto!("svcops.middleoffice.v1");
    }
}
pub mod backoffice {
    pub mod v1 {
        tonic::include_proto!("svcops.backoffice.v1");
    }
}
pub mod listenin {
    pub mod v1 {
        tonic::include_proto!("svcops.listenin.v1");
    }
}

/// Encoded `FileDescriptorSet` of every svcops proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/svcops_descriptor.bin"));
