//! Trace export: with an OTLP endpoint set, each RPC becomes a server span,
//! named by the RPC and joined to the caller's W3C trace, and reaches an OTLP
//! collector. The collector here is an in-test receiver on port 0.
//!
//! This file is its own test process, so it may install the global subscriber.
use linli_core::config::LogFormat;
use linli_core::server::ServeSettings;
use linli_core::testing::{Backend, TestDb, TestServer};
use linli_proto::people::v1 as pb;
use linli_proto::people::v1::people_service_client::PeopleServiceClient;
use tonic::Request;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpcs_are_exported_as_spans_in_the_callers_trace() {
    let collector = linli_core::testing::otlp::Collector::spawn().await;
    let endpoint = collector.endpoint.clone();

    let telemetry =
        linli_core::telemetry::init("people", LogFormat::Human, Some(&endpoint)).unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let store = linli_people::open_store(&linli_people::Settings::new(&db.url).unwrap())
        .await
        .unwrap();
    let server = TestServer::spawn(linli_people::grpc_server(
        store,
        linli_core::testing::keys(),
        ServeSettings::default(),
    ))
    .await;
    let mut client = PeopleServiceClient::new(linli_core::testing::authed(server.channel.clone()));

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let mut req = Request::new(pb::ListUnitsRequest::default());
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_span}-01").parse().unwrap(),
    );
    client.list_units(req).await.unwrap();
    // A failing call is traced too.
    let _ = client
        .get_place(pb::GetPlaceRequest {
            place_id: "x".into(),
        })
        .await;

    server.stop().await;
    // Shutting down flushes every buffered span to the collector.
    telemetry.shutdown();
    let exported = collector.resource_spans();
    let spans: Vec<_> = exported
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let list = spans
        .iter()
        .find(|s| s.name == "linli.people.v1.PeopleService/ListUnits")
        .unwrap_or_else(|| panic!("no ListUnits span in {names:?}"));
    assert_eq!(
        hex(&list.trace_id),
        trace_id,
        "the span joins the caller's trace"
    );
    assert_eq!(hex(&list.parent_span_id), parent_span);
    assert!(
        names.contains(&"linli.people.v1.PeopleService/GetPlace"),
        "{names:?}"
    );
    // Transport internals (h2, hyper, tonic, tower) are kept out of the export.
    assert!(names.iter().all(|n| n.starts_with("linli.")), "{names:?}");
    let service_name = exported[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .find(|a| a.key == "service.name")
        .and_then(|a| a.value.as_ref())
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    assert!(service_name.contains("linli-people"), "{service_name}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
