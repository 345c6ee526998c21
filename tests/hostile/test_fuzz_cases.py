"""The fuzz run's own machinery (devstack/fuzz.py, driven by bench/fuzz.py): a case is the same whenever it is made
from the same seed and index (so `bench/fuzz.py --only SEED-INDEX` reproduces a failure), generated cases go through
the parsers and the hot path's validation with no crash and with a destination for every message, and a case that
runs past its time limit is reported as a hang, its worker replaced, instead of stalling the run.

The bugs the fuzz run found are the corpus files beside this one, read by tests/end_to_end/test_hostile_input.py
and test_hostile_pipeline.py.
"""

from __future__ import annotations

import asyncio
import copy
import re
from collections import Counter
from pathlib import Path

from aegis_pipeline.devstack.fuzz import (
    HOSTILE_NON_TEXT,
    Case,
    CaseFactory,
    Limits,
    RunConfig,
    WatchedWorkers,
    case_tag,
    run_case,
)

CORPUS = Path(__file__).parent
LIMITS = Limits(max_response_bytes=1_000_000, max_record_bytes=300_000)


def untagged(case: Case) -> bytes:
    """The case's body without its tag, in whichever encoding the generator wrote the message."""
    body = case.body
    for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
        body = body.replace(case.tag.encode(encoding), b"<tag>")
    return body


def test_a_case_is_made_from_its_seed_and_index_alone() -> None:
    first, second = CaseFactory(8, "aaaaaa", CORPUS), CaseFactory(8, "aaaaaa", CORPUS)
    forwards = [first.case(index) for index in range(40)]
    backwards = [second.case(index) for index in reversed(range(40))]
    assert forwards == backwards[::-1]  # whatever was made before it
    assert {case.layer for case in forwards} == {"page", "message"}
    other_seed = CaseFactory(9, "aaaaaa", CORPUS)
    assert [case.body for case in forwards] != [other_seed.case(index).body for index in range(40)]
    # Another run (another token) makes the same cases: only the tags differ.
    other_run = [CaseFactory(8, "zzzzzz", CORPUS).case(index) for index in range(40)]
    assert [untagged(case) for case in forwards] == [untagged(case) for case in other_run]
    # The tag names the case's source (a valid source name) and starts its message key.
    for case in forwards:
        assert re.fullmatch(r"[a-z][a-z0-9_]{1,62}", case.tag) and case.tag == case_tag("aaaaaa", case.index)
        if case.page is not None:
            assert case.page.source.name == case.tag
        else:
            assert case.message is not None and case.message[0].startswith(case.tag.encode())


def test_making_cases_leaves_the_generators_constants_as_they_were() -> None:
    # A mutation once wrote into a list that `hostile_value` had handed out from HOSTILE_NON_TEXT itself: every later
    # case drawing it got the change, so a case depended on the cases made before it in its worker (the 10,000-case
    # run's counts moved by one record between two runs). Made forwards with this seed, case 4864 did it.
    snapshot = copy.deepcopy(HOSTILE_NON_TEXT)
    factory = CaseFactory(8, "dddddd", CORPUS)
    for index in range(10_000):
        factory.case(index)
    assert snapshot == HOSTILE_NON_TEXT


def test_generated_cases_go_through_the_parsers_without_a_crash() -> None:
    factory = CaseFactory(11, "bbbbbb", CORPUS)
    with asyncio.Runner() as runner:
        results = [run_case(factory.case(index), LIMITS, runner) for index in range(200)]
    assert [(result.index, result.recipe, result.detail) for result in results if result.status == "crash"] == []
    assert Counter(result.layer for result in results).keys() == {"page", "message"}
    assert {"read", "refused"} <= {result.status for result in results}
    messages = [message for result in results for message in result.messages]
    stored = [message for message in messages if message.stored_as is not None]
    assert stored and len(stored) < len(messages)  # some stored, some refused
    assert all(message.stored_text is not None for message in stored)
    letters = [letter for result in results for letter in result.letters]
    assert letters and all(re.fullmatch(r"DP_\d{4}", letter.error_code.value) for letter in letters)


def test_a_case_over_its_time_limit_is_a_hang_and_its_worker_is_replaced() -> None:
    config = RunConfig(seed=8, token="cccccc", corpus_dir=CORPUS, limits=LIMITS)
    factory = CaseFactory(8, "cccccc", CORPUS)
    # With no time at all, every case is over its limit: run once more in a fresh worker, then a hang.
    [hung] = WatchedWorkers(config, factory, workers=1, timeout_seconds=0).run([0])
    assert (hung.index, hung.status, hung.recipe) == (0, "hang", factory.case(0).recipe)
    done = list(WatchedWorkers(config, factory, workers=1, timeout_seconds=60).run(range(3)))
    assert [result.index for result in done] == [0, 1, 2]
    assert not [result for result in done if result.status in ("crash", "hang")]
