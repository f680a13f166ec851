//! Bodies that are not the request's protobuf, and bodies over the limit, are
//! the caller's fault: INVALID_ARGUMENT and RESOURCE_EXHAUSTED, never INTERNAL.
mod common;

use common::Harness;
use linli_core::testing::{Backend, admin_token, with_token};
use tonic::Code;

/// Field 1 as a number, where `ListPlacesRequest` has a string: a body that does not decode.
#[derive(Clone, PartialEq, prost::Message)]
struct NotTheRequest {
    #[prost(int64, tag = "1")]
    number: i64,
}

async fn call_raw<M: prost::Message + Default + Clone + Send + Sync + 'static>(
    h: &Harness,
    msg: M,
) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(h.server.channel.clone());
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/linli.people.v1.PeopleService/ListPlaces");
    let codec =
        tonic_prost::ProstCodec::<M, linli_proto::people::v1::ListPlacesResponse>::default();
    grpc.unary(with_token(msg, &admin_token()), path, codec)
        .await
        .expect_err("the server refuses it")
}

#[tokio::test]
async fn a_body_that_does_not_decode_is_invalid_argument() {
    let h = Harness::start(Backend::Sqlite).await;
    let status = call_raw(&h, NotTheRequest { number: 7 }).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("decode"), "{status:?}");
}

#[tokio::test]
async fn an_oversized_body_is_resource_exhausted() {
    let h = Harness::start(Backend::Sqlite).await;
    let huge = linli_proto::people::v1::ListPlacesRequest {
        parent_id: "x".repeat(linli_core::edge::MAX_MESSAGE_BYTES + 1),
        ..Default::default()
    };
    let status = call_raw(&h, huge).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // The server is fine afterwards.
    let mut client = h.client.clone();
    client
        .list_places(linli_proto::people::v1::ListPlacesRequest::default())
        .await
        .unwrap();
}
