"""Request heads past the limits get a precise 4xx in the API's own error format, not
hyper's bare status line (issue 17, item 15): a long URI (414), too many or too large
headers (431), on the gateway's API and on the admin API."""

import httpx


def check(r: httpx.Response, status: int, code: str, anthropic: bool = False):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    if anthropic:
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
    else:
        assert body["error"]["code"] == code, body
        assert body["error"]["type"] == "invalid_request_error", body


def test_heads_past_the_limits_get_json_errors(gateway_factory):
    g = gateway_factory()
    key = g.create_key()
    auth = {"authorization": f"Bearer {key}"}
    long_query = "q=" + "a" * 20_000
    for path in ["/v1/models", "/api/v1/keys"]:
        check(httpx.get(f"{g.url}{path}?{long_query}", headers=auth, timeout=10), 414, "uri_too_long")
    many = {**auth, **{f"x-h{i}": "v" for i in range(150)}}
    check(httpx.get(g.url + "/v1/models", headers=many, timeout=10), 431, "headers_too_large")
    big = {**auth, "x-big": "v" * 100_000}
    check(httpx.get(g.url + "/api/v1/keys", headers=big, timeout=10), 431, "headers_too_large")
    r = httpx.post(g.url + "/v1/messages", headers=big, json={}, timeout=10)
    check(r, 431, "headers_too_large", anthropic=True)
    # Within the limits, everything still works.
    assert httpx.get(g.url + "/v1/models", headers=auth, timeout=10).status_code == 200
