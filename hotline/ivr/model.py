"""The flow language: the document model of `ivr_flows/*.yaml` and its JSON Schema.

Owns the shape of a flow file as ops write it — every key, its type, its default and a
one-line description (the descriptions become the JSON Schema editors complete from) —
and nothing else. It is a pydantic model so that `hotline.yamlpos` can report every
shape mistake as `FILE:LINE:COL: path: expected …, found …`. What the model cannot say
alone (targets that exist, expressions that parse, prompts in every language, …) is
`hotline.ivr.loader`'s and `hotline.ivr.checker`'s work; running a flow is
`hotline.ivr.interpreter`'s.

A flow file, in short::

    flow: vaccine                    # a name: letters, digits, - and _
    numbers: ["1800123456"]          # the dialled numbers (Request-URI users) it answers
    languages: [en, zh]              # the first is the default; `language` selects
    prompts:                         # every prompt, in every language
      welcome: {en: "Welcome.", zh: "欢迎。"}
    steps:                           # run from `start` (default: the first step)
      greet: {type: play, prompts: [welcome], next: menu}
      menu:  {type: menu, prompt: [choose], keys: {"1": book, "2": agent}, failed: agent}
      …

Step types: play, menu, collect, set, branch, hours, webhook, booking, queue, transfer,
goto, call (a sub-flow), return, hangup. A step without `next` goes on to the step
written after it, where that makes sense (play, set, collect, webhook, call).

Must not know: files, the clock, the engine, or how a step runs.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    model_validator,
)

from hotline.yamlpos import Expect

# -- small types ------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min)?\s*$")
_DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|min)?\s*$"
MAX_DURATION = 3600.0


def parse_duration(value: object) -> object:
    """`5`, `5s`, `1.5s`, `500ms`, `2m` / `2min` → seconds as float; other input is
    passed on for the type check to describe."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"expected a duration such as 5s, 500ms or 2m, found {value!r}")
        number = float(match.group(1))
        unit = match.group(2) or "s"
        return number / 1000.0 if unit == "ms" else number * 60.0 if unit in ("m", "min") else number
    return value


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    Field(ge=0, le=MAX_DURATION),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "number", "minimum": 0, "maximum": MAX_DURATION},
                {"type": "string", "pattern": _DURATION_PATTERN},
            ],
            "description": "seconds, or a duration such as 5s, 500ms, 2m",
        }
    ),
]

Name = Annotated[
    StrictStr,
    Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$", description="letters, digits, - and _"),
]
StepId = Annotated[
    StrictStr,
    Field(
        pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
        description="the name of a step of this flow (or of this sub-flow)",
    ),
]
VarName = Annotated[
    StrictStr,
    Field(
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="a variable: lower-case letters, digits and _",
    ),
]
LanguageCode = Annotated[
    StrictStr,
    Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", description="a language code: en, zh, en-AU"),
]
Expression = Annotated[
    StrictStr,
    Field(
        min_length=1,
        max_length=1000,
        description="an expression: attempts >= 2 and language == 'en', len(postcode) == 4, …",
    ),
]
Template = Annotated[
    StrictStr,
    Field(max_length=2000, description="text where {variable} or {expression} is filled in"),
]
DtmfKey = Annotated[
    StrictStr,
    Expect("one keypad key: 0-9, * or # (A-D on some phones)"),
    Field(pattern=r"^[0-9*#A-D]$", description="one keypad key: 0-9, * or # (A-D on some phones)"),
]


