"""`countersign audit …`: verify and export the ledger."""

from __future__ import annotations

import click


@click.group()
def audit() -> None:
    """Verify and export the audit ledger."""
