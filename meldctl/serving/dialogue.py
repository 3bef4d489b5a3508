"""Utterances in their conversation: one clip with its `context`, or a whole `dialogue`, as `meldctl predict`
answers them with `--context` and `--dialogue`.

Every utterance is decoded by the batcher's pool at once; each conversation is then one `run_dialogue` on the
model thread, so a checkpoint trained with dialogue context sees each utterance's window, and `no_context`
scores each one alone (the ablation). A dialogue row whose clip cannot be used is answered with its error and
left out of its conversation's context, as `predict --dialogue` does; the other rows are answered.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from meldctl.errors import MeldError
from meldctl.serving.batcher import Batcher
from meldctl.serving.forms import RequestError
from meldctl.serving.uploads import ClipRequest, DialogueRequest, DialogueRow

NOT_USED = "this checkpoint was trained without dialogue context: it classified the utterance alone"


async def predict_in_context(batcher: Batcher, predictor: Any, clip: ClipRequest) -> Any:
    """The prediction for `clip` after its context lines (said before it, oldest first).

    Raises:
        MeldError: the clip or a context line cannot be used (a checkpoint that does not read text).
        ModelError: the model failed.
    """
    from meldctl.inference import Turn

    work = [partial(predictor.prepare_turn, Turn(text, speaker)) for speaker, text in clip.context]
    work.append(partial(predictor.prepare, clip.clip, clip.text, name=clip.name))
    prepared = await batcher.decode(work)
    for result in prepared:
        if isinstance(result, BaseException):
            raise result
    speakers = [speaker for speaker, _ in clip.context] + [None]
    answer = (await batcher.run_dialogue(prepared, speakers, context=not clip.no_context))[-1]
    if not clip.no_context and not predictor.uses_context:
        answer.warnings.append(NOT_USED)
    return answer


async def predict_dialogue(
    batcher: Batcher, predictor: Any, request: DialogueRequest, top_k: int
) -> list[dict[str, Any]]:
    """One object per row, in the rows' order: the prediction plus `dialogue` and `speaker`, or, for a row whose
    clip cannot be used, `{"clip", "text", "dialogue", "speaker", "error"}`.

    Raises:
        RequestError: 422 when no row can be answered (the first row's reason).
        ModelError: the model failed.
    """
    rows = request.rows
    prepared = await batcher.decode([partial(_prepare_row, predictor, row) for row in rows])
    for result in prepared:
        if isinstance(result, BaseException) and not isinstance(result, MeldError):
            raise result
    answers: list[Any] = list(prepared)
    for group in _conversations(rows):
        kept = [i for i in group if not isinstance(answers[i], MeldError)]
        if not kept:
            continue
        speakers = [rows[i].speaker for i in kept]
        found = await batcher.run_dialogue([answers[i] for i in kept], speakers, context=not request.no_context)
        for index, answer in zip(kept, found, strict=True):
            if len(group) > 1 and not request.no_context and not predictor.uses_context:
                answer.warnings.append(NOT_USED)
            answers[index] = answer
    if all(isinstance(answer, MeldError) for answer in answers):
        raise RequestError(422, f"dialogue row 1: {_reason(rows[0], answers[0])}")
    out = []
    for row, answer in zip(rows, answers, strict=True):
        where = {"dialogue": row.dialogue or None, "speaker": row.speaker}
        if isinstance(answer, MeldError):
            out.append({"clip": row.name, "text": row.text, **where, "error": _reason(row, answer)})
        else:
            out.append({**answer.to_json(top_k), **where})
    return out


def _prepare_row(predictor: Any, row: DialogueRow) -> Any:
    """A row with a clip is decoded as `/predict` decodes one; a row without is answered from its text."""
    if row.clip is None:
        return predictor.prepare_media(row.text, frames=None, waveform=None)
    return predictor.prepare(row.clip, row.text, name=row.name)


def _conversations(rows: list[DialogueRow]) -> list[list[int]]:
    """Row indices by `dialogue`, each in order; conversations in order of their first row."""
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(row.dialogue, []).append(index)
    return list(groups.values())


def _reason(row: DialogueRow, error: MeldError) -> str:
    """The error's sentence, naming the clip as the client did rather than by its temporary path."""
    if row.clip is not None:
        return error.message.replace(str(row.clip), row.name or "the clip")
    return error.message
