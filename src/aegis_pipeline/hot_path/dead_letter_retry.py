"""`aegis-pipeline dlq retry` for letters the hot path wrote: each payload goes through the same
`HotPathProcessor` as a consumed message. Valid now: stored (or found unchanged) and the letter resolved.
Still invalid: its retry count goes up, and after the third failed retry it is `exhausted`.
"""

from __future__ import annotations

import json

from aegis_pipeline.hot_path.processor import HotPathProcessor, RawMessage
from aegis_pipeline.stores.dead_letters import DeadLetter, DeadLetterStore, StoredLetter


def message_of(letter: StoredLetter) -> RawMessage:
    body = json.dumps(letter.payload, ensure_ascii=False) if letter.payload is not None else letter.payload_text or ""
    return RawMessage(value=body.encode("utf-8"), key=letter.record_key.encode() if letter.record_key else None)


async def retry_hot_letter(letter: StoredLetter, processor: HotPathProcessor, letters: DeadLetterStore) -> str:
    """Returns the letter's new status: resolved, pending or exhausted."""
    message = message_of(letter)
    checked = processor.validate(message)
    if isinstance(checked, DeadLetter):  # still invalid: count the retry on this letter, write no new one
        return await letters.retry_failed(letter.id, checked.error_message)
    try:
        await processor.process([message])
    except Exception as error:  # a retry that fails is counted, whatever the reason
        return await letters.retry_failed(letter.id, f"{type(error).__name__}: {error}")
    await letters.resolve(letter.id)
    return "resolved"
