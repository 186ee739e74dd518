"""Speech synthesis with the ``espeak-ng`` command: the I/O helper behind prompt TTS.

Owns running ``espeak-ng`` (Debian package ``espeak-ng``) to write one WAV file. The
engine passes `espeak_synthesise` to `hotline.media.prompts.PromptCache` as its
`Synthesiser`; the cache decides when to call it (once per text, voice and rate) and
where the file goes. This module knows nothing of prompts, flows or the cache layout.

It blocks until ``espeak-ng`` exits: call it at start-up, or from an executor thread
when a flow reload needs new speech while calls are running.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from hotline.media.prompts import SynthesisError

ESPEAK_COMMAND = "espeak-ng"
DEFAULT_TIMEOUT = 60.0  # seconds for one prompt


def espeak_synthesise(
    text: str,
    voice: str,
    rate_wpm: int,
    out_path: Path,
    *,
    command: str = ESPEAK_COMMAND,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Speak ``text`` with ``espeak-ng -v VOICE -s RATE -w OUT_PATH -- TEXT``.

    Raises `SynthesisError` when the command is not installed, fails, times out or
    writes no audio.
    """
    executable = shutil.which(command)
    if executable is None:
        raise SynthesisError(
            f"{command} is not installed (no {command!r} command on PATH;"
            " on Debian: apt-get install espeak-ng)"
        )
    arguments = [executable, "-v", voice, "-s", str(rate_wpm), "-w", str(out_path), "--", text]
    try:
        finished = subprocess.run(
            arguments, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise SynthesisError(f"{command} did not finish within {timeout:g} s") from None
    except OSError as exc:
        raise SynthesisError(f"{command} could not be started: {exc}") from exc
    messages = (finished.stderr or b"").decode("utf-8", "replace").strip()
    if finished.returncode != 0:
        detail = f": {messages}" if messages else ""
        raise SynthesisError(
            f"{command} -v {voice} exited with status {finished.returncode}{detail}"
        )
    if not out_path.is_file() or out_path.stat().st_size <= 44:
        detail = f" ({messages})" if messages else ""
        raise SynthesisError(f"{command} -v {voice} wrote no audio to {out_path}{detail}")
