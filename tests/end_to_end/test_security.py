"""No secret and no personal contact data leaves the pipeline, even when a source echoes them back.

A service key and two passwords are configured; the sample server echoes the key (as given and percent-encoded)
in record fields, in a refused record and in an error page, and sends contact data in accepted and refused
records. After a collection and a hot-path run on the real engines, neither the key nor the passwords appear in
dead-letter rows, the DLQ topic, stored policies, events (outbox and topic), metric label values of the real
registry, or the source results shown to users; contact data appears in none of them but masked. The CLI's
output, including its errors when a store is unreachable, is checked the same way in subprocesses.

(Log lines are checked by the log-hygiene test; robots.txt and rate limits by test_html_board.py and
test_rate_limit.py; parameterised SQL by tests/ops/test_sql_parameterised.py.)
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY
from pydantic import SecretStr

from aegis_pipeline.collectors.definitions import parse_sources
from aegis_pipeline.collectors.run import collect_once, open_context
from aegis_pipeline.devstack.sample_sources import SampleSources
from aegis_pipeline.hot_path.service import run_hot_path
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres

pytestmark = pytest.mark.integration

SERVICE_KEY = "Sv+cKey/" + uuid.uuid4().hex + "=="
POSTGRES_PASSWORD = "pg-pass-" + uuid.uuid4().hex
NEO4J_PASSWORD = "neo-pass-" + uuid.uuid4().hex
CONTACTS = ["010-2345-6789", "park@sd.go.kr", "850505-2345678", "02-987-6543"]
PIPELINE = str(Path(sys.executable).parent / "aegis-pipeline")


def secrets_in(text: str) -> list[str]:
    """The configured secrets (the key also percent-encoded) and raw contact values found in `text`."""
    spellings = [SERVICE_KEY, quote(SERVICE_KEY, safe=""), POSTGRES_PASSWORD, NEO4J_PASSWORD]
    return [value for value in [*spellings, *CONTACTS] if value in text]


def echo_records(query: dict[str, str]) -> bytes:
    """Records that repeat the request's key back, as some APIs do in their links, plus contact data."""
    key = query.get("serviceKey", "")
    link = f"https://api.example.go.kr/detail?id=1&serviceKey={quote(key, safe='')}"
    records = [
        {"id": "echo-1", "title": "키를 되돌려주는 공고", "body": f"상세: {link} 원문 키 {key} 문의 010-2345-6789",
         "org": "성동구", "link": link},
        {"id": "echo-2", "title": "거절될 공고", "body": "park@sd.go.kr 850505-2345678", "org": "성동구",
         "period": f"{key} ~ 02-987-6543"},  # refused (not a date): the letter holds the key and contact data
    ]
    return json.dumps({"data": records}, ensure_ascii=False).encode("utf-8")


def echo_error_page(query: dict[str, str]) -> bytes:
    """An error page, sent with HTTP 200, that prints the whole request URL (refused as not JSON)."""
    key = query.get("serviceKey", "")
    return (f"<html><body><h1>Internal error</h1><p>Request: /echo/error?serviceKey={key} "
            f"(encoded {quote(key, safe='')}) 담당 park@sd.go.kr</p></body></html>").encode()


def sources_document(base_url: str) -> dict:
    fields = {"title": {"path": "title", "parser": "text"}, "content": {"path": "body", "parser": "text"},
              "issuing_organization": {"path": "org", "parser": "strip"},
              "application_start_date": {"path": "period", "parser": "date_range_start"},
              "original_url": {"path": "link", "parser": "url"}}
    common = {"kind": "json_api", "records_path": "data", "id_field": "id", "max_retries": 0,
              "params": {"serviceKey": "${ECHO_SERVICE_KEY}"}, "rate_limit": {"requests_per_second": 100},
              "fields": fields}
    suffix = uuid.uuid4().hex[:6]
    return {"sources": [
        {**common, "name": f"echo_records_{suffix}", "url": f"{base_url}/echo/records"},
        {**common, "name": f"echo_error_{suffix}", "url": f"{base_url}/echo/error"},
    ]}


@pytest.fixture
def server() -> Iterator[SampleSources]:
    with SampleSources(service_key=SERVICE_KEY, crawl_delay_seconds=0) as sample:
        sample.add_payload("/echo/records", echo_records, "application/json; charset=UTF-8")
        sample.add_payload("/echo/error", echo_error_page, "text/html; charset=UTF-8")
        yield sample


@pytest.fixture
async def run_settings(own_topics: Callable[..., Awaitable[Settings]]) -> Settings:
    # The embedded PostgreSQL trusts local connections, so the password is sent and ignored: any place that
    # printed the connection string would show it.
    return await own_topics(partitions=1, postgres_password=SecretStr(POSTGRES_PASSWORD),
                            neo4j_password=SecretStr(NEO4J_PASSWORD))


