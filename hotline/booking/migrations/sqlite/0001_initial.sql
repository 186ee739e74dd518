-- hotline booking schema, version 1 (SQLite).
-- Instants are UTC text 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (fixed width, so text order is time
-- order); local dates 'YYYY-MM-DD' and times 'HH:MM' are in the booking zone.

CREATE TABLE clinics (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    address     TEXT NOT NULL,
    postcode    TEXT NOT NULL,
    region      TEXT NOT NULL,
    lat         REAL NOT NULL,
    lon         REAL NOT NULL,
    vaccines    TEXT NOT NULL,          -- codes separated by spaces
    sessions    TEXT NOT NULL,          -- hotline.booking.model sessions text
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    updated_at  TEXT NOT NULL
) STRICT;

CREATE TABLE slots (
    id          TEXT PRIMARY KEY,       -- clinic@YYYYMMDDTHHMM
    clinic_id   TEXT NOT NULL REFERENCES clinics (id),
    starts_at   TEXT NOT NULL,
    local_date  TEXT NOT NULL,
    local_time  TEXT NOT NULL,
    minutes     INTEGER NOT NULL CHECK (minutes > 0),
    capacity    INTEGER NOT NULL CHECK (capacity >= 0),
    taken       INTEGER NOT NULL DEFAULT 0 CHECK (taken >= 0)
) STRICT;
CREATE INDEX slots_free ON slots (clinic_id, starts_at) WHERE taken < capacity;
CREATE INDEX slots_day ON slots (local_date, clinic_id);

CREATE TABLE bookings (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    reference       TEXT UNIQUE,        -- set at confirmation
    status          TEXT NOT NULL
                    CHECK (status IN ('held', 'confirmed', 'cancelled', 'attended', 'expired')),
    clinic_id       TEXT NOT NULL REFERENCES clinics (id),
    slot_id         TEXT NOT NULL REFERENCES slots (id),
    vaccine         TEXT NOT NULL,
    dose            INTEGER NOT NULL CHECK (dose >= 1),
    medicare        TEXT NOT NULL,      -- as keyed; never logged
    card            TEXT NOT NULL,      -- its first nine digits: with dob, the person
    dob             TEXT NOT NULL,
    phone           TEXT NOT NULL,
    hold_key        TEXT UNIQUE,        -- idempotency key of the hold request
    confirm_key     TEXT,               -- idempotency key of the confirming request
    held_at         TEXT NOT NULL,
    hold_expires_at TEXT NOT NULL,
    confirmed_at    TEXT,
    cancelled_at    TEXT,
    updated_at      TEXT NOT NULL,
    version         INTEGER NOT NULL DEFAULT 1
) STRICT;
CREATE INDEX bookings_person ON bookings (card, dob);
CREATE INDEX bookings_phone ON bookings (phone) WHERE status = 'confirmed';
CREATE INDEX bookings_held ON bookings (hold_expires_at) WHERE status = 'held';
CREATE INDEX bookings_slot ON bookings (slot_id, status);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    booking_id      INTEGER NOT NULL REFERENCES bookings (id),
    kind            TEXT NOT NULL CHECK (kind IN ('confirmed', 'rescheduled', 'cancelled')),
    dedupe_key      TEXT NOT NULL UNIQUE,
    payload         TEXT NOT NULL,      -- JSON object
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    claimed_until   TEXT,
    sent_at         TEXT,
    failed_at       TEXT,               -- given up
    last_error      TEXT
) STRICT;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;

CREATE TABLE audit (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    booking_id      INTEGER NOT NULL REFERENCES bookings (id),
    action          TEXT NOT NULL,
    actor           TEXT NOT NULL,
    call_id         TEXT,
    at              TEXT NOT NULL,
    before_status   TEXT,
    after_status    TEXT,
    detail          TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX audit_booking ON audit (booking_id, id);
