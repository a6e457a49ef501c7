from tests.approvals.conftest import world

__all__ = ["world"]
