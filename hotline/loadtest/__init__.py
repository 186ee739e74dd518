"""`hotline loadtest`: SIPp load tests generated from a flow, run against an engine, reported.

journeys   caller journeys derived from a flow and checked with the simulator (pure)
profiles   traffic over time: a constant rate with ramps, or a daily curve (pure)
scenarios  the SIPp scenario, injection file and in-band tone captures of a plan (pure)
rtp        pcap files: writing caller tones, reading a capture, per-stream quality (pure)
metrics    Prometheus text: parsing scrapes, the engine figures a report shows (pure)
agents     the load-test agents' REGISTER and star codes over UDP (I/O)
runner     the processes (SIPp callers and agents, tshark), scraping, progress (I/O)
report     the JSON report, the HTML page with its SVG plots, the terminal table
"""