def _key_text(value: object) -> object:
    """YAML reads `1:` as the integer 1: menu keys accept it as the key "1"."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9:
        return str(value)
    return value


MenuKey = Annotated[DtmfKey, BeforeValidator(_key_text)]
Scalar = StrictStr | StrictInt | StrictBool | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _yes_no_keys(data: object) -> object:
    """YAML 1.1 reads an unquoted `yes:` / `no:` key as true / false: take them back."""
    if isinstance(data, dict) and (True in data or False in data):
        return {("yes" if k is True else "no" if k is False else k): v for k, v in data.items()}
    return data


# -- prompts ----------------------------------------------------------------------------


class PromptText(_Model):
    """One prompt in one language: a recording, a text, or both (the text is what a
    transcript shows and what is synthesised when there is no recording)."""

    text: StrictStr | None = Field(default=None, max_length=2000, description="the words")
    file: StrictStr | None = Field(
        default=None,
        max_length=300,
        description="a WAV under the audio directory (any rate; converted at load)",
    )


PromptDefinition = Annotated[
    StrictStr | PromptText,
    Field(description="the text of the prompt, or {text:, file:}"),
]

SayKind = Literal["digits", "number", "ordinal", "date", "time", "reference", "phone"]


class _Conditional(_Model):
    when: Expression | None = Field(
        default=None, alias="if", description="play this item only when the condition holds"
    )

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True,
                              populate_by_name=True)


class PromptRef(_Conditional):
    """A named prompt with a condition: `{prompt: press_3, if: "booking.slot_count >= 3"}`."""

    prompt: Name


class SayItem(_Conditional):
    """Speak a value from word recordings: `{say: date, value: "{dob}"}`."""

    say: SayKind = Field(description="how to speak the value")
    value: Template = Field(description="the value, usually {a_variable}")
    last: StrictInt | None = Field(
        default=None, ge=1, le=8, description="speak only the last N characters"
    )
    slow: StrictBool = Field(
        default=False, description="a pause after every character (references, codes)"
    )


class AudioItem(_Conditional):
    """A recording chosen at run time: `{audio: "clinics/{booking.clinic1_id}", text:
    "{booking.clinic1_name}"}` plays audio/clinics/<id>.wav (made when the data was
    imported); `text` is what transcripts show. A missing file is skipped and logged."""

    audio: Template = Field(description="a path under the audio directory, without .wav")
    text: Template | None = Field(default=None, description="what it says, for transcripts")


class SilenceItem(_Conditional):
    """A pause: `{silence: 500ms}`."""

    silence: Duration


PromptItem = Annotated[
    StrictStr | PromptRef | SayItem | AudioItem | SilenceItem,
    Field(description="a prompt name, {prompt: …, if: …}, {say: …, value: …}, {audio: …} or "
                      "{silence: …}; any of the mappings may have `if: condition`"),
]


def _listify(value: object) -> object:
    return [value] if isinstance(value, str | dict) else value


def _one_or_many(schema: dict[str, Any]) -> None:
    """The schema of a prompt list: one item, or a list of them (as the validator takes)."""
    items = schema.get("items", {})
    description = schema.get("description")
    schema.clear()
    schema["anyOf"] = [items, {"type": "array", "items": items, "maxItems": 50}]
    if description:
        schema["description"] = description


PromptList = Annotated[
    list[PromptItem],
    BeforeValidator(_listify),
    Field(max_length=50, description="what to play, in order: one item or a list",
          json_schema_extra=_one_or_many),
]


# -- steps ------------------------------------------------------------------------------


class _Step(_Model):
    note: StrictStr | None = Field(default=None, description="a comment kept with the step")


class Play(_Step):
    """Play prompts, then go on."""

    type: Literal["play"]
    prompts: PromptList
    barge_in: StrictBool | None = Field(
        default=None, description="a key press stops the prompt (default: the flow's default)"
    )
    next: StepId | None = None


class KeyAction(_Model):
    """What a menu key does: go to a step, optionally setting variables first."""

    next: StepId
    set: dict[VarName, Expression] = Field(default_factory=dict)


MenuTarget = Annotated[StepId | KeyAction, Field(description="a step, or {next:, set:}")]


class Menu(_Step):
    """Offer keys; a key goes to its step. No key, or a key not offered, re-prompts
    (escalating through `noinput` / `nomatch`) until `max_attempts`, then `failed`."""

    type: Literal["menu"]
    prompt: PromptList
    keys: dict[MenuKey, MenuTarget] = Field(min_length=1)
    timeout: Duration | None = Field(default=None, description="wait for a key after the prompt")
    max_attempts: StrictInt | None = Field(default=None, ge=1, le=10)
    noinput: list[PromptList] = Field(
        default_factory=list, description="played on the 1st, 2nd… silence (the last repeats)"
    )
    nomatch: list[PromptList] = Field(
        default_factory=list, description="played on the 1st, 2nd… wrong key (the last repeats)"
    )
    failed: StepId | None = Field(default=None, description="where to go when attempts run out")
    barge_in: StrictBool | None = None
    repeat_prompt: StrictBool = Field(
        default=True, description="play the menu prompt again after a noinput/nomatch prompt"
    )


InputKind = Literal["digits", "date", "phone", "postcode", "medicare", "yesno", "choice"]


class Confirm(_Model):
    """Read the value back and ask: `yes` key confirms, `no` key collects again."""

    _keys = model_validator(mode="before")(_yes_no_keys)

    prompt: PromptList
    yes: DtmfKey = "1"
    no: DtmfKey = "2"
    timeout: Duration | None = None


class Collect(_Step):
    """Collect a typed value by keypad into `field` (a variable)."""

    _keys = model_validator(mode="before")(_yes_no_keys)

    type: Literal["collect"]
    field: VarName
    input: InputKind
    prompt: PromptList
    # kind options
    min_length: StrictInt | None = Field(default=None, ge=1, le=64)
    max_length: StrictInt | None = Field(default=None, ge=1, le=64)
    format: Literal["DDMMYYYY", "DDMMYY", "YYYYMMDD", "MMYYYY"] | None = None
    when: Literal["past", "future", "any"] | None = Field(
        default=None, description="dates: must the date be in the past or the future"
    )
    min_age: StrictInt | None = Field(default=None, ge=0, le=150)
    max_age: StrictInt | None = Field(default=None, ge=0, le=150)
    choices: dict[MenuKey, Scalar] | None = Field(
        default=None, description="choice: key → value stored in the field"
    )
    yes: DtmfKey | None = None
    no: DtmfKey | None = None
    # entry
    terminator: DtmfKey | None = Field(default=None, description="ends the entry (default #)")
    clear: DtmfKey | None = Field(default=None, description="starts the entry again (default *)")
    first_digit_timeout: Duration | None = None
    inter_digit_timeout: Duration | None = None
    max_attempts: StrictInt | None = Field(default=None, ge=1, le=10)
    noinput: list[PromptList] = Field(default_factory=list)
    invalid: list[PromptList] = Field(
        default_factory=list, description="played on the 1st, 2nd… invalid entry"
    )
    confirm: Confirm | None = None
    sensitive: StrictBool = Field(
        default=False, description="masked in traces, logs and records; never in headers"
    )
    barge_in: StrictBool | None = None
    next: StepId | None = None
    failed: StepId | None = None


class SetVars(_Step):
    """Set variables from expressions (evaluated in order)."""

    type: Literal["set"]
    values: dict[VarName, Expression] = Field(min_length=1)
    next: StepId | None = None


class Case(_Model):
    when: Expression = Field(alias="if")
    next: StepId

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Branch(_Step):
    """Go to the first case whose condition holds, else to `else`."""

    type: Literal["branch"]
    cases: list[Case] = Field(min_length=1)
    otherwise: StepId = Field(alias="else")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class HoursCheck(_Step):
    """Open or closed now, by a schedule of the `hours:` section."""

    type: Literal["hours"]
    schedule: Name
    open: StepId
    closed: StepId


class Webhook(_Step):
    """Call an HTTP service; map fields of its JSON reply into variables."""

    type: Literal["webhook"]
    url: Template
    method: Literal["GET", "POST", "PUT"] = "POST"
    headers: dict[StrictStr, Template] = Field(default_factory=dict)
    body: dict[StrictStr, Template] = Field(default_factory=dict)
    timeout: Duration = 3.0
    retries: StrictInt = Field(default=1, ge=0, le=5)
    save: dict[VarName, StrictStr] = Field(
        default_factory=dict, description="variable → field of the JSON reply (a.b.c)"
    )
    send_sensitive: list[VarName] = Field(
        default_factory=list,
        description="sensitive fields this webhook may receive (HTTPS or loopback only)",
    )
    next: StepId | None = None
    failed: StepId


BookingAction = Literal[
    "find_caller", "find_reference", "eligibility", "clinics", "slots", "hold", "confirm",
    "cancel", "reschedule",
]


class Booking(_Step):
    """Ask the booking service; each outcome goes to its step."""

    type: Literal["booking"]
    action: BookingAction
    args: dict[VarName, Expression] = Field(default_factory=dict)
    outcomes: dict[Name, StepId] = Field(
        min_length=1, description="outcome (ok, not_found, full, …) → step"
    )
    failed: StepId = Field(description="where to go when the service fails")


class Queue(_Step):
    """Queue the call for an agent; `next` runs if the queue gives the call back
    (closed, overflow, caller chose a callback)."""

    type: Literal["queue"]
    queue: Name
    priority: StrictInt = Field(default=0, ge=0, le=9)
    attach: list[VarName] = Field(default_factory=list, description="variables the agent sees")
    next: StepId


class Transfer(_Step):
    """Transfer the call to a SIP URI."""

    type: Literal["transfer"]
    to: Template
    failed: StepId


class Goto(_Step):
    type: Literal["goto"]
    to: StepId


class CallSubflow(_Step):
    """Run a sub-flow; when it returns, go on to `next`."""

    type: Literal["call"]
    subflow: Name
    next: StepId | None = None


class Return(_Step):
    """End a sub-flow and go back to the step after its `call`."""

    type: Literal["return"]


class Hangup(_Step):
    """Play the last prompts (if any) and end the call, with SIP headers on the BYE."""

    type: Literal["hangup"]
    prompts: PromptList = Field(default_factory=list)
    result: Template | None = Field(default=None, description="shorthand for X-Hotline-Result")
    headers: dict[
        Annotated[StrictStr, Expect("a header name starting with X-, such as X-Hotline-Ref"),
                  Field(pattern=r"^X-[A-Za-z0-9-]{1,60}$")],
        Template,
    ] = Field(default_factory=dict, description="X- headers on the BYE")


Step = Annotated[
    Play | Menu | Collect | SetVars | Branch | HoursCheck | Webhook | Booking | Queue
    | Transfer | Goto | CallSubflow | Return | Hangup,
    Field(discriminator="type"),
]

STEP_TYPES: tuple[str, ...] = (
    "play", "menu", "collect", "set", "branch", "hours", "webhook", "booking", "queue",
    "transfer", "goto", "call", "return", "hangup",
)


# -- the document ----------------------------------------------------------------------


class Defaults(_Model):
    """Values every step uses unless it says otherwise."""

    barge_in: StrictBool = True
    menu_timeout: Duration = 5.0
    first_digit_timeout: Duration = 6.0
    inter_digit_timeout: Duration = 4.0
    max_attempts: StrictInt = Field(default=3, ge=1, le=10)
    terminator: DtmfKey = "#"
    clear: DtmfKey = "*"


class Subflow(_Model):
    """Steps reused from several places; `return` goes back to the caller's next step."""

    start: StepId | None = None
    steps: dict[StepId, Step] = Field(min_length=1)


class FlowDocument(_Model):
    """A flow file."""

    flow: Name
    description: StrictStr = ""
    numbers: list[
        Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9+*#._-]{1,64}$")]
    ] = Field(default_factory=list, description="the dialled numbers this flow answers")
    languages: list[LanguageCode] = Field(min_length=1, max_length=8)
    start: StepId | None = None
    defaults: Defaults = Field(default_factory=Defaults)
    variables: dict[VarName, Scalar] = Field(default_factory=dict)
    prompts: dict[Name, dict[LanguageCode, PromptDefinition]] = Field(default_factory=dict)
    hours: dict[Name, dict[StrictStr, Any]] = Field(
        default_factory=dict, description="opening-hours schedules by name"
    )
    steps: dict[StepId, Step] = Field(min_length=1)
    subflows: dict[Name, Subflow] = Field(default_factory=dict)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a flow file (what `hotline flow schema` prints)."""
    schema = FlowDocument.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hotline IVR flow"
    return schema
