"""`dev up` never gives two engines one port: an engine launched a moment ago may not listen yet, so the system
can hand its port out again (seen in a clean-clone run: the broker and Redis both got 38027, the broker lost)."""

from __future__ import annotations

import pytest

from aegis_pipeline.devstack import stack
from aegis_pipeline.devstack.stack import EngineRecord, StackState


def test_a_port_an_engine_of_the_stack_holds_is_not_handed_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    offered = iter([38027, 38027, 41000])  # what the system offers: the broker's port first, as it happened
    monkeypatch.setattr(stack, "free_port", lambda: next(offered))
    state = StackState(data_dir="unused", engines={"kafka": EngineRecord(port=38027)})
    assert stack._unclaimed_port(state) == 41000


def test_a_free_port_no_engine_holds_is_taken_as_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack, "free_port", lambda: 41001)
    assert stack._unclaimed_port(StackState(data_dir="unused")) == 41001
