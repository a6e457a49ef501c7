"""The vault's errors: each names the secret (name, tool or scope, owner) and never its value."""

from __future__ import annotations

from collections.abc import Sequence

from agent.errors import AgentError

KEYS_VARIABLE = "COUNTERSIGN_VAULT_KEYS"
TEAM = "team"  # the owner of a secret the whole workspace's tools share
KEY_HINT = "make one with `countersign secrets generate-key`"


class VaultError(AgentError):
    """Base of the vault's errors. None of them ever carries a secret's value."""


class VaultKeyError(VaultError):
    """`COUNTERSIGN_VAULT_KEYS` is missing or holds something that is not a Fernet key."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"{KEYS_VARIABLE}: {problem}")


class VaultNotConfigured(VaultError):
    def __init__(self, tool: str, names: Sequence[str]) -> None:
        self.tool, self.names = tool, list(names)
        super().__init__(
            f"tool {tool!r} needs secrets ({', '.join(names)}), but no vault is configured: "
            f"set {KEYS_VARIABLE} ({KEY_HINT})"
        )


class InvalidSecret(VaultError, ValueError):
    """A name, scope or owner that cannot identify a secret, or an empty value."""


class SecretNotSet(VaultError, LookupError):
    def __init__(self, name: str, tool: str, owner: str = TEAM) -> None:
        self.name, self.tool, self.owner = name, tool, owner
        command = f"countersign secrets set {name} --tool {tool}" + (f" --owner {owner}" if owner != TEAM else "")
        super().__init__(f"secret {name!r} is not set: `{command}`")


class SecretUnreadable(VaultError):
    """No key in the list decrypts the row: its key was removed, or the ciphertext was altered."""

    def __init__(self, name: str, scope: str, owner: str) -> None:
        self.name, self.scope, self.owner = name, scope, owner
        super().__init__(
            f"secret {name!r} (tool {scope!r}, owner {owner!r}) cannot be decrypted with any key in "
            f"{KEYS_VARIABLE}: the key that encrypted it was removed, or the row was altered; "
            f"set it again with `countersign secrets set {name} --tool {scope}`"
        )


class SecretMisuse(VaultError):
    """A row whose ciphertext was sealed for another secret: copied from elsewhere, or forged."""

    def __init__(self, name: str, scope: str, owner: str, problem: str) -> None:
        self.name, self.scope, self.owner, self.problem = name, scope, owner, problem
        super().__init__(
            f"secret {name!r} (tool {scope!r}, owner {owner!r}) refused: {problem}; the row was copied or "
            f"altered, so it is not used. Set it again with `countersign secrets set {name} --tool {scope}`"
        )


class StaleSecret(SecretMisuse):
    """A row whose ciphertext is an older value of the same secret, written back over it."""

    def __init__(self, name: str, scope: str, owner: str, sealed: object, version: int) -> None:
        self.sealed, self.version = sealed, version
        super().__init__(
            name, scope, owner, f"its ciphertext is of version {sealed!r}, but the row is at version {version}"
        )


class SealedValueRefused(VaultError):
    """A value sealed outside the secrets table (a Slack token) that no key opens, or that was
    sealed for another place (its binding differs): copied, altered, or its key removed."""

    def __init__(self, what: str, problem: str) -> None:
        self.what, self.problem = what, problem
        super().__init__(f"{what}: {problem}")
