"""What a request over HTTP may carry, and the answers to those that carry something else."""

from __future__ import annotations

import gzip
import json
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.types import Message

from mailflow.api.app import create_app
from mailflow.settings import Settings

from .conftest import Api

QUERY = "{ connectors { name } }"


def post(api: Api, content: bytes, content_type: str | None = "application/json") -> Any:
    headers = {"Authorization": f"Bearer {api.token}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return api.client.post("/graphql", content=content, headers=headers)


def the_error(response: httpx.Response, status: int, code: str = "BAD_REQUEST") -> str:
    assert response.status_code == status
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": code}
    message: str = error["message"]
    return message


@pytest.mark.parametrize(
    ("body", "kind"), [(b'"hello"', "a string"), (b"42", "a number"), (b"null", "null")]
)
async def test_a_json_body_that_is_no_object_is_a_bad_request(
    api: Api, body: bytes, kind: str
) -> None:
    message = the_error(await post(api, body), 400)

    assert message == (
        f"the request body is JSON but {kind}, not an object; the body must be a JSON object "
        'with a "query" string, such as {"query": "{ connectors { name } }"}'
    )


async def test_a_json_array_is_refused_because_batching_is_not_supported(api: Api) -> None:
    for body in (b"[]", json.dumps([{"query": QUERY}]).encode()):
        message = the_error(await post(api, body), 400)

        assert message.startswith(
            "the request body is a JSON array, but batched requests are not supported"
        )


async def test_a_body_that_is_not_utf8_is_a_bad_request(api: Api) -> None:
    message = the_error(await post(api, b'{"query": "\xff"}'), 400)

    assert message.startswith("the request body is not UTF-8: byte 11 cannot be decoded;")


async def test_json_nested_deeper_than_the_parser_goes_is_a_bad_request(api: Api) -> None:
    message = the_error(await post(api, b"[" * 50_000), 400)

    assert message.startswith("the request body nests JSON too deeply")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"variables": {}}, 'the "query" field is missing or not a non-empty string;'),
        ({"query": 7}, 'the "query" field is missing or not a non-empty string;'),
        ({"query": QUERY, "variables": [1]}, 'the "variables" field must be a JSON object or'),
        ({"query": QUERY, "operationName": 1}, 'the "operationName" field must be a string or'),
    ],
)
async def test_a_json_object_with_fields_of_the_wrong_kind_is_a_bad_request(
    api: Api, body: dict[str, Any], message: str
) -> None:
    assert the_error(await post(api, json.dumps(body).encode()), 400).startswith(message)


@pytest.mark.parametrize(
    ("content_type", "named"),
    [
        ("text/plain", 'content type "text/plain"'),
        ("application/x-www-form-urlencoded", 'content type "application/x-www-form-urlencoded"'),
        (None, "a request without Content-Type"),
    ],
)
async def test_a_body_that_is_not_json_says_what_is_accepted(
    api: Api, content_type: str | None, named: str
) -> None:
    message = the_error(await post(api, b"query={connectors{name}}", content_type), 415)

    assert message == (
        f'unsupported {named}: send a POST with "Content-Type: application/json" and a JSON '
        'object body, or a GET with the query in the "query" parameter; form and multipart '
        "bodies are not supported"
    )


async def test_a_json_content_type_with_a_charset_is_accepted(api: Api) -> None:
    body = json.dumps({"query": QUERY}).encode()

    response = await post(api, body, "application/json; charset=utf-8")

    assert response.json() == {"data": {"connectors": []}}


async def test_a_get_query_reads_its_variables_from_the_query_string(api: Api) -> None:
    response = await api.client.get(
        "/graphql",
        params={
            "query": "query($start: Date) { tlsBreakdown(start: $start) { total } }",
            "variables": json.dumps({"start": "2025-01-01"}),
        },
        headers={"Authorization": f"Bearer {api.token}"},
    )

    assert response.json() == {"data": {"tlsBreakdown": {"total": 0}}}


