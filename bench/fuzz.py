"""Fuzz run on the embedded stack: generated hostile inputs through the collectors' parsers and the hot path.

    .venv/bin/python bench/fuzz.py [--cases 10000] [--seed 8] [--only 8-123,8-4567] [--workers 2]
                                   [--case-timeout 5] [--save-failures DIR] [--data-dir .aegis-fuzz] [--keep]

Cases (devstack/fuzz.py): case `index` is made from `--seed` and the index alone, so `--only SEED-INDEX` makes
and runs exactly that case again. Two in five are source pages (JSON API, XML API, RSS, a board's list and
detail pages), three in five raw-topic messages; most mutate realistic input (the sample sources' pages and
records, synthetic records, the hand-written corpus in tests/hostile/), one in eight is garbage from scratch.

Layer 1, in-process, while the stack starts: each case in one of `--workers` processes, under a time limit of
`--case-timeout` seconds (a case over it is a hang: its process is killed and replaced). A page goes through the
collectors' HTTP client (from memory), page parsing, sanitising and mapping (API and feed), or the board
crawler's own callbacks; a message through the hot path's validation and cleaning, which tells where it must end.
A page yields records (to publish) and dead letters, or is refused with the pipeline's error and its DP code;
any other exception is a crash.

Layer 2, on the embedded stack (its own data directory, `--data-dir`; its own topics): the collectors' dead
letters go to the dead-letter queue as the collectors send them (table and topic), every message (the cases'
own, and the records pages gave, keyed source:external_id as the collectors publish them) to the raw topic, and
`aegis-pipeline hot-path --drain` (a process, as in production) consumes them. Then each input unit is looked
up: a page refused whole, a record of a page, a raw-topic message. A unit is stored (a `policies` row under the
(source, external id) its validation gave), dead-lettered (a `dead_letters` row with a DP code: a collector's by
the case's source name, the hot path's by the message key), or lost. A message the hot path isolates as poison
(DP_4003: an exception the hot path did not expect) is its case's crash; a hot path that exits with an error is
a crash, one that does not drain in time a hang. Limits for the run: MAX_RESPONSE_BYTES 1,000,000 and
MAX_RECORD_BYTES 300,000, so the generated huge inputs cross them (the Kafka client takes no message over 1 MiB).

Also checked: every dead letter, in the table and on the DLQ topic, carries a DP code (`error_code`); every stored
record holds the title, content and organisation its cleaning gave, character for character (query syntax and
markup are stored as inert text, never run); the tables the hostile SQL names are still there. Pages the
collectors take for the source's own error (the data.go.kr key and rate-limit envelopes: the source run fails
with DP_1001 / DP_1002 and the page is fetched again next run) are counted apart: not dead-lettered, by design.

Printed: cases tried, crashes, hangs, dead-lettered with a code, stored, lost, then each failing case with its
recipe and the command that runs it again (`--save-failures DIR` writes their bodies, the start of a corpus file),
the time and throughput. Targets: 0 crashes, 0 hangs, 0 lost, every dead letter with a DP code. The last line is
JSON. The stack is stopped and its data deleted unless `--keep`; the hot path's log stays in the data directory
(`fuzz-hot-path-<token>.log`, the token being the run's, in every name it gives).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aegis_pipeline.common.errors import ErrorCode
from aegis_pipeline.common.logging import configure_logging
from aegis_pipeline.devstack import stack
from aegis_pipeline.devstack.fuzz import CaseFactory, CaseResult, Limits, RunConfig, WatchedWorkers, case_tag
from aegis_pipeline.hot_path.processor import RECORD_KEY_LIMIT
from aegis_pipeline.settings import ENGINE_FIELDS, Settings, load_core_settings
from aegis_pipeline.stores import kafka, postgres
from aegis_pipeline.stores.dead_letters import DeadLetterQueue

PIPELINE = str(Path(sys.executable).parent / "aegis-pipeline")
CORPUS = Path(__file__).resolve().parents[1] / "tests" / "hostile"
LIMITS = Limits(max_response_bytes=1_000_000, max_record_bytes=300_000)
CASES_PER_LETTER_CHUNK = 50  # the collector letters of this many cases go to the queue in one call
DP_CODE = re.compile(r"^DP_\d{4}$")
SHOWN_FAILURES = 20


# --- layer 1: the parsers, in worker processes ---------------------------------------------------------------


def run_layer_one(config: RunConfig, factory: CaseFactory, indices: list[int], *, workers: int,
                  timeout_seconds: float) -> list[CaseResult]:
    results: list[CaseResult] = []
    started = last_shown = time.monotonic()
    for result in WatchedWorkers(config, factory, workers=workers, timeout_seconds=timeout_seconds).run(indices):
        results.append(result)
        if time.monotonic() - last_shown > 5:
            last_shown = time.monotonic()
            print(f"  layer 1: {len(results)}/{len(indices)} cases, "
                  f"{len(results) / (last_shown - started):.0f}/s", flush=True)
    return sorted(results, key=lambda result: result.index)


# --- layer 2: the stack ----------------------------------------------------------------------------------------


async def send_collector_letters(settings: Settings, results: list[CaseResult]) -> list[tuple[int, str]]:
    """The collectors' dead letters through the real queue (table, then topic), a chunk at a time; a chunk the queue
    fails on is sent again case by case, to name the case(s) it cannot take. Returns (index, error) of those."""
    failed: list[tuple[int, str]] = []
    pool = await postgres.create_pool(settings)
    producer = kafka.create_producer(settings)
    await producer.start()
    try:
        queue = DeadLetterQueue(pool, producer, settings.kafka_topic_dlq)
        with_letters = [result for result in results if result.letters]
        for first in range(0, len(with_letters), CASES_PER_LETTER_CHUNK):
            chunk = with_letters[first:first + CASES_PER_LETTER_CHUNK]
            try:
                await queue.send([letter for result in chunk for letter in result.letters])
            except Exception:
                for result in chunk:
                    try:
                        await queue.send(result.letters)
                    except Exception as error:
                        failed.append((result.index, f"dead-letter queue refused: {type(error).__name__}: {error}"))
    finally:
        await producer.stop()
        await pool.close()
    return failed


async def publish(settings: Settings, results: list[CaseResult]) -> int:
    producer = kafka.create_producer(settings)
    await producer.start()
    try:
        topic = settings.kafka_topic_raw_policies
        return await kafka.send_all(producer, ((topic, message.key, message.value)
                                               for result in results for message in result.messages))
    finally:
        await producer.stop()


def hot_path_environment(settings: Settings) -> dict[str, str]:
    """The stack's own settings (from its data directory, not a developer's exported engine variables), the run's
    topics, group and limits."""
    engine_variables = {name.upper() for names in ENGINE_FIELDS.values() for name in names}
    return {**{name: value for name, value in os.environ.items() if name.upper() not in engine_variables},
            "AEGIS_DATA_DIR": str(settings.aegis_data_dir),
            "KAFKA_TOPIC_RAW_POLICIES": settings.kafka_topic_raw_policies,
            "KAFKA_TOPIC_POLICY_EVENTS": settings.kafka_topic_policy_events,
            "KAFKA_TOPIC_POLICY_STATE": settings.kafka_topic_policy_state,
            "KAFKA_TOPIC_DLQ": settings.kafka_topic_dlq, "KAFKA_CONSUMER_GROUP": settings.kafka_consumer_group,
            "MAX_RECORD_BYTES": str(settings.max_record_bytes), "METRICS_PORT": "0", "LOG_LEVEL": "WARNING"}


def run_hot_path(settings: Settings, timeout_seconds: float, log_path: Path) -> tuple[int | None, str]:
    """`aegis-pipeline hot-path --drain` until it has consumed the raw topic; its exit code (None: it did not
    finish in time and was killed) and the end of its log."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen([PIPELINE, "hot-path", "--drain"], env=hot_path_environment(settings),
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            code: int | None = process.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = None
    tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
    return code, "\n".join(tail)


