"""The registrar's authentication policy: digest verification plus per-source
throttling of failures and one fail2ban-ready log line per failure.

Owns the decision "accept / challenge / refuse" for one request; the digest maths and
nonces are hotline.sip.auth's, the buckets hotline.sip.ratelimit's. Never logs a
secret: only the source, the claimed user name (escaped) and the reason.
"""

from __future__ import annotations

import logging

from hotline.sip.auth import AuthStatus, DigestVerifier, auth_failure_line
from hotline.sip.message import Request
from hotline.sip.ratelimit import RateLimiter
from hotline.sip.registrar import AuthDecision

log = logging.getLogger("hotline.auth")


class DigestAuthenticator:
    def __init__(self, verifier: DigestVerifier, failures: RateLimiter) -> None:
        self.verifier = verifier
        self.failures = failures
        self.failure_count = 0
        self.throttled_count = 0

    def authenticate(self, request: Request, now: float, source: str) -> AuthDecision:
        if self.failures.retry_after(source, now) > 0:
            # Too many failures from this source: refuse without checking anything,
            # the same way for every user name.
            self.throttled_count += 1
            return AuthDecision(None, 403)
        outcome = self.verifier.verify_request(request, now)
        if outcome.accepted:
            return AuthDecision(outcome.username)
        if outcome.status is AuthStatus.FAILED and outcome.reason is not None:
            self.failure_count += 1
            self.failures.allow(source, now)
            log.warning(auth_failure_line(source, outcome.username, outcome.reason,
                                          self.verifier.realm))
        return AuthDecision(None, self.verifier.status_code,
                            tuple(self.verifier.rejection_headers(outcome, now)))
