-- hotline schema, version 2 (SQLite): call detail records (hotline.cdr.CallRecord).
-- Instants are UTC text 'YYYY-MM-DDTHH:MM:SS.ffffffZ', as in version 1. A record is
-- identified by (node, call_id, started_at): writing it again stores it once.
-- `caller` is the calling number as the network presented it (personal data, kept for
-- call-backs and complaints). Nothing a caller keyed is ever stored here.

CREATE TABLE cdr (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id         TEXT NOT NULL,      -- the SIP Call-ID
    node            TEXT NOT NULL,      -- the engine node (config node_name)
    direction       TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    caller          TEXT NOT NULL,
    called          TEXT NOT NULL,
    started_at      TEXT NOT NULL,      -- the INVITE
    answered_at     TEXT,               -- NULL: never answered
    ended_at        TEXT NOT NULL,
    duration_s      REAL NOT NULL CHECK (duration_s >= 0),  -- ended_at - started_at
    talk_s          REAL CHECK (talk_s >= 0),               -- ended_at - answered_at
    flow            TEXT,
    flow_version    TEXT,
    flow_result     TEXT,               -- the flow's result label (X-Hotline-Result)
    queue           TEXT,
    queue_wait_s    REAL CHECK (queue_wait_s >= 0),
    agent           TEXT,
    transferred_to  TEXT,
    hangup_side     TEXT NOT NULL
                    CHECK (hangup_side IN ('caller', 'callee', 'agent', 'engine', 'network')),
    end_reason      TEXT NOT NULL,      -- hotline.sip.endpoint.EndReason
    sip_status      INTEGER CHECK (sip_status BETWEEN 100 AND 699),
    rx_packets      INTEGER CHECK (rx_packets >= 0),    -- RTP received from the peer
    rx_loss_pct     REAL CHECK (rx_loss_pct BETWEEN 0 AND 100),
    rx_jitter_ms    REAL CHECK (rx_jitter_ms >= 0),     -- the highest seen
    tx_packets      INTEGER CHECK (tx_packets >= 0),    -- RTP sent to the peer
    tx_loss_pct     REAL CHECK (tx_loss_pct BETWEEN 0 AND 100),  -- as the peer reported
    tx_jitter_ms    REAL CHECK (tx_jitter_ms >= 0),
    rtt_ms          REAL CHECK (rtt_ms >= 0),           -- mean RTCP round trip
    mos             REAL CHECK (mos BETWEEN 1 AND 4.5)  -- E-model estimate (hotline.cdr)
) STRICT;
CREATE UNIQUE INDEX cdr_identity ON cdr (node, call_id, started_at);
CREATE INDEX cdr_started ON cdr (started_at, id);
