"""How the cold-path DAG shares a `limit` among its mapped scoring tasks."""

from __future__ import annotations

import pytest

from aegis_pipeline.airflow_tasks import worker_limits


@pytest.mark.parametrize(("limit", "workers", "shares"), [
    (None, 3, [None, None, None]),  # no limit: each worker takes what is left
    (10, 3, [4, 3, 3]),
    (4, 2, [2, 2]),
    (2, 4, [1, 1]),                 # fewer records than workers: no worker without a share is started
    (1, 1, [1]),
])
def test_shares_add_up_to_the_limit_and_no_worker_gets_nothing(limit: int | None, workers: int,
                                                                shares: list[int | None]) -> None:
    assert worker_limits(limit, workers) == shares
