"""Vaccine booking: clinics, slots, eligibility, bookings and the stores that keep them.

The domain modules are pure (no asyncio, no sockets, no clock: instants come in as
arguments): `model` (records, sessions, slot generation), `reference` (booking
references), `rules` (eligibility and policy), `geo` (postcodes and distances) and
`csvfiles` (clinic imports, exports). The I/O lives in the `store` package:
`store.sqlops` writes every store transaction once as a generator of statements;
`store.sqlite` and `store.postgres` run them on SQLite (a worker thread) and PostgreSQL
(psycopg's async pool) behind the `store.BookingStore` interface. `service.BookingService`
answers the IVR's `booking` steps; `hotline.bookingcli` adds `hotline booking`.

Must not know: SIP, audio, prompts or the flow interpreter.
"""
