"""Record a flow's prompts (audio/prompts/<lang>/<name>.wav) with espeak-ng, once, at
development time — so the flow sounds the same on every machine without TTS at run time.

A development tool, not part of the engine. For each prompt of the given flows that has
text and no `file:`, it synthesises the text in the prompt's language, trims, fades and
levels it the way the say-as words are made (tools/make_words.py: same level, same peak
limit) and writes 8 kHz mono G.711 µ-law under audio/prompts/<lang>/<name>.wav, which the
loader then uses as the prompt's recording. A recording is rewritten only when its text
changed (a sidecar `.txt` keeps the text it was made from) or with --force.

With ``--system`` it also records the contact centre's system phrases
(hotline/acd/announcements.py: queue position and wait, callbacks, voicemail, agent
star-code answers) as audio/system/<lang>/<name>.wav.

With ``--clinics FILE.csv`` it also records each clinic's name (the `name` column) as
audio/clinics/<id>.wav, which flows play with ``{audio: "clinics/{booking.clinic1_id}"}``.

Usage: ``.venv/bin/python tools/make_prompts.py ivr_flows/vaccine.yaml
[--clinics hotline/booking/data/clinics_sample.csv] [--system] [--force]``
"""

from __future__ import annotations

import argparse
import csv
import struct
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_words import DEFAULT_LEVEL_DBFS, RATES_WPM, MakeWordsError, shape

from hotline.acd.announcements import every_phrase
from hotline.engine.flows import voice_for
from hotline.engine.tts import espeak_synthesise
from hotline.ivr.loader import FlowError, load_flow
from hotline.media import g711
from hotline.media.prompts import PromptError, SynthesisError, load_wav

REPO = Path(__file__).resolve().parent.parent


def write_ulaw_wav(path: Path, signal: np.ndarray) -> None:
    """8 kHz mono G.711 µ-law WAV (format tag 7: half the size of 16-bit PCM and exactly
    what a PCMU call sends), written atomically."""
    pcm = np.clip(np.rint(signal * 32768.0), -32768, 32767).astype(np.int16)
    data = g711.encode(g711.Codec.PCMU, pcm).tobytes()
    fmt = struct.pack("<HHIIHHH", 7, 1, 8000, 8000, 1, 8, 0)
    fact = struct.pack("<I", len(data))
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"fact" + struct.pack("<I", len(fact)) + fact
            + b"data" + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b""))
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    part.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flows", nargs="*", type=Path)
    parser.add_argument("--audio-dir", type=Path, default=REPO / "audio")
    parser.add_argument("--force", action="store_true", help="remake every recording")
    parser.add_argument("--clinics", type=Path, help="a clinics CSV: record each clinic's name")
    parser.add_argument("--system", action="store_true",
                        help="record the contact centre's system phrases")
    args = parser.parse_args(argv)
    made = kept = 0
    with tempfile.TemporaryDirectory() as work:
        jobs: list[tuple[str, str, Path]] = []  # (language, text, target)
        if args.clinics is not None:
            with args.clinics.open(encoding="utf-8", newline="") as fh:
                for row in csv.DictReader(line for line in fh if not line.startswith("#")):
                    target = args.audio_dir / "clinics" / f"{row['id']}.wav"
                    jobs.append(("en", row["name"], target))
        if args.system:
            for phrase in every_phrase():
                jobs.append((phrase.language, phrase.text, args.audio_dir / f"{phrase.key}.wav"))
        for flow_file in args.flows:
            try:
                flow = load_flow(flow_file, audio_dir=args.audio_dir)
            except FlowError as exc:
                print(exc, file=sys.stderr)
                return 1
            for (name, language), asset in sorted(flow.prompts.items()):
                definition = flow.document.prompts[name][language]
                if not isinstance(definition, str) and definition.file is not None:
                    continue  # a recording of its own
                target = args.audio_dir / "prompts" / language / f"{name}.wav"
                jobs.append((language, asset.text or "", target))
        for index, (language, text, target) in enumerate(jobs):
            sidecar = target.with_suffix(".txt")
            if not args.force and target.is_file() and sidecar.is_file() and \
                    sidecar.read_text(encoding="utf-8") == text:
                kept += 1
                continue
            raw = Path(work) / f"{index}.wav"
            try:
                espeak_synthesise(text, voice_for(language), RATES_WPM.get(language, 155), raw)
                samples = load_wav(raw).astype(np.float64) / 32768.0
            except (SynthesisError, PromptError) as exc:
                print(f"{target}: {exc}", file=sys.stderr)
                return 1
            try:
                signal, _level, _limited = shape(str(target), samples, DEFAULT_LEVEL_DBFS)
            except MakeWordsError as exc:
                print(f"{exc} (text {text!r})", file=sys.stderr)
                return 1
            write_ulaw_wav(target, signal)
            sidecar.write_text(text, encoding="utf-8")
            made += 1
    print(f"{made} prompt recordings made, {kept} up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
