"""hotline's media plane on numpy blocks: codecs, tone generation and in-band DTMF.

Owns what happens to audio samples between the RTP layer and the engine's media tick:
G.711 µ-law/A-law lookup tables (`g711`), tone rendering and the dBm0 level scale
(`tones`), and the vectorised DTMF detector bank that analyses every leg at once
(`dtmf`). Every function works on whole (legs × samples) blocks; there are no
per-sample Python loops.

Nothing here opens sockets, starts tasks or reads a clock: the engine passes decoded
samples and the tick index in and gets samples, codes and events back. RTP packets
and RFC 4733 events belong to `hotline.rtp`; sockets and timers to `hotline.engine`.
"""
