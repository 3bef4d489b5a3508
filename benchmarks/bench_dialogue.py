"""A conversation at once against one utterance at a time: `predict --dialogue` of N rows vs N single predicts.

Run: `python benchmarks/bench_dialogue.py --ckpt CKPT [--data-dir D] [--rows 20] [--rounds 5] [--threads 1]`.

Both sides run in one process on the same loaded checkpoint (a checkpoint trained with dialogue context,
e.g. from `bench_text_meld.py --context-past 5 --context-future 2`), on the first N utterances of MELD test
dialogues (text only), interleaved round by round:
- dialogue: `predict_lines` (what `meldctl predict --dialogue FILE` runs): every row encoded in batches, then
  classified in its conversation;
- single: N calls of `Predictor.predict`, one utterance each (what N `meldctl predict --text` calls run once
  the model is loaded; they see no context).
A third row gives what N single predicts with context cost: each row as `predict --context` with its
conversation so far (row i re-encodes its i-1 predecessors).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _common import load_line, machine, print_table

from meldctl.data.dialogue import DialogueLine
from meldctl.data.manifest import read_manifest
from meldctl.inference import Predictor, Turn, predict_lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/meldctl-bench-text/data"))
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine(args.threads), flush=True)
    predictor = Predictor.from_path(args.ckpt, "cpu")
    rows = sorted(read_manifest(args.data_dir, "test"), key=lambda r: (r.dialogue_id, r.utterance_id))[: args.rows]
    lines = [DialogueLine(r.text, r.speaker, None, str(r.dialogue_id)) for r in rows]
    times: dict[str, list[float]] = {"dialogue": [], "single": [], "single with context": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        predict_lines(predictor, lines)
        times["dialogue"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for line in lines:
            predictor.predict(None, line.text)
        times["single"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for i, line in enumerate(lines):
            before = [ln for ln in lines[:i] if ln.dialogue == line.dialogue]
            turns = [predictor.prepare_turn(Turn(ln.text, ln.speaker)) for ln in before]
            inputs = [*turns, predictor.prepare(None, line.text)]
            predictor.run_dialogue(inputs, [ln.speaker for ln in before] + [line.speaker])
        times["single with context"].append(time.perf_counter() - start)
    print(
        f"\ninputs: {len(lines)} MELD test utterances ({len({ln.dialogue for ln in lines})} dialogues), "
        f"checkpoint {args.ckpt} (context {predictor.model.config.context_past} past / "
        f"{predictor.model.config.context_future} future); {load_line('after the runs')}\n"
    )
    base = statistics.median(times["dialogue"])
    table = [
        [name, f"{statistics.median(t) * 1000:.0f}", f"{statistics.median(t) / base:.2f}x", f"median of {len(t)}"]
        for name, t in times.items()
    ]
    print_table(["what", "ms for all rows", "vs --dialogue", "note"], table)


if __name__ == "__main__":
    main()
