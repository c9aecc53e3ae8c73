use super::*;
use std::collections::HashMap;

fn with(vars: &[(&str, &str)], config: &TracingConfig) -> Result<Option<Settings>, Vec<Fault>> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env = move |k: &str| vars.get(k).cloned();
    let host = Host {
        host: Some("node-a".into()),
        pod: Some("obsd-7f9c".into()),
        namespace: Some("observability".into()),
        node: None,
    };
    resolve(config, &env, &host)
}

fn on(vars: &[(&str, &str)]) -> Settings {
    with(vars, &TracingConfig::default()).unwrap().unwrap()
}

fn keys(faults: Vec<Fault>) -> Vec<String> {
    faults.into_iter().map(|f| f.key).collect()
}

#[test]
fn nothing_set_exports_nothing() {
    assert_eq!(with(&[], &TracingConfig::default()), Ok(None));
}

#[test]
fn an_endpoint_turns_the_exporter_on_and_http_gets_the_signal_path() {
    let s = on(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
    assert_eq!(s.endpoint, "http://collector:4318/v1/traces");
    assert_eq!(s.protocol, Protocol::HttpProtobuf);
    let s = on(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4318/custom",
        ),
    ]);
    assert_eq!(s.endpoint, "http://collector:4318/custom");
    let s = on(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ]);
    assert_eq!(
        (s.endpoint.as_str(), s.protocol),
        ("https://collector:4317", Protocol::Grpc)
    );
    let s = on(&[("OTEL_TRACES_EXPORTER", "otlp")]);
    assert_eq!(s.endpoint, "http://localhost:4318/v1/traces");
}

#[test]
fn disabled_and_none_win_over_an_endpoint() {
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
    let config = TracingConfig {
        exporter: Some("otlp".into()),
        ..Default::default()
    };
    for off in [
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_SDK_DISABLED", "TRUE"),
        ("OTEL_TRACES_EXPORTER", "none"),
    ] {
        assert_eq!(with(&[endpoint, off], &config), Ok(None), "{off:?}");
    }
    assert!(with(&[endpoint, ("OTEL_SDK_DISABLED", "false")], &config)
        .unwrap()
        .is_some());
    let file_off = TracingConfig {
        exporter: Some("none".into()),
        endpoint: Some("http://collector:4318".into()),
        ..Default::default()
    };
    assert_eq!(with(&[], &file_off), Ok(None));
    // The environment wins over the file.
    assert!(with(&[("OTEL_TRACES_EXPORTER", "otlp")], &file_off)
        .unwrap()
        .is_some());
}

#[test]
fn the_file_is_used_where_the_environment_is_silent() {
    let config = TracingConfig {
        endpoint: Some("http://file:4317".into()),
        protocol: "grpc".into(),
        service_name: Some("obsd-eu".into()),
        timeout_ms: 2500,
        ..Default::default()
    };
    let s = with(&[], &config).unwrap().unwrap();
    assert_eq!(s.endpoint, "http://file:4317");
    assert_eq!(s.protocol, Protocol::Grpc);
    assert_eq!(s.timeout, Duration::from_millis(2500));
    assert_eq!(s.resource["service.name"], "obsd-eu");
    let s = with(
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "700"),
            ("OTEL_SERVICE_NAME", "from-env"),
        ],
        &config,
    )
    .unwrap()
    .unwrap();
    assert_eq!(s.endpoint, "http://file:4317/v1/traces");
    assert_eq!(s.timeout, Duration::from_millis(700));
    assert_eq!(s.resource["service.name"], "from-env");
}

#[test]
fn the_resource_names_the_service_its_version_and_where_it_runs() {
    let s = on(&[("OTEL_TRACES_EXPORTER", "otlp")]);
    assert_eq!(s.resource["service.name"], "hestyna-obsd");
    assert_eq!(s.resource["service.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s.resource["service.instance.id"], "obsd-7f9c");
    assert_eq!(s.resource["host.name"], "node-a");
    assert_eq!(s.resource["k8s.pod.name"], "obsd-7f9c");
    assert_eq!(s.resource["k8s.namespace.name"], "observability");
    let s = on(&[
        ("OTEL_TRACES_EXPORTER", "otlp"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=attr-name, deployment.environment=prod%2Deu",
        ),
    ]);
    assert_eq!(s.resource["service.name"], "attr-name");
    assert_eq!(s.resource["deployment.environment"], "prod-eu");
    let s = on(&[
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_RESOURCE_ATTRIBUTES", "service.name=attr-name"),
        ("OTEL_SERVICE_NAME", "wins"),
    ]);
    assert_eq!(s.resource["service.name"], "wins");
}

#[test]
fn headers_from_the_file_and_the_environment_which_wins() {
    let config = TracingConfig {
        endpoint: Some("http://c:4318".into()),
        headers: [
            ("X-Api-Key".to_string(), "from-file".to_string()),
            ("x-tenant".into(), "t1".into()),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let s = with(
        &[("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=from%20env")],
        &config,
    )
    .unwrap()
    .unwrap();
    assert_eq!(s.headers["x-api-key"], "from env");
    assert_eq!(s.headers["x-tenant"], "t1");
}

#[test]
fn samplers_and_their_ratio() {
    let exporter = ("OTEL_TRACES_EXPORTER", "otlp");
    assert_eq!(
        on(&[exporter]).sampling,
        Sampling::ParentBased(Root::AlwaysOn)
    );
    let s = on(&[
        exporter,
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
    ]);
    assert_eq!(s.sampling, Sampling::Ratio(0.25));
    let s = on(&[
        exporter,
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
    ]);
    assert_eq!(s.sampling, Sampling::ParentBased(Root::Ratio(1.0)));
    assert_eq!(
        on(&[exporter, ("OTEL_TRACES_SAMPLER", "always_off")]).sampling,
        Sampling::AlwaysOff
    );
}

#[test]
fn every_bad_value_is_reported_at_once_with_its_variable_or_key() {
    let config = TracingConfig {
        batch_spans: 5000,
        max_links_per_span: 8,
        ..Default::default()
    };
    let faults = with(
        &[
            ("OTEL_SDK_DISABLED", "yes"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue,x-key=%zz"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "ten"),
            ("OTEL_BSP_SCHEDULE_DELAY", "0"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            ("OTEL_RESOURCE_ATTRIBUTES", "=x"),
        ],
        &config,
    )
    .unwrap_err();
    assert_eq!(
        keys(faults),
        [
            "OTEL_SDK_DISABLED",
            "OTEL_TRACES_EXPORTER",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "OTEL_BSP_SCHEDULE_DELAY",
            "telemetry.tracing.batch_spans",
            "OTEL_TRACES_SAMPLER_ARG",
            "OTEL_RESOURCE_ATTRIBUTES",
        ]
    );
}

#[test]
fn a_fault_never_prints_a_header_value_or_an_endpoints_password() {
    let config = TracingConfig {
        endpoint: Some("ftp://user:hunter2@collector".into()),
        headers: [("bad header".to_string(), "s3cret-token".to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let faults = with(&[], &config).unwrap_err();
    let text = format!("{faults:?}");
    assert!(
        !text.contains("s3cret-token") && !text.contains("hunter2"),
        "{text}"
    );
    assert_eq!(
        keys(faults),
        [
            "telemetry.tracing.endpoint",
            "telemetry.tracing.headers.bad header"
        ]
    );
}
