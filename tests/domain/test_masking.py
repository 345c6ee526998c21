"""Unit tests of the masking of personal data (domain/masking.py): every form of phone and fax number, e-mail
address and registration number is masked, numbers that are data are not, and masking is idempotent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_pipeline.devstack.sample_sources import expected_records
from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.domain.masking import (
    EMAIL_TOKEN,
    FOREIGNER_REGISTRATION_TOKEN,
    PHONE_TOKEN,
    RESIDENT_REGISTRATION_TOKEN,
    MaskCounts,
    counts_of,
    mask_counted,
    mask_personal_data,
    mask_text,
    mask_url,
    mask_url_counted,
    new_tally,
)

PHONE = MaskCounts(phone_numbers=1)
EMAIL = MaskCounts(email_addresses=1)
REGISTRATION = MaskCounts(registration_numbers=1)
NOTHING = MaskCounts()

# --- phone and fax numbers -------------------------------------------------------------------------------

PHONE_FORMS = [
    ("010-1234-5678", PHONE_TOKEN, "mobile-hyphens"),
    ("010 1234 5678", PHONE_TOKEN, "mobile-spaces"),
    ("01012345678", PHONE_TOKEN, "mobile-unseparated"),
    ("010.1234.5678", PHONE_TOKEN, "mobile-dots"),
    ("010 - 1234 - 5678", PHONE_TOKEN, "mobile-spaced-hyphens"),
    ("011-123-4567", PHONE_TOKEN, "mobile-old-carrier"),
    ("+82-10-1234-5678", PHONE_TOKEN, "international-hyphens"),
    ("+82 10 1234 5678", PHONE_TOKEN, "international-spaces"),
    ("+821012345678", PHONE_TOKEN, "international-unseparated"),
    ("+82 (0)10 1234 5678", PHONE_TOKEN, "international-trunk-zero-in-parentheses"),
    ("(+82) 10-1234-5678", PHONE_TOKEN, "international-code-in-parentheses"),
    ("+82-2-123-4567", PHONE_TOKEN, "international-seoul-landline"),
    ("02-123-4567", PHONE_TOKEN, "seoul-3-digit-exchange"),
    ("02-1234-5678", PHONE_TOKEN, "seoul-4-digit-exchange"),
    ("031-123-4567", PHONE_TOKEN, "gyeonggi"),
    ("044-204-7000", PHONE_TOKEN, "sejong"),
    ("064 123 4567", PHONE_TOKEN, "jeju-spaces"),
    ("055.123.4567", PHONE_TOKEN, "gyeongnam-dots"),
    ("0212345678", PHONE_TOKEN, "seoul-unseparated"),
    ("0311234567", PHONE_TOKEN, "gyeonggi-unseparated"),
    ("(02)123-4567", PHONE_TOKEN, "area-code-in-parentheses"),
    ("(031) 1234-5678", PHONE_TOKEN, "area-code-in-parentheses-spaced"),
    ("02)123-4567", PHONE_TOKEN, "area-code-closing-parenthesis"),
    ("☎ 02-123-4567", f"☎ {PHONE_TOKEN}", "telephone-sign"),
    ("☎02-123-4567", f"☎{PHONE_TOKEN}", "telephone-sign-glued"),
    ("Tel. 044-204-7000", f"Tel. {PHONE_TOKEN}", "tel-abbreviation"),
    ("TEL:044-204-7000", f"TEL:{PHONE_TOKEN}", "tel-colon"),
    ("전화: 042-481-4321", f"전화: {PHONE_TOKEN}", "korean-label"),
    ("FAX 02-123-4568", f"FAX {PHONE_TOKEN}", "fax"),
    ("팩스 : 031-8008-1234", f"팩스 : {PHONE_TOKEN}", "fax-korean"),
    ("070-1234-5678", PHONE_TOKEN, "internet-phone"),
    ("0505-123-4567", PHONE_TOKEN, "personal-virtual-number"),
    ("080-123-4567", PHONE_TOKEN, "toll-free"),
    ("1588-1234", PHONE_TOKEN, "representative-1588"),
    ("1644-1234", PHONE_TOKEN, "representative-1644"),
    ("1577.1234", PHONE_TOKEN, "representative-dot"),
    ("1800-1234번", f"{PHONE_TOKEN}번", "representative-followed-by-beon"),
    ("대표번호 1600-1234로", f"대표번호 {PHONE_TOKEN}로", "representative-followed-by-particle"),
    ("０２－１２３－４５６７", PHONE_TOKEN, "full-width"),
    ("02–123–4567", PHONE_TOKEN, "en-dashes"),
    ("02\u00a0123\u00a04567", PHONE_TOKEN, "no-break-spaces"),
    ("02-123-4567~8", f"{PHONE_TOKEN}~8", "two-consecutive-lines"),
    ("(02-123-4567)", f"({PHONE_TOKEN})", "in-parentheses"),
    ("02-123-4588 / 010-1234-5678", f"{PHONE_TOKEN} / {PHONE_TOKEN}", "two-numbers"),
    ("0212345678-1588-1234", f"{PHONE_TOKEN}-{PHONE_TOKEN}", "two-numbers-glued-by-a-hyphen"),
    ("https://x.go.kr/contact?tel=02-123-4567", f"https://x.go.kr/contact?tel={PHONE_TOKEN}", "separated-in-url"),
]


@pytest.mark.parametrize(("text", "expected"), [c[:2] for c in PHONE_FORMS], ids=[c[2] for c in PHONE_FORMS])
def test_every_phone_form_is_masked(text: str, expected: str) -> None:
    masked, counts = mask_personal_data(f"문의 {text} 바랍니다")
    assert masked == f"문의 {expected} 바랍니다"
    assert counts.phone_numbers == expected.count(PHONE_TOKEN)
    assert counts.email_addresses == counts.registration_numbers == 0


# --- e-mail addresses -------------------------------------------------------------------------------------

EMAIL_FORMS = [
    ("kim@sd.go.kr", EMAIL_TOKEN, "go-kr"),
    ("chulsoo.kim+x@mss.go.kr", EMAIL_TOKEN, "dot-and-plus-in-local-part"),
    ("gildong.hong@sd.go.kr", EMAIL_TOKEN, "dotted-name"),
    ("KIM01@MSS.GO.KR", EMAIL_TOKEN, "upper-case"),
    ("kim_01@korea.kr", EMAIL_TOKEN, "underscore"),
    ("a-b@sub-domain.co.kr", EMAIL_TOKEN, "hyphens"),
    ("kim42@mss.go.kr", EMAIL_TOKEN, "digits-in-local-part"),
    ("010-1234-5678kim@x.kr", EMAIL_TOKEN, "digits-claimed-by-the-local-part"),
    ("kim＠mss.go.kr", EMAIL_TOKEN, "full-width-at"),
    ("kim(at)mss.go.kr", EMAIL_TOKEN, "at-in-parentheses"),
    ("kim [at] mss [dot] go [dot] kr", EMAIL_TOKEN, "at-and-dot-in-brackets"),
    ("이메일:kim@x.go.kr로", f"이메일:{EMAIL_TOKEN}로", "glued-to-korean"),
    ("합니다.kim@x.kr", f"합니다.{EMAIL_TOKEN}", "after-a-full-stop"),
    ("<kim@x.kr>", f"<{EMAIL_TOKEN}>", "angle-brackets"),
    ("mailto:kim@x.kr", f"mailto:{EMAIL_TOKEN}", "mailto"),
    ("kim@x.kr.", f"{EMAIL_TOKEN}.", "end-of-sentence"),
    ("https://x.go.kr/a?m=kim@x.kr", f"https://x.go.kr/a?m={EMAIL_TOKEN}", "in-url"),
]


@pytest.mark.parametrize(("text", "expected"), [c[:2] for c in EMAIL_FORMS], ids=[c[2] for c in EMAIL_FORMS])
def test_every_email_form_is_masked(text: str, expected: str) -> None:
    masked, counts = mask_personal_data(f"담당 {text} 참조")
    assert masked == f"담당 {expected} 참조"
    assert counts == EMAIL


# --- registration numbers ---------------------------------------------------------------------------------

REGISTRATION_FORMS = [
    ("900101-1234567", RESIDENT_REGISTRATION_TOKEN, "hyphen"),
    ("9001011234567", RESIDENT_REGISTRATION_TOKEN, "unseparated"),
    ("900101 - 2234567", RESIDENT_REGISTRATION_TOKEN, "spaced-hyphen"),
    ("900101 2234567", RESIDENT_REGISTRATION_TOKEN, "space"),
    ("000229-3234567", RESIDENT_REGISTRATION_TOKEN, "born-2000s"),
    ("991231-4234567", RESIDENT_REGISTRATION_TOKEN, "last-day-of-year"),
    ("900101-5234567", FOREIGNER_REGISTRATION_TOKEN, "foreigner-1900s"),
    ("010101-8234567", FOREIGNER_REGISTRATION_TOKEN, "foreigner-2000s"),
    ("900101-1******", RESIDENT_REGISTRATION_TOKEN, "half-masked-by-the-source"),
    ("９００１０１－１２３４５６７", RESIDENT_REGISTRATION_TOKEN, "full-width"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[:2] for c in REGISTRATION_FORMS], ids=[c[2] for c in REGISTRATION_FORMS]
)
def test_every_registration_number_form_is_masked(text: str, expected: str) -> None:
    masked, counts = mask_personal_data(f"주민등록번호: {text} 기재")
    assert masked == f"주민등록번호: {expected} 기재"
    assert counts == REGISTRATION


# --- near misses: numbers that are data, not contacts -----------------------------------------------------

NEAR_MISSES = [
    ("2026-03-01", "date-iso"),
    ("2026.03.01", "date-dotted"),
    ("20260301", "date-compact"),
    ("2026. 3. 1.", "date-korean-dotted"),
    ("2026년 3월 1일", "date-korean"),
    ("2026-03-01 ~ 2026-03-31", "date-range"),
    ("2026.03.02(월) 18:00", "date-weekday-time"),
    ("1,000,000원", "money-commas"),
    ("7천만원", "money-korean-units"),
    ("최대 1억원", "money-eok"),
    ("5,000만원", "money-man"),
    ("70%", "percentage"),
    ("연 1.5%", "percentage-decimal"),
    ("제2026-101호", "announcement-number"),
    ("공고 제2026-0312호", "announcement-number-leading-zero"),
    ("PBLN_000000000112301", "bizinfo-id"),
    ("PBLN_0212345678", "id-with-phone-shaped-digits"),
    ("2026년", "year"),
    ("1998년 설립", "old-year"),
    ("3개 기업", "small-count"),
    ("1,000명", "count-with-comma"),
    ("20개사", "company-count"),
    ("3~7년", "range-tilde"),
    ("1500-2000만원", "money-range-with-hyphen"),
    ("1600-1800명", "count-range-with-hyphen"),
    ("1800-1900년대", "year-range"),
    ("(우)03154", "postal-code"),
    ("우편번호 04520", "postal-code-labelled"),
    ("110-760", "old-postal-code"),
    ("123-45-67890", "business-registration-number"),
    ("978-89-12345-67-8", "isbn"),
    ("09:00~18:00", "office-hours"),
    ("0900-1800", "office-hours-compact"),
    ("0.0212345678", "decimal-with-phone-shaped-digits"),
    ("2026.02.123.4567", "dotted-number-continuing-a-year"),
    ("https://www.bizinfo.go.kr/web/lay1/bbs/S1T122C128/AS/74/view.do?pblancId=PBLN_000000000112301", "url-bizinfo"),
    ("https://www.k-startup.go.kr/web/contents/bizpbanc-ongoing.do?schM=view&pbancSn=163721", "url-kstartup"),
    ("https://www.sd.go.kr/main/selectBbsNttView.do?nttNo=0212345678&pageIndex=1", "url-with-unseparated-digits"),
    ("www.sd.go.kr/board/01012345678", "url-without-scheme"),
    ("서울@부산@대구", "joined-regions"),
    ("@mss_korea", "handle"),
    ("R&D 바우처", "ampersand"),
    ("v1.2.3", "version"),
    ("1:1 컨설팅", "ratio"),
    ("☎ 1357", "public-service-number"),
    ("ESG 경영 컨설팅", "latin-letters"),
]


@pytest.mark.parametrize("text", [c[0] for c in NEAR_MISSES], ids=[c[1] for c in NEAR_MISSES])
def test_near_misses_stay_untouched(text: str) -> None:
    sentence = f"공고 {text} 안내"
    assert mask_personal_data(sentence) == (sentence, NOTHING)


# --- whole announcements ----------------------------------------------------------------------------------

ANNOUNCEMENT = (
    "2026년 성동구 청년 창업지원센터 입주기업 모집 공고 (공고 제2026-101호)\n"
    "□ 지원대상: 성동구에 사업장을 둔 만 39세 이하 창업 3~7년 이내 기업 20개사\n"
    "□ 지원내용: 사무공간 2년 무상 제공, 사업화 자금 최대 1억원(총 1,000,000,000원), 컨설팅 비용의 70%\n"
    "□ 접수기간: 2026.03.02(월) ~ 2026.03.31(화) 18:00\n"
    "□ 제출서류: 신청서(주민등록번호 900101-1****** 형식으로 앞자리만 기재), 사업자등록증 사본\n"
    "□ 문의: 일자리정책과 홍길동 주무관 ☎ 02-2286-5432, FAX 02-2286-5499, gildong.hong@sd.go.kr\n"
    "  (기업마당 https://www.bizinfo.go.kr/web/lay1/bbs/S1T122C128/AS/74/view.do?pblancId=PBLN_000000000112301"
    " / 중소기업통합콜센터 1357 / 대표번호 1588-1234)"
)
MASKED_ANNOUNCEMENT = (
    "2026년 성동구 청년 창업지원센터 입주기업 모집 공고 (공고 제2026-101호)\n"
    "□ 지원대상: 성동구에 사업장을 둔 만 39세 이하 창업 3~7년 이내 기업 20개사\n"
    "□ 지원내용: 사무공간 2년 무상 제공, 사업화 자금 최대 1억원(총 1,000,000,000원), 컨설팅 비용의 70%\n"
    "□ 접수기간: 2026.03.02(월) ~ 2026.03.31(화) 18:00\n"
    "□ 제출서류: 신청서(주민등록번호 [주민등록번호] 형식으로 앞자리만 기재), 사업자등록증 사본\n"
    "□ 문의: 일자리정책과 홍길동 주무관 ☎ [전화번호], FAX [전화번호], [이메일]\n"
    "  (기업마당 https://www.bizinfo.go.kr/web/lay1/bbs/S1T122C128/AS/74/view.do?pblancId=PBLN_000000000112301"
    " / 중소기업통합콜센터 1357 / 대표번호 [전화번호])"
)


def test_a_realistic_announcement_loses_its_contacts_and_keeps_everything_else() -> None:
    masked, counts = mask_personal_data(ANNOUNCEMENT)
    assert masked == MASKED_ANNOUNCEMENT
    assert counts == MaskCounts(phone_numbers=3, email_addresses=1, registration_numbers=1)
    assert counts.total == 5


BOARD_RECORDS = expected_records("board", "http://sample.test")


@pytest.mark.parametrize("record", BOARD_RECORDS, ids=[record["external_id"] for record in BOARD_RECORDS])
def test_board_announcements_lose_exactly_their_personal_data(record: dict) -> None:
    expected = record["content"]
    for secret in record["personal_data"]:
        expected = expected.replace(secret, EMAIL_TOKEN if "@" in secret else PHONE_TOKEN)
    masked, counts = mask_personal_data(record["content"])
    assert masked == expected
    assert counts.total == sum(record["content"].count(secret) for secret in record["personal_data"])


@pytest.mark.parametrize("index", range(20))
def test_synthetic_announcements_lose_the_contact_line_only(index: int) -> None:
    content = make_record(index).content
    masked = mask_text(content)
    before_contact = content.split("문의", 1)[0]
    assert masked.startswith(before_contact)
    assert "@" not in masked and "☎ 0" not in masked
    assert masked.endswith(f"☎ {PHONE_TOKEN}, {EMAIL_TOKEN}")


def test_mask_text_is_mask_personal_data_without_counts() -> None:
    assert mask_text(ANNOUNCEMENT) == mask_personal_data(ANNOUNCEMENT)[0]
    assert mask_personal_data("") == ("", NOTHING)


def test_mask_counts_add_up() -> None:
    total = MaskCounts(1, 2, 3) + MaskCounts(phone_numbers=4)
    assert total == MaskCounts(phone_numbers=5, email_addresses=2, registration_numbers=3)
    assert total.total == 10


def test_masking_stays_fast_on_long_ascii_runs() -> None:
    # Base64 images and HTML in raw_data must not make the e-mail search quadratic: one "@" and 40 KB of ASCII.
    blob = "data:image/png;base64," + "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB" * 1250 + " kim@x.kr"
    masked, counts = mask_personal_data(blob)
    assert counts == EMAIL and masked.endswith(f" {EMAIL_TOKEN}")


# --- properties -------------------------------------------------------------------------------------------

HANGUL = st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3)
KOREAN_TEXT = st.text(alphabet=st.one_of(HANGUL, st.sampled_from(" .,·()~※□\n")), max_size=40)
# Characters that make up the shapes masking looks for, to give idempotence something to chew on.
SHAPE_TEXT = st.text(alphabet=st.sampled_from("0123456789-. ()+@_*xkrat[]＠０１－가원년") | HANGUL, max_size=60)


def _digits(count: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=count, max_size=count)


SEPARATOR = st.sampled_from(["-", " ", ".", "", " - ", "－"])


@st.composite
def phone_numbers(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["mobile", "landline", "parenthesised", "international", "representative"]))
    line = draw(_digits(4))
    if kind == "representative":
        return f"{draw(st.sampled_from(['15', '16', '18']))}{draw(_digits(2))}{draw(st.sampled_from('-.'))}{line}"
    if kind == "mobile":
        prefix, exchange = draw(st.sampled_from(["010", "011", "016", "017", "018", "019"])), draw(_digits(4))
    else:
        prefix = draw(st.sampled_from(
            ["02", "031", "032", "033", "041", "042", "043", "044", "051", "052", "053", "054", "055", "061",
             "062", "063", "064", "070", "080", "0505"]))
        exchange = draw(_digits(draw(st.sampled_from([3, 4]))))
    if kind == "parenthesised":
        return f"({prefix}){draw(st.sampled_from(['', ' ']))}{exchange}-{line}"
    if kind == "international":
        country = draw(st.sampled_from(["+82", "+82 ", "+82-", "(+82) ", "+82 (0)"]))
        return f"{country}{prefix[1:]}{draw(SEPARATOR)}{exchange}{draw(SEPARATOR)}{line}"
    return f"{prefix}{draw(SEPARATOR)}{exchange}{draw(SEPARATOR)}{line}"


@st.composite
def email_addresses(draw: st.DrawFn) -> str:
    alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
    local = draw(st.text(alphabet=alnum, min_size=1, max_size=1)) + draw(
        st.text(alphabet=alnum + "._+-", max_size=20))
    labels = draw(st.lists(st.text(alphabet=alnum, min_size=1, max_size=10), min_size=1, max_size=3))
    top = draw(st.sampled_from(["kr", "com", "net", "org", "co.kr", "go.kr", "or.kr"]))
    return f"{local}{draw(st.sampled_from(['@', '@', '＠']))}{'.'.join(labels)}.{top}"


@st.composite
def registration_numbers(draw: st.DrawFn) -> str:
    birth = f"{draw(_digits(2))}{draw(st.integers(1, 12)):02d}{draw(st.integers(1, 31)):02d}"
    holder = draw(st.sampled_from("12345678"))
    rest = draw(st.one_of(_digits(6), st.just("******")))
    return f"{birth}{draw(st.sampled_from(['-', '', ' - ', ' ']))}{holder}{rest}"


SECRETS = st.one_of(phone_numbers(), email_addresses(), registration_numbers())


@given(text=st.one_of(st.text(), SHAPE_TEXT))
@settings(max_examples=400)
def test_masking_is_idempotent_and_never_raises(text: str) -> None:
    once, _ = mask_personal_data(text)
    assert mask_personal_data(once) == (once, NOTHING)


@given(
    before=KOREAN_TEXT,
    opening=st.sampled_from(["", " ", "(", ": ", "☎ ", "Tel. ", "담당자 "]),
    secret=SECRETS,
    closing=st.sampled_from([" ", ", ", ")", ". ", " / ", "\n"]),
    after=KOREAN_TEXT,
)
@settings(max_examples=500)
def test_a_contact_embedded_in_korean_text_never_survives(
    before: str, opening: str, secret: str, closing: str, after: str
) -> None:
    text = f"{before}{opening}{secret}{closing}{after}"
    masked, counts = mask_personal_data(text)
    assert secret not in masked
    assert counts.total == 1
    head, tail = before + opening, closing + after
    assert masked.startswith(head) and masked.endswith(tail)
    replacement = masked[len(head) : len(masked) - len(tail)]
    assert replacement in {PHONE_TOKEN, EMAIL_TOKEN, RESIDENT_REGISTRATION_TOKEN, FOREIGNER_REGISTRATION_TOKEN}



# --- links and running counts -----------------------------------------------------------------------------


def test_a_link_keeps_its_digit_ids_and_loses_its_contacts() -> None:
    assert mask_url("https://x.go.kr/view.do?nttNo=0212345678&page=2") == (
        "https://x.go.kr/view.do?nttNo=0212345678&page=2")
    assert mask_url("https://x.go.kr/view.do?writer=kim@sd.go.kr") == f"https://x.go.kr/view.do?writer={EMAIL_TOKEN}"
    assert mask_url("https://x.go.kr/view.do?tel=02-123-4567") == f"https://x.go.kr/view.do?tel={PHONE_TOKEN}"
    assert mask_url(" https://x.go.kr/ ") == " https://x.go.kr/ "  # no trimming


def test_a_running_count_adds_up_over_several_texts() -> None:
    tally = new_tally()
    assert mask_counted(ANNOUNCEMENT, tally) == MASKED_ANNOUNCEMENT
    assert mask_url_counted("https://x.go.kr/?writer=kim@sd.go.kr", tally) == f"https://x.go.kr/?writer={EMAIL_TOKEN}"
    assert counts_of(tally) == mask_personal_data(ANNOUNCEMENT)[1] + EMAIL
