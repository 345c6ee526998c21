"""Pure parsers for what sources send, one concern per module. No I/O.

- `errors`: `ValueParseError`, the one error a value parser raises.
- `dates`: calendar dates in every form the sources write, periods (`start ~ end`), RFC 822 date-times, the
  sentinels that mean "no date".
- `text`: HTML fragments to plain text (`clean_text`) and @- or comma-joined lists (`split_list`).
- `encodings`: a fetched body to text, distrusting wrong charset declarations (`decode_body`).
- `urls`: links resolved against the page they were found on (`join_url`).
- `records`: whole source records: a dotted path into one (`dig`), one made safe to publish (`sanitise_record`).
- `values`: the named parsers a source's YAML can use for a field (`VALUE_PARSERS`).

Import each name from its module (`from aegis_pipeline.collectors.parsing.dates import parse_date`); this
package itself exports nothing.
"""
