"""What every layer shares and nothing else owns: the DP error codes and error hierarchy, structured logging,
and the Prometheus metrics the design names (§6.4).

May import: the standard library, structlog, prometheus-client, aiohttp. Never imports another project package.
"""
