"""No secret and no personal contact data reaches a log line, on the real code paths run through the real CLI
(`aegis-pipeline collect`, `hot-path`, a settings error), with every logger at DEBUG: the sample sources' service
key and a refused key written into the sources file, a PostgreSQL password, and the phone numbers and e-mail
addresses the sample sources and the records carry. Every log line is a JSON object with the run's context."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner, Result

from aegis_pipeline.cli.main import main
from aegis_pipeline.common.redaction import REDACTED
from aegis_pipeline.devstack.sample_sources import SampleSources
from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.domain.masking import mask_text
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import kafka

pytestmark = pytest.mark.integration

SAMPLE_SOURCES_FILE = Path(__file__).parents[2] / "src" / "aegis_pipeline" / "devstack" / "sample_sources.yaml"
POSTGRES_PASSWORD = "pg-Pw-3f9c1e77"
REFUSED_KEY = "Refused-Key-8d2a4b"
# Contact data the sample sources publish (devstack/sample_data) and the records below carry.
CONTACT_DATA = ["02-123-4567", "02-123-4588", "gildong.hong@sd.go.kr", "chulsoo.kim@sd.go.kr",
                "010-9876-5432", "hong.gildong@example.go.kr", "01055556666", "900101-1234567"]


def run_cli(arguments: list[str], environment: dict[str, str]) -> Result:
    return CliRunner().invoke(main, arguments, env={"LOG_LEVEL": "DEBUG", "LOG_JSON": "true", **environment},
                              catch_exceptions=False)


def postgres_with_password(stack: Settings) -> dict[str, str]:
    """The stack's PostgreSQL with an explicit password (the embedded server does not ask for one)."""
    return {"POSTGRES_HOST": stack.postgres_host, "POSTGRES_PORT": str(stack.postgres_port),
            "POSTGRES_USER": stack.postgres_user, "POSTGRES_DB": stack.postgres_db,
            "POSTGRES_PASSWORD": POSTGRES_PASSWORD}


def sources_file(tmp_path: Path, suffix: str) -> Path:
    """The sample sources, named for this test, plus one whose key the source refuses."""
    document = yaml.safe_load(SAMPLE_SOURCES_FILE.read_text(encoding="utf-8"))
    for entry in document["sources"]:
        entry["name"] = f"{entry['name']}_{suffix}"
    refused = next(entry for entry in document["sources"] if entry["name"] == f"data_go_kr_{suffix}")
    document["sources"].append({**refused, "name": f"refused_key_{suffix}", "params": {"serviceKey": REFUSED_KEY}})
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


async def publish_contact_records(stack: Settings, topic: str) -> None:
    """Records whose text carries contact data: one valid, one invalid (no title), one that is not JSON."""
    valid = make_record(1, source=f"hygiene_{topic.rsplit('-', 1)[-1]}")  # a source name, as the hot path requires
    valid = valid.model_copy(update={"content": valid.content + " 담당 010-9876-5432, hong.gildong@example.go.kr"})
    invalid = json.loads(valid.model_dump_json())
    invalid["title"] = ""
    invalid["collection_metadata"]["external_id"] = "no-title"
    invalid["content"] = "문의 01055556666 / hong.gildong@example.go.kr / 900101-1234567"
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send(topic, valid.model_dump_json().encode(), key=b"hygiene:valid")
        await producer.send(topic, json.dumps(invalid, ensure_ascii=False).encode(), key=b"hygiene:invalid")
        await producer.send(topic, "전화 01055556666 메일 hong.gildong@example.go.kr".encode(), key=b"hygiene:poison")
        await producer.flush()
    finally:
        await producer.stop()


def leaks(text: str, secrets: list[str]) -> list[str]:
    """Lines that show a secret, a known contact value, or anything the contact-data masker would still mask."""
    found = []
    for line in text.splitlines():
        if any(secret in line for secret in secrets) or any(value in line for value in CONTACT_DATA):
            found.append(line)
        elif mask_text(line) != line:
            found.append(line)
    return found


def log_events(result: Result) -> list[dict]:
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert all({"event", "level", "timestamp"} <= event.keys() for event in events)
    # The run's context is on every line of the run; the sample sources' server (the stand-in for the remote
    # sources) logs from its own threads, outside the run.
    missing = [event for event in events if not event["event"].startswith("sample_sources.")
               and not {"run_id", "command"} <= event.keys()]
    assert missing == []
    return events


