"""asyncio glue: the only package with sockets, tasks, signals and clocks.

It feeds the sans-IO cores, flushes what they return and arms one timer for their
earliest deadline.
"""
