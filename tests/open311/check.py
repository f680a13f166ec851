#!/usr/bin/env python3
"""Open311 GeoReport v2 conformance checks, written from the specification
(http://wiki.open311.org/GeoReport_v2), runnable against any endpoint:

    python3 tests/open311/check.py https://example.gov/open311/v2 \
        --api-key KEY --jurisdiction ID [--lat 29.6 --long 114.5]

It reports (POST) one test request. Every check prints PASS or FAIL with
what it saw; the exit code is the number of failures. Checks marked
"extension" test what many servers add beyond the spec (page, page_size).
Only the Python standard library is used.
"""
import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET

failures = 0


def check(name, ok, seen=""):
    global failures
    if not ok:
        failures += 1
    print(f"{'PASS' if ok else 'FAIL'}  {name}" + ("" if ok else f"\n      saw: {seen}"[:600]))


def call(method, url, form=None):
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode("utf-8", "replace")


def as_json(body):
    try:
        return json.loads(body)
    except ValueError:
        return None


def as_xml(body):
    try:
        return ET.fromstring(body.encode("utf-8"))
    except ET.ParseError:
        return None


def is_error_json(body, code):
    v = as_json(body)
    return (isinstance(v, list) and v and isinstance(v[0], dict)
            and int(v[0].get("code", 0)) == code and bool(v[0].get("description")))


