"""Chain DB_URL's unchained audit events in one batch and die (SIGKILL) mid-batch: after the
chained rows are inserted, before the transaction commits. The chainer crash test's victim.

Usage: python tests/approvals/run_chainer.py DB_URL  (project root as cwd and on PYTHONPATH)
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from sqlalchemy import event

from approvals.chainer import chain_all
from core.db import make_engine, make_sessionmaker


def main(argv: list[str]) -> int:
    engine = make_engine(argv[1])

    @event.listens_for(engine, "after_cursor_execute")
    def _die_after_delete(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # The batch's events are in audit_events and gone from audit_unchained, uncommitted.
        if statement.lstrip().upper().startswith("DELETE FROM AUDIT_UNCHAINED"):
            print("chained a batch; dying before commit", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    chain_all(make_sessionmaker(engine), limit=100_000)
    return 1  # not reached: the process dies mid-batch


if __name__ == "__main__":
    sys.exit(main(sys.argv))
