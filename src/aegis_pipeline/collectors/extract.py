"""From a response body to source records (plain dicts), for JSON APIs, XML APIs and RSS feeds.

XML becomes nested dicts (an element with children is a dict, repeated children a list, a leaf its text), so
one dotted `records_path` syntax serves JSON and XML alike; a path that ends on a single element (data.go.kr's
one-item `<items><item>`) still yields a list. The data.go.kr error envelope, which arrives with HTTP 200, is
recognised here and raised as the error it is. Where the records sit and what paging needs from a response are
the source's own (`SourceDefinition.record_selector`, `read_response` of its pagination kind); this module parses
the body, asks them, and turns their `ResponseShapeError` into a refusal. Pure: no I/O.

A response that cannot be read as a whole (not JSON or not well-formed XML, nested too deep, with a duplicate key or
a NaN, records that are not a list of objects, a data.go.kr code given twice, too large) is refused with
`RefusedResponseError` (DP_1004), which keeps the start of the body for the dead-letter queue. JSON is read
strictly: a duplicate key would silently keep only its last value (RFC 8259 leaves it undefined), and NaN /
Infinity are not JSON.
"""

from __future__ import annotations

import json
from typing import Any

from lxml import etree

from aegis_pipeline.collectors.definitions import Page, ResponseShapeError, SourceDefinition, SourceKind
from aegis_pipeline.collectors.parsing.records import dig
from aegis_pipeline.common.errors import InvalidDataError, RateLimitedError, SourceConfigError
from aegis_pipeline.domain.records import MAX_NESTING_DEPTH, nesting_depth

BODY_EXCERPT_CHARS = 10_000  # of a refused response, kept in the dead-letter queue
# data.go.kr returnReasonCode values: 22 = request quota exceeded (wait and retry); the others need a person.
DATA_GO_KR_RATE_LIMITED = {"22"}
DATA_GO_KR_KEY_ERRORS = {"20", "30", "31", "32", "33"}  # access denied, key not registered / expired / bad IP


class RefusedResponseError(InvalidDataError):
    """A whole response refused (DP_1004); `body_excerpt` is its first BODY_EXCERPT_CHARS characters."""

    def __init__(self, message: str, *, body: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.body_excerpt = body[:BODY_EXCERPT_CHARS]


# No entity resolution, no network: a hostile XML payload cannot read files or call out (XXE).
_XML_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, huge_tree=False, recover=False,
    # The text was already decoded (decode_body); lxml reads our UTF-8 re-encoding whatever the document declares
    # (Korean feeds declare EUC-KR, which would otherwise be applied to UTF-8 bytes).
    encoding="utf-8",
)