def test_collect_and_hot_path_logs_hold_no_secret_and_no_contact_data(
    stack: Settings, tmp_path: Path, restore_logging: None
) -> None:
    suffix = uuid.uuid4().hex[:6]
    topic = f"hygiene-raw-{suffix}"
    asyncio.run(kafka.ensure_topics(stack, [topic], partitions=1))
    with SampleSources(crawl_delay_seconds=0) as server:
        environment = {**postgres_with_password(stack), "KAFKA_TOPIC_RAW_POLICIES": topic,
                       "SAMPLE_SOURCES_URL": server.base_url, "SAMPLE_SERVICE_KEY": server.service_key}
        collected = run_cli(["collect", "--once", "--sources-file", str(sources_file(tmp_path, suffix))], environment)
    assert collected.exit_code == 1, collected.output  # the refused key's source failed; the others collected
    asyncio.run(publish_contact_records(stack, topic))
    hot = run_cli(["hot-path", "--drain"], {**environment, "KAFKA_CONSUMER_GROUP": f"hygiene-{suffix}",
                                            "METRICS_PORT": "0"})
    assert hot.exit_code == 0, hot.output

    collect_events, hot_events = log_events(collected), log_events(hot)
    names = {event["event"] for event in collect_events + hot_events}
    assert {"source_collected", "dead_lettered", "hot_path_stopped"} <= names
    refused = [event for event in collect_events
               if event["event"] == "source_collected" and event["source"] == f"refused_key_{suffix}"]
    assert refused and refused[0]["status"] == "failed"
    assert len(collect_events) + len(hot_events) > 50  # DEBUG: the libraries' lines are scanned too
    ours = [event for event in collect_events + hot_events if "run_id" in event]
    assert {event["command"] for event in ours} == {"collect", "hot-path"}
    assert len({event["run_id"] for event in ours}) == 2

    secrets = [server.service_key, REFUSED_KEY, POSTGRES_PASSWORD]
    assert leaks(collected.output, secrets) == []
    assert leaks(hot.output, secrets) == []


def test_a_settings_error_shows_no_secret(stack: Settings, restore_logging: None) -> None:
    result = run_cli(["hot-path", "--drain"], {**postgres_with_password(stack), "KAFKA_BOOTSTRAP_SERVERS": "no port",
                                               "NEO4J_PASSWORD": "neo-Pw-51b0c2"})
    assert result.exit_code != 0
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.output
    assert leaks(result.output, [POSTGRES_PASSWORD, "neo-Pw-51b0c2"]) == []


def test_the_redaction_catches_secrets_written_into_text(restore_logging: None) -> None:
    """What the end-to-end runs may not happen to log: each form of secret in a message, a field, a traceback."""
    import io
    import sys

    from aegis_pipeline.common.logging import configure_logging, get_logger, register_secrets

    stream, saved = io.StringIO(), sys.stderr
    sys.stderr = stream
    try:
        configure_logging("DEBUG")
        register_secrets(["registered-secret-value", "key/with+slash=="])
        log = get_logger("hygiene")
        log.info("fetch", url="https://apis.example/x?serviceKey=abc%2Bdef&pageNo=2&crtfcKey=q1w2e3r4",
                 dsn="postgresql://aegis:pw-in-url@db:5432/aegis", neo4j_password="pw-field",
                 note="uses registered-secret-value", contact="담당자 02-123-4567 gildong.hong@sd.go.kr",
                 sent="GET /x?k=key%2Fwith%2Bslash%3D%3D")
        try:
            raise ValueError("refused {'serviceKey': 'key-in-repr'} for 010-9876-5432")
        except ValueError:
            log.exception("request_failed")
        logging.getLogger("library").warning("GET /p?ServiceKey=lib-key failed, write to chulsoo.kim@sd.go.kr")
    finally:
        sys.stderr = saved
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)
    secrets = ["abc%2Bdef", "q1w2e3r4", "pw-in-url", "pw-field", "registered-secret-value", "key-in-repr", "lib-key",
               "key%2Fwith%2Bslash%3D%3D"]
    assert leaks("\n".join(lines), secrets) == []
    assert all(REDACTED in line for line in lines)
    assert "pageNo=2" in lines[0] and "[전화번호]" in lines[0] and "[이메일]" in lines[2]

