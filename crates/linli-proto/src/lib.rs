//! linli's gRPC contracts. One module per proto package, generated at build time.

/// Every linli proto file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/linli_descriptor.bin"));

pub mod common {
    pub mod v1 {
        tonic::include_proto!("linli.common.v1");
    }
}

pub mod people {
    pub mod v1 {
        tonic::include_proto!("linli.people.v1");
    }
}

pub mod issues {
    pub mod v1 {
        tonic::include_proto!("linli.issues.v1");
    }
}

pub mod logistics {
    pub mod v1 {
        tonic::include_proto!("linli.logistics.v1");
    }
}

pub mod gateway {
    pub mod v1 {
        tonic::include_proto!("linli.gateway.v1");
    }
}
