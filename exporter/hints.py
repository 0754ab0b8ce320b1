"""'Did you mean' hints for misspelt keys and values, for every config file.

Words are compared without case or punctuation, so `Anti-Captcha` finds `anticaptcha` and
`api-key-file` finds `api_key_file`; aliases map other names (a service's own name) to a
choice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def normalized(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())


def closest(
    word: str, choices: Iterable[str], aliases: Mapping[str, str] | None = None
) -> str | None:
    """The choice `word` most likely means, or None if none is close."""
    candidates = {normalized(choice): choice for choice in choices}
    candidates.update({normalized(alias): choice for alias, choice in (aliases or {}).items()})
    key = normalized(word)
    if key in candidates:
        return candidates[key]
    # Only a misspelt word gets this far: a config without one never loads difflib.
    import difflib

    close = difflib.get_close_matches(key, list(candidates), n=1)
    return candidates[close[0]] if close else None


def did_you_mean(
    word: str, choices: Iterable[str], aliases: Mapping[str, str] | None = None
) -> str:
    """` (did you mean 'x'?)`, or nothing if no choice is close (or `word` is one)."""
    match = closest(word, choices, aliases)
    return f" (did you mean '{match}'?)" if match is not None and match != word else ""
