"""The SQL interface's pure parts: request parsing, settings policy, the guard's scanner, errors."""

from __future__ import annotations

import base64
import gzip
import zlib

import lz4.frame
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.clickhouse_http import errors, guard
from api.clickhouse_http.app import choose_encoding, compress, content_type, outcome
from api.clickhouse_http.errors import ClickHouseError
from api.clickhouse_http.request import credentials, decode_body, escape_value, parse_request
from api.clickhouse_http.settings_policy import Limits, SettingsPolicy

LIMITS = Limits(
    max_execution_time=30, max_memory_usage=2**30, max_result_rows=1000, max_result_bytes=2**20, max_threads=1
)
POLICY = SettingsPolicy(LIMITS, {"max_threads": "1", "join_algorithm": "default", "optimize_read_in_order": "1"})


# --- request -----------------------------------------------------------------------------
def test_query_parameter_and_body_are_joined_with_a_line_feed() -> None:
    req = parse_request("POST", [("query", "SELECT 1,")], b"2")
    assert req is not None and req.query == "SELECT 1,\n2"


def test_get_without_a_query_is_a_health_check_and_post_without_one_an_error() -> None:
    assert parse_request("GET", [], b"") is None
    with pytest.raises(ClickHouseError) as err:
        parse_request("POST", [], b"  ")
    assert err.value.code == errors.SYNTAX_ERROR


def test_url_encoded_body_is_query_text_as_curl_d_sends_it() -> None:
    req = parse_request("POST", [], b"SELECT 1", content_type="application/x-www-form-urlencoded")
    assert req is not None and req.query == "SELECT 1"


def test_params_settings_and_protocol_parameters_are_told_apart() -> None:
    req = parse_request(
        "GET",
        [
            ("query", "SELECT {x:UInt8}"),
            ("param_x", "7"),
            ("database", "tickcast"),
            ("default_format", "JSONEachRow"),
            ("query_id", "q1"),
            ("session_id", "s1"),
            ("max_execution_time", "10"),
            ("user", "u"),
            ("password", "p"),
        ],
        b"",
    )
    assert req is not None
    assert req.params == {"x": "7"}
    assert (req.database, req.default_format, req.query_id) == ("tickcast", "JSONEachRow", "q1")
    assert req.settings == {"session_id": "s1", "max_execution_time": "10"}


def test_multipart_form_fields_carry_query_and_params() -> None:
    boundary = "XyZ"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="query"\r\n\r\nSELECT {{v:String}}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="param_v"\r\n\r\nhello\r\n--{boundary}--\r\n'
    ).encode()
    req = parse_request("POST", [], body, content_type=f"multipart/form-data; boundary={boundary}")
    assert req is not None and req.query == "SELECT {v:String}" and req.params == {"v": "hello"}


def test_external_data_files_are_refused_as_temporary_tables() -> None:
    body = b'--B\r\nContent-Disposition: form-data; name="t"; filename="t.tsv"\r\n\r\n1\n\r\n--B--\r\n'
    with pytest.raises(ClickHouseError) as err:
        parse_request("POST", [("query", "SELECT * FROM t")], body, content_type="multipart/form-data; boundary=B")
    assert err.value.code == errors.READONLY


@pytest.mark.parametrize("flag", ["compress", "decompress"])
def test_native_block_compression_is_declined_with_the_fix(flag: str) -> None:
    with pytest.raises(ClickHouseError) as err:
        parse_request("GET", [("query", "SELECT 1"), (flag, "1")], b"")
    assert err.value.code == errors.NOT_IMPLEMENTED and f"{flag}=0" in err.value.message
    assert parse_request("GET", [("query", "SELECT 1"), (flag, "0")], b"") is not None


def test_bad_database_and_format_names_are_refused_before_the_engine() -> None:
    with pytest.raises(ClickHouseError) as err:
        parse_request("GET", [("query", "SELECT 1"), ("database", "x; DROP")], b"")
    assert err.value.code == errors.UNKNOWN_DATABASE and err.value.status == 404
    with pytest.raises(ClickHouseError) as err:
        parse_request("GET", [("query", "SELECT 1"), ("default_format", "JSON Each")], b"")
    assert err.value.status == 404


