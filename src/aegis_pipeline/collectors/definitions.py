"""The sources file: declarative definitions of every source (format in docs/sources.md).

Adding a source is configuration, not code, in the manner of Airbyte's low-code streams: a requester (URL,
query parameters, timeout, retries, rate limit), a paginator, a record selector (where the records are in the
response), the source's id field, and a field mapping with named value parsers (`collectors.parsing.values`).

The declarative parts own their behaviour, as Airbyte's declarative components do. Each pagination kind knows
its requests: `first_request(url, params)`, `read_response(document)` (what it needs from each parsed response,
kept as `Page.paging`) and `next_request(previous, page, max_pages=...)` (the next `PageRequest`, or None when
done). `SourceDefinition.record_selector` knows where the records sit in a parsed response (`select(document)`).
A new pagination kind is one class, named in the `Pagination` union; the fetch loop and the parsing of pages
stay as they are.

The file is validated when loaded; a wrong source fails with a message naming the source and the key.
`${ENV_VAR}` anywhere in a string is replaced from the environment values passed in (secrets such as a
data.go.kr `serviceKey` stay out of the file).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aegis_pipeline.collectors.parsing.records import dig
from aegis_pipeline.collectors.parsing.values import VALUE_PARSERS
from aegis_pipeline.common.errors import SourceConfigError
from aegis_pipeline.common.logging import register_secrets
from aegis_pipeline.domain.policy import POLICY_CONTENT_COLUMNS
from aegis_pipeline.settings import Settings, environment_values

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Query parameters and headers whose value is a credential (serviceKey, crtfcKey, Authorization, token ...).
_CREDENTIAL_NAME = re.compile(r"key|token|secret|passw|auth|signature|credential", re.IGNORECASE)
# What a source's field mapping may fill: the policy's content, less the two ids the collector sets itself.
RECORD_FIELDS = set(POLICY_CONTENT_COLUMNS) - {"source_system", "external_id"}
REQUIRED_RECORD_FIELDS = {"title", "content", "issuing_organization"}
RSS_RECORDS_PATH = "rss.channel.item"  # where a feed's items are unless the source says otherwise
# "url" is resolved against the source's URL (relative links are common); the rest are VALUE_PARSERS' names.
PARSER_NAMES = {*VALUE_PARSERS, "url"}
# An `allowed_redirect_hosts` entry: a host name or IP address (IPv6 in brackets), lower case, optionally `:port`.
_ALLOWED_HOST = r"^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]*[a-z0-9])?)(:[0-9]{1,5})?$"


class SourceKind(StrEnum):
    JSON_API = "json_api"
    XML_API = "xml_api"
    RSS = "rss"
    HTML = "html"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- pagination: each kind knows its next request and when to stop (Airbyte's pagination strategies) -----------


@dataclass(frozen=True)
class PageRequest:
    """One page to fetch: `url` with the query `params`. `index` counts the pages fetched before it (0 for the
    first) and `records_before` the records they held."""

    url: str
    params: dict[str, str | int]
    index: int = 0
    records_before: int = 0


@dataclass(frozen=True)
class Page:
    """One parsed page: its records, and `paging`, what the source's pagination read from the response to find
    the next page (`read_response`: a total count, a next URL; None when it reads nothing or found nothing)."""

    records: list[dict[str, Any]]
    paging: Any = None


class ResponseShapeError(ValueError):
    """A parsed response that does not have the shape its definition describes (records that are not a list of
    objects, a total count that is not a number). `extract.parse_page` refuses the page with it (DP_1004)."""


class _Paginator(_Strict):
    """What every pagination kind does. A kind overrides `first_request` when the first page needs parameters,
    `read_response` when it needs something from each response, and `_request_after` for the page after one;
    `next_request` adds the rule every kind shares: at most `max_pages` pages."""

    def first_request(self, url: str, params: Mapping[str, str | int]) -> PageRequest:
        """The first page: `url` with `params` (the source's own, cursor included); this base adds nothing."""
        return PageRequest(url, dict(params))

    def read_response(self, document: Any) -> Any:
        """What this kind needs from a parsed response (a JSON value or an XML dict) to find the next page; kept
        as `Page.paging`. Raises `ResponseShapeError` when it is there but unusable. This base reads nothing."""
        return None

    def next_request(self, previous: PageRequest, page: Page, *, max_pages: int) -> PageRequest | None:
        """The request for the page after `previous`, whose parsed answer is `page`; None when `page` was the
        last one: `max_pages` pages were fetched, or this kind's own stop rule says so."""
        if previous.index + 1 >= max_pages:
            return None
        return self._request_after(previous, page)

    def _request_after(self, previous: PageRequest, page: Page) -> PageRequest | None:
        return None


def _read_total_count(document: Any, path: str | None) -> int | None:
    if not path:
        return None
    raw_total = dig(document, path)
    try:
        return int(raw_total) if raw_total not in (None, "") else None
    except (TypeError, ValueError):
        raise ResponseShapeError(f"total count {str(raw_total)[:100]!r} is not a number") from None


class _CountedPagination(_Paginator):
    """Pages of `page_size` records asked for by position (a page number, an offset): the last page came back
    short (an empty page included), or the total count the response gives at `total_count_path` is reached.
    A kind says only how a position is written as query parameters (`page_params`)."""

    page_size: int = Field(default=10, ge=1, le=10_000)
    total_count_path: str | None = None

    def page_params(self, index: int) -> dict[str, str | int]:
        """The query parameters of the page `index` pages after the first."""
        raise NotImplementedError

    def first_request(self, url: str, params: Mapping[str, str | int]) -> PageRequest:
        return self.request_at(url, params, 0)

    def request_at(self, url: str, params: Mapping[str, str | int], index: int) -> PageRequest:
        """The page `index` pages after the first, as if the ones before were full (a listing resumed there)."""
        return PageRequest(url, {**params, **self.page_params(index)}, index, index * self.page_size)

    def read_response(self, document: Any) -> int | None:
        """The total count at `total_count_path`, None without one."""
        return _read_total_count(document, self.total_count_path)

    def _request_after(self, previous: PageRequest, page: Page) -> PageRequest | None:
        fetched = previous.records_before + len(page.records)
        if len(page.records) < self.page_size:
            return None  # a short page is the last one
        if page.paging is not None and fetched >= page.paging:
            return None
        index = previous.index + 1
        return PageRequest(previous.url, {**previous.params, **self.page_params(index)}, index, fetched)


class PageNumberPagination(_CountedPagination):
    """`?page=1&size=10`, `?page=2&size=10`, ... until the total count is reached or a page comes back short."""

    type: Literal["page_number"]
    page_param: str
    size_param: str | None = None
    start_page: int = Field(default=1, ge=0)

    def page_params(self, index: int) -> dict[str, str | int]:
        """Its number, and the size if the source names a size parameter."""
        params: dict[str, str | int] = {self.page_param: self.start_page + index}
        if self.size_param:
            params[self.size_param] = self.page_size
        return params


class OffsetPagination(_CountedPagination):
    """`?offset=0&limit=10`, `?offset=10&limit=10`, ... with the same stop rules as page numbers."""

    type: Literal["offset"]
    offset_param: str
    limit_param: str

    def page_params(self, index: int) -> dict[str, str | int]:
        """Its offset and the limit."""
        return {self.offset_param: index * self.page_size, self.limit_param: self.page_size}


class NextLinkPagination(_Paginator):
    """The response names the next page's URL (JSON path, or for HTML a CSS selector of the "next" link)."""

    type: Literal["next_link"]
    next_path: str

    def read_response(self, document: Any) -> str | None:
        """The next page's URL at `next_path`; None when it is missing or empty."""
        found = dig(document, self.next_path)
        return str(found) if found else None

    def _request_after(self, previous: PageRequest, page: Page) -> PageRequest | None:
        if not page.paging:
            return None  # no next link: the last page
        # The link is the whole request: the source's params were the first page's, the link carries its own.
        return PageRequest(page.paging, {}, previous.index + 1, previous.records_before + len(page.records))


class NoPagination(_Paginator):
    """One request, the source's URL with its params."""

    type: Literal["none"]


# A new kind is one class above, named in this union.
Pagination = Annotated[
    PageNumberPagination | OffsetPagination | NextLinkPagination | NoPagination, Field(discriminator="type")
]
# The kinds' `type` tags, which pydantic puts in an error's location (`_where` leaves them out).
_PAGINATION_TAGS = {get_args(kind.model_fields["type"].annotation)[0] for kind in get_args(get_args(Pagination)[0])}


# --- record selection -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordSelector:
    """Where the records sit in a parsed response (Airbyte's record selector with a path extractor): `path`, dotted
    JSON keys or XML element names (`response.body.items.item`, `jsonArray`; RSS: `rss.channel.item`)."""

    path: str | None

    def select(self, document: Any) -> list[dict[str, Any]]:
        """The records at `path` in `document` (a JSON value or an XML dict). Nothing there (a missing list, an
        empty `<items/>`) gives []; a single object (data.go.kr's one `<item>`) gives [it]. Raises
        `ResponseShapeError` when what is there is not a list of objects."""
        found = dig(document, self.path)
        if found is None or found == "":
            return []  # an empty <items/> or a missing list: no records on this page
        if isinstance(found, dict):
            return [found]  # a page with one item gives the item itself, not a list
        if isinstance(found, list) and all(isinstance(item, dict) for item in found):
            return found
        raise ResponseShapeError(f"records at {self.path!r} are not a list of objects")


class FieldMapping(_Strict):
    """Where a record field comes from: a path in the source record (dots for nesting), several paths joined
    by newlines, or a constant; then an optional named parser. `default` is used when the source gives
    nothing (e.g. a feed item without <author>: its feed's publisher)."""

    path: str | None = None
    join: list[str] | None = None
    value: str | None = None
    parser: str | None = None
    default: str | None = None

    @model_validator(mode="after")
    def _exactly_one_origin(self) -> FieldMapping:
        given = [name for name in ("path", "join", "value") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of path, join, value (got {given or 'none'})")
        if self.parser is not None and self.parser not in PARSER_NAMES:
            raise ValueError(f"unknown parser {self.parser!r}; known: {', '.join(sorted(PARSER_NAMES))}")
        return self


class Schedule(_Strict):
    """Either every `interval_hours`, or a crontab line (`minute hour day month day_of_week`)."""

    interval_hours: float | None = Field(default=None, gt=0)
    cron: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        if (self.interval_hours is None) == (self.cron is None):
            raise ValueError("give exactly one of interval_hours, cron")
        if self.cron is not None and len(self.cron.split()) != 5:
            raise ValueError("cron needs 5 fields: minute hour day month day_of_week")
        return self


class RateLimit(_Strict):
    """At most `requests_per_second` to this source, shared by every replica (counted in Redis)."""

    requests_per_second: float = Field(default=2.0, gt=0, le=1000)
    # How long to wait when the source says "too many requests" without saying how long (data.go.kr code 22).
    retry_after_seconds: float = Field(default=60.0, ge=0)


class HtmlSelectors(_Strict):
    """How to read a web board: rows of the list page, the detail link in a row, and each detail field."""

    row_selector: str
    link_selector: str
    # The record id: a query parameter of the detail link (e.g. nttId), else the link itself.
    id_query_param: str | None = None
    detail_fields: dict[str, str] = Field(min_length=1)
    download_delay_seconds: float = Field(default=1.0, ge=0)
    # A run reads at most this many posts (it stops after the list page on which it reached them); the next run
    # resumes the crawl at the page after it. 500 posts at the default delay is about 9 minutes of crawling.
    max_rows_per_run: int = Field(default=500, ge=1)


class CursorIncremental(_Strict):
    """Ask only for what is new by a value of the records: the greatest `cursor_field` value seen (compared as
    text, so use ISO dates, yyyymmdd or zero-padded ids) is kept in the source's checkpoint and sent as
    `request_param` next run. (`strategy: cursor` is the default, for files written before there were others.)"""

    strategy: Literal["cursor"] = "cursor"
    cursor_field: str
    request_param: str | None = None


class DateWindowIncremental(_Strict):
    """Ask only for what was registered or changed since the last complete run, by a date filter the API offers
    (중기부 `startDate`/`endDate`, odcloud `cond[수정일시::GTE]`): `start_param` is the last complete run's start
    less `lookback_days` (late registrations, clocks that differ), `end_param` (if any) today, both written with
    `date_format` in Korean time. Before any complete run, the window starts `lookback_days` ago; older records
    come with the full listing."""

    strategy: Literal["date_window"]
    start_param: str
    end_param: str | None = None
    date_format: str = "%Y-%m-%d"
    lookback_days: float = Field(default=3, ge=0, le=366)


class StopAtSeenIncremental(_Strict):
    """For an API that lists newest first and offers no filter (기업마당): page until a page brings nothing new
    or changed (every valid record on it already published as it is), then stop. Changes to older records come
    with the full listing."""

    strategy: Literal["stop_at_seen"]


Incremental = Annotated[
    CursorIncremental | DateWindowIncremental | StopAtSeenIncremental, Field(discriminator="strategy")
]


class FullListing(_Strict):
    """Besides the incremental runs, list everything every `every_days` days, so what changed behind the
    incremental filter (a corrected deadline, a record the filter cannot see) is read too. A listing larger
    than one run's `max_pages` or daily request budget resumes at its next page in the following runs."""

    every_days: float = Field(default=7, gt=0)


class SourceDefinition(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{1,62}$")
    kind: SourceKind
    url: str = Field(pattern=r"^https?://")
    enabled: bool = True
    params: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    pagination: Pagination = NoPagination(type="none")
    max_pages: int = Field(default=100, ge=1)
    # Dotted path to the list of records (JSON keys or XML element names); RSS and HTML have fixed places.
    records_path: str | None = None
    id_field: str
    fields: dict[str, FieldMapping]
    encoding: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    max_retries: int = Field(default=3, ge=0, le=10)
    schedule: Schedule | None = None
    rate_limit: RateLimit = RateLimit()
    html: HtmlSelectors | None = None
    incremental: Incremental | None = None
    full_listing: FullListing | None = None
    # At most this many requests a day (Korean time) to this source, counted across replicas in Redis: set it
    # below the key's daily quota (data.go.kr development keys: often 1,000), so a run stops cleanly first.
    daily_request_budget: int | None = Field(default=None, ge=1)
    # Egress (collectors.egress): a redirect goes only to the source's own scheme, host and port, or to these hosts
    # (`host` on any port, or `host:port`); at most `max_redirects` hops per request.
    allowed_redirect_hosts: list[Annotated[str, Field(pattern=_ALLOWED_HOST)]] = Field(default_factory=list)
    max_redirects: int = Field(default=5, ge=0, le=20)
    # Deadlines that bound time, not reads: one request (connect, every hop, every read of the body) and one run.
    request_deadline_seconds: float = Field(default=60.0, gt=0, le=3600)
    run_deadline_seconds: float = Field(default=1800.0, gt=0, le=86_400)
    # A response larger than this is refused (DP_1004); None: the MAX_RESPONSE_BYTES setting.
    max_response_bytes: int | None = Field(default=None, ge=1_000)

    @field_validator("incremental", mode="before")
    @classmethod
    def _cursor_by_default(cls, value: Any) -> Any:
        if isinstance(value, dict) and "strategy" not in value:
            return {**value, "strategy": "cursor"}
        return value

    @field_validator("fields")
    @classmethod
    def _maps_known_record_fields(cls, fields: dict[str, FieldMapping]) -> dict[str, FieldMapping]:
        unknown = set(fields) - RECORD_FIELDS
        if unknown:
            raise ValueError(f"unknown record fields {sorted(unknown)}; known: {sorted(RECORD_FIELDS)}")
        missing = REQUIRED_RECORD_FIELDS - set(fields)
        if missing:
            raise ValueError(f"required record fields not mapped: {sorted(missing)}")
        return fields

    @model_validator(mode="after")
    def _kind_needs(self) -> SourceDefinition:
        if self.kind is SourceKind.HTML and self.html is None:
            raise ValueError("kind html needs an `html` section (row_selector, link_selector, detail_fields)")
        if self.kind is not SourceKind.HTML and self.html is not None:
            raise ValueError(f"an `html` section is only for kind html, not {self.kind.value}")
        if self.kind in (SourceKind.JSON_API, SourceKind.XML_API) and not self.records_path:
            raise ValueError(f"kind {self.kind.value} needs records_path")
        if self.kind is SourceKind.HTML and (self.incremental is not None or self.full_listing is not None):
            raise ValueError("a web board pages its own list: `incremental` and `full_listing` are for APIs and feeds")
        if self.full_listing is not None and not isinstance(self.incremental,
                                                            DateWindowIncremental | StopAtSeenIncremental):
            raise ValueError("`full_listing` needs a date_window or stop_at_seen `incremental` (without one every run "
                             "lists everything; a cursor cannot tell how far a listing over several runs got)")
        if self.full_listing is not None and not isinstance(self.pagination, _CountedPagination):
            raise ValueError("`full_listing` resumes at a page number or offset: it needs page_number or offset "
                             "pagination")
        if self.encoding is not None:
            import codecs

            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ValueError(f"unknown encoding {self.encoding!r}") from None
        return self

    @property
    def record_selector(self) -> RecordSelector:
        """Where this source's records sit in a parsed response: `records_path`; for RSS by default the items."""
        if self.kind is SourceKind.RSS and not self.records_path:
            return RecordSelector(RSS_RECORDS_PATH)
        return RecordSelector(self.records_path)

    def query_params(self, cursor: str | None = None) -> dict[str, str | int]:
        """The source's `params`, plus the incremental cursor as `incremental.request_param` when both are given."""
        params: dict[str, str | int] = dict(self.params)
        if cursor is not None and isinstance(self.incremental, CursorIncremental) and self.incremental.request_param:
            params[self.incremental.request_param] = cursor
        return params

    def secret_values(self) -> set[str]:
        """The credentials this source sends (values of params and headers named like a key, token, password or
        authorization), so nothing the collector writes repeats them. ``Infuser <key>`` gives the key too."""
        values: set[str] = set()
        for name, value in [*self.params.items(), *self.headers.items()]:
            if _CREDENTIAL_NAME.search(name) and value.strip():
                values.add(value.strip())
                values.add(value.split()[-1])
        return values

    def effective_schedule(self, *, api_interval_hours: float, board_cron: str = "0 0 * * *") -> Schedule:
        """The source's own schedule, else the design's: APIs and feeds every N hours, boards daily at 00:00."""
        if self.schedule is not None:
            return self.schedule
        if self.kind is SourceKind.HTML:
            return Schedule(cron=board_cron)
        return Schedule(interval_hours=api_interval_hours)


class SourcesFile(_Strict):
    sources: list[SourceDefinition] = Field(min_length=1)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceDefinition]) -> list[SourceDefinition]:
        names = [source.name for source in sources]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"source names must be unique; repeated: {duplicated}")
        return sources

    def select(self, name: str | None = None) -> list[SourceDefinition]:
        """The enabled sources, or the one named (enabled or not: naming it is asking for it)."""
        if name is None:
            return [source for source in self.sources if source.enabled]
        chosen = [source for source in self.sources if source.name == name]
        if not chosen:
            raise SourceConfigError(f"no source named {name!r}; known: {[s.name for s in self.sources]}")
        return chosen


