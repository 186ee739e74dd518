-- hotline schema, version 2 (PostgreSQL): call detail records (hotline.cdr.CallRecord).
-- A record is identified by (node, call_id, started_at): writing it again stores it once.
-- `caller` is the calling number as the network presented it (personal data, kept for
-- call-backs and complaints). Nothing a caller keyed is ever stored here.

CREATE TABLE cdr (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id         text NOT NULL,      -- the SIP Call-ID
    node            text NOT NULL,      -- the engine node (config node_name)
    direction       text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    caller          text NOT NULL,
    called          text NOT NULL,
    started_at      timestamptz NOT NULL,   -- the INVITE
    answered_at     timestamptz,            -- NULL: never answered
    ended_at        timestamptz NOT NULL,
    duration_s      double precision NOT NULL CHECK (duration_s >= 0),
    talk_s          double precision CHECK (talk_s >= 0),
    flow            text,
    flow_version    text,
    flow_result     text,               -- the flow's result label (X-Hotline-Result)
    queue           text,
    queue_wait_s    double precision CHECK (queue_wait_s >= 0),
    agent           text,
    transferred_to  text,
    hangup_side     text NOT NULL
                    CHECK (hangup_side IN ('caller', 'callee', 'agent', 'engine', 'network')),
    end_reason      text NOT NULL,      -- hotline.sip.endpoint.EndReason
    sip_status      integer CHECK (sip_status BETWEEN 100 AND 699),
    rx_packets      bigint CHECK (rx_packets >= 0),     -- RTP received from the peer
    rx_loss_pct     double precision CHECK (rx_loss_pct BETWEEN 0 AND 100),
    rx_jitter_ms    double precision CHECK (rx_jitter_ms >= 0),  -- the highest seen
    tx_packets      bigint CHECK (tx_packets >= 0),     -- RTP sent to the peer
    tx_loss_pct     double precision CHECK (tx_loss_pct BETWEEN 0 AND 100),
    tx_jitter_ms    double precision CHECK (tx_jitter_ms >= 0),
    rtt_ms          double precision CHECK (rtt_ms >= 0),  -- mean RTCP round trip
    mos             double precision CHECK (mos BETWEEN 1 AND 4.5)  -- E-model estimate
);
CREATE UNIQUE INDEX cdr_identity ON cdr (node, call_id, started_at);
CREATE INDEX cdr_started ON cdr (started_at, id);
