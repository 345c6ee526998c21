"""Unit tests of the text helpers (domain/text.py)."""

from __future__ import annotations

import unicodedata

from aegis_pipeline.domain.text import nfc, nfc_trimmed, without_control_characters, without_whitespace


def test_control_characters_and_lone_surrogates_go_and_text_stays() -> None:
    assert without_control_characters("a\x00b\x1fc\x7fd\ud800e") == "abcde"
    assert without_control_characters("탭\t줄\n바꿈\r\x0b\x0c") == "탭\t줄\n바꿈\r\x0b\x0c"
    assert without_control_characters(None) is None and without_control_characters(5) == 5


def test_nfc_trimming_and_whitespace() -> None:
    decomposed = unicodedata.normalize("NFD", "청년 창업")
    assert nfc(decomposed) == "청년 창업" and nfc_trimmed(f"  {decomposed}\n") == "청년 창업"
    assert without_whitespace(" 서울 특별\t시\n") == "서울특별시"
