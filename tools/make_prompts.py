"""Record a flow's prompts (audio/prompts/<lang>/<name>.wav) with espeak-ng, once, at
development time — so the flow sounds the same on every machine without TTS at run time.

A development tool, not part of the engine. For each prompt of the given flows that has
text and no `file:`, it synthesises the text in the prompt's language, trims, fades and
levels it the way the say-as words are made (tools/make_words.py: same level, same peak
limit) and writes 8 kHz mono 16-bit PCM under audio/prompts/<lang>/<name>.wav, which the
loader then uses as the prompt's recording. A recording is rewritten only when its text
changed (a sidecar `.txt` keeps the text it was made from) or with --force.

Usage: ``.venv/bin/python tools/make_prompts.py ivr_flows/vaccine.yaml [--force]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_words import DEFAULT_LEVEL_DBFS, RATES_WPM, shape, write_wav  # noqa: E402

from hotline.engine.flows import voice_for  # noqa: E402
from hotline.engine.tts import espeak_synthesise  # noqa: E402
from hotline.ivr.loader import FlowError, load_flow  # noqa: E402
from hotline.media.prompts import PromptError, SynthesisError, load_wav  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flows", nargs="+", type=Path)
    parser.add_argument("--audio-dir", type=Path, default=REPO / "audio")
    parser.add_argument("--force", action="store_true", help="remake every recording")
    args = parser.parse_args(argv)
    made = kept = 0
    with tempfile.TemporaryDirectory() as work:
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
                text = asset.text or ""
                target = args.audio_dir / "prompts" / language / f"{name}.wav"
                sidecar = target.with_suffix(".txt")
                if not args.force and target.is_file() and sidecar.is_file() and \
                        sidecar.read_text(encoding="utf-8") == text:
                    kept += 1
                    continue
                raw = Path(work) / f"{language}_{name}.wav"
                try:
                    espeak_synthesise(text, voice_for(language),
                                      RATES_WPM.get(language, 155), raw)
                    samples = load_wav(raw).astype(np.float64) / 32768.0
                except (SynthesisError, PromptError) as exc:
                    print(f"{flow_file}: prompt {name} ({language}): {exc}", file=sys.stderr)
                    return 1
                signal, _level, _limited = shape(f"{language}/{name}", samples,
                                                 DEFAULT_LEVEL_DBFS)
                write_wav(target, signal)
                sidecar.write_text(text, encoding="utf-8")
                made += 1
    print(f"{made} prompt recordings made, {kept} up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
