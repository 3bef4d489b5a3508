"""Who speaks a cue, where the subtitles say it: the ASS/SSA `Name` (actor) field, WebVTT `<v Name>` voice
spans, or a `NAME:` prefix at the start of the cue.

The `NAME:` rule, made so that a sentence with a colon keeps its words:
- the prefix opens the cue, or a line of it that starts with a speaker dash (`- ROSS: Hi.`), and is followed
  by a space and the words spoken; a colon anywhere else is text;
- NAME is 1 to 3 words of at most 32 characters, each starting with a capital letter (after the first word a
  number is allowed: `MAN #2`, `Guest 3`), and not one of the words that introduce something other than a
  speaker (`Note:`, `Warning:`, `Chapter:`, `Sign:`, `Lyrics:` ... see `NOT_SPEAKERS`);
- a name in capitals (`ROSS:`, `DR. GREEN:`) counts at once; one in mixed case (`Ross:`) counts only when it
  opens a turn in at least two cues of the file: a capitalised word before a colon is also how a sentence can
  start ("Listen: ..."), and a speaker speaks more than once.
A recognised prefix is removed from the text. A cue of several turns (dashed lines: "- Hi. - Hello.") has one
speaker only when every turn names the same one; otherwise its speaker is None (the prefixes are removed all
the same). A name the format gives (ASS Name, WebVTT voice) wins over a prefix.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

NOT_SPEAKERS = frozenset(
    {
        "act", "answer", "attention", "caption", "captions", "caution", "chapter", "credits", "edit", "episode",
        "example", "lyrics", "music", "nb", "no", "note", "notes", "ok", "okay", "part", "ps", "p.s.", "question",
        "quote", "rule", "scene", "sign", "song", "source", "step", "subtitle", "subtitles", "text", "title",
        "translation", "translator", "translator's note", "update", "warning", "yes",
    }
)  # fmt: skip
MAX_NAME = 32

_PREFIX = re.compile(r"^([^:]{1,40}?)\s?:\s+(\S.*)$", re.DOTALL)
_WORD = re.compile(r"[^\W\d_][\w'\u2019.&-]*")  # starts with a letter: Ross, O'Brien, Mary-Kate, Dr.
_NUMBER = re.compile(r"#?\d+")
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?[ \t]+([^>]+)>")


def voice_names(raw: str) -> list[str]:
    """The names of a WebVTT cue's voice spans (`<v Roger>`, `<v.loud Mary Ann>`), in order, stripped."""
    return [name for name in (m.group(1).strip() for m in _VOICE.finditer(raw)) if name]


def name_prefix(line: str) -> tuple[str, str] | None:
    """`(NAME, rest)` when `line` opens with a plausible `NAME:` (see the module docstring), else None."""
    match = _PREFIX.match(line)
    if match is None:
        return None
    name = match.group(1)
    words = name.split(" ")
    if not 1 <= len(words) <= 3 or len(name) > MAX_NAME or name.casefold() in NOT_SPEAKERS:
        return None
    for k, word in enumerate(words):
        if not ((_WORD.fullmatch(word) and word[0].isupper()) or (k > 0 and _NUMBER.fullmatch(word))):
            return None
    return name, match.group(2)


def in_capitals(name: str) -> bool:
    """`ROSS`, `DR. GREEN`, `MAN #2`: a name written in capitals, the subtitle convention for speakers."""
    return name.upper() == name and any(c.isalpha() for c in name)


def assign_speakers(
    cues: Sequence[list[tuple[bool, str]]], named: Sequence[str | None]
) -> list[tuple[str | None, list[str]]]:
    """Each cue's speaker and its lines without speaker prefixes.

    Args:
        cues: Per cue, its lines as `(opened with a speaker dash, text)`, markup already removed.
        named: Per cue, the speaker its format names (ASS Name, WebVTT voice), or None.

    Returns:
        Per cue, `(speaker or None, lines)`.
    """
    candidates = [_candidates(lines) for lines in cues]
    cues_with = Counter(name for found in candidates for name in {name for _, name, _ in found})
    out = []
    for lines, found, given in zip(cues, candidates, named, strict=True):
        texts = [text for _, text in lines]
        names = []
        for index, name, rest in found:
            if in_capitals(name) or cues_with[name] >= 2:
                texts[index] = rest
                names.append(name)
        turns = sum(1 for index, (dashed, _) in enumerate(lines) if index == 0 or dashed)
        # One speaker only when every turn of the cue names the same one ("- Hi. - Hello." is two people).
        single = names[0] if names and len(names) == turns and len(set(names)) == 1 else None
        out.append((given or single, texts))
    return out


def _candidates(lines: list[tuple[bool, str]]) -> list[tuple[int, str, str]]:
    """`(line index, name, rest)` for the lines that may open with a speaker: the first and the dashed ones."""
    out = []
    for index, (dashed, text) in enumerate(lines):
        if index == 0 or dashed:
            found = name_prefix(text)
            if found is not None:
                out.append((index, *found))
    return out
