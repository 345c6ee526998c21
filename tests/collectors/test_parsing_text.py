"""Unit tests of collectors/parsing/text.py: HTML to plain text, joined lists."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis_pipeline.collectors.parsing.text import clean_text, split_list

# --- split_list --------------------------------------------------------------------------

LISTS = [
    ("서울@부산@대구", "@", ["서울", "부산", "대구"], "plain"),
    (" 서울 @ 부산 ", "@", ["서울", "부산"], "trims"),
    ("서울@@부산@", "@", ["서울", "부산"], "drops-empties"),
    ("부산@서울@부산@서울", "@", ["부산", "서울"], "dedupes-keeping-first-position"),
    ("서울", "@", ["서울"], "single"),
    ("@ @", "@", [], "only-separators"),
    ("", "@", [], "empty"),
    (None, "@", [], "none"),
    ("창업, 서울,중소기업", ",", ["창업", "서울", "중소기업"], "comma"),
]


@pytest.mark.parametrize(("text", "separator", "expected"), [c[:3] for c in LISTS], ids=[c[3] for c in LISTS])
def test_split_list(text: str | None, separator: str, expected: list[str]) -> None:
    assert split_list(text, separator) == expected


def test_split_list_rejects_empty_separator() -> None:
    with pytest.raises(ValueError, match="separator"):
        split_list("a@b", "")


# --- clean_text --------------------------------------------------------------------------

TEXTS = [
    ("&#40;주&#41;에이지스", "(주)에이지스", "numeric-entities-parens"),
    ("&#x28;hex&#x29;", "(hex)", "hex-entities"),
    ("R&amp;D 지원", "R&D 지원", "amp"),
    ("R&D 지원", "R&D 지원", "bare-ampersand-kept"),
    ("지원&nbsp;&nbsp;&nbsp;대상", "지원 대상", "nbsp-collapsed"),
    ("&lt;p&gt;지원 내용&lt;/p&gt;", "지원 내용", "escaped-html-decoded-twice"),
    ("&amp;lt;", "<", "double-escaped-entity-decoded-twice"),
    ("&amp;amp;lt;", "&lt;", "third-layer-left-alone"),
    ("금리 3% < 5%", "금리 3% < 5%", "literal-less-than"),
    ("<script>alert('x')</script>본문", "본문", "script-contents-dropped"),
    ("<SCRIPT type='text/javascript'>var a = '<p>';</SCRIPT>본문", "본문", "script-upper-case"),
    ("<style>p { color: red }</style>본문", "본문", "style-contents-dropped"),
    ("&lt;script&gt;alert(1)&lt;/script&gt;본문", "본문", "escaped-script-dropped"),
    ("<textarea><script>x</script></textarea>본문", "본문", "script-inside-rcdata-dropped"),
    ("본문<!-- 주석 -->", "본문", "comment-dropped"),
    ("첫 줄<br>둘째 줄<br/>셋째 줄", "첫 줄\n둘째 줄\n셋째 줄", "br-to-newline"),
    ("<p>첫 문단</p><p>둘째 문단</p>", "첫 문단\n둘째 문단", "paragraph-to-newline"),
    ("<ul><li>하나</li><li>둘</li></ul>", "하나\n둘", "list-items"),
    ("<table><tr><td>지역</td><td>서울</td></tr></table>", "지역 서울", "table-cells-spaced"),
    ("첫 줄\r\n둘째 줄\r셋째 줄", "첫 줄\n둘째 줄\n셋째 줄", "crlf-and-cr"),
    ("첫 줄\r\n\r\n\r\n둘째 줄", "첫 줄\n둘째 줄", "blank-lines-collapsed"),
    ("  지원   \t 대상\u3000\u3000내용  ", "지원 대상 내용", "space-runs-collapsed"),
    ("지원\u200b대상\x00", "지원대상", "invisible-and-nul-dropped"),
    (
        "<div>중소기업&#40;제조업&#41; 대상<br>\r\n  신청: 2026.03.01 ~ 2026.03.31</div>",
        "중소기업(제조업) 대상\n신청: 2026.03.01 ~ 2026.03.31",
        "bizinfo-summary",
    ),
    ("똠방각하 뷁 햏", "똠방각하 뷁 햏", "korean-intact"),
    ("https://www.bizinfo.go.kr", "https://www.bizinfo.go.kr", "url-is-text"),
    ("", "", "empty"),
    (None, "", "none"),
]


@pytest.mark.parametrize(("value", "expected"), [c[:2] for c in TEXTS], ids=[c[2] for c in TEXTS])
def test_clean_text(value: str | None, expected: str) -> None:
    assert clean_text(value) == expected


# --- properties --------------------------------------------------------------------------

HTML_PIECES = st.sampled_from(
    [
        "<script>", "</script>", "<SCRIPT", "<style>", "</style>", "<", ">", "/", "script", "&lt;",
        "&gt;", "&amp;", "&#60;", "&#x3c;", "<p>", "</p>", "<br>", "<textarea>", "<plaintext>",
        "<!--", "-->", "<![CDATA[", "]]>", "'", '"', "=", "지원", " ", "\r\n", "\x00", "\ud800",
    ]
)  # fmt: skip
HTML_LIKE = st.one_of(st.text(), st.lists(HTML_PIECES, max_size=30).map("".join))


@given(HTML_LIKE)
def test_clean_text_never_raises_and_never_leaves_a_script_tag(value: str) -> None:
    cleaned = clean_text(value)
    assert "<script" not in cleaned.lower()
    assert "\r" not in cleaned
    assert "\x00" not in cleaned
    assert cleaned == cleaned.strip()


@given(st.text(alphabet=st.sampled_from("서울부산@ ,a")), st.sampled_from(["@", ","]))
def test_split_list_items_are_trimmed_unique_and_non_empty(text: str, separator: str) -> None:
    items = split_list(text, separator)
    assert len(items) == len(set(items))
    assert all(item and item == item.strip() and separator not in item for item in items)
