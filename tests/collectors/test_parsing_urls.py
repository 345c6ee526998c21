"""Unit tests of collectors/parsing/urls.py: links resolved against their page."""

from __future__ import annotations

import pytest

from aegis_pipeline.collectors.parsing.errors import ValueParseError
from aegis_pipeline.collectors.parsing.urls import join_url

# --- join_url ----------------------------------------------------------------------------

BIZINFO_LIST = "https://www.bizinfo.go.kr/web/lay1/bbs/S1T122C128/AS/74/list.do"
URLS = [
    (
        "/sii/view.do?pblancId=PBLN_000000000065432",
        "https://www.bizinfo.go.kr/sii/view.do?pblancId=PBLN_000000000065432",
        "root-relative",
    ),
    (
        "view.do?pblancId=PBLN_1",
        "https://www.bizinfo.go.kr/web/lay1/bbs/S1T122C128/AS/74/view.do?pblancId=PBLN_1",
        "path-relative",
    ),
    ("../75/view.do", "https://www.bizinfo.go.kr/web/lay1/bbs/S1T122C128/AS/75/view.do", "parent"),
    ("//www.k-startup.go.kr/a.do", "https://www.k-startup.go.kr/a.do", "protocol-relative"),
    ("https://www.gov.kr/portal/x", "https://www.gov.kr/portal/x", "absolute"),
    ("  /sii/view.do  ", "https://www.bizinfo.go.kr/sii/view.do", "trimmed"),
]


@pytest.mark.parametrize(("link", "expected"), [c[:2] for c in URLS], ids=[c[2] for c in URLS])
def test_join_url(link: str, expected: str) -> None:
    assert join_url(BIZINFO_LIST, link) == expected


@pytest.mark.parametrize(
    "link",
    ["", "   ", "javascript:goView('123')", "mailto:help@bizinfo.go.kr"],
    ids=["empty", "blank", "javascript", "mailto"],
)
def test_join_url_rejects_links_that_are_not_pages(link: str) -> None:
    with pytest.raises(ValueParseError):
        join_url(BIZINFO_LIST, link)
