"""`aegis-pipeline dlq retry` for letters a collector wrote: the source record is mapped again with the source's
current definition (a fixed mapping or parser may accept it now) and, when valid, published to the raw topic
like any collected record. The letter is resolved, or its retry counted (`exhausted` after the third). Personal
data in the record's id and field names is hashed first, as in a collection (`mapping.without_personal_identifiers`;
letters written since then hold the hashes already).
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from aegis_pipeline.collectors.definitions import SourcesFile
from aegis_pipeline.collectors.mapping import build_record, without_personal_identifiers
from aegis_pipeline.common.errors import InvalidDataError
from aegis_pipeline.stores import kafka
from aegis_pipeline.stores.dead_letters import DeadLetterStore, StoredLetter


async def retry_collect_letter(letter: StoredLetter, sources: SourcesFile, producer: AIOKafkaProducer,
                               raw_topic: str, letters: DeadLetterStore, *, identifier_key: bytes) -> str:
    definition = next((source for source in sources.sources if source.name == letter.source_system), None)
    if definition is None:
        return await letters.retry_failed(letter.id, f"source {letter.source_system!r} is not in the sources file")
    if letter.payload is None:
        return await letters.retry_failed(letter.id, "no source record was kept with this letter")
    try:
        raw = without_personal_identifiers(letter.payload, definition, identifier_key)
        record = build_record(raw, definition, datetime.now(UTC))
    except InvalidDataError as error:
        return await letters.retry_failed(letter.id, str(error.args[0]))
    with kafka.translate_errors("publish retried record"):
        await producer.send_and_wait(raw_topic, record.model_dump_json().encode("utf-8"),
                                     key=record.collection_metadata.record_key.encode("utf-8"))
    await letters.resolve(letter.id)
    return "resolved"
