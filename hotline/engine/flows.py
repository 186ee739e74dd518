"""The engine's flows: loading `ivr_flows/`, routing calls to them, and safe hot reload.

Owns the set of flow versions that serve new calls. A load (at start, on SIGHUP, or when
the file watch sees a change) reads and checks every flow file and prepares its audio —
recordings loaded and converted, texts without a recording synthesised once — off the
event loop; only a file that loads without errors replaces its running version, in one
assignment, so new calls get the new version and calls in progress keep the version
they started with (a `Session` holds its `Flow`). A bad edit leaves the old version
serving and its errors are logged as `FILE:LINE:COL: …` lines.

Routing: a call goes to the flow that lists its dialled number (the Request-URI user) in
`numbers:`, else to the configured default flow.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hotline.ivr.interpreter import AudioItem, PromptAudio, Recording, Silence, Words
from hotline.ivr.loader import Flow, FlowError, PromptAsset, load_flow
from hotline.ivr.model import SayItem
from hotline.media import sayas
from hotline.media.prompts import PromptCache, PromptError

log = logging.getLogger("hotline.flows")

Int16Array = npt.NDArray[np.int16]

# espeak-ng voices for the flow languages (what a prompt without a recording is spoken in)
# (espeak-ng 1.51's `cmn` reads several characters as English spellings of their pinyin;
# `cmn-latn-pinyin` reads Chinese characters right)
VOICES = {"en": "en-gb", "zh": "cmn-latn-pinyin", "cmn": "cmn-latn-pinyin", "vi": "vi", "ar": "ar", "es": "es",
          "fr": "fr", "de": "de", "it": "it", "el": "el", "hi": "hi", "ko": "ko"}


def voice_for(language: str) -> str:
    return VOICES.get(language, VOICES.get(language.split("-")[0], language))


@dataclass(frozen=True)
class LoadedFlow:
    """A flow and the playable audio of each of its prompts (name, language)."""

    flow: Flow
    audio: dict[tuple[str, str], Int16Array]
    mtime: float


class FlowSet:
    """The flows serving new calls, and their audio."""

    def __init__(self, flows_dir: Path, audio_dir: Path, prompts: PromptCache,
                 default_flow: str | None) -> None:
        self.flows_dir = flows_dir
        self.audio_dir = audio_dir
        self.prompts = prompts
        self.default_flow = default_flow
        self.by_file: dict[Path, LoadedFlow] = {}
        self.errors: dict[Path, str] = {}
        self.words: dict[str, Int16Array] = {}
        self.seen: dict[Path, float] = {}  # every file's mtime at the last load
        self._prepared_mtimes: dict[Path, float] = {}
        self.loads = 0
        self.rejected = 0

    # -- loading (run in a worker thread: it reads files and may synthesise) ----------

    def files(self) -> list[Path]:
        if not self.flows_dir.is_dir():
            return []
        return sorted(p for p in self.flows_dir.iterdir()
                      if p.suffix in (".yaml", ".yml") and p.is_file())

    def changed(self) -> bool:
        """Whether any flow file was added, removed or modified since the last load."""
        return {p: _mtime(p) for p in self.files()} != self.seen

    def prepare(self) -> tuple[dict[Path, LoadedFlow], dict[Path, str], dict[str, Int16Array]]:
        """Load every flow file and its audio; nothing is swapped in yet."""
        self._prepared_mtimes = {p: _mtime(p) for p in self.files()}
        loaded: dict[Path, LoadedFlow] = {}
        errors: dict[Path, str] = {}
        words: dict[str, Int16Array] = dict(self.words)
        for path in self.files():
            mtime = _mtime(path)
            previous = self.by_file.get(path)
            if previous is not None and previous.mtime == mtime:
                loaded[path] = previous
                continue
            try:
                flow = load_flow(path, audio_dir=self.audio_dir, display_name=str(path))
                audio = self._flow_audio(flow)
                self._words(flow, words)
            except FlowError as exc:
                errors[path] = str(exc)
                continue
            except PromptError as exc:
                errors[path] = f"{path}: {exc}"
                continue
            for warning in flow.warnings:
                log.warning("%s [%s]", warning.format(), warning.code)
            loaded[path] = LoadedFlow(flow, audio, mtime)
        return loaded, errors, words

    def commit(self, loaded: dict[Path, LoadedFlow], errors: dict[Path, str],
               words: dict[str, Int16Array]) -> None:
        """Swap in what `prepare` built. Files with errors keep their old version."""
        new = dict(loaded)
        for path, message in errors.items():
            old = self.by_file.get(path)
            for line in message.splitlines():
                log.error("%s", line)
            if old is not None:
                new[path] = old
                log.error("%s: keeping version %s serving", path, old.flow.version)
            self.rejected += 1
        for path, lf in new.items():
            old = self.by_file.get(path)
            if old is None or old.flow.version != lf.flow.version:
                log.info("flow %s version %s loaded from %s", lf.flow.name, lf.flow.version, path)
        self.by_file = new
        self.errors = errors
        self.seen = self._prepared_mtimes
        self.words = words
        self.loads += 1

    def load_now(self) -> bool:
        """Load synchronously (at start-up). True when every file loaded."""
        loaded, errors, words = self.prepare()
        self.commit(loaded, errors, words)
        return not errors

    def _flow_audio(self, flow: Flow) -> dict[tuple[str, str], Int16Array]:
        audio: dict[tuple[str, str], Int16Array] = {}
        for (name, language), asset in flow.prompts.items():
            context = f"flow {flow.file}, prompt {name} ({language})"
            audio[(name, language)] = self.prompts.pcm(self._prompt_name(asset, context),
                                                       context=context)
        return audio

    def _prompt_name(self, asset: PromptAsset, context: str) -> str:
        if asset.file is not None:
            try:
                return asset.file.resolve().relative_to(self.audio_dir.resolve()).as_posix()
            except ValueError:
                raise PromptError(f"{context}: recording {asset.file} is outside the audio "
                                  f"directory {self.audio_dir}") from None
        return self.prompts.text(f"prompts/{asset.language}/{asset.name}", asset.text or "",
                                 voice_for(asset.language), context=context)

    def _words(self, flow: Flow, words: dict[str, Int16Array]) -> None:
        uses_say = any(
            isinstance(item, SayItem)
            for scope in flow.scopes.values() for step in scope.steps.values()
            for items in _prompt_lists(step) for item in items
        )
        if not uses_say:
            return
        for language in flow.languages:
            for name in sayas.words_needed(language):
                if name not in words:
                    words[name] = self.prompts.pcm(name, context=f"say-as words for {flow.file}")

    # -- serving ------------------------------------------------------------------------

    def flows(self) -> Iterable[LoadedFlow]:
        return self.by_file.values()

    def route(self, dialled: str) -> LoadedFlow | None:
        default: LoadedFlow | None = None
        for lf in self.by_file.values():
            if dialled in lf.flow.document.numbers:
                return lf
            if lf.flow.name == self.default_flow:
                default = lf
        if default is None and self.default_flow is None and len(self.by_file) == 1:
            default = next(iter(self.by_file.values()))
        return default

    def render(self, loaded: LoadedFlow, items: Iterable[AudioItem]) -> Int16Array:
        """The samples of a Play action: its items back to back."""
        parts: list[Int16Array] = []
        for item in items:
            if isinstance(item, PromptAudio):
                parts.append(loaded.audio[(item.asset.name, item.asset.language)])
            elif isinstance(item, Words):
                parts.extend(self.words[name] for name in item.names)
            elif isinstance(item, Recording):
                try:
                    parts.append(self.prompts.pcm(item.name, context=f"flow {loaded.flow.file}"))
                except PromptError as exc:  # a datum without its recording: skip it
                    log.warning("%s", exc)
            elif isinstance(item, Silence):
                parts.append(np.zeros(round(item.seconds * 8000), dtype=np.int16))
        if not parts:
            return np.zeros(160, dtype=np.int16)
        return np.concatenate(parts)


def _prompt_lists(step: object) -> Iterable[list[object]]:
    from hotline.ivr.loader import step_prompt_lists

    return (items for items, _path in step_prompt_lists(step, ()))


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return -1.0
