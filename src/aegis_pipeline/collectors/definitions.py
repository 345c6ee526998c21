"""The sources file: declarative definitions of every source (format in docs/sources.md).

Adding a source is configuration, not code, in the manner of Airbyte's low-code streams: a requester (URL,
query parameters, timeout, retries, rate limit), a paginator, a record selector (where the records are in the
response), the source's id field, and a field mapping with named value parsers (`collectors.parsing`).

The file is validated when loaded; a wrong source fails with a message naming the source and the key.
`${ENV_VAR}` anywhere in a string is replaced from the environment values passed in (secrets such as a
data.go.kr `serviceKey` stay out of the file).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aegis_pipeline.collectors.parsing import VALUE_PARSERS
from aegis_pipeline.common.errors import SourceConfigError

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Query parameters and headers whose value is a credential (serviceKey, crtfcKey, Authorization, token ...).
_CREDENTIAL_NAME = re.compile(r"key|token|secret|passw|auth|signature|credential", re.IGNORECASE)
RECORD_FIELDS = {
    "title", "content", "issuing_organization", "target_region", "target_industry", "funding_type",
    "application_start_date", "application_end_date", "original_url",
}
REQUIRED_RECORD_FIELDS = {"title", "content", "issuing_organization"}
# "url" is resolved against the source's URL (relative links are common); the rest are collectors.parsing's.
PARSER_NAMES = {*VALUE_PARSERS, "url"}


class SourceKind(StrEnum):
    JSON_API = "json_api"
    XML_API = "xml_api"
    RSS = "rss"
    HTML = "html"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PageNumberPagination(_Strict):
    """`?page=1&size=10`, `?page=2&size=10`, ... until the total count is reached or a page comes back short."""

    type: Literal["page_number"]
    page_param: str
    size_param: str | None = None
    page_size: int = Field(default=10, ge=1, le=10_000)
    start_page: int = Field(default=1, ge=0)
    total_count_path: str | None = None


class OffsetPagination(_Strict):
    """`?offset=0&limit=10`, `?offset=10&limit=10`, ... with the same stop rules as page numbers."""

    type: Literal["offset"]
    offset_param: str
    limit_param: str
    page_size: int = Field(default=10, ge=1, le=10_000)
    total_count_path: str | None = None


class NextLinkPagination(_Strict):
    """The response names the next page's URL (JSON path, or for HTML a CSS selector of the "next" link)."""

    type: Literal["next_link"]
    next_path: str


class NoPagination(_Strict):
    type: Literal["none"]


Pagination = Annotated[
    PageNumberPagination | OffsetPagination | NextLinkPagination | NoPagination, Field(discriminator="type")
]


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


class Incremental(_Strict):
    """Ask only for what is new: the greatest `cursor_field` value seen (compared as text, so use ISO dates,
    yyyymmdd or zero-padded ids) is kept in the source's checkpoint and sent as `request_param` next run."""

    cursor_field: str
    request_param: str | None = None


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
        if self.encoding is not None:
            import codecs

            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ValueError(f"unknown encoding {self.encoding!r}") from None
        return self

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
        keys = [str(part) for part in location[2:] if part not in {"page_number", "offset", "next_link", "none"}]
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
