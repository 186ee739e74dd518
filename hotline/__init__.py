"""hotline: a SIP/VoIP hotline engine.

Sans-IO protocol and media cores live in sip/, rtp/, media/, ivr/, acd/ and booking/;
engine/ is the only package that touches sockets, tasks and clocks.
"""

__version__ = "0.1.0"
