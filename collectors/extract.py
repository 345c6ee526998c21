"""From a response body to source records (plain dicts), for JSON APIs, XML APIs and RSS feeds.

XML becomes nested dicts (an element with children is a dict, repeated children a list, a leaf its text), so
one dotted `records_path` syntax serves JSON and XML alike; a path that ends on a single element (data.go.kr's
one-item `<items><item>`) still yields a list. The data.go.kr error envelope, which arrives with HTTP 200, is
recognised here and raised as the error it is. Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lxml import etree

from collectors.definitions import (
    NextLinkPagination,
    OffsetPagination,
    PageNumberPagination,
    SourceDefinition,
    SourceKind,
)
from common.errors import InvalidDataError, RateLimitedError, SourceConfigError

RSS_RECORDS_PATH = "rss.channel.item"
# data.go.kr returnReasonCode values: 22 = request quota exceeded (wait and retry); the others need a person.
DATA_GO_KR_RATE_LIMITED = {"22"}
DATA_GO_KR_KEY_ERRORS = {"20", "30", "31", "32", "33"}  # access denied, key not registered / expired / bad IP


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]
    total_count: int | None = None
    next_url: str | None = None


# No entity resolution, no network: a hostile XML payload cannot read files or call out (XXE).
_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, recover=False)


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


def dig(document: Any, path: str | None) -> Any:
    """`dig(doc, "response.body.items.item")`; None when any step is missing."""
    current = document
    for key in (path or "").split(".") if path else []:
        if isinstance(current, dict) and key in current:
            current = current[key]
        else:
            return None
    return current


def _as_record_list(found: Any, source: SourceDefinition) -> list[dict[str, Any]]:
    if found is None or found == "":
        return []  # an empty <items/> or a missing list: no records on this page
    if isinstance(found, dict):
        return [found]  # a page with one item gives the item itself, not a list
    if isinstance(found, list) and all(isinstance(item, dict) for item in found):
        return found
    raise InvalidDataError(f"{source.name}: records at {source.records_path!r} are not a list of objects")


def check_data_go_kr_envelope(document: dict[str, Any], source: SourceDefinition) -> None:
    """Raise for the error envelope data.go.kr sends with HTTP 200 (and for a non-00 resultCode)."""
    header = dig(document, "OpenAPI_ServiceResponse.cmmMsgHeader")
    if isinstance(header, dict):
        code = str(header.get("returnReasonCode", "")).strip()
        message = f"{header.get('errMsg', '')} {header.get('returnAuthMsg', '')}".strip()
        if code in DATA_GO_KR_RATE_LIMITED:
            raise RateLimitedError(
                f"{source.name}: {message} (code {code})",
                retry_after_seconds=source.rate_limit.retry_after_seconds,
                source=source.name, reason_code=code,
            )
        raise SourceConfigError(f"{source.name}: {message} (code {code})", source=source.name, reason_code=code)
    result_code = dig(document, "response.header.resultCode")
    if result_code not in (None, "", "00", "0", "000"):
        message = dig(document, "response.header.resultMsg") or ""
        if result_code in DATA_GO_KR_RATE_LIMITED:
            raise RateLimitedError(f"{source.name}: {message} (code {result_code})",
                                   retry_after_seconds=source.rate_limit.retry_after_seconds, source=source.name)
        raise SourceConfigError(f"{source.name}: {message} (code {result_code})", source=source.name)


def parse_document(text: str, source: SourceDefinition) -> Any:
    """The body as a JSON value or an XML dict; the data.go.kr envelope checked for XML."""
    if source.kind is SourceKind.JSON_API:
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidDataError(f"{source.name}: response is not JSON ({error.msg} at {error.pos})") from None
    try:
        root = etree.fromstring(text.encode("utf-8"), parser=_XML_PARSER)
    except etree.XMLSyntaxError as error:
        raise InvalidDataError(f"{source.name}: response is not well-formed XML ({error})") from None
    document = {etree.QName(root).localname: xml_to_dict(root)}
    if source.kind is SourceKind.XML_API:
        check_data_go_kr_envelope(document, source)
    return document


def parse_page(text: str, source: SourceDefinition) -> Page:
    document = parse_document(text, source)
    path = RSS_RECORDS_PATH if source.kind is SourceKind.RSS and not source.records_path else source.records_path
    records = _as_record_list(dig(document, path), source)
    pagination = source.pagination
    total_count = None
    if isinstance(pagination, PageNumberPagination | OffsetPagination) and pagination.total_count_path:
        raw_total = dig(document, pagination.total_count_path)
        try:
            total_count = int(raw_total) if raw_total not in (None, "") else None
        except (TypeError, ValueError):
            raise InvalidDataError(f"{source.name}: total count {raw_total!r} is not a number") from None
    next_url = None
    if isinstance(pagination, NextLinkPagination):
        found = dig(document, pagination.next_path)
        next_url = str(found) if found else None
    return Page(records=records, total_count=total_count, next_url=next_url)


def make_page_check(source: SourceDefinition) -> Any:
    """A check for `SourceHttpClient.fetch_text`: parses once so envelope errors are retried like HTTP ones."""
    def check(text: str) -> None:
        if source.kind is SourceKind.XML_API:
            parse_document(text, source)
    return check
