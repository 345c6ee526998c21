"""Dead-letter retries: a letter that is valid now is stored and resolved; one still invalid is counted
and, after the third failed retry, exhausted and no longer offered."""

from __future__ import annotations

import uuid

import pytest

from aegis_pipeline.common.errors import ErrorCode
from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.hot_path.cache import PolicyCache
from aegis_pipeline.hot_path.dead_letter_retry import retry_hot_letter
from aegis_pipeline.hot_path.processor import HotPathProcessor
from aegis_pipeline.hot_path.store import PolicyStore
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import cache, kafka, postgres
from aegis_pipeline.stores.dead_letters import DeadLetter, DeadLetterQueue, DeadLetterStore
from aegis_pipeline.stores.outbox import OutboxRelay

pytestmark = pytest.mark.integration


async def test_retry_resolves_what_is_valid_now_and_exhausts_the_rest(stack: Settings) -> None:
    source = f"dlq_{uuid.uuid4().hex[:6]}"
    fixed = make_record(1, source=source).model_dump(mode="json")  # e.g. refused earlier, valid since a fix
    broken = {**make_record(2, source=source).model_dump(mode="json"), "title": ""}
    pool = await postgres.create_pool(stack)
    redis_client = cache.create_client(stack)
    try:
        queue = DeadLetterQueue(pool, None, stack.kafka_topic_dlq)
        await queue.send([
            DeadLetter(stage="hot", error_code=ErrorCode.VALIDATION_FAILED, error_message="was invalid",
                       record_key=f"{source}:fixed", payload=fixed),
            DeadLetter(stage="hot", error_code=ErrorCode.VALIDATION_FAILED, error_message="title: too short",
                       record_key=f"{source}:broken", payload=broken),
        ])
        letters = DeadLetterStore(pool)
        ours = {letter.record_key: letter for letter in await letters.retriable(limit=100_000)
                if (letter.record_key or "").startswith(source)}
        assert set(ours) == {f"{source}:fixed", f"{source}:broken"}
        processor = HotPathProcessor(stack, PolicyStore(pool), PolicyCache(redis_client, ttl_seconds=60), queue)

        assert await retry_hot_letter(ours[f"{source}:fixed"], processor, letters) == "resolved"
        broken_letter = ours[f"{source}:broken"]
        statuses = []
        for _ in range(3):
            statuses.append(await retry_hot_letter(broken_letter, processor, letters))
        assert statuses == ["pending", "pending", "exhausted"]
        assert await letters.retriable(ids=[broken_letter.id, ours[f"{source}:fixed"].id]) == []

        async with postgres.connect(stack.postgres_dsn()) as connection:
            stored = await connection.fetchval("SELECT count(*) FROM policies WHERE source_system = $1", source)
            rows = await connection.fetch("SELECT record_key, status, retry_count FROM dead_letters "
                                          "WHERE record_key LIKE $1 ORDER BY record_key", f"{source}:%")
        assert stored == 1
        # The stored policy is announced like any other: its event is in the outbox, and the relay sends it.
        producer = kafka.create_producer(stack)
        await producer.start()
        try:
            assert await OutboxRelay(pool, producer).drain() >= 1
        finally:
            await producer.stop()
        assert [(row["record_key"], row["status"], row["retry_count"]) for row in rows] == [
            (f"{source}:broken", "exhausted", 3), (f"{source}:fixed", "resolved", 0)]
    finally:
        await redis_client.aclose()
        await pool.close()


def test_retry_of_an_id_that_is_not_a_letter_id_is_a_usage_error() -> None:
    """An id that cannot be a letter's (not a UUID) is refused before anything is read, with the option named."""
    from click.testing import CliRunner

    from aegis_pipeline.cli.main import main

    result = CliRunner().invoke(main, ["dlq", "retry", "--id", "not-a-uuid"])
    assert result.exit_code == 2
    assert "Invalid value for '--id'" in result.output and "not a valid UUID" in result.output


SOURCES_YAML = """
sources:
  - name: {name}
    kind: json_api
    url: http://127.0.0.1:9/policies
    records_path: items
    id_field: id
    fields:
      title: {{path: title, parser: text}}
      content: {{path: body, parser: text}}
      issuing_organization: {{path: org, parser: strip}}
"""


async def add_letters(settings: Settings, source: str) -> dict[str, str]:
    """One letter of each kind, keyed `<source>:<name>`; returns name -> letter id."""
    unmapped = {"id": "r1", "title": "스마트공장 구축 지원사업 공고", "org": "중소벤처기업부",
                "body": "중소기업의 스마트공장 구축을 지원합니다. 신청 자격과 일정은 공고문을 확인하세요."}
    letters = [
        DeadLetter(stage="hot", error_code=ErrorCode.VALIDATION_FAILED, error_message="was invalid",
                   record_key=f"{source}:hot_fixed", payload=make_record(1, source=source).model_dump(mode="json")),
        DeadLetter(stage="hot", error_code=ErrorCode.VALIDATION_FAILED, error_message="title: too short",
                   record_key=f"{source}:hot_broken",
                   payload={**make_record(2, source=source).model_dump(mode="json"), "title": ""}),
        DeadLetter(stage="collect", error_code=ErrorCode.INVALID_DATA_FORMAT, error_message="was unmapped",
                   source_system=source, record_key=f"{source}:collect", payload=unmapped),
        DeadLetter(stage="cold", error_code=ErrorCode.COLD_PATH_FAILED, error_message="scoring failed",
                   record_key=f"{source}:cold"),
    ]
    pool = await postgres.create_pool(settings)
    try:
        await DeadLetterQueue(pool, None, settings.kafka_topic_dlq).send(letters)
        return {letter.record_key.removeprefix(f"{source}:"): letter.id
                for letter in await DeadLetterStore(pool).retriable(limit=100_000)
                if (letter.record_key or "").startswith(f"{source}:")}
    finally:
        await pool.close()


