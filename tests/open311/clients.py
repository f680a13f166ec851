#!/usr/bin/env python3
"""linli's Open311 endpoint as a published client reads it: `georeport`
(PyPI, 0.3.1), in JSON and in XML mode. The other published clients tried
(`three` 0.8.0, `open311` 1.1) do not import on Python 3 (`itertools.ifilter`,
an implicit relative import), and `georeport` has no way to POST, so reports
are made here with the standard library, as `check.py` does.

    python3 tests/open311/clients.py http://127.0.0.1:8080/open311/v2 \
        --api-key KEY --jurisdiction 421224100005
"""
import argparse
import sys
import urllib.parse
import urllib.request

try:
    from georeport import GeoReport
except ImportError:
    sys.exit("georeport is not installed: python3 -m pip install georeport==0.3.1 (.ci/run does)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("base")
    p.add_argument("--api-key", required=True)
    p.add_argument("--jurisdiction", required=True)
    a = p.parse_args()
    form = urllib.parse.urlencode({
        "api_key": a.api_key, "service_code": "road", "address_string": "双泉社区九号楼",
        "description": "georeport client check: 路灯不亮",
    }).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{a.base}/requests.json", data=form), timeout=20) as r:
        import json
        rid = json.loads(r.read())[0]["service_request_id"]

    for fmt in ("json", "xml"):
        client = GeoReport(a.base, jurisdiction=a.jurisdiction, output_format=fmt)
        services = client.get_service_list()
        codes = [s["service_code"] for s in services]
        assert "road" in codes, (fmt, codes)
        definition = client.get_service_definition("road")
        assert definition["service_code"] == "road", (fmt, definition)
        one = client.get_service_request(rid)
        # xmltodict gives one record as a dict, JSON a list of one.
        one = one[0] if isinstance(one, list) else one
        assert one["service_request_id"] == rid and one["status"] == "open", (fmt, one)
        listed = client.get_service_requests(service_code="road", status="open")
        listed = listed if isinstance(listed, list) else [listed]
        assert any(r["service_request_id"] == rid for r in listed), (fmt, len(listed))
        print(f"georeport ({fmt}): {len(codes)} services, a definition, the request by id, {len(listed)} open road requests")
    print("georeport reads linli in JSON and XML")


if __name__ == "__main__":
    main()
