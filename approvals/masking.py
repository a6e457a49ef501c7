"""Values that look like secrets, masked wherever people read them: the card, App Home, the
review of many, the audit ledger's notes. A pure module: text and JSON-like data in, the same
shape out; nothing here is stored in place of a real value (an action's params and their hash
stay the real ones, so an approval still binds to exactly what runs).

Two ways a value is recognised. By its key's name (`password`, `api_key`, `Authorization`,
`client_secret`, …), in a parameter's name as in text (`export GITHUB_TOKEN=…`,
`--password=…`, `"api_key": "…"`). And by its shape: vendor prefixes (`sk-…`, `sk_live_…`,
`xoxb-…`, `ghp_…`, `AKIA…`, `AIza…`), JWTs, `Bearer …`/`Basic …` credentials, the password of
a URL (`https://user:…@host`), PEM private key blocks, and long random-looking strings (mixed
case and digits, 32 characters or more; hex alone, as in hashes, is not masked).

A masked value keeps the prefix that says what it was: `sk-…••••`, `Bearer ••••`. Masking
never changes the number of lines of a text (a PEM block keeps one `••••` line per line), so a
diff drawn over real lines can show the masked ones.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

MASK = "••••"
KEPT = "…" + MASK  # after a kept prefix: `sk-…••••`

_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "apikey",
        "authorization",
        "cookie",
        "credential",
        "credentials",
        "privatekey",
        "secretkey",
        "accesskey",
    }
)
_SECRET_PAIRS = frozenset(
    {
        ("api", "key"),
        ("private", "key"),
        ("access", "key"),
        ("secret", "key"),
        ("signing", "key"),
        ("encryption", "key"),
        ("session", "key"),
        ("account", "key"),
        ("master", "key"),
        ("auth", "key"),
        ("auth", "header"),
        ("client", "secret"),
    }
)
_SCHEMES = ("Bearer", "Basic", "Token", "Digest")  # `Authorization: Bearer ••••` keeps its scheme
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

# A vendor's credential: (its pattern, the group kept as its prefix).
_PREFIXED = re.compile(
    r"(?<![A-Za-z0-9])(?P<prefix>"
    r"sk-(?:ant-(?:api\d+-)?|proj-|svcacct-)?(?=[A-Za-z0-9_\-]{16,})"
    r"|[sr]k_(?:live|test)_(?=[A-Za-z0-9]{10,})"
    r"|xox[abpeors]-(?=[A-Za-z0-9\-]{10,})"
    r"|xapp-(?=[A-Za-z0-9\-]{10,})"
    r"|gh[pousr]_(?=[A-Za-z0-9]{20,})"
    r"|github_pat_(?=[A-Za-z0-9_]{20,})"
    r"|glpat-(?=[A-Za-z0-9_\-]{20,})"
    r"|AIza(?=[0-9A-Za-z_\-]{30,})"
    r"|(?:AKIA|ASIA)(?=[A-Z0-9]{16}(?![A-Za-z0-9]))"
    r"|eyJ(?=[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.)"
    r")(?P<rest>[A-Za-z0-9_.\-]+)"
)
_SCHEME = re.compile(r"(?P<prefix>\b(?:Bearer|Basic|Token|Digest)[ \t]+)(?P<rest>[A-Za-z0-9._~+/=\-]{8,})")
_URL_PASSWORD = re.compile(r"(?P<prefix>\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:)(?P<rest>[^\s@/]+)(?=@)")
_PEM = re.compile(
    r"(?P<begin>-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)(?P<body>.*?)(?P<end>-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)
# `NAME=value`, `NAME: value`, `"name": "value"`, `--name=value`: the name decides.
_ASSIGNED = re.compile(
    r"(?<![A-Za-z0-9_\-])(?P<key>-{0,2}[A-Za-z_][A-Za-z0-9_.\-]*)[\"']?[ \t]*[:=][ \t]*"
    r"(?:(?P<quote>[\"'])(?P<quoted>[^\"'\n]*)(?P=quote)|(?P<bare>[^\s\"'&;|,)}\]]+))"
)
# `--password hunter2`: an option's value after a space.
_OPTION = re.compile(r"(?<![A-Za-z0-9_\-])--?(?P<key>[A-Za-z][A-Za-z0-9_\-]*)[ \t]+(?P<bare>[^\s\-\"'][^\s\"']*)")
_RANDOM = re.compile(r"(?<![A-Za-z0-9+_=\-])[A-Za-z0-9+_=\-]{32,}(?![A-Za-z0-9+_=\-])")
_HEX = re.compile(r"[0-9a-fA-F\-]+")
_ENTROPY = 3.5  # bits per character: random base62 strings sit near 4.5
_SWITCHES = 0.45  # share of neighbours of different kinds (upper, lower, digit): random ~0.6, CamelCase ~0.3


def is_secret_name(name: str) -> bool:
    """Whether a key, parameter or variable of this name holds a secret (`api_key`, `GITHUB_TOKEN`,
    `clientSecret`, `Authorization`); `max_tokens`, `author` or `secret_name`-like names of
    what is not itself a secret are judged by their words, not by a substring."""
    words = [w.lower() for w in _WORD.findall(name)]
    if not words:
        return False
    if words[-1] in ("name", "names", "id", "ids", "count", "url", "path", "file", "type", "length"):
        return False  # the name of a secret, or its file: not the secret itself
    if any(word in _SECRET_WORDS for word in words) or "".join(words) in _SECRET_WORDS:
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def looks_random(token: str) -> bool:
    """A long string of mixed case and digits with the entropy of a generated key."""
    if len(token) < 32 or _HEX.fullmatch(token):
        return False
    if not (any(c.isupper() for c in token) and any(c.islower() for c in token) and any(c.isdigit() for c in token)):
        return False
    counts = Counter(token)
    entropy = -sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())
    kinds = [_kind(c) for c in token]
    switches = sum(a != b for a, b in itertools.pairwise(kinds))
    return entropy >= _ENTROPY and switches >= len(token) * _SWITCHES


def _kind(char: str) -> int:
    return 0 if char.isupper() else 1 if char.islower() else 2 if char.isdigit() else 3


def mask_text(text: str) -> str:
    """`text` with every secret-looking value in it masked; as many lines as it had."""
    if not text:
        return text
    text = _PEM.sub(_pem, text)
    text = _URL_PASSWORD.sub(lambda m: m.group("prefix") + MASK, text)
    text = _PREFIXED.sub(lambda m: m.group("prefix") + KEPT, text)
    text = _SCHEME.sub(lambda m: m.group("prefix") + MASK, text)
    text = _ASSIGNED.sub(_assigned, text)
    text = _OPTION.sub(_assigned, text)
    return _RANDOM.sub(lambda m: MASK if looks_random(m.group(0)) else m.group(0), text)


def mask_value(value: Any, key: str | None = None, *, by_name: bool = True) -> Any:
    """`value` (JSON-like) with secrets masked: every string by its shape and, with `by_name`,
    every value under a secret's name whole. Keys and non-string scalars elsewhere are kept."""
    if by_name and key is not None and is_secret_name(key) and not _empty(value):
        if isinstance(value, Mapping | list | tuple):
            return mask_value(value, None, by_name=by_name)
        return _whole(value)
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: mask_value(v, str(k), by_name=by_name) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(item, key, by_name=by_name) for item in value]
    return value


def mask_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """An action's parameters as people may read them."""
    return {name: mask_value(value, name) for name, value in params.items()}


def _empty(value: Any) -> bool:
    return value is None or value == "" or isinstance(value, bool)


def _whole(value: Any) -> str:
    """A value held under a secret's name: only a vendor prefix survives (`sk-…••••`)."""
    if isinstance(value, str):
        found = _PREFIXED.match(value) or _SCHEME.match(value)
        if found is not None:
            return found.group("prefix") + (KEPT if found.re is _PREFIXED else MASK)
    return MASK


def _pem(found: re.Match[str]) -> str:
    body = re.sub(r"[^\n]+", MASK, found.group("body")) or MASK  # one mask per line: the lines stay
    return found.group("begin") + body + found.group("end")


def _assigned(found: re.Match[str]) -> str:
    quoted = "quote" in found.re.groupindex and found.group("quote") is not None
    value = found.group("quoted") if quoted else found.group("bare")
    if not is_secret_name(found.group("key")) or not value or MASK in value or value in _SCHEMES:
        return found.group(0)
    start, end = found.span("quoted" if quoted else "bare")
    offset = found.start()
    return found.group(0)[: start - offset] + _whole(value) + found.group(0)[end - offset :]