@dataclass
class Found:
    """What the stack holds for the run: stored policies by (source, external id), dead letters, DLQ topic."""

    policies: dict[tuple[str, str], tuple[str, str, str]]
    letters: list[dict[str, Any]]
    topic_letters: int = 0
    topic_letters_with_code: int = 0
    tables_left: int = 0


async def read_found(settings: Settings, results: list[CaseResult], prefix: str) -> Found:
    expected = [message.stored_as for result in results for message in result.messages if message.stored_as]
    async with postgres.connect(settings.postgres_dsn(), timeout_seconds=30) as connection:
        rows = await connection.fetch(
            "SELECT source_system, external_id, title, content, issuing_organization FROM policies "
            "WHERE (source_system, external_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            [source for source, _ in expected], [external_id for _, external_id in expected])
        letters = await connection.fetch(
            "SELECT stage, source_system, record_key, error_code, error_message FROM dead_letters "
            "WHERE starts_with(source_system, $1) OR starts_with(record_key, $1)", prefix)
        tables_left = await connection.fetchval(
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('policies', 'dead_letters', 'event_outbox')")
    found = Found(policies={(row["source_system"], row["external_id"]):
                            (row["title"], row["content"], row["issuing_organization"]) for row in rows},
                  letters=[dict(row) for row in letters], tables_left=tables_left)
    consumer = kafka.create_reader(settings, settings.kafka_topic_dlq)
    await consumer.start()
    try:
        while batch := await consumer.getmany(timeout_ms=3000, max_records=5000):
            for message in (message for messages in batch.values() for message in messages):
                found.topic_letters += 1
                found.topic_letters_with_code += bool(DP_CODE.match(json.loads(message.value).get("error_code", "")))
    finally:
        await consumer.stop()
    return found


# --- accounting -----------------------------------------------------------------------------------------------


@dataclass
class Failure:
    case_id: str  # "" for the hot path process as a whole
    kind: str  # crash | hang | lost | altered
    recipe: str
    detail: str


@dataclass
class Report:
    cases: Counter[str] = field(default_factory=Counter)  # by layer
    page_outcomes: Counter[str] = field(default_factory=Counter)  # read | refused | source error | crash | hang
    source_errors: Counter[str] = field(default_factory=Counter)  # by DP code
    dead_lettered: Counter[str] = field(default_factory=Counter)  # by DP code
    stored: Counter[str] = field(default_factory=Counter)  # by layer of the case
    failures: list[Failure] = field(default_factory=list)
    letters_without_code: int = 0
    unexpected_letters: list[dict[str, Any]] = field(default_factory=list)  # letters of the run no unit expected
    refused_though_valid: int = 0  # messages validation accepted and the hot path dead-lettered anyway

    def count(self, kind: str) -> int:
        return sum(1 for failure in self.failures if failure.kind == kind)

    @property
    def units_lost(self) -> int:
        return self.count("lost")


def letter_key(key: bytes) -> str:
    """The record key a dead letter of this message carries: the key as the hot path decodes and cuts it, less what
    the queue removes (NUL; a replacement decode leaves no surrogate)."""
    return key.decode("utf-8", "replace")[:RECORD_KEY_LIMIT].replace("\x00", "")


def account(results: list[CaseResult], found: Found, seed: int, token: str) -> Report:
    """Where each case's units ended (see the module docstring)."""
    report = Report()
    collect_letters: dict[str, list[dict[str, Any]]] = defaultdict(list)  # by the case's source name
    hot_letters: dict[str, list[dict[str, Any]]] = defaultdict(list)  # by record key
    for letter in found.letters:
        report.letters_without_code += not DP_CODE.match(letter["error_code"] or "")
        if letter["stage"] == "collect":
            collect_letters[letter["source_system"]].append(letter)
        else:
            hot_letters[letter["record_key"]].append(letter)
    for result in results:
        failures: list[tuple[str, str]] = []  # (kind, detail)
        report.cases[result.layer] += 1
        if result.layer == "page":
            report.page_outcomes[result.status] += 1
        if result.status == "source error":
            report.source_errors[result.code or "?"] += 1
        if result.status in ("crash", "hang"):
            failures.append((result.status, result.detail))
        letters = collect_letters.pop(case_tag(token, result.index), [])
        report.dead_lettered.update(letter["error_code"] for letter in letters)
        if len(letters) < len(result.letters):
            failures.append(("lost", f"{len(result.letters) - len(letters)} of {len(result.letters)} collector dead "
                                     "letters not in dead_letters"))
        for message in result.messages:
            if message.stored_as is not None and message.stored_as in found.policies:
                report.stored[result.layer] += 1
                stored_text = found.policies[message.stored_as]
                if stored_text != message.stored_text:
                    failures.append(("altered", f"{message.stored_as} stored as {stored_text!r:.300}, cleaning "
                                                f"gave {message.stored_text!r:.300}"))
                continue
            letters = hot_letters.get(letter_key(message.key))
            if not letters:
                failures.append(("lost", f"message {message.key[:80]!r} neither stored nor dead-lettered"))
                continue
            letter = letters.pop()
            report.dead_lettered[letter["error_code"]] += 1
            if letter["error_code"] == ErrorCode.BATCH_PROCESSING_ERROR.value:
                failures.append(("crash", f"the hot path isolated message {message.key[:80]!r} as poison: "
                                          f"{letter['error_message']}"))
            elif message.stored_as is not None:
                report.refused_though_valid += 1
        report.failures += [Failure(f"{seed}-{result.index}", kind, result.recipe, detail)
                            for kind, detail in failures]
    report.unexpected_letters = [letter for letters in (*collect_letters.values(), *hot_letters.values())
                                 for letter in letters]
    return report


# --- output ---------------------------------------------------------------------------------------------------


def print_report(report: Report, hot_path: dict[str, Any], found: Found, seed: int, timings: dict[str, float]
                 ) -> None:
    pages, messages = report.cases["page"], report.cases["message"]
    outcomes = report.page_outcomes
    codes = ", ".join(f"{code} {count}" for code, count in sorted(report.dead_lettered.items()))
    stored = sum(report.stored.values())
    print()
    print(f"cases tried                {pages + messages:>7}   (pages {pages}: {outcomes['read']} read, "
          f"{outcomes['refused']} refused whole, {outcomes['source error']} source errors; messages {messages})")
    print(f"crashes                    {report.count('crash'):>7}")
    print(f"hangs                      {report.count('hang'):>7}")
    print(f"dead-lettered with a code  {sum(report.dead_lettered.values()):>7}   ({codes})")
    print(f"stored                     {stored:>7}   (records of pages {report.stored['page']}, messages "
          f"{report.stored['message']}; text as cleaning gave it: {stored - report.count('altered')} of {stored})")
    print(f"lost                       {report.units_lost:>7}")
    source_errors = ", ".join(f"{code} {count}" for code, count in sorted(report.source_errors.items()))
    print(f"  pages taken for the source's own error, not dead-lettered by design: "
          f"{sum(report.source_errors.values())} ({source_errors or 'none'})")
    print(f"  dead letters without a DP code: table {report.letters_without_code}, topic "
          f"{found.topic_letters - found.topic_letters_with_code} ({found.topic_letters} on the DLQ topic, "
          f"{len(found.letters)} in the table); letters no unit expected: {len(report.unexpected_letters)}; "
          f"valid messages the hot path refused: {report.refused_though_valid}")
    print(f"  hot path exit code {hot_path['exit_code']} after {hot_path['seconds']} s; tables named in the hostile "
          f"SQL still there: {found.tables_left == 3}")
    print(f"  time: layer 1 {timings['layer_1']} s ({timings['layer_1_cases_per_second']} cases/s), layer 2 "
          f"{timings['layer_2']} s, total {timings['total']} s ({timings['cases_per_second']} cases/s, "
          f"stack start included)")
    for letter in report.unexpected_letters[:5]:
        print(f"  a letter no unit expected: {letter}")
    for kind in ("crash", "hang", "lost", "altered"):
        failures = [failure for failure in report.failures if failure.kind == kind]
        for failure in failures[:SHOWN_FAILURES]:
            again = f"\n  again: .venv/bin/python bench/fuzz.py --only {failure.case_id}" if failure.case_id else ""
            print(f"\n{kind}: case {failure.case_id or '-'} ({failure.recipe})\n  {failure.detail.strip()[:1500]}"
                  f"{again}")
        if len(failures) > SHOWN_FAILURES:
            print(f"\n... and {len(failures) - SHOWN_FAILURES} more {kind} cases")


def describe(results: list[CaseResult], factory: CaseFactory, found: Found) -> None:
    """For --only: each case, where its units were meant to go and where they are."""
    hot_letters = {letter["record_key"]: letter for letter in found.letters if letter["stage"] == "hot"}
    for result in results:
        case = factory.case(result.index)
        print(f"case {case.case_id} ({case.layer}, tag {case.tag}): {case.recipe}")
        print(f"  body ({len(case.body)} bytes): {case.body[:300]!r}")
        print(f"  layer 1: {result.status} {result.code or ''} {result.detail.strip()[:2000]}")
        for letter in result.letters:
            print(f"  collector dead letter {letter.error_code.value}: {letter.error_message[:200]}")
        for message in result.messages:
            meant = f"stored as {message.stored_as}" if message.stored_as else "dead-lettered"
            letter = hot_letters.get(letter_key(message.key))
            found_as = ("stored" if message.stored_as in found.policies
                        else f"dead-lettered {letter['error_code']}: {letter['error_message'][:300]}" if letter
                        else "nowhere (lost)")
            print(f"  message {message.key[:80]!r}: to be {meant}; found {found_as}")


def save_failures(report: Report, factory: CaseFactory, directory: Path) -> None:
    """Each failing case's body and recipe, as the start of a corpus file."""
    directory.mkdir(parents=True, exist_ok=True)
    for failure in report.failures:
        if not failure.case_id:  # the hot path as a whole: its log is in the data directory
            continue
        case = factory.case(int(failure.case_id.split("-")[1]))
        (directory / f"{failure.case_id}.body").write_bytes(case.body)
        (directory / f"{failure.case_id}.txt").write_text(
            f"{failure.kind}: {case.recipe}\nsource: {case.page.source.name if case.page else '-'}\n{failure.detail}\n",
            encoding="utf-8")


# --- main -----------------------------------------------------------------------------------------------------


def parse_only(text: str, parser: argparse.ArgumentParser) -> tuple[int, list[int]]:
    pairs = [item.strip().split("-") for item in text.split(",") if item.strip()]
    if not pairs or any(len(pair) != 2 or not all(part.isdigit() for part in pair) for pair in pairs):
        parser.error("--only takes case ids SEED-INDEX, comma-separated (e.g. 8-123,8-4567)")
    seeds = {int(seed) for seed, _ in pairs}
    if len(seeds) != 1:
        parser.error("--only: the cases of one run, so of one seed")
    return seeds.pop(), [int(index) for _, index in pairs]


async def run_layer_two(settings: Settings, results: list[CaseResult], token: str, data_dir: Path
                        ) -> tuple[Found, dict[str, Any], list[tuple[int, str]]]:
    settings = await kafka.with_own_topics(settings, f"fuzz-{token}", partitions=2)
    settings = settings.model_copy(update={"kafka_consumer_group": f"fuzz-{token}",
                                           "max_record_bytes": LIMITS.max_record_bytes,
                                           "max_response_bytes": LIMITS.max_response_bytes})
    refused_letters = await send_collector_letters(settings, results)
    published = await publish(settings, results)
    print(f"  layer 2: {published} messages published, hot path draining", flush=True)
    started = time.monotonic()
    exit_code, log_tail = await asyncio.to_thread(run_hot_path, settings, 120 + published / 100,
                                                  data_dir / f"fuzz-hot-path-{token}.log")
    hot_path = {"exit_code": exit_code, "seconds": round(time.monotonic() - started, 1), "log_tail": log_tail}
    found = await read_found(settings, results, prefix=case_tag(token, ""))
    return found, hot_path, refused_letters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--only", help="run only these cases, SEED-INDEX comma-separated (their seed wins)")
    parser.add_argument("--workers", type=int, default=2, help="processes running layer 1")
    parser.add_argument("--case-timeout", type=float, default=5.0, help="seconds a case may take in layer 1")
    parser.add_argument("--save-failures", type=Path, help="write each failing case's body and recipe here")
    parser.add_argument("--data-dir", type=Path, default=Path(".aegis-fuzz"))
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    arguments = parser.parse_args()
    seed, indices = parse_only(arguments.only, parser) if arguments.only else (arguments.seed, list(
        range(arguments.cases)))
    configure_logging("ERROR")  # a warning per dead letter would bury the figures

    started = time.monotonic()
    token = secrets.token_hex(3)  # in every name the run gives, so a kept stack's next run finds only its own
    config = RunConfig(seed=seed, token=token, corpus_dir=CORPUS, limits=LIMITS)
    factory = CaseFactory(seed, token, CORPUS)
    core = load_core_settings(aegis_data_dir=arguments.data_dir)
    print(f"fuzz: seed {seed}, {len(indices)} cases, {arguments.workers} workers, {arguments.case_timeout} s per "
          f"case; stack in {arguments.data_dir}", flush=True)
    with ThreadPoolExecutor(1) as background:
        stack_up = background.submit(stack.up, core)  # the engines start while layer 1 runs
        try:
            results = run_layer_one(config, factory, indices, workers=arguments.workers,
                                    timeout_seconds=arguments.case_timeout)
            layer_one_seconds = time.monotonic() - started
            settings = stack_up.result()
            layer_two_started = time.monotonic()
            found, hot_path, refused_letters = asyncio.run(
                run_layer_two(settings, results, token, arguments.data_dir))
            layer_two_seconds = time.monotonic() - layer_two_started
        finally:
            if not arguments.keep:
                stack.down(core, purge=True)

    report = account(results, found, seed, token)
    # A letter the queue refuses fails the collectors' whole source run (and the next, which fetches the same page).
    for index, problem in refused_letters:
        report.failures.append(Failure(f"{seed}-{index}", "crash", factory.case(index).recipe, problem))
    if hot_path["exit_code"] is None:
        report.failures.append(Failure("", "hang", "the hot path", f"did not drain in time\n{hot_path['log_tail']}"))
    elif hot_path["exit_code"] != 0:
        report.failures.append(Failure("", "crash", "the hot path",
                                       f"exited with {hot_path['exit_code']}\n{hot_path['log_tail']}"))
    total = time.monotonic() - started
    timings = {"layer_1": round(layer_one_seconds, 1), "layer_2": round(layer_two_seconds, 1),
               "total": round(total, 1), "layer_1_cases_per_second": round(len(results) / layer_one_seconds),
               "cases_per_second": round(len(results) / total, 1)}
    if arguments.only:
        describe(results, factory, found)
    print_report(report, hot_path, found, seed, timings)
    if arguments.save_failures is not None and report.failures:
        save_failures(report, factory, arguments.save_failures)
    met = {"crashes": report.count("crash") == 0, "hangs": report.count("hang") == 0, "lost": report.units_lost == 0,
           "dead_letters_with_code": report.letters_without_code == 0
           and found.topic_letters == found.topic_letters_with_code,
           "stored_text_as_cleaned": report.count("altered") == 0}
    print(json.dumps({
        "benchmark": "fuzz", "seed": seed, "cases": len(results), "pages": report.cases["page"],
        "messages": report.cases["message"], "crashes": report.count("crash"), "hangs": report.count("hang"),
        "dead_lettered": sum(report.dead_lettered.values()), "dead_lettered_by_code": dict(report.dead_lettered),
        "stored": sum(report.stored.values()), "lost": report.units_lost, "altered": report.count("altered"),
        "source_errors": dict(report.source_errors), "letters_without_code": report.letters_without_code,
        "topic_letters": found.topic_letters, "topic_letters_with_code": found.topic_letters_with_code,
        "hot_path_exit_code": hot_path["exit_code"], "seconds": timings,
        "failures": [f"{failure.kind} {failure.case_id}" for failure in report.failures][:100],
        "targets": "0 crashes, 0 hangs, 0 lost, every dead letter with a DP code",
        "met": met, "all_met": all(met.values())}, ensure_ascii=False))


if __name__ == "__main__":
    main()
