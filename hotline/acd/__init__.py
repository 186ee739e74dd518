"""Automatic call distribution: agents, presence, queues, wait-time estimation and
callbacks, as pure state machines driven by events and `now` (see `router.Router`).

Must not know: SIP messages, RTP, sockets, databases or the clock.
"""
