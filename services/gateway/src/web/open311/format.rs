//! GeoReport v2's two formats. Every endpoint is served as `.json` and `.xml`
//! ("XML is a required format"), errors included: a list of records becomes a
//! JSON array, or `<root><item>…</item></root>` with one element per field
//! (an empty element for a field with no value, nested lists as nested
//! elements), as the spec's examples have them.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    /// The name and format a file asks for: `requests.xml` → (`requests`, XML).
    pub fn of(file: &str) -> Option<(&str, Format)> {
        if let Some(stem) = file.strip_suffix(".json") {
            Some((stem, Format::Json))
        } else {
            file.strip_suffix(".xml").map(|stem| (stem, Format::Xml))
        }
    }
}

/// Records in `format`: a JSON array, or `<root>` holding one `<item>` each.
pub fn list(
    format: Format,
    status: StatusCode,
    root: &str,
    item: &str,
    records: Vec<Value>,
) -> Response {
    match format {
        Format::Json => typed(
            status,
            "application/json; charset=utf-8",
            Value::Array(records).to_string(),
        ),
        Format::Xml => {
            let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>");
            out.push_str(&format!("<{root}>"));
            for r in &records {
                element(&mut out, item, r);
            }
            out.push_str(&format!("</{root}>"));
            typed(status, "text/xml; charset=utf-8", out)
        }
    }
}

/// One object in `format`: JSON as it is, XML as `<root>` with its fields.
pub fn one(format: Format, root: &str, record: Value) -> Response {
    match format {
        Format::Json => typed(
            StatusCode::OK,
            "application/json; charset=utf-8",
            record.to_string(),
        ),
        Format::Xml => {
            let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>");
            element(&mut out, root, &record);
            typed(StatusCode::OK, "text/xml; charset=utf-8", out)
        }
    }
}

/// A GeoReport error: `[{"code", "description"}]`, or `<errors><error>…`.
pub fn error(format: Format, status: StatusCode, description: &str) -> Response {
    list(
        format,
        status,
        "errors",
        "error",
        vec![json!({"code": status.as_u16(), "description": description})],
    )
}

fn typed(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// `<name>value</name>`; an object's fields and a list's items nested (a list's
/// items named by the list's name without its last letter: `keys` → `key`,
/// `values` → `value`, `attributes` → `attribute`).
fn element(out: &mut String, name: &str, value: &Value) {
    match value {
        Value::Null => out.push_str(&format!("<{name}/>")),
        Value::Object(fields) => {
            out.push_str(&format!("<{name}>"));
            for (k, v) in fields {
                element(out, k, v);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Array(items) => {
            let each = name.strip_suffix('s').unwrap_or(name);
            out.push_str(&format!("<{name}>"));
            for v in items {
                element(out, each, v);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::String(s) => out.push_str(&format!("<{name}>{}</{name}>", escape(s))),
        other => out.push_str(&format!("<{name}>{other}</{name}>")),
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Not allowed in XML 1.0 at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_elements_escaped() {
        let mut out = String::new();
        element(
            &mut out,
            "request",
            &json!({"service_request_id": "a<b", "lat": null, "keys": ["x&y"], "n": 3}),
        );
        assert_eq!(
            out,
            // Fields by name (JSON objects here keep no order).
            "<request><keys><key>x&amp;y</key></keys><lat/><n>3</n><service_request_id>a&lt;b</service_request_id></request>"
        );
        assert_eq!(Format::of("requests.xml"), Some(("requests", Format::Xml)));
        assert_eq!(Format::of("x.json"), Some(("x", Format::Json)));
        assert_eq!(Format::of("requests"), None);
    }
}