def xml_to_dict(element: etree._Element) -> Any:
    children = [child for child in element if isinstance(child.tag, str)]
    if not children:
        return (element.text or "").strip()
    result: dict[str, Any] = {}
    for child in children:
        name = etree.QName(child).localname
        value = xml_to_dict(child)
        if name in result:
            existing = result[name]
            result[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            result[name] = value
    return result


def _code_at(document: Any, path: str) -> str:
    """The text of the code element at `path`, "" when there is none. An element XML gives more than once (a list)
    or with children (a dict) raises `ResponseShapeError`: which code the source meant cannot be told."""
    value = dig(document, path)
    if value is None or isinstance(value, str):
        return (value or "").strip()
    raise ResponseShapeError(f"{path} is not one value")


def check_data_go_kr_envelope(document: dict[str, Any], source: SourceDefinition) -> None:
    """Raise for the error envelope data.go.kr sends with HTTP 200 (and for a non-00 resultCode); raise
    `ResponseShapeError` for an envelope or a code that is not one element."""
    header = dig(document, "OpenAPI_ServiceResponse.cmmMsgHeader")
    if header is not None and not isinstance(header, dict):
        raise ResponseShapeError("OpenAPI_ServiceResponse.cmmMsgHeader is not one element")
    if isinstance(header, dict):
        code = _code_at(header, "returnReasonCode")
        message = f"{header.get('errMsg', '')} {header.get('returnAuthMsg', '')}".strip()
        if code in DATA_GO_KR_RATE_LIMITED:
            raise RateLimitedError(
                f"{source.name}: {message} (code {code})",
                retry_after_seconds=source.rate_limit.retry_after_seconds,
                source=source.name, reason_code=code,
            )
        raise SourceConfigError(f"{source.name}: {message} (code {code})", source=source.name, reason_code=code)
    result_code = _code_at(document, "response.header.resultCode")
    if result_code not in ("", "00", "0", "000"):
        message = dig(document, "response.header.resultMsg") or ""
        if result_code in DATA_GO_KR_RATE_LIMITED:
            raise RateLimitedError(f"{source.name}: {message} (code {result_code})",
                                   retry_after_seconds=source.rate_limit.retry_after_seconds, source=source.name)
        raise SourceConfigError(f"{source.name}: {message} (code {result_code})", source=source.name)


class _NotStrictJson(ValueError):
    pass


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _NotStrictJson(f"duplicate key {repeated[:100]!r}")
    return document


def _no_constant(name: str) -> Any:
    raise _NotStrictJson(f"{name} is not a JSON value")


def _loads_strict_json(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_object_without_duplicate_keys, parse_constant=_no_constant)


def parse_document(text: str, source: SourceDefinition) -> Any:
    """The body as a JSON value or an XML dict; the data.go.kr envelope checked for XML.

    Raises `RefusedResponseError` (DP_1004) for a body that is not strict JSON / well-formed XML, that nests
    deeper than MAX_NESTING_DEPTH, or whose envelope codes are repeated or nested."""
    document = _parse_body(text, source)
    if nesting_depth(document) > MAX_NESTING_DEPTH:
        raise RefusedResponseError(f"{source.name}: response nests deeper than {MAX_NESTING_DEPTH} levels", body=text)
    if source.kind is SourceKind.XML_API:
        try:
            check_data_go_kr_envelope(document, source)
        except ResponseShapeError as error:
            raise RefusedResponseError(f"{source.name}: {error}", body=text) from None
    return document


def _parse_body(text: str, source: SourceDefinition) -> Any:
    if source.kind is SourceKind.JSON_API:
        try:
            return _loads_strict_json(text)
        except json.JSONDecodeError as error:
            _raise_for_gateway_error_in_xml(text, source)
            raise RefusedResponseError(f"{source.name}: response is not JSON ({error.msg} at {error.pos})",
                                       body=text) from None
        except _NotStrictJson as error:
            raise RefusedResponseError(f"{source.name}: response is not strict JSON ({error})", body=text) from None
        except RecursionError:
            raise RefusedResponseError(f"{source.name}: response is JSON nested too deep", body=text) from None
    try:
        root = etree.fromstring(text.encode("utf-8", "replace"), parser=_XML_PARSER)
    except etree.XMLSyntaxError as error:
        raise RefusedResponseError(f"{source.name}: response is not well-formed XML ({error})", body=text) from None
    return {etree.QName(root).localname: xml_to_dict(root)}


def _raise_for_gateway_error_in_xml(text: str, source: SourceDefinition) -> None:
    """data.go.kr's gateway answers a JSON API's key and quota errors in XML (`OpenAPI_ServiceResponse`, HTTP 200):
    raise what that envelope means (a quota to wait for, a key to fix), not "not JSON"."""
    if not text.lstrip().startswith("<"):
        return
    try:
        root = etree.fromstring(text.encode("utf-8", "replace"), parser=_XML_PARSER)
    except etree.XMLSyntaxError:
        return
    if etree.QName(root).localname == "OpenAPI_ServiceResponse":
        try:
            check_data_go_kr_envelope({"OpenAPI_ServiceResponse": xml_to_dict(root)}, source)
        except ResponseShapeError as error:
            raise RefusedResponseError(f"{source.name}: {error}", body=text) from None


def parse_page(text: str, source: SourceDefinition) -> Page:
    """One response's records (the source's record selector) and what its pagination reads from it (`Page.paging`).

    Raises `RefusedResponseError` (DP_1004) for a body `parse_document` refuses, records that are not a list of
    objects, or a paging value of the wrong shape (a total count that is not a number)."""
    document = parse_document(text, source)
    try:
        records = source.record_selector.select(document)
        return Page(records=records, paging=source.pagination.read_response(document))
    except ResponseShapeError as error:
        raise RefusedResponseError(f"{source.name}: {error}", body=text) from None


def make_page_check(source: SourceDefinition) -> Any:
    """A check for `SourceHttpClient.fetch_text`: parses once so envelope errors are retried like HTTP ones."""
    def check(text: str) -> None:
        if source.kind is SourceKind.XML_API:
            parse_document(text, source)
        elif source.kind is SourceKind.JSON_API:
            _raise_for_gateway_error_in_xml(text, source)
    return check