async def test_get_variables_that_are_not_json_name_the_variables_parameter(api: Api) -> None:
    response = await api.client.get(
        "/graphql",
        params={"query": QUERY, "variables": "{start: 2025-01-01}"},
        headers={"Authorization": f"Bearer {api.token}"},
    )

    message = the_error(response, 400)
    assert message.startswith(
        'the "variables" query parameter is not valid JSON: pass a JSON object, URL-encoded'
    )


async def test_a_body_over_the_size_limit_is_refused_with_413(api: Api) -> None:
    body = json.dumps({"query": QUERY, "variables": {"pad": "x" * 100_000}}).encode()

    message = the_error(await post(api, body), 413, "REQUEST_TOO_LARGE")

    assert message == (
        f"the request body is {len(body)} bytes; the limit is 100000 bytes "
        "(MAILFLOW_MAX_REQUEST_BYTES)"
    )


async def test_a_get_query_string_over_the_size_limit_is_refused_with_413(
    pool: asyncpg.Pool,
) -> None:
    app = create_app(pool, Settings(max_request_bytes=1_000))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/graphql", params={"query": "{" + "_" * 1_000 + "}"})

    message = the_error(response, 413, "REQUEST_TOO_LARGE")
    assert message == (
        "the query string is 1012 bytes; the limit is 1000 bytes (MAILFLOW_MAX_REQUEST_BYTES)"
    )


class AsgiCall:
    """One POST /graphql sent straight to the ASGI app, its body fed chunk by chunk."""

    def __init__(self, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> None:
        self.chunks = chunks
        self.headers = headers
        self.chunks_read = 0
        self.sent: list[Message] = []

    async def run(self, app: Any) -> tuple[int, dict[str, Any]]:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/graphql", "raw_path": b"/graphql",
            "root_path": "", "query_string": b"", "server": ("testserver", 80),
            "headers": [(b"content-type", b"application/json"), *self.headers],
        }
        await app(scope, self.receive, self.send)
        start, *bodies = self.sent
        return start["status"], json.loads(b"".join(body["body"] for body in bodies))

    async def receive(self) -> Message:
        if self.chunks_read == len(self.chunks):
            return {"type": "http.disconnect"}
        self.chunks_read += 1
        more = self.chunks_read < len(self.chunks)
        return {"type": "http.request", "body": self.chunks[self.chunks_read - 1],
                "more_body": more}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