def _substitute(value: Any, environment: Mapping[str, str], missing: set[str]) -> Any:
    if isinstance(value, str):
        def replace(match: re.Match[str]) -> str:
            if match.group(1) not in environment:
                missing.add(match.group(1))
                return match.group(0)
            return environment[match.group(1)]

        return _ENV_REFERENCE.sub(replace, value)
    if isinstance(value, list):
        return [_substitute(item, environment, missing) for item in value]
    if isinstance(value, dict):
        return {key: _substitute(item, environment, missing) for key, item in value.items()}
    return value


def _where(raw_sources: list[Any], location: tuple[int | str, ...]) -> str:
    """'source "bizinfo": pagination.page_param' from pydantic's ('sources', 2, 'pagination', ...)."""
    if len(location) >= 2 and location[0] == "sources" and isinstance(location[1], int):
        index = location[1]
        entry = raw_sources[index] if index < len(raw_sources) else {}
        name = entry.get("name", f"#{index + 1}") if isinstance(entry, dict) else f"#{index + 1}"
        # Discriminated unions add the variant's tag to the path; it is not a key the user wrote.
        keys = [str(part) for part in location[2:] if part not in _PAGINATION_TAGS]
        return f'source "{name}": {".".join(keys) or "(the source)"}'
    return ".".join(str(part) for part in location) or "(file)"


