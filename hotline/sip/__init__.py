"""SIP signalling core, sans-IO.

Owns message syntax (parse/serialize), URIs, structured headers, SDP, transactions
(RFC 3261 §17 / RFC 6026), dialogs, digest authentication and the registrar, and the
Endpoint facade that ties them together. Never touches sockets, tasks or clocks: callers
pass bytes, addresses and `now` in, and take bytes to send and the next deadline out.
"""