async def test_a_declared_content_length_over_the_limit_is_refused_before_the_body_is_read(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    call = AsgiCall([b"x" * 65_536] * 800, [(b"content-length", b"52428800")])

    status, body = await call.run(create_app(pool, settings))

    assert status == 413
    assert body["errors"][0]["extensions"] == {"code": "REQUEST_TOO_LARGE"}
    assert body["errors"][0]["message"].startswith("the request body is 52428800 bytes;")
    assert call.chunks_read == 0


async def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    call = AsgiCall([b"x" * 65_536] * 800, [(b"transfer-encoding", b"chunked")])

    status, body = await call.run(create_app(pool, settings))

    assert status == 413
    assert body["errors"][0]["message"] == (
        "the request body is more than 100000 bytes; the limit is 100000 bytes "
        "(MAILFLOW_MAX_REQUEST_BYTES)"
    )
    assert call.chunks_read == 2


@pytest.mark.parametrize(
    ("encoding", "named"),
    [("gzip", "gzip"), ("br", "br"), ("deflate", "deflate"), ("identity, GZIP", "GZIP")],
)
async def test_a_compressed_body_is_refused_with_415_before_it_is_read_or_authenticated(
    pool: asyncpg.Pool, settings: Settings, encoding: str, named: str
) -> None:
    body = gzip.compress(json.dumps({"query": QUERY}).encode())
    # No token and no demo organization: had the request reached authentication, it got 401.
    call = AsgiCall([body], [(b"content-encoding", encoding.encode())])

    status, answer = await call.run(create_app(pool, settings))

    assert status == 415
    (error,) = answer["errors"]
    assert error["extensions"] == {"code": "BAD_REQUEST"}
    assert error["message"] == (
        f'the request body has Content-Encoding "{named}": request bodies must not be '
        "compressed (Content-Encoding identity only); send the JSON uncompressed"
    )
    assert call.chunks_read == 0


async def test_a_body_with_content_encoding_identity_is_answered(api: Api) -> None:
    response = await api.client.post(
        "/graphql",
        content=json.dumps({"query": QUERY}).encode(),
        headers={"Authorization": f"Bearer {api.token}", "Content-Type": "application/json",
                 "Content-Encoding": "identity"},
    )

    assert response.json() == {"data": {"connectors": []}}


async def test_a_document_with_two_operations_needs_an_operation_name(api: Api) -> None:
    document = "query Names { connectors { name } } query Totals { tlsBreakdown { total } }"

    unnamed = await api.post(document)
    named = await api.client.post(
        "/graphql", json={"query": document, "operationName": "Totals"},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    unknown = await api.client.post(
        "/graphql", json={"query": document, "operationName": "Other"},
        headers={"Authorization": f"Bearer {api.token}"},
    )

    assert unnamed.status_code == 200
    assert unnamed.json() == {
        "data": None,
        "errors": [{
            "message": 'the document holds 2 operations (Names, Totals); say which one to run '
                       'with "operationName"',
            "extensions": {"code": "OPERATION_NAME_REQUIRED"},
        }],
    }
    assert named.json() == {"data": {"tlsBreakdown": {"total": 0}}}
    assert the_error(unknown, 400) == 'Unknown operation named "Other".'


MALFORMED: list[tuple[str, dict[str, Any]]] = [
    ("not json", {"content": b"{not json"}),
    ("a string", {"content": b'"hello"'}),
    ("an array", {"content": b"[]"}),
    ("null", {"content": b"null"}),
    ("bad utf-8", {"content": b"\xff\xfe{"}),
    ("huge number", {"content": b'{"query": "{ __typename }", "v": ' + b"9" * 5000 + b"}"}),
    ("bad date", {"json": {"query": '{ mailFlow(start: "2021-13-45") { date } }'}}),
    ("bad operation name", {"json": {"query": QUERY, "operationName": "Nope"}}),
    ("anonymous twice", {"json": {"query": f"{QUERY} {QUERY}"}}),
    ("unknown fragment", {"json": {"query": "{ ...Missing }"}}),
    ("fragment cycle", {"json": {"query": "{ ...A } fragment A on Query { ...B } "
                                          "fragment B on Query { ...A }"}}),
    ("nested too deep", {"json": {"query": "{" + "a{" * 400 + "}" * 401}}),
    ("bad variables", {"json": {"query": "query($s: Date) { mailFlow(start: $s) { date } }",
                                "variables": {"s": {"nested": [1]}}}}),
    ("unpaired surrogate operation name",
     {"content": b'{"query": "query Q { __typename }", "operationName": "\\udc00"}'}),
    ("unpaired surrogate variable",
     {"content": b'{"query": "query($d: String) { tlsSessions(policyDomain: $d) { days { date } } '
                 b'}", "variables": {"d": "\\ud800"}}'}),
]


@pytest.mark.parametrize("where", [
    b'"operationName": "\\ud83d"',
    b'"variables": {"d": ["ok", {"\\udfff": 1}]}',
    b'"extensions": {"x": "a\\ud800b"}',
])
async def test_a_string_with_an_unpaired_surrogate_escape_is_a_bad_request(
    api: Api, where: bytes
) -> None:
    body = b'{"query": "query Q($d: [String]) { __typename }", ' + where + b"}"

    message = the_error(await post(api, body), 400)

    assert message.startswith("the request holds a string with an unpaired surrogate (\\u")
    assert message.endswith(
        "), which is no Unicode character: escape a character outside the Basic Multilingual "
        "Plane as its surrogate pair, such as \\ud83d\\ude00"
    )


async def test_a_surrogate_pair_escape_is_one_character_and_is_answered(api: Api) -> None:
    body = (b'{"query": "{ tlsSessions(policyDomain: \\"\\ud83d\\ude00.example\\") '
            b'{ policyDomain } }"}')

    assert (await post(api, body)).json() == {"data": {"tlsSessions": [
        {"policyDomain": "\U0001f600.example"}]}}


@pytest.mark.parametrize(("name", "request_args"), MALFORMED, ids=[name for name, _ in MALFORMED])
async def test_a_malformed_request_gets_a_coded_client_error_and_no_internals(
    api: Api, name: str, request_args: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"}

    response = await api.client.post("/graphql", headers=headers, **request_args)

    assert response.status_code < 500, name
    errors = response.json()["errors"]
    assert all(error["extensions"]["code"] != "INTERNAL_SERVER_ERROR" for error in errors)
    for leak in ("Traceback", ".py", "strawberry", "asyncpg", "SELECT"):
        assert leak not in response.text


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/ingest", "POST"),
    ("PUT", "/graphql", "GET, POST"),
    ("DELETE", "/graphql", "GET, POST"),
    ("HEAD", "/graphql", "GET, POST"),
    ("POST", "/export/connector-report.csv", "GET, HEAD"),
    ("POST", "/export/tls-usage.csv", "GET, HEAD"),
    ("POST", "/healthz", "GET, HEAD"),
    ("POST", "/static/graphiql/graphiql.min.js", "GET, HEAD"),
])
async def test_a_method_a_path_does_not_answer_is_405_with_allow_and_a_coded_json_error(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path, headers={"X-Request-ID": "lb-1234-abcd"})

    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.headers["x-request-id"] == "lb-1234-abcd"
    if method != "HEAD":  # an answer to HEAD has no body
        message = the_error(response, 405, "METHOD_NOT_ALLOWED")
        assert message == f"the method {method} is not allowed on {path}, which answers {allowed}"


@pytest.mark.parametrize("path", ["/nothing", "/graphql/more", "/export/other.csv",
                                  "/static/graphiql/missing.js"])
async def test_a_path_the_api_does_not_answer_is_404_with_a_coded_json_error(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, headers={"X-Request-ID": "lb-1234-abcd"})

    message = the_error(response, 404, "NOT_FOUND")
    assert message.startswith(f"no such path: {path}; mailflow answers /graphql, /ingest")
    assert response.headers["x-request-id"] == "lb-1234-abcd"


EXTENSIONS = json.dumps({"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}})


@pytest.mark.parametrize(("parameters", "message"), [
    ([("query", QUERY), ("query", "{ __typename }")],
     'the "query" query parameter is given 2 times; give it once'),
    ([("query", QUERY), ("variables", "{}"), ("variables", '{"a": 1}')],
     'the "variables" query parameter is given 2 times; give it once'),
    ([("query", QUERY), ("operationName", "A"), ("operationName", "A"), ("operationName", "B")],
     'the "operationName" query parameter is given 3 times; give it once'),
    ([("extensions", EXTENSIONS), ("extensions", EXTENSIONS)],
     'the "extensions" query parameter is given 2 times; give it once'),
    ([("query", QUERY), ("varaibles", "{}")],
     'unknown query parameter "varaibles": GET /graphql reads query, variables, operationName '
     "and extensions"),
    ([("query", QUERY), ("", "")],
     'unknown query parameter "": GET /graphql reads query, variables, operationName '
     "and extensions"),
])
async def test_a_get_with_a_repeated_or_unknown_parameter_is_a_bad_request_naming_it(
    api: Api, parameters: list[tuple[str, str]], message: str
) -> None:
    response = await api.client.get(
        "/graphql", params=parameters, headers={"Authorization": f"Bearer {api.token}"})

    assert the_error(response, 400) == message


async def test_get_parameters_each_given_once_are_answered(api: Api) -> None:
    response = await api.client.get("/graphql", params={
        "query": "query A { connectors { name } } query B { __typename }",
        "operationName": "A", "variables": "{}", "extensions": "{}",
    }, headers={"Authorization": f"Bearer {api.token}"})

    assert response.json() == {"data": {"connectors": []}}