def parse_sources(document: Any, environment: Mapping[str, str], *, origin: str = "sources file") -> SourcesFile:
    if not isinstance(document, dict) or not isinstance(document.get("sources"), list):
        raise SourceConfigError(f"{origin}: expected a mapping with a `sources:` list")
    problems: list[str] = []
    raw_sources = document["sources"]
    substituted = []
    for index, raw in enumerate(raw_sources):
        missing: set[str] = set()
        substituted.append(_substitute(raw, environment, missing))
        name = raw.get("name", f"#{index + 1}") if isinstance(raw, dict) else f"#{index + 1}"
        problems.extend(
            f'source "{name}": environment variable {variable} is not set' for variable in sorted(missing)
        )
    try:
        parsed = SourcesFile.model_validate({**document, "sources": substituted})
    except ValidationError as error:
        problems.extend(f"{_where(raw_sources, problem['loc'])}: {problem['msg']}" for problem in error.errors())
        parsed = None
    if problems or parsed is None:
        raise SourceConfigError(f"{origin} is invalid:\n" + "\n".join(f"  {problem}" for problem in problems))
    return parsed


def load_sources(path: Path, environment: Mapping[str, str]) -> SourcesFile:
    """Read and validate a sources file; `SourceConfigError` names each bad source and key."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise SourceConfigError(f"cannot read sources file {path}: {error}") from None
    return parse_sources(document, environment, origin=str(path))


# Source keys reach the sources file as ${NAME}s: the values of variables named like a secret stay out of logs.
SECRET_VARIABLE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)


def load_configured_sources(settings: Settings, sources_file: Path | None = None) -> SourcesFile:
    """`sources_file`, else SOURCES_FILE, read with this process's environment and validated (`SourceConfigError`
    names what is wrong); the values of secret-looking variables are registered for redaction first."""
    environment = environment_values()
    register_secrets(value for name, value in environment.items() if SECRET_VARIABLE.search(name))
    return load_sources(sources_file or settings.sources_file, environment)