async def read_all(settings: Settings, topic: str) -> list[str]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    values: list[str] = []
    try:
        while batch := await consumer.getmany(timeout_ms=1500):
            values.extend(message.value.decode() for messages in batch.values() for message in messages)
    finally:
        await consumer.stop()
    return values


async def test_no_secret_or_contact_data_in_what_the_pipeline_writes(
    server: SampleSources, run_settings: Settings
) -> None:
    document = sources_document(server.base_url)
    sources = parse_sources(document, {"ECHO_SERVICE_KEY": SERVICE_KEY}).sources
    names = [source.name for source in sources]
    async with open_context(run_settings) as context:
        results = {result.source: result for result in await collect_once(context, sources)}
    summary = await run_hot_path(run_settings, asyncio.Event(), drain=True, serve_ops=False,
                                 group_id=f"security-{names[0]}")
    # The server really was sent the key and really echoed it: otherwise this test would prove nothing.
    assert {request.query.get("serviceKey") for request in server.requests_for("/echo/")} == {SERVICE_KEY}
    records, error_page = (results[name] for name in names)
    assert (records.published, records.invalid, error_page.status) == (1, 1, "failed")
    assert summary.stored == 1

    async with postgres.connect(run_settings.postgres_dsn()) as connection:
        letters = await connection.fetch(
            "SELECT to_jsonb(d)::text AS row FROM dead_letters d WHERE source_system = ANY($1::text[])", names)
        policies = await connection.fetch(
            "SELECT to_jsonb(p)::text AS row FROM policies p WHERE source_system = ANY($1::text[])", names)
        outbox = await connection.fetch(
            "SELECT convert_from(envelope, 'UTF8') AS row FROM event_outbox WHERE message_key = ANY("
            "SELECT id::text FROM policies WHERE source_system = ANY($1::text[]))", names)
    assert len(letters) == 2 and len(policies) == 1
    stored_policy = json.loads(policies[0]["row"])
    assert "[REDACTED]" in stored_policy["content"] and "[전화번호]" in stored_policy["content"]
    assert "[REDACTED]" in stored_policy["original_url"]

    events = await read_all(run_settings, run_settings.kafka_topic_policy_events)
    dlq_messages = await read_all(run_settings, run_settings.kafka_topic_dlq)
    assert len(events) == 1 and len(dlq_messages) == 2
    labels = [value for metric in REGISTRY.collect() for sample in metric.samples for value in sample.labels.values()]
    places = {
        "dead_letters rows": [row["row"] for row in letters],
        "dead-letter topic": dlq_messages,
        "policies rows": [row["row"] for row in policies],
        "outbox rows": [row["row"] for row in outbox],
        "policy-events topic": events,
        "metric label values": labels,
        "source results": [json.dumps(result.__dict__, ensure_ascii=False, default=str) for result in results.values()],
    }
    leaks = {place: secrets_in("\n".join(texts)) for place, texts in places.items()}
    assert leaks == {place: [] for place in places}


def run_cli(arguments: list[str], settings: Settings, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "AEGIS_DATA_DIR": str(settings.aegis_data_dir), "LOG_JSON": "false", **extra}
    return subprocess.run([PIPELINE, *arguments], env=environment, capture_output=True, text=True, timeout=120,
                          check=False)


def test_the_cli_shows_no_secret_in_its_output_or_its_errors(
    server: SampleSources, stack: Settings, tmp_path: Path
) -> None:
    sources_file = tmp_path / "sources.yaml"
    sources_file.write_text(yaml.safe_dump(sources_document(server.base_url), allow_unicode=True), encoding="utf-8")
    # Setting the password configures PostgreSQL explicitly, so the rest of its connection is given too.
    secrets = {"ECHO_SERVICE_KEY": SERVICE_KEY, "POSTGRES_PASSWORD": POSTGRES_PASSWORD,
               "NEO4J_PASSWORD": NEO4J_PASSWORD, "POSTGRES_HOST": stack.postgres_host,
               "POSTGRES_PORT": str(stack.postgres_port), "POSTGRES_USER": stack.postgres_user,
               "POSTGRES_DB": stack.postgres_db}
    collected = run_cli(["collect", "--once", "--sources-file", str(sources_file)], stack, secrets)
    assert "echo_error" in collected.stdout and collected.returncode == 1  # one source failed, as it should
    listed = run_cli(["dlq", "list", "--json", "--limit", "1000"], stack, secrets)
    assert listed.returncode == 0 and "DP_1004" in listed.stdout
    # Stores that cannot be reached: the errors a user sees must not carry the password either.
    unreachable = {**secrets, "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": "1", "POSTGRES_USER": "aegis",
                   "POSTGRES_DB": "aegis"}
    failed = [run_cli(arguments, stack, unreachable) for arguments in (["dlq", "list"], ["db", "current"])]
    assert all(result.returncode != 0 for result in failed)
    outputs = {" ".join(result.args[1:]): result.stdout + result.stderr for result in [collected, listed, *failed]}
    assert {command: secrets_in(output) for command, output in outputs.items()} == {command: [] for command in outputs}