async def letter_rows(settings: Settings, source: str) -> dict[str, tuple[str, int]]:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        rows = await connection.fetch("SELECT record_key, status, retry_count FROM dead_letters "
                                      "WHERE record_key LIKE $1", f"{source}:%")
    return {row["record_key"].removeprefix(f"{source}:"): (row["status"], row["retry_count"]) for row in rows}


async def test_retry_dead_letters_takes_each_letter_through_its_own_stage(own_topics, tmp_path) -> None:
    """The library function the CLI and the DAG call: hot letters through the hot path, a collector's letter
    mapped again and published to the raw topic, a cold one skipped; only the letters asked for."""
    from aegis_pipeline.dead_letter_retry import RetryReport, retry_dead_letters

    settings = await own_topics(partitions=1)
    source = f"dlqlib_{uuid.uuid4().hex[:6]}"
    sources_file = tmp_path / "sources.yaml"
    sources_file.write_text(SOURCES_YAML.format(name=source), encoding="utf-8")
    ids = await add_letters(settings, source)

    report = await retry_dead_letters(settings, ids=list(ids.values()), sources_file=sources_file)

    assert isinstance(report, RetryReport)
    assert report.outcomes == {"resolved": 2, "pending": 1, "skipped": 1}
    assert report.retried == 4
    assert report.summary() == "retried: pending 1, resolved 2, skipped 1"
    assert await letter_rows(settings, source) == {
        "hot_fixed": ("resolved", 0), "hot_broken": ("pending", 1), "collect": ("resolved", 0),
        "cold": ("pending", 0)}
    consumer = kafka.create_consumer(settings, settings.kafka_topic_raw_policies, group_id=uuid.uuid4().hex)
    await consumer.start()
    try:
        fetched = await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()
    assert [record.key for batch in fetched.values() for record in batch] == [f"{source}:r1".encode()]

    # Only the ids given, and a resolved letter is not offered again: the CLI's line for no letter.
    again = await retry_dead_letters(settings, ids=[ids["hot_fixed"]], sources_file=sources_file)
    assert again.outcomes == {} and again.summary() == "retried: none"


async def test_retry_dead_letters_refuses_a_broken_sources_file_and_an_id_that_is_no_letters(
        stack: Settings, tmp_path) -> None:
    """Both are for a person to fix: not retriable, so a DAG task fails at once instead of retrying."""
    from aegis_pipeline.common.errors import PipelineError, SourceConfigError
    from aegis_pipeline.dead_letter_retry import retry_dead_letters

    source = f"dlqbad_{uuid.uuid4().hex[:6]}"
    ids = await add_letters(stack, source)
    broken = tmp_path / "sources.yaml"
    broken.write_text("sources: [{name: 1, kind: nonsense}]\n", encoding="utf-8")

    with pytest.raises(SourceConfigError) as refused:
        await retry_dead_letters(stack, ids=[ids["collect"]], sources_file=broken)
    assert not refused.value.retriable and str(broken) in str(refused.value)
    assert (await letter_rows(stack, source))["collect"] == ("pending", 0)  # not counted as a failed retry

    with pytest.raises(PipelineError, match="not a dead-letter id") as not_an_id:
        await retry_dead_letters(stack, ids=["not-a-uuid"])
    assert not not_an_id.value.retriable and not_an_id.value.code is ErrorCode.BATCH_PROCESSING_ERROR


def test_the_cli_prints_the_counts_and_exits_2_on_a_broken_sources_file(
        stack: Settings, tmp_path, restore_logging: None) -> None:
    """`aegis-pipeline dlq retry` keeps its output and exit codes: the counts line; the sources file's problems
    on stderr with exit 2, and no counts."""
    import asyncio

    from click.testing import CliRunner

    from aegis_pipeline.cli.main import main

    source = f"dlqcli_{uuid.uuid4().hex[:6]}"
    ids = asyncio.run(add_letters(stack, source))
    broken = tmp_path / "sources.yaml"
    broken.write_text("sources: [{name: 1, kind: nonsense}]\n", encoding="utf-8")

    done = CliRunner().invoke(main, ["dlq", "retry", "--id", ids["hot_fixed"], "--id", ids["cold"]])
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines()[-1] == "retried: resolved 1, skipped 1"

    failed = CliRunner().invoke(main, ["dlq", "retry", "--id", ids["collect"], "--sources-file", str(broken)])
    assert failed.exit_code == 2, failed.output
    assert f"{broken} is invalid:" in failed.stderr
    assert "retried:" not in failed.stdout
    assert asyncio.run(letter_rows(stack, source))["collect"] == ("pending", 0)