def test_credentials_in_each_of_clickhouses_three_ways() -> None:
    basic = "Basic " + base64.b64encode(b"alice:k1").decode()
    assert credentials({"authorization": basic}, {}) == credentials(
        {"x-clickhouse-user": "alice"} | {"x-clickhouse-key": "k1"}, {}
    )
    assert credentials({}, {"user": "alice", "password": "k1"}).password == "k1"
    assert credentials({"authorization": "Bearer k1"}, {}).password == "k1"
    assert credentials({}, {}).password is None
    with pytest.raises(ClickHouseError) as err:
        credentials({"authorization": "Basic %%%"}, {})
    assert err.value.code == errors.AUTHENTICATION_FAILED


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("lz4", lz4.frame.compress), ("identity", lambda b: b)],
)
def test_request_bodies_are_decompressed(encoding: str, pack) -> None:  # noqa: ANN001
    assert decode_body(pack(b"SELECT 42"), encoding) == b"SELECT 42"


def test_undecodable_or_unknown_body_encodings_are_clear_errors() -> None:
    with pytest.raises(ClickHouseError) as err:
        decode_body(b"not gzip", "gzip")
    assert err.value.code == errors.CANNOT_DECOMPRESS
    with pytest.raises(ClickHouseError) as err:
        decode_body(b"x", "snappy")
    assert err.value.code == errors.UNKNOWN_COMPRESSION_METHOD


def test_a_decompression_bomb_stops_at_the_cap() -> None:
    from api.clickhouse_http import request

    bomb = gzip.compress(b"\0" * (request.MAX_DECOMPRESSED_BYTES + 10))
    with pytest.raises(ClickHouseError) as err:
        decode_body(bomb, "gzip")
    assert err.value.code == errors.QUERY_IS_TOO_LARGE and err.value.status == 413


@given(st.text())
def test_escape_value_is_undone_by_clickhouse_escaped_text_rules(text: str) -> None:
    # ClickHouse's escaped-text reader: a backslash takes the next character (\n \t \r \0 mapped)
    out, i, escaped = [], 0, escape_value(text)
    mapping = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\"}
    while i < len(escaped):
        if escaped[i] == "\\":
            out.append(mapping[escaped[i + 1]])
            i += 2
        else:
            assert escaped[i] not in "\n\t\r\0"
            out.append(escaped[i])
            i += 1
    assert "".join(out) == text


# --- settings policy --------------------------------------------------------------------------
def test_transport_parameters_are_accepted_and_do_nothing() -> None:
    assert POLICY.resolve({"session_id": "x", "wait_end_of_query": "1", "send_progress_in_http_headers": "1"}) == {}


def test_limits_may_be_lowered_but_a_higher_or_unlimited_value_keeps_the_servers() -> None:
    assert POLICY.resolve({"max_execution_time": "5"}) == {"max_execution_time": "5"}
    assert POLICY.resolve({"max_execution_time": "60"}) == {}  # Grafana's default timeout: capped at 30
    assert POLICY.resolve({"max_memory_usage": "0"}) == {}  # 0 = unlimited in ClickHouse
    assert POLICY.resolve({"max_result_rows": "1e2"}) == {"max_result_rows": "100"}
    with pytest.raises(ClickHouseError) as err:
        POLICY.resolve({"max_threads": "lots"})
    assert err.value.code == errors.BAD_ARGUMENTS


def test_output_settings_are_applied_readonly_1_accepted_other_changes_refused() -> None:
    assert POLICY.resolve({"output_format_json_quote_64bit_integers": "0", "readonly": "1"}) == {
        "output_format_json_quote_64bit_integers": "0"
    }
    for name, value in (("readonly", "2"), ("readonly", "0"), ("join_algorithm", "hash")):
        with pytest.raises(ClickHouseError) as err:
            POLICY.resolve({name: value})
        assert err.value.code == errors.READONLY and f"'{name}'" in err.value.message
    assert POLICY.resolve({"optimize_read_in_order": "1"}) == {}  # unchanged value: allowed, as in ClickHouse


def test_unknown_settings_are_named() -> None:
    with pytest.raises(ClickHouseError) as err:
        POLICY.resolve({"no_such_setting": "1"})
    assert err.value.code == errors.UNKNOWN_SETTING and "no_such_setting" in err.value.message
    assert err.value.status == 404


def test_files_naming_settings_are_not_in_the_safe_list() -> None:
    from api.clickhouse_http.settings_policy import SAFE

    assert not [s for s in SAFE if "schema" in s or "template" in s or s.endswith("_path")]


# --- guard ------------------------------------------------------------------------------------
def test_tokens_unescape_quoted_names_and_keep_strings_apart() -> None:
    toks = guard.tokens(r"SELECT `fi\x6ce`('a\'b'), 'file(' FROM t WHERE x = {p:Array(String)}")
    assert guard.Token("name", "file") in toks
    assert guard.Token("string", "a'b") in toks and guard.Token("string", "file(") in toks
    assert guard.Token("param", "{p:Array(String)}") in toks


