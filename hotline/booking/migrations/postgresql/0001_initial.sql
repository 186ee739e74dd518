-- hotline booking schema, version 1 (PostgreSQL).
-- Local dates and 'HH:MM' times are in the booking zone; instants are timestamptz.

CREATE TABLE clinics (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    address     text NOT NULL,
    postcode    text NOT NULL,
    region      text NOT NULL,
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    vaccines    text NOT NULL,          -- codes separated by spaces
    sessions    text NOT NULL,          -- hotline.booking.model sessions text
    active      boolean NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE slots (
    id          text PRIMARY KEY,       -- clinic@YYYYMMDDTHHMM
    clinic_id   text NOT NULL REFERENCES clinics (id),
    starts_at   timestamptz NOT NULL,
    local_date  date NOT NULL,
    local_time  text NOT NULL,
    minutes     integer NOT NULL CHECK (minutes > 0),
    capacity    integer NOT NULL CHECK (capacity >= 0),
    taken       integer NOT NULL DEFAULT 0 CHECK (taken >= 0)
);
CREATE INDEX slots_free ON slots (clinic_id, starts_at) WHERE taken < capacity;
CREATE INDEX slots_day ON slots (local_date, clinic_id);

CREATE TABLE bookings (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reference       text UNIQUE,        -- set at confirmation
    status          text NOT NULL
                    CHECK (status IN ('held', 'confirmed', 'cancelled', 'attended', 'expired')),
    clinic_id       text NOT NULL REFERENCES clinics (id),
    slot_id         text NOT NULL REFERENCES slots (id),
    vaccine         text NOT NULL,
    dose            integer NOT NULL CHECK (dose >= 1),
    medicare        text NOT NULL,      -- as keyed; never logged
    card            text NOT NULL,      -- its first nine digits: with dob, the person
    dob             date NOT NULL,
    phone           text NOT NULL,
    hold_key        text UNIQUE,        -- idempotency key of the hold request
    confirm_key     text,               -- idempotency key of the confirming request
    held_at         timestamptz NOT NULL,
    hold_expires_at timestamptz NOT NULL,
    confirmed_at    timestamptz,
    cancelled_at    timestamptz,
    updated_at      timestamptz NOT NULL,
    version         integer NOT NULL DEFAULT 1
);
CREATE INDEX bookings_person ON bookings (card, dob);
CREATE INDEX bookings_phone ON bookings (phone) WHERE status = 'confirmed';
CREATE INDEX bookings_held ON bookings (hold_expires_at) WHERE status = 'held';
CREATE INDEX bookings_slot ON bookings (slot_id, status);

CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    booking_id      bigint NOT NULL REFERENCES bookings (id),
    kind            text NOT NULL CHECK (kind IN ('confirmed', 'rescheduled', 'cancelled')),
    dedupe_key      text NOT NULL UNIQUE,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    claimed_until   timestamptz,
    sent_at         timestamptz,
    failed_at       timestamptz,        -- given up
    last_error      text
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;

CREATE TABLE audit (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    booking_id      bigint NOT NULL REFERENCES bookings (id),
    action          text NOT NULL,
    actor           text NOT NULL,
    call_id         text,
    at              timestamptz NOT NULL,
    before_status   text,
    after_status    text,
    detail          text NOT NULL DEFAULT ''
);
CREATE INDEX audit_booking ON audit (booking_id, id);
