"""Links as the sources give them (absolute, relative, `//host/path`, `javascript:` pseudo-links) resolved
against the page they were found on (`join_url`). Pure; imports only the standard library and `parsing.errors`.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from aegis_pipeline.collectors.parsing.errors import ValueParseError


def join_url(base: str, link: str) -> str:
    """Resolve ``link`` (absolute, ``/path?query``, ``../path`` or ``//host/path``) against ``base``.

    Surrounding whitespace is trimmed; nothing is percent-encoded. Raises ``ValueParseError``
    when ``link`` is blank (rather than silently pointing at the list page) or when the result
    is not an http(s) URL, e.g. the ``javascript:goView('123')`` links of web boards.
    """
    if not link or not link.strip():
        raise ValueParseError("empty link", link)
    try:
        joined = urljoin(base.strip(), link.strip())
        parts = urlsplit(joined)
    except ValueError as error:  # urllib's own complaints, e.g. "Invalid IPv6 URL" for "//[x"
        raise ValueParseError(f"link is not a URL ({error})", link) from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueParseError("link does not resolve to an http(s) URL", link)
    return joined