@pytest.mark.parametrize(
    ("canonical", "code"),
    [
        ("KILL QUERY WHERE 1 ASYNC", errors.READONLY),
        ("SYSTEM STOP MERGES", errors.READONLY),
        ("CHECK TABLE t", errors.READONLY),
        ("BEGIN TRANSACTION", errors.READONLY),
        ("SELECT 1 INTO OUTFILE 'x'", errors.INTO_OUTFILE_NOT_ALLOWED),
        ("SELECT file('/etc/passwd')", errors.FUNCTION_NOT_ALLOWED),
        ("SELECT `file`('/etc/passwd')", errors.FUNCTION_NOT_ALLOWED),
        ("SELECT arrayMap(x -> file(x), ['/a'])", errors.FUNCTION_NOT_ALLOWED),
        ("SELECT * FROM file('x', 'TSV')", errors.FUNCTION_NOT_ALLOWED),
    ],
)
def test_check_refuses(canonical: str, code: int) -> None:
    with pytest.raises(ClickHouseError) as err:
        guard.check(canonical)
    assert err.value.code == code and err.value.status == 403


@pytest.mark.parametrize(
    "canonical",
    [
        "SELECT 'file(' AS file",
        "SELECT file FROM t",
        "SELECT 'INTO OUTFILE x'",
        "EXPLAIN AST KILL QUERY WHERE 1",
        "WITH 1 AS x SELECT x",
        "SHOW TABLES",
        "DESCRIBE TABLE t",
        "EXISTS TABLE t",
        "SET readonly = 1",
        "SELECT profile(1)",
        "SELECT `kill` FROM t",
    ],
)
def test_check_lets_through(canonical: str) -> None:
    guard.check(canonical)


@pytest.mark.parametrize(
    ("canonical", "fmt"),
    [
        ("SELECT 1 FORMAT JSON", "JSON"),
        ("SELECT 1 FORMAT JSONEachRow SETTINGS max_threads = 1", "JSONEachRow"),
        ("SELECT * FROM (SELECT 1 FORMAT CSV)", None),
        ("SELECT 'FORMAT TSV'", None),
        ("SELECT format('{}', 1)", None),
        ("SELECT 1", None),
    ],
)
def test_output_format_is_the_top_level_clause(canonical: str, fmt: str | None) -> None:
    assert guard.output_format(canonical) == fmt


# --- errors, formats, encodings -----------------------------------------------------------------
def test_engine_messages_keep_the_innermost_text_without_the_version() -> None:
    err = ClickHouseError.from_engine(
        "Code: 164. DB::Exception: Code: 164. DB::Exception: Cannot modify 'x' setting in readonly mode. "
        "(READONLY) (version 26.9.2.1). (READONLY)"
    )
    assert (err.code, err.name) == (164, "READONLY")
    assert err.body == "Code: 164. DB::Exception: Cannot modify 'x' setting in readonly mode. (READONLY)\n"
    assert ClickHouseError.from_engine("boom").code == 1001


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (194, 401),
        (516, 403),
        (164, 403),
        (60, 404),
        (115, 404),
        (159, 408),
        (62, 400),
        (241, 400),
        (396, 400),
        (49, 500),
        (202, 503),
    ],
)
def test_http_status_follows_clickhouse_with_4xx_for_refusals(code: int, status: int) -> None:
    assert errors.http_status(code) == status


def test_an_engine_wide_memory_shortage_is_the_servers_fault() -> None:
    assert errors.http_status(241, "Memory limit (total) exceeded: would use 20 GiB") == 503


def test_outcome_labels() -> None:
    assert [outcome(c) for c in (None, 516, 164, 358, 159, 241, 202, 60)] == [
        "ok",
        "auth",
        "readonly",
        "readonly",
        "limit",
        "limit",
        "busy",
        "error",
    ]


def test_content_types_follow_the_format() -> None:
    assert content_type("TabSeparatedWithNames").startswith("text/tab-separated-values")
    assert content_type("CSVWithNames").endswith("header=present")
    assert content_type("JSONEachRow").startswith("application/json")
    assert content_type("Arrow") == content_type("Parquet") == "application/octet-stream"
    assert content_type("PrettyCompact").startswith("text/plain")


def test_encoding_is_the_clients_first_choice_we_produce() -> None:
    assert choose_encoding("lz4,zstd,br,gzip") == "lz4"
    assert choose_encoding("br, zstd, gzip;q=0.5") == "gzip"
    assert choose_encoding("gzip;q=0, deflate") == "deflate"
    assert choose_encoding("br") is None and choose_encoding("") is None
    body = b"x" * 1000
    assert gzip.decompress(compress(body, "gzip")) == body
    assert zlib.decompress(compress(body, "deflate")) == body
    assert lz4.frame.decompress(compress(body, "lz4")) == body
