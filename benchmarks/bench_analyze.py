"""`meldctl analyze` on a synthetic episode: speed against real time and against cutting a file per utterance,
speech recognition's share, and peak memory for two video lengths.

Run: `python benchmarks/bench_analyze.py [--minutes 5] [--long 2] [--threads 2] [--ckpt best.pt] [--work DIR]`.

Inputs, all made here (and kept in `--work` for later runs):
- a checkpoint: 1 epoch on the embedded sample, text+audio+video, MiniLM, R3D-18 weights none (the same
  compute as Kinetics-400 weights), real-size preprocessing (16 frames resized to 128x171 and centre-cropped
  to 112x112, up to 8 s of audio), as `bench_predict.py` trains it (`--ckpt` reuses one);
- an episode of `--minutes` minutes: espeak-ng sentences with pauses (tests/episode.py) over a moving 1280x720
  24 fps picture with light sensor grain (H.264 veryfast, about 2.5 Mbit/s: decodes like TV footage), with
  its SRT; and the same episode `--long` times over (stream-copied, no re-encode) for the memory row.

Rows, each one cold process (imports, checkpoint load, the work), wall time and peak RSS from wait4:
- meldctl analyze with the SRT, both lengths: wall time as a fraction of the video's duration;
- the tutorial's way on the same cues, as the tutorial wrote it: per utterance one FFmpeg process
  (`ffmpeg -i VIDEO -ss START -to END -c:v libx264 -c:a aac SEGMENT.mp4`: output seeking, so FFmpeg decodes
  from the start of the video every time), then `Predictor.predict(SEGMENT, text)`. That costs minutes per
  utterance late in a long video, so it runs on every k-th cue (spread over the whole episode) and its loop
  time is scaled to all cues;
- the same with fast input seeking (`-ss` before `-i`), every cue: the strongest form of cutting files;
- meldctl analyze with speech recognition (faster-whisper tiny.en) instead of the SRT: the fraction of real
  time, and the share of it that recognition takes.

`--context` measures dialogue context instead (and only that): a checkpoint trained the same way with a context
window (`--context-past 8 --context-future 4`, kept in `--work`/run-context), `meldctl analyze` with the SRT
on both lengths, each run twice in turn: with the video's utterances as one conversation (the default) and with
`--no-context` (the same weights, every utterance alone, as a checkpoint without context runs).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import child_env, load_line, machine, print_table, run_child

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from episode import SENTENCES, write_episode, write_srt  # noqa: E402

from meldctl.media.ffmpeg import ffmpeg_exe  # noqa: E402

# More lines than the tests' eight, so that the text differs from utterance to utterance across minutes.
MORE_SENTENCES = (
    "Could you pass me the remote control?",
    "I am so proud of you, this is amazing!",
    "Ugh, this milk smells absolutely terrible.",
    "Get out of my apartment right now!",
    "Wait, you are moving to London tomorrow?",
    "I miss her every single day.",
    "Did you hear that noise in the hallway?",
    "Okay, let us order some pizza tonight.",
    "My boss yelled at me in front of everyone.",
    "That was the worst date of my entire life.",
    "We were on a break!",
    "Nobody told me it was a costume party.",
)


def episode_files(work: Path, minutes: float) -> tuple[Path, Path, int, float]:
    """The benchmark episode (video, SRT, cue count, seconds), written once into `work`."""
    video, srt, meta = work / f"episode_{minutes:g}min.mp4", work / f"episode_{minutes:g}min.srt", work / "meta.json"
    if video.is_file() and srt.is_file() and meta.is_file():
        known = json.loads(meta.read_text())
        if video.name in known:
            return video, srt, *known[video.name]
    lines = list(SENTENCES + MORE_SENTENCES)
    count = int(minutes * 60 / 3.6)  # about 3.6 s per sentence and its pause
    episode = write_episode(video, [lines[i % len(lines)] for i in range(count)], size="1280x720", fps=24,
                            grain=3, preset="veryfast")  # fmt: skip
    write_srt(srt, episode.cues)
    known = json.loads(meta.read_text()) if meta.is_file() else {}
    known[video.name] = [len(episode.cues), episode.duration]
    meta.write_text(json.dumps(known))
    return video, srt, len(episode.cues), episode.duration


def repeated(video: Path, srt: Path, times: int) -> tuple[Path, Path]:
    """`video` `times` times over (FFmpeg concat, stream copy) and its SRT with the cues shifted to match."""
    import pysubs2

    out = video.with_name(f"{video.stem}_x{times}.mp4")
    out_srt = out.with_suffix(".srt")
    if out.is_file() and out_srt.is_file():
        return out, out_srt
    listing = video.with_name("concat.txt")
    listing.write_text("".join(f"file '{video.name}'\n" for _ in range(times)))
    args = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "concat", "-safe", "0"]
    subprocess.run([*args, "-i", str(listing), "-c", "copy", str(out)], check=True)
    step = _duration_ms(out) // times
    subs, once = pysubs2.SSAFile(), pysubs2.load(str(srt))
    for k in range(times):
        for event in once:
            subs.append(pysubs2.SSAEvent(start=event.start + k * step, end=event.end + k * step, text=event.text))
    subs.save(str(out_srt))
    return out, out_srt


def _duration_ms(video: Path) -> int:
    import av

    with av.open(str(video)) as container:
        return container.duration // 1000


def train_or_reuse(work: Path, ckpt: Path | None, threads: int) -> Path:
    if ckpt is not None:
        return ckpt
    kept = work / "run" / "best.pt"
    if kept.is_file():
        return kept
    from bench_predict import train_checkpoint

    return train_checkpoint(work, threads)


def analyze_run(exe: str, video: Path, extra: list[str], ckpt: Path, threads: int) -> tuple[object, dict]:
    """One cold `meldctl analyze` process; its run record and the timeline.json it wrote."""
    with tempfile.TemporaryDirectory() as out:
        command = [exe, "analyze", str(video), *extra, "--ckpt", str(ckpt), "--device", "cpu", "--out", out]
        run = run_child(command, env=child_env(threads))
        if run.returncode != 0:
            raise SystemExit(f"meldctl analyze failed ({run.returncode}):\n{run.stderr[-3000:]}")
        return run, json.loads((Path(out) / "timeline.json").read_text())


def tutorial_child(video: Path, srt: Path, ckpt: Path, seek: str, every: int) -> None:
    """The tutorial's way, in this (child) process: prints what it measured as JSON."""
    import pysubs2

    from meldctl.inference import Predictor

    start = time.perf_counter()
    predictor = Predictor.from_path(ckpt, "cpu")
    load_s = time.perf_counter() - start
    cues = [(e.start / 1000, e.end / 1000, e.plaintext) for e in pysubs2.load(str(srt))]
    chosen = cues[::every]
    cut_s = predict_s = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for n, (begin, end, text) in enumerate(chosen):
            segment = Path(tmp) / f"segment_{n}.mp4"
            where = ["-i", str(video), "-ss", str(begin), "-to", str(end)]
            if seek == "input":  # seek in the demuxer first: FFmpeg decodes only from the keyframe before START
                where = ["-ss", str(begin), "-to", str(end), "-i", str(video)]
            t0 = time.perf_counter()
            subprocess.run(
                [ffmpeg_exe(), *where, "-c:v", "libx264", "-c:a", "aac", "-y", str(segment)],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            t1 = time.perf_counter()
            predictor.predict(segment, text)
            cut_s, predict_s = cut_s + t1 - t0, predict_s + time.perf_counter() - t1
            segment.unlink()
    print(
        json.dumps({"load_s": load_s, "done": len(chosen), "total": len(cues), "cut_s": cut_s, "predict_s": predict_s})
    )


def tutorial_run(video: Path, srt: Path, ckpt: Path, seek: str, every: int, threads: int) -> tuple[object, dict]:
    command = [sys.executable, __file__, "--tutorial-child", str(video), str(srt), str(ckpt), seek, str(every)]
    run = run_child(command, env=child_env(threads))
    if run.returncode != 0:
        raise SystemExit(f"tutorial run failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return run, json.loads(run.stdout.strip().splitlines()[-1])


def tutorial_wall(run, record: dict) -> float:  # noqa: ANN001
    """Wall time for every cue: the measured process, its per-cue loop scaled from the cues it did to all."""
    loop = record["cut_s"] + record["predict_s"]
    return run.seconds - loop + loop * record["total"] / record["done"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the episode")
    parser.add_argument("--long", type=int, default=2, help="the memory row's video: the episode this many times")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (OMP_NUM_THREADS) of every process")
    parser.add_argument("--literal-cues", type=int, default=10, help="cues the literal tutorial run cuts")
    parser.add_argument("--ckpt", type=Path, help="a checkpoint trained on the sample (default: train one here)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "meldctl-bench-analyze")
    parser.add_argument("--context", action="store_true", help="only the dialogue-context rows (see above)")
    parser.add_argument("--context-past", type=int, default=8, help="--context: the checkpoint's past window")
    parser.add_argument("--context-future", type=int, default=4, help="--context: the checkpoint's future window")
    parser.add_argument("--tutorial-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tutorial_child:
        video, srt, ckpt, seek, every = args.tutorial_child
        tutorial_child(Path(video), Path(srt), Path(ckpt), seek, int(every))
        return
    print(machine(args.threads), flush=True)
    exe = shutil.which("meldctl") or str(Path(sys.executable).parent / "meldctl")
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    ckpt = context_checkpoint(args) if args.context else train_or_reuse(args.work, args.ckpt, args.threads)
    video, srt, cues, seconds = episode_files(args.work, args.minutes)
    long_video, long_srt = repeated(video, srt, args.long)
    print(f"  inputs ready in {time.perf_counter() - start:.0f} s; {load_line('now')}", flush=True)
    if args.context:
        context_rows(args, exe, ckpt, [(video, srt), (long_video, long_srt)])
        return

    subs, subs_timeline = analyze_run(exe, video, ["--subtitles", str(srt)], ckpt, args.threads)
    print(f"  analyze (subtitles): {subs.seconds:.0f} s; {load_line('now')}", flush=True)
    longer, long_timeline = analyze_run(exe, long_video, ["--subtitles", str(long_srt)], ckpt, args.threads)
    print(f"  analyze (subtitles, x{args.long}): {longer.seconds:.0f} s; {load_line('now')}", flush=True)
    fast, fast_record = tutorial_run(video, srt, ckpt, "input", 1, args.threads)
    print(f"  tutorial, input seeking: {fast.seconds:.0f} s; {load_line('now')}", flush=True)
    every = max(1, cues // args.literal_cues)
    literal, literal_record = tutorial_run(video, srt, ckpt, "output", every, args.threads)
    print(f"  tutorial as written ({literal_record['done']} cues): {literal.seconds:.0f} s; {load_line('now')}")
    asr, asr_timeline = analyze_run(exe, video, ["--segment", "asr"], ckpt, args.threads)
    print(f"  analyze (asr): {asr.seconds:.0f} s; {load_line('after the runs')}\n", flush=True)

    report(args, ckpt, (video, cues, seconds), (subs, subs_timeline), (longer, long_timeline),
           (fast, fast_record), (literal, literal_record), (asr, asr_timeline))  # fmt: skip


def context_checkpoint(args: argparse.Namespace) -> Path:
    """`--ckpt`, or the sample checkpoint with a dialogue-context window, trained once into `--work`."""
    if args.ckpt is not None:
        return args.ckpt
    kept = args.work / "run-context" / "best.pt"
    if kept.is_file():
        return kept
    from bench_predict import train_checkpoint

    return train_checkpoint(args.work, args.threads, context_past=args.context_past, context_future=args.context_future)


def context_rows(args: argparse.Namespace, exe: str, ckpt: Path, videos: list[tuple[Path, Path]]) -> None:
    """analyze with the SRT, with dialogue context and with --no-context in turn, on each video; the table."""
    rows, ratios, rss = [], {}, {}
    for video, srt in videos:
        for label, extra in (("context", []), ("--no-context", ["--no-context"])):
            run, timeline = analyze_run(exe, video, ["--subtitles", str(srt), *extra], ckpt, args.threads)
            window = timeline["context"]
            used = f"past {window['past']}, future {window['future']}" if window["used"] else "none"
            what = f"meldctl analyze, subtitles, {label} ({used})"
            seconds = timeline["seconds"]
            rows.append(_analyze_row(what, run, timeline, f"classification {seconds['classification']:.0f} s"))
            ratios.setdefault(label, []).append(run.seconds / timeline["duration"])
            rss.setdefault(label, []).append(run.max_rss_mb)
            print(f"  {what}, {timeline['duration'] / 60:.1f} min: {run.seconds:.0f} s; {load_line('now')}", flush=True)
    print(f"\ninputs: {videos[0][0].name} and x{args.long}; checkpoint {ckpt} (text+audio+video, MiniLM, R3D-18 "
          "weights none, 16 frames resized to 128x171, centre crop 112x112, audio up to 8 s); batch 8\n")  # fmt: skip
    header = ["what", "video min", "utterances", "wall s", "x real time", "CPU s / 2 / video s", "peak RSS MiB"]
    print_table([*header, "note"], [row.cells() for row in rows])
    worst = max(ratios["context"])
    print(
        f"\ntarget: analyze with context and subtitles <= 0.5x real time: {worst:.2f}x -> "
        f"{'PASS' if worst <= 0.5 else 'FAIL'}; with/without context: "
        f"{', '.join(f'{a / b:.2f}x' for a, b in zip(ratios['context'], ratios['--no-context'], strict=True))}"
    )
    print(f"peak RSS with context, x{args.long} the video: {rss['context'][-1] - rss['context'][0]:+.0f} MiB")


@dataclass
class Row:
    """One line of the table."""

    what: str
    video_s: float
    utterances: str
    wall: float
    cpu: float
    rss_mb: float
    note: str

    def cells(self) -> list[str]:
        # CPU seconds per video second, halved: the wall fraction this work takes with both cores to itself.
        fraction, busy = self.wall / self.video_s, self.cpu / self.video_s / 2
        return [self.what, f"{self.video_s / 60:.1f}", self.utterances, f"{self.wall:.0f}", f"{fraction:.2f}x",
                f"{busy:.2f}x", f"{self.rss_mb:.0f}", self.note]  # fmt: skip


def _analyze_row(what: str, run, timeline: dict, note: str) -> Row:  # noqa: ANN001
    n = str(len(timeline["utterances"]))
    return Row(what, timeline["duration"], n, run.seconds, run.cpu_seconds, run.max_rss_mb, note)


def report(args, ckpt, episode, subs, longer, fast, literal, asr) -> None:  # noqa: ANN001
    """The inputs line, the table, and the targets."""
    video, cues, seconds = episode
    (subs_run, subs_tl), (long_run, long_tl) = subs, longer
    (fast_run, fast_rec), (lit_run, lit_rec), (asr_run, asr_tl) = fast, literal, asr
    literal_wall = tutorial_wall(lit_run, lit_rec)
    recognition = asr_tl["seconds"]["segmentation"]
    print(
        f"inputs: {video.name}, {seconds / 60:.1f} min, 1280x720 24 fps H.264 + AAC, {cues} cues (SRT); "
        f"x{args.long}: {long_tl['duration'] / 60:.1f} min, {len(long_tl['utterances'])} cues; checkpoint {ckpt} "
        f"(text+audio+video, MiniLM, R3D-18 weights none, 16 frames resized to 128x171, "
        f"centre crop 112x112, audio up to 8 s); batch 8\n"
    )
    classified = "classification {:.0f} s".format
    rows = [
        _analyze_row("meldctl analyze, subtitles", subs_run, subs_tl, classified(subs_tl["seconds"]["classification"])),
        _analyze_row(
            f"meldctl analyze, subtitles, video x{args.long}",
            long_run,
            long_tl,
            classified(long_tl["seconds"]["classification"]),
        ),
        Row(
            "tutorial: FFmpeg cut per cue (input seek) + predict",
            seconds,
            str(fast_rec["done"]),
            fast_run.seconds,
            fast_run.cpu_seconds,
            fast_run.max_rss_mb,
            f"cut {fast_rec['cut_s']:.0f} s, predict {fast_rec['predict_s']:.0f} s; "
            f"meldctl {fast_run.seconds / subs_run.seconds:.1f}x faster",
        ),
        Row(
            "tutorial as written (-i before -ss: output seek)",
            seconds,
            f"{lit_rec['done']} of {lit_rec['total']}",
            literal_wall,
            lit_run.cpu_seconds * literal_wall / lit_run.seconds,  # the CPU of the measured cues, scaled alike
            lit_run.max_rss_mb,
            f"scaled from {lit_rec['done']} cues spread over the episode; "
            f"meldctl {literal_wall / subs_run.seconds:.1f}x faster",
        ),
        _analyze_row(
            "meldctl analyze, speech recognition (tiny.en)",
            asr_run,
            asr_tl,
            f"recognition {recognition:.0f} s = {recognition / asr_run.seconds:.0%} of the wall time",
        ),
    ]
    header = ["what", "video min", "utterances", "wall s", "x real time", "CPU s / 2 / video s", "peak RSS MiB"]
    print_table([*header, "note"], [row.cells() for row in rows])
    _targets(
        ratio=subs_run.seconds / seconds,
        speedup=fast_run.seconds / subs_run.seconds,
        rss=max(subs_run.max_rss_mb, long_run.max_rss_mb, asr_run.max_rss_mb),
        growth=long_run.max_rss_mb - subs_run.max_rss_mb,
        asr_ratio=asr_run.seconds / seconds,
        times=args.long,
    )


def _targets(*, ratio: float, speedup: float, rss: float, growth: float, asr_ratio: float, times: int) -> None:
    verdict = {True: "PASS", False: "FAIL"}
    print(f"\ntarget: analyze with subtitles <= 0.5x real time: {ratio:.2f}x -> {verdict[ratio <= 0.5]}")
    print(f"target: >= 2x faster than a file cut per utterance (input seek, its faster form): {speedup:.1f}x -> "
          f"{verdict[speedup >= 2]}")  # fmt: skip
    print(f"target: peak RSS < 2.5 GB: {rss:.0f} MiB -> {verdict[rss < 2560]}; x{times} the video: {growth:+.0f} MiB")
    print(f"with speech recognition: {asr_ratio:.2f}x real time (target <= 0.5x) -> {verdict[asr_ratio <= 0.5]}")


if __name__ == "__main__":
    main()