def is_error_xml(body, code):
    root = as_xml(body)
    return (root is not None and root.tag == "errors" and root.find("error") is not None
            and root.findtext("error/code") == str(code) and bool(root.findtext("error/description")))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", help="the endpoint, e.g. https://host/open311/v2")
    p.add_argument("--api-key", required=True)
    p.add_argument("--jurisdiction", required=True)
    p.add_argument("--lat", default="29.6047")
    p.add_argument("--long", default="114.5176")
    a = p.parse_args()
    base = a.base.rstrip("/")
    j = urllib.parse.quote(a.jurisdiction)

    status, ctype, body = call("GET", f"{base}/discovery.json")
    d = as_json(body)
    check("discovery.json lists endpoints", status == 200 and isinstance(d, dict)
          and isinstance(d.get("endpoints"), list), f"{status} {body[:200]}")

    status, ctype, body = call("GET", f"{base}/services.json?jurisdiction_id={j}")
    services = as_json(body)
    check("services.json is a list of services", status == 200 and isinstance(services, list) and services
          and all({"service_code", "service_name", "metadata", "type"} <= set(s) for s in services),
          f"{status} {body[:200]}")
    check("JSON is sent as application/json", ctype.startswith("application/json"), ctype)
    code = services[0]["service_code"] if isinstance(services, list) and services else "x"

    status, ctype, body = call("GET", f"{base}/services.xml?jurisdiction_id={j}")
    root = as_xml(body)
    check("services.xml: <services><service>", status == 200 and root is not None and root.tag == "services"
          and root.find("service/service_code") is not None, f"{status} {body[:200]}")
    check("XML is sent as text/xml or application/xml", "xml" in ctype, ctype)

    status, _, body = call("GET", f"{base}/services/{code}.json?jurisdiction_id={j}")
    d = as_json(body)
    check("a service definition (JSON)", status == 200 and isinstance(d, dict)
          and d.get("service_code") == code and isinstance(d.get("attributes"), list), f"{status} {body[:200]}")
    status, _, body = call("GET", f"{base}/services/{code}.xml?jurisdiction_id={j}")
    root = as_xml(body)
    check("a service definition (XML)", status == 200 and root is not None
          and root.tag == "service_definition", f"{status} {body[:200]}")
    missing = f"no-such-{uuid.uuid4().hex[:8]}"
    status, _, body = call("GET", f"{base}/services/{missing}.json")
    check("an unknown service is a 404 in GeoReport's JSON error format", status == 404
          and is_error_json(body, 404), f"{status} {body[:200]}")
    status, _, body = call("GET", f"{base}/services/{missing}.xml")
    check("... and in its XML error format", status == 404 and is_error_xml(body, 404), f"{status} {body[:200]}")

    report = {"api_key": a.api_key, "jurisdiction_id": a.jurisdiction, "service_code": code,
              "lat": a.lat, "long": a.long,
              "description": f"open311 check {uuid.uuid4().hex[:8]}: street light out"}
    status, _, body = call("POST", f"{base}/requests.json", report)
    made = as_json(body)
    ok = status in (200, 201) and isinstance(made, list) and made and (
        made[0].get("service_request_id") or made[0].get("token"))
    check("POST requests.json reports one request", bool(ok), f"{status} {body[:200]}")
    rid = made[0].get("service_request_id") if ok else None

    nowhere = {k: v for k, v in report.items() if k not in ("lat", "long")}
    status, _, body = call("POST", f"{base}/requests.json", nowhere)
    check("a report with no location is a 400 error", status == 400 and is_error_json(body, 400),
          f"{status} {body[:200]}")
    status, _, body = call("POST", f"{base}/requests.json", dict(report, service_code=missing))
    check("a report for an unknown service is a 404 error", status == 404 and is_error_json(body, 404),
          f"{status} {body[:200]}")
    status, _, body = call("POST", f"{base}/requests.json", {k: v for k, v in report.items() if k != "api_key"})
    check("a report without an api_key is refused (403)", status == 403 and is_error_json(body, 403),
          f"{status} {body[:200]}")
    status, _, body = call("POST", f"{base}/requests.xml", nowhere)
    check("errors of an XML call come as XML", status == 400 and is_error_xml(body, 400), f"{status} {body[:200]}")

    if rid:
        q = urllib.parse.quote(rid)
        status, _, body = call("GET", f"{base}/requests/{q}.json?jurisdiction_id={j}")
        one = as_json(body)
        check("GET requests/{id}.json without a key", status == 200 and isinstance(one, list) and one
              and one[0].get("service_request_id") == rid and one[0].get("status") in ("open", "closed"),
              f"{status} {body[:200]}")
        status, _, body = call("GET", f"{base}/requests/{q}.xml?jurisdiction_id={j}")
        root = as_xml(body)
        check("GET requests/{id}.xml", status == 200 and root is not None and root.tag == "service_requests"
              and root.findtext("request/service_request_id") == rid, f"{status} {body[:200]}")
        status, _, body = call("GET", f"{base}/requests.json?jurisdiction_id={j}&service_code={code}&status=open")
        listed = as_json(body)
        check("GET requests.json lists the new request (no key, filtered)", status == 200
              and isinstance(listed, list) and any(r.get("service_request_id") == rid for r in listed),
              f"{status} {body[:200]}")
        status, _, body = call("GET", f"{base}/requests.json?jurisdiction_id={j}&status=open,closed")
        listed = as_json(body)
        check("status declared several times, comma delimited", status == 200 and isinstance(listed, list)
              and any(r.get("service_request_id") == rid for r in listed), f"{status} {body[:200]}")
        status, _, body = call("GET", f"{base}/requests.xml?jurisdiction_id={j}")
        root = as_xml(body)
        check("GET requests.xml", status == 200 and root is not None and root.tag == "service_requests",
              f"{status} {body[:200]}")
    status, _, body = call("GET", f"{base}/requests.json?jurisdiction_id={j}&start_date=2026-11-20&end_date=2026-11-01")
    check("start_date after end_date is a 400", status == 400 and is_error_json(body, 400), f"{status} {body[:200]}")
    status, _, body = call("GET", f"{base}/requests.json?jurisdiction_id={j}&start_date=2020-01-01T00:00Z")
    check("dates as the W3C note writes them", status == 200 and isinstance(as_json(body), list),
          f"{status} {body[:200]}")
    status, _, body = call("GET", f"{base}/requests.json?jurisdiction_id={j}&page_size=1&page=1")
    listed = as_json(body)
    check("extension: page and page_size", status == 200 and isinstance(listed, list) and len(listed) <= 1,
          f"{status} {body[:200]}")

    print(f"{failures} check(s) failed" if failures else "every check passed")
    return failures


if __name__ == "__main__":
    sys.exit(main())
