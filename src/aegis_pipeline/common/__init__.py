"""What every layer shares and nothing else owns: the DP error codes and error hierarchy, structured logging,
and the Prometheus metrics the design names (§6.4).

May import: the standard library, structlog, prometheus-client, aiohttp and `domain` (logging masks personal data
with `domain.masking`). Never imports any other project package.
"""
