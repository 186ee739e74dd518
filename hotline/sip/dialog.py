"""SIP dialogs (RFC 3261 §12): identity, state, route set, CSeq rules and building
requests inside a dialog.

Owns one dialog's data and its rules; it does not send anything and does not know
about calls, media or transactions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from hotline.sip.headers import Address
from hotline.sip.message import Headers, Request, Response
from hotline.sip.uri import URI


class DialogState(Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class Role(Enum):
    UAS = "uas"
    UAC = "uac"


@dataclass(eq=False)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    role: Role
    local: Address  # our From/To address (with our tag)
    remote: Address  # the peer's address (with its tag)
    remote_target: URI
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    state: DialogState = DialogState.EARLY

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uas(cls, invite: Request, local_tag: str, contact_uri: URI) -> Dialog:
        """§12.1.1: the dialog a UAS creates when it answers `invite`."""
        route_set = list(invite.headers.raw_values("Record-Route"))
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=invite.from_.tag or "",
            role=Role.UAS,
            local=invite.to.with_tag(local_tag),
            remote=invite.from_,
            remote_target=contact_uri,
            route_set=[r for v in route_set for r in _split(v)],
            local_seq=0,
            remote_seq=invite.cseq.number,
        )

    @classmethod
    def as_uac(cls, invite: Request, response: Response) -> Dialog:
        """§12.1.2: the dialog a UAC creates from a 1xx/2xx with a To tag."""
        rr = [r for v in response.headers.raw_values("Record-Route") for r in _split(v)]
        rr.reverse()
        contacts = response.contacts
        target = contacts[0].uri if contacts else invite.uri
        return cls(
            call_id=invite.call_id,
            local_tag=invite.from_.tag or "",
            remote_tag=response.to.tag or "",
            role=Role.UAC,
            local=invite.from_,
            remote=response.to,
            remote_target=target,
            route_set=rr,
            local_seq=invite.cseq.number,
            remote_seq=None,
        )

    def accept_remote_cseq(self, request: Request) -> bool:
        """§12.2.2: a request with a CSeq lower than the last one is rejected (500).
        ACK and CANCEL reuse their INVITE's number and are not checked."""
        if request.method in ("ACK", "CANCEL"):
            return True
        n = request.cseq.number
        if self.remote_seq is not None and n <= self.remote_seq:
            return False
        self.remote_seq = n
        return True

    def new_request(self, method: str, via: str, contact: str | None = None,
                    *, cseq: int | None = None) -> Request:
        """§12.2.1.1: a request inside this dialog. `via` is the complete Via value
        (with a fresh branch); ACK must pass the INVITE's `cseq`."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        h = Headers()
        h.add("Via", via)
        h.add("Max-Forwards", "70")
        for r in self.route_set:
            h.add("Route", r)
        h.add("From", str(self.local))
        h.add("To", str(self.remote))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{cseq} {method}")
        if contact is not None:
            h.add("Contact", contact)
        return Request(h, b"", method, self.remote_target)

    def refresh_target(self, message: Request | Response) -> None:
        """A target-refresh request or its 2xx (re-INVITE, UPDATE) may change the
        remote target (§12.2)."""
        contacts = message.contacts
        if contacts and not contacts[0].wildcard:
            self.remote_target = contacts[0].uri


def _split(value: str) -> list[str]:
    from hotline.sip.grammar import split_commas

    return [p for p in split_commas(value) if p]
