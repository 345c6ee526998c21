"""Boards that keep what they crawled: where a web board's crawl stands (`collectors.run`, `collectors.html_board`).

A board's records are published list page by list page as its crawl goes; a crawl stopped midway (SIGTERM, a run
deadline, the source's `html.max_rows_per_run`, its daily request budget, an open circuit) resumes at the list page
where it stopped, in the next run:

- `collection_checkpoints.board_next_page` (integer, nullable): the board's own page number (its `page_param`
  value) of the next list page of the crawl in progress; written after each list page's posts were published.
  NULL when no crawl is in progress: the next run starts at the board's first page (a crawl that reached its end,
  a page that failed, or a board never crawled).

Not `full_listing_next_page` (0012): that one is the page *index* of an API's listing of everything, which the
lifecycle's mark and sweep takes as complete once it reaches its last page. A board's crawl reads only its newest
`max_pages` pages and never completes a listing of everything (docs/lifecycle.md), so its position is kept apart.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE collection_checkpoints ADD COLUMN board_next_page integer")


def downgrade() -> None:
    op.execute("ALTER TABLE collection_checkpoints DROP COLUMN board_next_page")
